"""Short real runs on the local backend: node processes, the router, nemeses, the store.

The fast tier runs a 3-node Raft with every process-level fault, and a test-only core
(tests/nodes/tinycore.py) whose bug switches the nemeses must expose. The slow tier
(`-m slow`) is the matrix of every in-house system without bugs and with each bug switch:
documented there with the settings that find it.
"""

from __future__ import annotations

import json
import os
import random
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
         "recovery_s": 0.5}
    t.update(kw)
    return run_test(t, progress=False)


def _children(summary) -> dict:
    return {k: v["valid"] for k, v in summary.results["children"].items()}


def test_raft_with_partition_kill_pause_clock_is_valid(tmp_path):
    s = _test(tmp_path, system="raft", nemesis=["partition", "kill", "pause", "clock"],
              time_limit=5, seed=11)
    kids = _children(s)
    assert kids["log"] is True and kids["convergence"] is True and kids["recovery"] is True, \
        s.results
    assert s.valid is not False
    run = Path(s.run_dir)
    for name in ("test.json", "history.jsonl", "results.json", "splitbrain.log"):
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


def test_kill_exposes_a_core_that_answers_before_persisting(tmp_path, tiny_path):
    s = _test(tmp_path, system="tinycore:TinyCore", nodes=1, nemesis=["kill"], bugs=["no-persist"],
              time_limit=2.5)
    assert s.valid is False
    assert _children(s)["log"] is False


def test_lost_writes_exposes_unsynced_records_but_kill_does_not(tmp_path, tiny_path):
    lost = _test(tmp_path, system="tinycore:TinyCore", nodes=1, nemesis=["lost-writes"],
                 bugs=["unsynced"], time_limit=2.5)
    assert lost.valid is False and _children(lost)["log"] is False
    killed = _test(tmp_path, system="tinycore:TinyCore", nodes=1, nemesis=["kill"],
                   bugs=["unsynced"], seed=4, time_limit=2.5)
    # a process kill keeps what was written (the page cache survives): nothing lost
    assert _children(killed)["log"] is True


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


# ---- the slow matrix: every system, and every bug switch ------------------------------------

SYSTEM_RUNS = ["raft", "multi-paxos", "zab", "vr", "primary-backup", "active-active"]

# (system, bug, workload, nemesis): the settings that expose each bug in a short real run.
BUG_RUNS = [
    ("raft", "commit-old-term", "append-log", ["partition", "kill"]),
    ("raft", "vote-not-persisted", "append-log", ["kill", "partition"]),
    ("raft", "stale-reads", "register", ["partition"]),
]


def _available(system: str) -> bool:
    from splitbrain.systems.registry import available_systems
    return system in available_systems()


@pytest.mark.slow
@pytest.mark.parametrize("system", SYSTEM_RUNS)
def test_every_system_is_valid_without_bugs(tmp_path, system):
    if not _available(system):
        pytest.skip(f"{system} has not landed")
    s = _test(tmp_path, system=system, nodes=5, time_limit=15, seed=21,
              nemesis=["partition", "kill", "pause"])
    assert s.valid is not False, s.results


@pytest.mark.slow
@pytest.mark.parametrize("system,bug,workload,nemesis", BUG_RUNS)
def test_each_bug_switch_is_found(tmp_path, system, bug, workload, nemesis):
    if not _available(system):
        pytest.skip(f"{system} has not landed")
    found = None
    for seed in range(1, 6):
        s = _test(tmp_path, system=system, bugs=[bug], workload=workload, nodes=5,
                  time_limit=15, seed=seed, nemesis=nemesis)
        if s.valid is False:
            found = seed
            break
    assert found is not None, f"{system} --bug {bug}: not found in 5 seeds"


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
