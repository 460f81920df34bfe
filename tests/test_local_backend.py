"""Short real runs on the local backend: node processes, the router, nemeses, the store.

The fast tier runs a 3-node Raft with every process-level fault, and a test-only core
(tests/nodes/tinycore.py) whose bug switches the nemeses must expose. The slow tier
(`-m slow`) is the matrix of every in-house system without bugs and with each bug switch:
documented there with the settings that find it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from splitbrain.harness import grudges
from splitbrain.harness.backends.local import LocalBackend
from splitbrain.harness.runner import run_test

NODES = Path(__file__).parent / "nodes"


@pytest.fixture
def tiny_path(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(NODES),
                                                                    os.environ.get("PYTHONPATH")])))


def _test(tmp_path, **kw):
    t = {"backend": "local", "workload": "append-log", "nemesis": [], "time_limit": 4,
         "nodes": 3, "concurrency": 6, "rate": 150, "seed": 3, "store": str(tmp_path / "store"),
         "harness_opts": {"recovery_s": 0.5, "reports": False}}
    t.update(kw)
    return run_test(t, progress=False)


def _children(summary) -> dict:
    return {k: v["valid"] for k, v in summary.results["children"].items()}


def test_raft_with_partition_kill_pause_clock_is_valid(tmp_path):
    s = _test(tmp_path, system="raft", nemesis=["partition", "kill", "pause", "clock"],
              time_limit=5, seed=11, harness_opts={"recovery_s": 0.5})
    kids = _children(s)
    assert kids["log"] is True and kids["convergence"] is True and kids["recovery"] is True, \
        s.results
    assert s.valid is not False
    run = Path(s.run_dir)
    for name in ("test.json", "history.jsonl", "results.json", "splitbrain.log",
                 "timeline.html", "latency.png", "rate.png"):
        assert (run / name).is_file(), name
    for n in ("n1", "n2", "n3"):
        assert (run / "nodes" / n / "node.log").stat().st_size > 0
        assert (run / "nodes" / n / "data" / "records.log").stat().st_size > 0
    ops = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert sum(1 for o in ops if o["type"] == "ok") > 200
    nem = {o["f"] for o in ops if o["process"] == "nemesis"}
    assert nem & {"start-partition", "kill", "pause", "clock-skew"}, nem
    test = json.loads((run / "test.json").read_text())
    assert test["seed"] == 11 and test["node_ids"] == ["n1", "n2", "n3"] and "valid" in test
    # the final phase read every node's own log and status
    finals = [o for o in ops if o["type"] == "ok" and o.get("node") and o["f"] == "status"]
    assert {o["node"] for o in finals} == {"n1", "n2", "n3"}
    # `splitbrain analyze` re-checks the stored run and keeps the previous results
    import subprocess
    import sys
    p = subprocess.run([sys.executable, "-m", "splitbrain.cli", "analyze", str(run), "--json"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode in (0, 3), p.stderr
    assert json.loads(p.stdout)["history_ops"] == len(ops)
    assert (run / "results.previous.json").is_file() and (run / "results.json").is_file()


def test_kill_exposes_a_core_that_answers_before_persisting(tmp_path, tiny_path):
    s = _test(tmp_path, system="tinycore:TinyCore", nodes=1, nemesis=["kill"], bugs=["no-persist"],
              time_limit=2.5)
    assert s.valid is False
    assert _children(s)["log"] is False


def test_lost_writes_exposes_unsynced_records_but_kill_does_not(tmp_path, tiny_path):
    lost = _test(tmp_path, system="tinycore:TinyCore", nodes=1, nemesis=["lost-writes"],
                 bugs=["unsynced"], time_limit=2)
    assert lost.valid is False and _children(lost)["log"] is False
    killed = _test(tmp_path, system="tinycore:TinyCore", nodes=1, nemesis=["kill"],
                   bugs=["unsynced"], seed=4, time_limit=2)
    # a process kill keeps what was written (the page cache survives): nothing lost
    assert _children(killed)["log"] is True


def test_crash_storm_crashes_and_restarts_many_times_and_raft_stays_valid(tmp_path):
    s = _test(tmp_path, system="raft", nemesis=["crash-storm"], nodes=3, time_limit=3,
              harness_opts={"recovery_s": 0.5, "reports": False, "nemesis_interval_s": 1.0})
    ops = [json.loads(line) for line in
           (Path(s.run_dir) / "history.jsonl").read_text().splitlines()]
    nem = [o for o in ops if o["process"] == "nemesis"]
    assert [o["f"] for o in nem][:2] == ["start-crash-storm", "start-crash-storm"], nem
    stops = [o for o in nem if o["f"] == "stop-crash-storm" and o["type"] == "info"]
    # the storm's interval is recorded (shaded in the plots) and it crashed several nodes a second
    assert stops and sum(o["value"].get("crashes", 0) for o in stops) >= 3, stops
    assert s.valid is not False, s.results


def test_crash_points_crash_nodes_at_protocol_messages_and_raft_stays_valid(tmp_path):
    s = _test(tmp_path, system="raft", nemesis=["crash-point"], nodes=3, time_limit=4,
              harness_opts={"recovery_s": 0.5, "reports": False, "nemesis_interval_s": 1.0,
                            "crash_point_types": "ae,ae_r", "crash_point_p": 1.0})
    run = Path(s.run_dir)
    ops = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    stops = [o for o in ops if o["process"] == "nemesis" and o["f"] == "stop-crash-point"
             and o["type"] == "info"]
    crashes = sum(o["value"]["crashes"] for o in stops)
    by_type: dict[str, int] = {}
    for o in stops:
        for t, k in o["value"]["by_type"].items():
            by_type[t] = by_type.get(t, 0) + k
    # every crash was at one of the chosen message types, and there were several
    assert crashes >= 3 and set(by_type) <= {"ae", "ae_r"}, stops
    log = (run / "splitbrain.log").read_text()
    assert log.count("(crash point)") == crashes
    # each crashed node came back: it booted again from its records
    boots = sum((run / "nodes" / n / "node.log").read_text().count(": boot ")
                for n in ("n1", "n2", "n3"))
    assert boots >= 3 + crashes, (boots, crashes)
    assert s.valid is True, s.results
    test = json.loads((run / "test.json").read_text())
    assert test["local"]["crash_point_types"] == ["ae", "ae_r"]


def test_router_crash_point_before_drops_the_message_and_silences_the_node(tmp_path):
    from splitbrain.harness.backends.local import CrashPoints
    b = LocalBackend(["n1", "n2"], lambda n, d, dd: ["true"], tmp_path, in_house=False)
    got: list[tuple[str, bytes]] = []
    crashed: list[dict] = []
    b._deliver = lambda dest, data: got.append((dest, data))
    b._signal = lambda n, sig: None
    p = b.procs["n1"]
    p.proc = object()          # "running": the router only marks and signals it
    b.crash_points = CrashPoints(types={"vote.granted": None}, p=1.0, before_p=1.0,
                                 allow=lambda n: True,
                                 on_crash=lambda n, info: crashed.append(info))
    line = json.dumps({"src": "n1", "dest": "n2", "body": {"type": "vote", "granted": False}})
    b._route("n1", line.encode())
    assert len(got) == 1 and crashed == []        # a refused vote is not a crash point
    line = json.dumps({"src": "n1", "dest": "n2", "body": {"type": "vote", "granted": True}})
    b._route("n1", line.encode())
    assert len(got) == 1 and p.silenced and p.expected_exit and not p.up
    assert crashed == [{"node": "n1", "when": "before", "type": "vote", "dest": "n2"}]
    assert b.crash_points.fired == {"vote": 1}
    p.proc = None
    b.loop.stop()


def test_a_system_names_its_own_crash_points():
    from splitbrain.systems.raft import RaftCore
    own = {"type": "ae", "term": 5, "ents": [{"t": 3}, {"t": 5}]}
    old = {"type": "ae", "term": 5, "ents": [{"t": 3}]}
    assert RaftCore.crash_point_names(own) == ("ae.own",)
    assert RaftCore.crash_point_names(old) == () == RaftCore.crash_point_names({"type": "hb"})
    b = LocalBackend(["n1", "n2"], lambda n, d, dd: ["true"], Path("/tmp"), in_house=False)
    from splitbrain.harness.backends.local import CrashPoints
    cp = CrashPoints(types={"ae.own": None}, p=1.0, before_p=0.0, allow=lambda n: True,
                     on_crash=lambda n, i: None, names=RaftCore.crash_point_names)
    assert b._crash_point(cp, "n1", own) == "after" and b._crash_point(cp, "n1", old) is None
    b.loop.stop()


def test_bridge_leader_puts_the_leader_in_the_middle():
    import random
    nodes = ["n1", "n2", "n3", "n4", "n5"]
    for seed in range(20):
        g = grudges.shape("bridge-leader", nodes, random.Random(seed), leader="n4")
        assert g["n4"] == frozenset()                       # the leader sees everyone
        others = [n for n in nodes if n != "n4"]
        assert all(len(g[n]) == 2 for n in others)          # each half misses the other
        assert not grudges.drops(g, "n4", "n1") and not grudges.drops(g, "n2", "n4")


def test_crash_point_and_partition_shape_options_are_checked(tmp_path):
    from splitbrain.cli import UserError
    for hopts, match in ((({"partition_shapes": "moebius"}), "moebius"),
                         (({"crash_point_p": 0}), "crash_point_p"),
                         (({"crash_point_down_ms": "9-3"}), "crash_point_down_ms"),
                         (({"crash_point_down_max": 4}), "crash_point_down_max"),
                         (({"crash_point_before_p": 2}), "crash_point_before_p"),
                         (({"crash_point_types": "ae@2"}), "TYPE@P"),
                         (({"crash_point_types": " , "}), "crash_point_types")):
        with pytest.raises(UserError, match=match):
            _test(tmp_path, system="raft", nemesis=["crash-point", "partition"],
                  harness_opts=hopts)


def test_router_applies_grudges_loss_duplication_and_latency(tmp_path):
    b = LocalBackend(["n1", "n2", "n3"], lambda n, d, dd: ["true"], tmp_path, in_house=False)
    got: list[tuple[str, bytes]] = []
    b._deliver = lambda dest, data: got.append((dest, data))
    env = {"src": "n1", "dest": "n2", "body": {"type": "x"}}
    raw = json.dumps(env).encode()
    b.grudge = grudges.isolate(["n1", "n2", "n3"], "n1")
    b._peer("n1", "n2", raw, dict(env))
    assert got == [] and b.stats["dropped"] == 1
    b.grudge = {}
    b._peer("n1", "n2", raw, dict(env))
    assert got == [("n2", raw + b"\n")]
    b.duplicate = 1.0
    b._peer("n1", "n2", raw, dict(env))
    assert len(got) == 3 and b.stats["duplicated"] == 1
    b.duplicate, b.loss = 0.0, 1.0
    b._peer("n1", "n2", raw, dict(env))
    assert len(got) == 3
    # a node cannot speak for another: the router stamps the real sender
    b.loss = 0.0
    b._peer("n3", "n2", None, dict(env))
    assert json.loads(got[-1][1])["src"] == "n3"
    b.latency_ms = (5, 10)
    b._peer("n1", "n2", raw, dict(env))
    assert len(got) == 4 and b.stats["delayed"] == 1 and b.loop._timers
    b.loop.stop()


# ---- bug switches found by short real runs -------------------------------------------------
#
# Each entry: the system and bug, and the settings of a short real run that exposes it (tried
# with seeds 1..3 until one run is invalid). Kept in sync with benchmarks/local_bug_matrix.py,
# which also tries every bug switch with a storm of every fault.
#
# Bugs whose window is milliseconds wide (a crash between a promise and the next message) are
# out of reach of wall-clock random kills: a crash storm (SIGKILL + restart 10-50 ms later, ~10
# crashes a second) found multi-paxos forget-promise once in 10 runs and vr
# recover-without-primary in none. The crash-point nemesis aims the crash instead: the router
# SIGKILLs a node right after (or before) it sends a promise, a prepare-ok, ... (the system's
# CRASH_POINTS), which is where the simulator's crashes land.

def _bug_run(tmp_path, system, bug, seed, *, workload, nemesis, nodes=5, time_limit=8,
             interval=1.0, opts=None, bugs=None, overlap=False, harness=None, rate=200,
             concurrency=20):
    t = {"backend": "local", "system": system, "workload": workload, "nemesis": nemesis,
         "time_limit": time_limit, "nodes": nodes, "concurrency": concurrency, "rate": rate,
         "seed": seed,
         "bugs": [bug] if bugs is None else bugs, "opts": dict(opts or {}),
         "store": str(tmp_path / "store"),
         "harness_opts": {"nemesis_interval_s": interval, "client_timeout_s": 0.5,
                          "recovery_s": 0.5, "reports": False, "nemesis_overlap": overlap,
                          **(harness or {})}}
    return run_test(t, progress=False)


FAST_BUG_RUNS = [
    # A deposed leader answering reads from local state: isolate the leader, keep its clients.
    ("raft", "stale-reads", dict(workload="kv", nemesis=["partition-leader"], nodes=3,
                                 time_limit=5, interval=1.5, opts={"check-quorum": False})),
    # A recovering replica takes the log of whichever backup answers first: crash backups right
    # after a prepare-ok (and primaries after a prepare) while latency lets one backup lag.
    # Found with seeds 1, 2, 3 and 4 (log: divergent-logs, lost-append).
    ("vr", "recover-without-primary", dict(workload="append-log", nodes=3, time_limit=15,
                                           interval=1.5, overlap=True,
                                           nemesis=["crash-point", "latency"],
                                           harness={"crash_point_p": 0.3})),
    # An acceptor that forgets its promise: a bridge partition keeps two proposers alive on
    # either side of the acceptor in the middle, which crashes right after each promise and
    # then accepts the deposed proposer's lower ballot. Found with seeds 2, 3, 5, 6 of 1-6
    # (log: divergent-logs; convergence: state-divergence).
    ("multi-paxos", "forget-promise", dict(workload="append-log", nodes=3, time_limit=15,
                                           interval=1.5, overlap=True,
                                           nemesis=["crash-point", "partition"],
                                           opts={"election_timeout_ms": 150, "heartbeat_ms": 25},
                                           harness={"crash_point_types": "promise",
                                                    "crash_point_p": 1.0,
                                                    "partition_shapes": "bridge"})),
    # A vote granted but not on disk: the leader is the bridge of a partition (both halves stay
    # in sync through it) and crashes after a heartbeat now and then; each half elects on its
    # own, and the voter in the middle crashes right after each granted vote, so it can grant
    # the same term again. Low rate: the halves' logs must be equally up to date for both
    # votes. Two leaders in one term in 5 of 5 runs, found with seeds 1, 2, 4, 5 of 1-5 (log:
    # divergent-logs; convergence: state-divergence).
    ("raft", "vote-not-persisted", dict(workload="append-log", nodes=3, time_limit=20,
                                        interval=2.0, overlap=True, rate=20, concurrency=6,
                                        nemesis=["crash-point", "partition"],
                                        opts={"election-timeout-ms": 150,
                                              "heartbeat-interval-ms": 25},
                                        harness={"crash_point_types": "rv_r.granted@1,hb@0.02",
                                                 "partition_shapes": "bridge-leader"})),
    # Figure 8 in three nodes: a leader crashes before its new entry leaves (ae.own, dropped),
    # the next leader too, with a higher term; the first comes back while the second is still
    # down (two nodes down together: crash_point_down_max 2), commits its old entry by counting
    # and crashes before an entry of its own term reaches the third node, which then votes for
    # the second, who overwrites the committed entry. 5 of 5 runs (seeds 1-5) invalid (log:
    # divergent-logs, inconsistent-offset).
    ("raft", "commit-old-term", dict(workload="append-log", nodes=3, time_limit=30, interval=3.0,
                                     rate=60, concurrency=10, nemesis=["crash-point"],
                                     opts={"election-timeout-ms": 150,
                                           "heartbeat-interval-ms": 25},
                                     harness={"crash_point_types": "ae.own@0.7,hb@0.05",
                                              "crash_point_before_p": 1.0,
                                              "crash_point_down_ms": "500-1500",
                                              "crash_point_down_max": 2})),
]

# The storm of benchmarks/local_bug_matrix.py: every process fault, one at a time, every 0.7 s.
STORM = dict(workload="append-log", time_limit=10, interval=0.7,
             nemesis=["partition", "partition-leader", "kill", "lost-writes", "pause", "clock"])

SLOW_BUG_RUNS = [
    # Followers acknowledge entries they have not fsynced: a machine crash of the leader and of
    # those followers together loses them (overlapping faults make that likely).
    ("raft", "ack-before-persist", dict(STORM, overlap=True)),
    ("multi-paxos", "no-reproposal", STORM),
    ("zab", "ack-before-fsync", STORM),
    ("zab", "election-ignores-zxid", STORM),
    ("primary-backup", "ack-before-replicate", STORM),
    ("primary-backup", "no-fencing", STORM),
    ("active-active", "arrival-order", STORM),
    ("active-active", "sequencer-forgets", STORM),
    # Three nodes (f = 1): the primary and one backup make the quorum, killed or cut off often.
    ("vr", "commit-on-f", dict(workload="append-log", nodes=3,
                               nemesis=["kill", "partition-leader"])),
    ("vr", "highest-view-log", dict(workload="append-log", nodes=3,
                                    nemesis=["kill", "partition", "partition-leader"])),
]


def _find(tmp_path, system, bug, settings, seeds=range(1, 4)):
    for seed in seeds:
        s = _bug_run(tmp_path, system, bug, seed, **settings)
        if s.valid is False:
            return seed, s
    return None, None


@pytest.mark.parametrize("system,bug,settings", FAST_BUG_RUNS,
                         ids=[f"{s}-{b}" for s, b, _ in FAST_BUG_RUNS])
def test_short_real_run_finds_the_bug(tmp_path, system, bug, settings):
    seed, s = _find(tmp_path, system, bug, settings, seeds=range(1, 6))
    assert seed is not None, f"{system} --bug {bug}: no invalid run in 5 seeds"


def test_the_same_settings_without_the_bug_are_valid(tmp_path):
    for system, bug, settings in FAST_BUG_RUNS:
        s = _bug_run(tmp_path, system, bug, 1, bugs=[], **settings)
        assert s.valid is not False, (system, bug, s.results)


@pytest.mark.slow
@pytest.mark.parametrize("system,bug,settings", SLOW_BUG_RUNS,
                         ids=[f"{s}-{b}" for s, b, _ in SLOW_BUG_RUNS])
def test_slow_real_run_finds_the_bug(tmp_path, system, bug, settings):
    seed, s = _find(tmp_path, system, bug, settings)
    assert seed is not None, f"{system} --bug {bug}: no invalid run in 3 seeds"


SYSTEM_RUNS = ["raft", "multi-paxos", "zab", "vr", "primary-backup", "active-active"]


@pytest.mark.slow
@pytest.mark.parametrize("system", SYSTEM_RUNS)
def test_every_system_is_valid_without_bugs(tmp_path, system):
    from splitbrain.systems.registry import available_systems
    if system not in available_systems():
        pytest.skip(f"{system} has not landed")
    s = _bug_run(tmp_path, system, "", 1, bugs=[], **STORM)
    assert s.valid is True, s.results


def test_parse_faults_and_unknown_names():
    from splitbrain.harness.nemesis import parse_faults
    assert parse_faults("partition,kill") == ["partition", "kill"]
    assert parse_faults(["none"]) == [] and parse_faults("lose-unsynced") == ["lost-writes"]
    assert "duplicate" in parse_faults("all")
    with pytest.raises(ValueError, match="choose from"):
        parse_faults("meteor")


def test_cli_rejects_clock_for_a_bin_node_and_unknown_harness_options(tmp_path):
    import subprocess
    import sys
    base = [sys.executable, "-m", "splitbrain.cli", "test", "--store", str(tmp_path)]
    p = subprocess.run(base + ["--bin", str(NODES / "linkv.js"), "--workload", "lin-kv",
                               "--nemesis", "clock"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "in-house" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run(base + ["--system", "raft", "--opt", "harness.bogus=1"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "harness.bogus" in p.stderr
