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
    b._deliver = lambda dest, data, *log: got.append((dest, data))
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
    b._deliver = lambda dest, data, *log: got.append((dest, data))
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
    # src stays as the node wrote it (Maelstrom's forwarding idiom), but faults follow the
    # process that really sent it: n3 writing src=n1 is cut off by n3's grudge, not n1's
    b.loss = 0.0
    b._peer("n3", "n2", raw, dict(env))
    assert len(got) == 4 and json.loads(got[-1][1])["src"] == "n1"
    b.grudge = grudges.isolate(["n1", "n2", "n3"], "n3")
    b._peer("n3", "n2", raw, dict(env))
    assert len(got) == 4
    b.grudge = {}
    b.latency_ms = (5, 10)
    b._peer("n1", "n2", raw, dict(env))
    assert len(got) == 4 and b.stats["delayed"] == 1 and b.loop._timers   # not yet delivered
    b.loop.stop()


# ---- bug switches found by short real runs -------------------------------------------------
#
# The settings of each run, and what its faults do to the bug, are the recipes of
# splitbrain/harness/recipes.py (`splitbrain systems --recipes` prints them as commands). Each is
# tried with seeds 1..N until one run is invalid; the `ci` ones run here in CI, the others in the
# slow tier. Bugs whose window is milliseconds wide are aimed at with the crash-point nemesis:
# random wall-clock kills (a crash storm of ~10 SIGKILLs a second) found multi-paxos
# forget-promise once in 10 runs and raft commit-old-term, vote-not-persisted and vr
# recover-without-primary in none.

from splitbrain.harness import recipes  # noqa: E402

CI_RECIPES = [k for k, r in recipes.RECIPES.items() if r.ci]
SLOW_RECIPES = [k for k, r in recipes.RECIPES.items() if not r.ci]


def _bug_run(tmp_path, system, bug, seed, bugs=None):
    return run_test(recipes.run_config(system, bug, seed, str(tmp_path / "store"), bugs=bugs),
                    progress=False)


def _find(tmp_path, system, bug):
    for seed in range(1, recipes.recipe(system, bug).seeds + 1):
        s = _bug_run(tmp_path, system, bug, seed)
        if s.valid is False:
            return seed, s
    return None, None


def test_every_bug_switch_has_a_recipe():
    from splitbrain.systems.registry import available_systems
    switches = {(name, bug) for name, cls in available_systems().items() for bug in cls.BUGS}
    assert switches == set(recipes.RECIPES)


@pytest.mark.parametrize("system,bug", CI_RECIPES, ids=[f"{s}-{b}" for s, b in CI_RECIPES])
def test_short_real_run_finds_the_bug(tmp_path, system, bug):
    seed, s = _find(tmp_path, system, bug)
    assert seed is not None, \
        f"{system} --bug {bug}: no invalid run in {recipes.recipe(system, bug).seeds} seeds"


def test_the_same_settings_without_the_bug_are_valid(tmp_path):
    for system, bug in CI_RECIPES:
        s = _bug_run(tmp_path, system, bug, 1, bugs=[])
        assert s.valid is not False, (system, bug, s.results)


@pytest.mark.slow
@pytest.mark.parametrize("system,bug", SLOW_RECIPES, ids=[f"{s}-{b}" for s, b in SLOW_RECIPES])
def test_slow_real_run_finds_the_bug(tmp_path, system, bug):
    seed, s = _find(tmp_path, system, bug)
    assert seed is not None, \
        f"{system} --bug {bug}: no invalid run in {recipes.recipe(system, bug).seeds} seeds"


SYSTEM_RUNS = ["raft", "multi-paxos", "zab", "vr", "primary-backup", "active-active"]


@pytest.mark.slow
@pytest.mark.parametrize("system", SYSTEM_RUNS)
def test_every_system_is_valid_without_bugs(tmp_path, system):
    """The storm of the storm recipes, no bug: valid."""
    s = run_test(recipes.storm_config(system, 1, str(tmp_path / "store")), progress=False)
    assert s.valid is True, s.results


def test_recipe_commands_carry_every_setting(capsys):
    import shlex
    from splitbrain.cli import main
    argv = shlex.split(recipes.command("raft", "commit-old-term", seed=3))
    assert argv[:2] == ["splitbrain", "test"] and argv[argv.index("--bug") + 1] == "commit-old-term"
    assert "harness.crash_point_types=ae.own@0.7,hb@0.05" in argv
    assert argv[argv.index("--seed") + 1] == "3" and "election-timeout-ms=150" in argv
    # every option of the command is accepted: the only usage error is the one added here
    with pytest.raises(SystemExit) as exit_:
        main(["test", *argv[2:], "--opt", "harness.bogus=1", "--store", "/nonexistent/x"])
    assert exit_.value.code == 2 and "harness.bogus" in capsys.readouterr().err


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
