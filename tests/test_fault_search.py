"""Hypothesis fault search: the no-bug property per system (briefly), shrinking, and the
known-failing seeds that benchmarks/sim_campaign.py found for each bug switch.

The campaign (minutes) runs >= 1,000 schedules per system; CI runs a few per system here.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings

from splitbrain.harness.fault_search import Case, run_case, schedules, search, violations
from splitbrain.harness.sim import SimConfig, check_run, schedule_from_json, simulate
from splitbrain.harness.sim.schedule import KINDS
from splitbrain.systems import registry

SYSTEMS = list(registry.SYSTEM_PATHS)
CI_SCHEDULES_PER_SYSTEM = 8

# (system, bug, workload, seed, time_limit_s): seeded random schedules (nemesis: every kind) on
# which the campaign found the bug. Each must stay invalid; the same seed without the bug valid.
KNOWN_FAILURES: list[tuple[str, str, str, int, float]] = [
]


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
    assert {c for c, _ in finding.found} <= {"log", "convergence", "liveness"}
    # Shrunk: the essential fault (a kill losing unsynced records of the sequencer) remains,
    # and little else.
    kills = [f for f in finding.case.schedule if f.kind == "kill"]
    assert kills and any(f.lose_unsynced and "n1" in f.nodes for f in kills)
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


@pytest.mark.parametrize("system,bug,workload,seed,time_limit", KNOWN_FAILURES)
def test_known_failing_seed_still_fails(system, bug, workload, seed, time_limit):
    _available(system)
    from splitbrain.harness.fault_search import CHECKER_OPTIONS, WORKLOAD_OPTIONS
    cfg = dict(system=system, workload=workload, seed=seed, time_limit_s=time_limit,
               nemesis=KINDS, workload_options=WORKLOAD_OPTIONS.get(workload, {}))
    bad = check_run(simulate(SimConfig(**cfg, bugs=(bug,))),
                    {"checker_options": CHECKER_OPTIONS})
    assert bad.valid is False, f"{system} --bug {bug} seed {seed} no longer fails"
