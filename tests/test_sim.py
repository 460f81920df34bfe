"""The deterministic simulator: determinism, faults, client semantics, phases, the CLI path.

Most tests run the test-only toy sequencer (tests/sim_toy.py) so that they do not depend on the
real cores; the real systems run in test_fault_search.py and benchmarks/sim_campaign.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from splitbrain.harness.sim import (Fault, SimConfig, Simulator, check_run, schedule_from_json,
                                    schedule_to_json, simulate)
from splitbrain.harness.sim.schedule import (Settings, grudge_bridge, grudge_ring, grudge_split,
                                             random_schedule)
from splitbrain.history import dumps_op
from splitbrain.systems import registry

REPO = Path(__file__).resolve().parent.parent
NODES = ["n1", "n2", "n3", "n4", "n5"]


@pytest.fixture(autouse=True)
def toy_system(monkeypatch):
    monkeypatch.setitem(registry.SYSTEM_PATHS, "toy", "sim_toy:ToySequencerCore")


def _jsonl(run) -> str:
    return "".join(dumps_op(op) + "\n" for op in run.history)


def test_same_seed_same_history_byte_for_byte():
    cfg = dict(system="toy", workload="append-log", seed=11, time_limit_s=3)
    a, b = simulate(SimConfig(**cfg)), simulate(SimConfig(**cfg))
    assert len(a.history) > 200
    assert _jsonl(a) == _jsonl(b)
    c = simulate(SimConfig(**{**cfg, "seed": 12}))
    assert _jsonl(a) != _jsonl(c)


def test_same_seed_same_history_for_raft():
    if "raft" not in registry.available_systems():
        pytest.skip("raft core not available")
    cfg = dict(system="raft", workload="register", seed=7, time_limit_s=2)
    assert _jsonl(simulate(SimConfig(**cfg))) == _jsonl(simulate(SimConfig(**cfg)))


def test_correct_toy_passes_with_every_fault():
    for seed in range(6):
        run = simulate(SimConfig(system="toy", workload="append-log", seed=seed, time_limit_s=3))
        res = check_run(run)
        assert res.children["liveness"].valid is True, seed
        assert res.children["log"].valid is True, (seed, res.children["log"].to_json())
        assert run.stats["crashes"] > 0 or run.stats["dropped"] > 0


def test_unsynced_ack_bug_loses_acknowledged_appends():
    # Only kills that lose unsynced records can expose it; the simulator finds it by seed.
    found = None
    for seed in range(40):
        sched = [Fault("kill", 1000, 300, nodes=("n1",), lose_unsynced=True)]
        run = simulate(SimConfig(system="toy", workload="append-log", seed=seed, time_limit_s=2,
                                 bugs=("unsynced-ack",), schedule=sched))
        if run.stats["lost_unsynced_records"] and check_run(run).valid is False:
            found = check_run(run)
            break
    assert found is not None
    names = {a.name for a in found.all_anomalies()}
    assert names & {"lost-append", "divergent-logs", "inconsistent-offset", "duplicate",
                    "state-divergence"}, names


def test_crash_discards_only_unsynced_records():
    sim = Simulator(SimConfig(system="toy", workload="append-log", seed=3, time_limit_s=1,
                              schedule=[], bugs=("unsynced-ack",)))
    sim.run()
    n1 = sim.nodes["n1"]
    assert len(n1.disk) > 10 and n1.synced == 0
    before = len(n1.disk)
    sim._crash(n1, lose_unsynced=False)
    assert len(n1.disk) == before and n1.synced == before
    n1.disk.extend([{"op": {"type": "append", "value": -1}}] * 5)
    sim._crash(n1, lose_unsynced=True)
    assert before <= len(n1.disk) <= before + 5


def test_client_semantics_timeouts_become_info_and_fresh_processes():
    # Pause the sequencer: requests to it time out; each worker then continues as process + 10.
    sched = [Fault("pause", 500, 3000, nodes=("n1",))]
    run = simulate(SimConfig(system="toy", workload="register", seed=1, time_limit_s=4,
                             schedule=sched, concurrency=10))
    infos = [o for o in run.history if o.type == "info" and o.process != "nemesis"]
    assert infos and all(o.error == "timed-out" for o in infos)
    later = {o.process for o in run.history if o.process != "nemesis"}
    assert any(p >= 10 for p in later)
    # Jepsen's rules: one outstanding op per process; nothing after an info.
    open_, dead = {}, set()
    for o in run.history:
        if o.process == "nemesis":
            continue
        assert o.process not in dead
        if o.type == "invoke":
            assert o.process not in open_
            open_[o.process] = o
        else:
            assert open_.pop(o.process).f == o.f
            if o.type == "info":
                dead.add(o.process)
    # Definite "not the sequencer" errors are fail, and clients follow the leader hint.
    fails = [o for o in run.history if o.type == "fail" and o.error == "temporarily-unavailable"]
    assert fails and all(o.node != "n1" for o in fails)


def test_final_phase_reads_and_status_of_every_node():
    run = simulate(SimConfig(system="toy", workload="append-log", seed=2, time_limit_s=2))
    finals = [o for o in run.history if o.type == "ok" and o.node and o.f == "status"]
    assert sorted(o.node for o in finals) == NODES
    reads = {o.node: o.value for o in run.history
             if o.type == "ok" and o.f == "read" and o.index > finals[0].index - 20}
    assert len({json.dumps(v) for n, v in reads.items() if n}) == 1   # converged
    assert run.liveness.valid is True


def test_liveness_fails_when_the_cluster_cannot_converge(monkeypatch):
    # A toy whose followers never apply anything cannot converge after the heal.
    from sim_toy import ToySequencerCore

    class Stuck(ToySequencerCore):
        def on_tick(self, now_ms):
            from splitbrain.systems.core import Ready
            return Ready()

    monkeypatch.setattr("sim_toy.ToySequencerCore", Stuck)
    run = simulate(SimConfig(system="toy", workload="append-log", seed=2, time_limit_s=1,
                             liveness_ms=500, schedule=[]))
    assert run.liveness.valid is False
    assert run.liveness.anomalies[0].name == "no-convergence"


def test_partition_shapes():
    g = grudge_split(["n1", "n2"], NODES)
    assert g["n1"] == {"n3", "n4", "n5"} and g["n5"] == {"n1", "n2"}
    ring = grudge_ring(NODES, NODES)
    for n in NODES:
        assert len(set(NODES) - ring.get(n, set())) >= 3   # each sees a majority
    assert len({frozenset(set(NODES) - ring[n]) for n in NODES}) == 5  # all different
    b = grudge_bridge(["n3", "n1", "n2"], NODES)
    assert "n3" not in b and b["n1"] == {"n4", "n5"} and b["n4"] == {"n1", "n2"}


def test_schedule_round_trip_and_errors():
    sched = random_schedule(5, ["partition", "kill", "pause", "clock", "loss"], NODES, 20_000)
    assert {f.kind for f in sched} == {"partition", "kill", "pause", "clock", "loss"}
    assert schedule_from_json(json.loads(json.dumps(schedule_to_json(sched)))) == sched
    with pytest.raises(ValueError, match=r"schedule\[0\]: missing field 'at_ms'"):
        schedule_from_json([{"kind": "kill", "for_ms": 1}])
    with pytest.raises(ValueError, match="unknown node"):
        schedule_from_json([{"kind": "kill", "at_ms": 1, "for_ms": 1, "nodes": ["n9"]}], NODES)
    with pytest.raises(ValueError, match="fault kind"):
        schedule_from_json([{"kind": "meteor", "at_ms": 1, "for_ms": 1}])


def test_settings_are_randomized_from_the_seed_and_described():
    a, b = Settings.from_seed(1, NODES), Settings.from_seed(2, NODES)
    assert a == Settings.from_seed(1, NODES) and a != b
    assert "client timeout" in a.describe()


def _cli(*args, cwd):
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}",
           "MPLBACKEND": "Agg"}
    return subprocess.run([sys.executable, "-m", "splitbrain.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_runs_stores_and_replays_exactly(tmp_path):
    if "raft" not in registry.available_systems():
        pytest.skip("raft core not available")
    args = ["test", "--backend", "sim", "--system", "raft", "--workload", "append-log",
            "--nemesis", "partition,kill", "--time-limit", "2", "--seed", "7",
            "--store", str(tmp_path / "store")]
    p = _cli(*args, cwd=tmp_path)
    assert p.returncode in (0, 1, 3), p.stderr
    assert "seed 7:" in p.stdout and "verdict:" in p.stdout
    replay = [line for line in p.stdout.splitlines() if line.startswith("replay: ")][0]
    run1 = Path(os.path.realpath(tmp_path / "store" / "latest"))
    for name in ("test.json", "history.jsonl", "results.json", "splitbrain.log",
                 "nodes/n1/records.jsonl", "nodes/n5/status.json"):
        assert (run1 / name).is_file(), name
    test = json.loads((run1 / "test.json").read_text())
    assert test["seed"] == 7 and test["backend"] == "sim" and test["sim"]["schedule"]
    import shlex
    words = shlex.split(replay[len("replay: "):])
    assert words[:2] == ["splitbrain", "test"]
    p2 = _cli(*words[1:], "--store", str(tmp_path / "store"), cwd=tmp_path)
    assert p2.returncode == p.returncode, p2.stderr
    run2 = Path(os.path.realpath(tmp_path / "store" / "latest"))
    assert run2 != run1
    assert (run1 / "history.jsonl").read_bytes() == (run2 / "history.jsonl").read_bytes()


def test_cli_bad_input_is_one_line(tmp_path):
    for args, what in ((["--nemesis", "meteor"], "--nemesis"), (["--bug", "nope"], "--bug"),
                       (["--workload", "nope"], "--workload"),
                       (["--schedule", "[{]"], "--schedule")):
        p = _cli("test", "--backend", "sim", "--system", "raft", "--store", str(tmp_path),
                 *args, cwd=tmp_path)
        assert p.returncode == 2, (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and what in p.stderr, p.stderr


def test_a_core_that_raises_is_a_finding_not_a_crash(monkeypatch):
    from sim_toy import ToySequencerCore

    class Asserting(ToySequencerCore):
        def on_client(self, src, body, now_ms):
            if body.get("type") == "write":
                raise AssertionError("invariant broken on purpose")
            return super().on_client(src, body, now_ms)

    monkeypatch.setattr("sim_toy.ToySequencerCore", Asserting)
    run = simulate(SimConfig(system="toy", workload="register", seed=1, time_limit_s=1,
                             schedule=[]))
    assert run.liveness.valid is False
    a = run.liveness.anomalies[0]
    assert a.name == "core-exception" and "invariant broken on purpose" in a.message


def test_crash_storm_crashes_right_after_steps_and_restarts():
    sched = [Fault("kill", 200, 1000, shape="storm", p=0.05)]
    run = simulate(SimConfig(system="toy", workload="append-log", seed=4, time_limit_s=2,
                             schedule=sched))
    kills = [o for o in run.history if o.f == "kill" and o.type == "info"]
    restarts = [o for o in run.history if o.f == "restart" and o.type == "info"]
    assert len(kills) >= 3 and len(restarts) == len(kills)
    assert all(200e6 <= o.time <= 1300e6 for o in kills)
    assert run.liveness.valid is True and run.replicas.valid is True


def test_replicas_result_names_state_divergence():
    sim = Simulator(SimConfig(system="toy", workload="register", seed=3, time_limit_s=1,
                              schedule=[]))
    run = sim.run()
    assert run.replicas.valid is True
    sim.nodes["n2"].core.machine.data['"x"'] = 1   # corrupt one replica at the same index
    bad = sim._replicas_result()
    assert bad.valid is False and bad.anomalies[0].name == "state-divergence"
    assert "n2" in bad.anomalies[0].message
