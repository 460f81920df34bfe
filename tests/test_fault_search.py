"""Hypothesis fault search: the no-bug property per system (briefly), shrinking, and the
known-failing seeds that benchmarks/sim_campaign.py found for each bug switch.

The campaign (minutes) runs >= 1,000 schedules per system; CI runs a few per system here.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings

from splitbrain.harness.fault_search import Case, run_case, schedules, search, violations
from splitbrain.harness.sim import check_run, schedule_from_json, simulate
from splitbrain.systems import registry

SYSTEMS = list(registry.SYSTEM_PATHS)
CI_SCHEDULES_PER_SYSTEM = 8

# Seeded schedules (fault_search.seeded_config: settings, kinds and faults from the seed) on which
# benchmarks/sim_campaign.py found each bug switch: (system, bug, workload, seed[, time limit s]).
# Raft's figure-8 and unpersisted-vote bugs need longer runs (10 s) with more leader churn.
KNOWN_FAILURES: list[tuple] = [
    ("raft", "commit-old-term", "append-log", 234, 10.0),
    # (On the register this was seed 225 of the older one-register workload; with independent
    # keys no register seed of 0..399 shows it, arith's seed 61 does: replicas diverge.)
    ("raft", "vote-not-persisted", "arith", 61, 10.0),
    ("raft", "stale-reads", "register", 21),
    ("raft", "txn-local-reads", "txn-list-append", 0),
    ("raft", "ack-before-persist", "append-log", 1),
    ("multi-paxos", "forget-promise", "append-log", 181),
    ("multi-paxos", "no-reproposal", "register", 0),
    ("zab", "ack-before-fsync", "append-log", 1),
    ("zab", "election-ignores-zxid", "arith", 8),
    ("vr", "highest-view-log", "append-log", 11),
    ("vr", "recover-without-primary", "arith", 18),
    ("vr", "commit-on-f", "register", 11),
    ("primary-backup", "ack-before-replicate", "append-log", 6),
    ("primary-backup", "no-fencing", "register", 0),
    ("active-active", "arrival-order", "register", 0),
    ("active-active", "sequencer-forgets", "append-log", 1),
]
# The cores are still changing: when a recorded seed stops failing, the test scans this many
# further seeds of the same workload before it declares the bug no longer found.
RESCAN_SEEDS_MAX = 40

@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(registry.SYSTEM_PATHS, "toy", "sim_toy:ToySequencerCore")


def _available(system: str) -> None:
    if system not in registry.available_systems():
        pytest.skip(f"{system} core not available")


@settings(max_examples=30, deadline=None)
@given(schedules(["n1", "n2", "n3"], 5_000))
def test_schedules_are_valid_data_that_round_trip(sched):
    from splitbrain.harness.sim import schedule_to_json
    assert schedule_from_json(json.loads(json.dumps(schedule_to_json(sched))),
                              ["n1", "n2", "n3"]) == sched
    assert all(0 <= f.at_ms < 5_000 for f in sched)


@pytest.mark.parametrize("system", SYSTEMS)
def test_no_bug_property_holds_briefly(system):
    """No bug switched on: linearizable, logs agree, replicas converge (a few schedules)."""
    _available(system)
    finding = search(system, max_examples=CI_SCHEDULES_PER_SYSTEM, time_limit_s=2.0,
                     shrink=False, seed=1)
    assert finding is None, finding.report()


def test_a_bug_is_found_shrunk_and_replayable(toy):
    finding = search("toy", bugs=("unsynced-ack",), max_examples=150, time_limit_s=1.0,
                     workloads=("append-log",), kinds=("kill", "partition"), seed=0)
    assert finding is not None
    assert {c for c, _ in finding.found} <= {"log", "convergence", "liveness", "replicas"}
    # Shrunk: the essential fault (a kill losing unsynced records of the sequencer) remains,
    # and little else.
    kills = [f for f in finding.case.schedule if f.kind == "kill"]
    assert kills and any(f.lose_unsynced and ("n1" in f.nodes or f.shape in ("leader", "storm"))
                         for f in kills)
    assert len(finding.case.schedule) <= 3
    report = finding.report()
    assert "--schedule" in finding.case.replay() and "replay:" in report
    # The minimal case replays to the same violation.
    assert violations(run_case(finding.case)) == finding.found


def test_case_replay_command_reparses_to_the_same_case(toy):
    c = Case("toy", "append-log", 5, tuple(schedule_from_json(
        [{"kind": "kill", "at_ms": 100, "for_ms": 50, "nodes": ["n1"]}])), (), 1.0)
    import shlex

    from splitbrain.commands.test import build_test, command
    words = shlex.split(c.replay())
    assert words[:2] == ["splitbrain", "test"]
    ctx = command.make_context("test", words[2:])
    p = ctx.params
    test = build_test(system=p["system"], bin_path=p["bin_path"], workload=p["workload"],
                      nemesis=p["nemesis"], time_limit=p["time_limit"], nodes=p["nodes"],
                      concurrency=p["concurrency"], rate=p["rate"], seed=p["seed"],
                      bugs=p["bugs"], opts=p["opts"], backend=p["backend"], store=None,
                      name=None, schedule=json.loads(p["schedule"]))
    from splitbrain.harness.sim import config_from_test
    assert config_from_test(test) == c.config()


@pytest.mark.parametrize("system,bug,workload,seed,time_limit",
                         [k if len(k) == 5 else (*k, 5.0) for k in KNOWN_FAILURES])
def test_known_failing_seed_still_fails(system, bug, workload, seed, time_limit):
    _available(system)
    if bug not in registry.get_system(system).BUGS:
        pytest.fail(f"{system} has no bug switch {bug!r} any more: update KNOWN_FAILURES")
    from splitbrain.harness.fault_search import CHECKER_OPTIONS, seeded_config
    tried = []
    for s in [seed] + [x for x in range(RESCAN_SEEDS_MAX) if x != seed]:
        cfg = seeded_config(system, s, bugs=(bug,), workload=workload, time_limit_s=time_limit)
        result = check_run(simulate(cfg), {"checker_options": CHECKER_OPTIONS})
        if result.valid is False:
            assert violations(result)
            return
        tried.append(s)
    pytest.fail(f"{system} --bug {bug} ({workload}): no violation on seeds {tried}; "
                f"rerun benchmarks/sim_campaign.py --systems {system}")
