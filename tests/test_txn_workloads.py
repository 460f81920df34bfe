"""txn-list-append / txn-rw-register: the workloads, the replicated txn machine, the in-house
systems under faults (simulated and one short real run), raft's txn-local-reads bug switch, and
`splitbrain check` on transactional JSONL and EDN histories."""

from __future__ import annotations

import json
import random

import pytest

from splitbrain.cli import main as cli_main
from splitbrain.harness.sim import SimConfig, check_run, simulate
from splitbrain.harness.workloads import Invocation, make_workload
from splitbrain.history.edn import write_edn
from splitbrain.history.jsonl import write_jsonl
from splitbrain.systems.machines import TxnMachine


def test_machine_applies_a_transaction_atomically_and_reads_its_own_writes():
    m = TxnMachine()
    r = m.apply({"type": "txn", "txn": [["r", 1, None], ["append", 1, 5], ["r", 1, None],
                                        ["w", 2, 7], ["r", 2, None]]})
    assert r == {"type": "txn_ok", "txn": [["r", 1, None], ["append", 1, 5], ["r", 1, [5]],
                                           ["w", 2, 7], ["r", 2, 7]]}
    assert m.apply({"type": "txn", "txn": [["append", 1, 6], ["r", 1, None]]})["txn"][1] == \
        ["r", 1, [5, 6]]
    assert m.applied_index == 2
    assert m.apply({"type": "txn", "txn": [["bogus", 1, 2]]})["code"] == 12
    other = TxnMachine()
    other.restore(json.loads(json.dumps(m.state())), m.applied_index)
    assert other.digest() == m.digest()


def test_workload_generates_maelstrom_requests_with_unique_values_per_key():
    w = make_workload("txn-list-append", {"key-count": 2, "max-txn-length": 3,
                                          "max-writes-per-key": 4})
    rng = random.Random(1)
    seen = set()
    for _ in range(200):
        inv = w.next_invocation(rng)
        assert inv.f == "txn" and 1 <= len(inv.value) <= 3
        assert w.request(inv) == {"type": "txn", "txn": inv.value}
        for f, k, v in inv.value:
            assert f in ("r", "append")
            if f == "append":
                assert (k, v) not in seen and 1 <= v <= 4
                seen.add((k, v))
    assert len({k for k, _ in seen}) > 2          # keys were retired for fresh ones
    inv = Invocation("txn", [["r", 1, None], ["append", 1, 3]])
    ok = w.completion(inv, {"type": "txn_ok", "txn": [["r", 1, [1]], ["append", 1, 3]]})
    assert ok.type == "ok" and ok.value == [["r", 1, [1]], ["append", 1, 3]]
    assert w.completion(inv, {"type": "txn_ok", "txn": [["r", 1, 5]]}).type == "info"
    assert w.completion(inv, {"type": "error", "code": 30}).type == "fail"
    assert w.completion(inv, {"type": "error", "code": 0}).type == "info"
    finals = w.final_invocations(["n1"])
    assert finals and all(f.node is None and all(m[0] == "r" for m in f.inv.value)
                          for f in finals)
    assert [n for n, _ in w.checker_names()] == ["list-append", "stats"]
    with pytest.raises(ValueError, match="unknown consistency model"):
        make_workload("txn-rw-register", {"consistency_models": "bogus"})
    with pytest.raises(ValueError, match="key_count must be at least 1"):
        make_workload("txn-rw-register", {"key_count": 0})


@pytest.mark.parametrize("system", ["raft", "multi-paxos", "zab", "vr"])
@pytest.mark.parametrize("workload", ["txn-list-append", "txn-rw-register"])
def test_in_house_systems_pass_under_partitions_and_kills_in_simulation(system, workload):
    for seed in (1,):
        run = simulate(SimConfig(system=system, workload=workload, seed=seed, time_limit_s=4,
                                 nemesis=("partition", "kill")))
        res = check_run(run)
        checker = res.children["list-append" if "append" in workload else "rw-register"]
        assert checker.valid is True, (system, workload, seed, checker.to_json()["anomalies"][:2])
        assert checker.stats["committed"] > 50
        assert res.valid is True, (seed, {k: v.valid for k, v in res.children.items()})


def test_raft_txn_local_reads_is_caught_in_simulation():
    caught = []
    for seed in (1, 2, 3):
        run = simulate(SimConfig(system="raft", workload="txn-list-append", seed=seed,
                                 time_limit_s=4, nemesis=("partition",),
                                 bugs=("txn-local-reads",)))
        r = check_run(run).children["list-append"]
        if r.valid is False:
            caught.append(seed)
            names = {a.name for a in r.anomalies}
            assert names & {"G-single", "G2-item", "lost-update", "incompatible-order",
                            "G-nonadjacent"}, names
    assert caught, "txn-local-reads was not caught in 3 seeds"


def run(*argv, capsys):
    """`splitbrain ARGV`: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as e:
        cli_main(list(argv))
    out, err = capsys.readouterr()
    return e.value.code, out, err


def _txn_history():
    from splitbrain.history.op import Op
    rows = [(0, "invoke", [["append", "x", 1], ["r", "y", None]]),
            (1, "invoke", [["append", "x", 2], ["append", "y", 1]]),
            (2, "invoke", [["r", "x", None]]),
            (0, "ok", [["append", "x", 1], ["r", "y", [1]]]),
            (1, "ok", [["append", "x", 2], ["append", "y", 1]]),
            (2, "ok", [["r", "x", [1, 2]]])]
    return [Op(i, i * 1000, p, t, "txn", v) for i, (p, t, v) in enumerate(rows)]


def test_check_picks_the_transactional_checker_for_jsonl_and_edn(tmp_path, capsys):
    ops = _txn_history()
    jl, edn = tmp_path / "h.jsonl", tmp_path / "h.edn"
    write_jsonl(str(jl), ops)
    write_edn(str(edn), ops)
    for path in (jl, edn):
        code, out, _ = run("check", str(path), "--json", "--out", str(tmp_path / "out"),
                           capsys=capsys)
        doc = json.loads(out)
        assert code == 1 and doc["valid"] is False
        assert [a["name"] for a in doc["anomalies"]] == ["G1c"]
        assert doc["anomalies"][0]["checker"] == "list-append"
    code, out, _ = run("check", str(jl), "--consistency-model", "read-uncommitted",
                       capsys=capsys)
    assert code == 0 and "VALID" in out and "not read-committed" in out


def test_check_reads_jepsen_edn_keywords(tmp_path, capsys):
    edn = tmp_path / "elle.edn"
    edn.write_text(
        "{:index 0 :time 0 :process 0 :type :invoke :f :txn :value [[:append :x 1] [:r :y nil]]}\n"
        "{:index 1 :time 1 :process 1 :type :invoke :f :txn :value [[:append :x 2] [:append :y 1]]}\n"
        "{:index 2 :time 2 :process 2 :type :invoke :f :txn :value [[:r :x nil]]}\n"
        "{:index 3 :time 3 :process 0 :type :ok :f :txn :value [[:append :x 1] [:r :y [1]]]}\n"
        "{:index 4 :time 4 :process 1 :type :ok :f :txn :value [[:append :x 2] [:append :y 1]]}\n"
        "{:index 5 :time 5 :process 2 :type :ok :f :txn :value [[:r :x [1 2]]]}\n")
    code, out, _ = run("check", str(edn), capsys=capsys)
    assert code == 1 and "G1c" in out and "T0 appended 1 to key 'x'" in out


def test_check_rejects_an_unknown_consistency_model(tmp_path, capsys):
    jl = tmp_path / "h.jsonl"
    write_jsonl(str(jl), _txn_history())
    code, _, err = run("check", str(jl), "--consistency-model", "bogus", capsys=capsys)
    assert code == 2
    assert "unknown consistency model 'bogus'" in err and "Traceback" not in err


def test_short_real_run_of_raft_passes_txn_list_append_under_partitions_and_kills(tmp_path):
    """Node processes on the local backend; the raft bug switch's real run is a CI recipe
    (tests/test_local_backend.py, harness/recipes.py)."""
    from splitbrain.harness.runner import run_test
    s = run_test({"backend": "local", "system": "raft", "workload": "txn-list-append",
                  "nemesis": ["partition", "kill"], "time_limit": 4, "nodes": 3,
                  "concurrency": 6, "rate": 120, "seed": 4, "store": str(tmp_path / "store"),
                  "harness_opts": {"recovery_s": 0.5, "reports": False,
                                   "nemesis_interval_s": 0.7}}, progress=False)
    kids = {k: v for k, v in s.results["children"].items()}
    assert kids["list-append"]["valid"] is True, kids["list-append"]
    assert kids["list-append"]["stats"]["committed"] > 50
    ops = [json.loads(line) for line in open(f"{s.run_dir}/history.jsonl")]
    assert {o["f"] for o in ops if o["process"] == "nemesis"} & {"kill", "start-partition"}


def test_check_reads_elle_test_histories_without_process_and_f(tmp_path, capsys):
    """Elle's histories/paper-example.edn shape (facts from Elle's repository): no :process,
    no :f, one transaction at a time. T3 missed T1's append of 8 to key 255 although T1
    completed before T3 began: read skew across the session order."""
    edn = tmp_path / "paper.edn"
    edn.write_text(
        "{:index 0 :type :invoke :value [[:append 253 1] [:append 253 3] [:append 255 2]"
        " [:append 255 3] [:append 256 1]]}\n"
        "{:index 1 :type :ok :value [[:append 253 1] [:append 253 3] [:append 255 2]"
        " [:append 255 3] [:append 256 1]]}\n"
        "{:index 2 :type :invoke, :value [[:append 255 8] [:r 253 nil]]}\n"
        "{:index 3 :type :ok, :value [[:append 255 8] [:r 253 [1 3]]]}\n"
        "{:index 4 :type :invoke, :value [[:r 255 nil]]}\n"
        "{:index 5 :type :ok, :value [[:r 255 [2 3 8]]]}\n"
        "{:index 6 :type :invoke, :value [[:r 255 nil] [:append 256 3]]}\n"
        "{:index 7 :type :ok :value [[:r 255 [2 3]] [:append 256 3]]}\n")
    code, out, _ = run("check", str(edn), "--json", capsys=capsys)
    doc = json.loads(out)
    assert code == 1 and [a["name"] for a in doc["anomalies"]] == ["G-single-process"]
    assert len(doc["anomalies"][0]["details"]["cycle"]) == 2
    code, out, _ = run("check", str(edn), "--consistency-model", "serializable", capsys=capsys)
    assert code == 0 and "allowed by the chosen model: G-single-process" in out


def _bin_run(tmp_path, workload, nodes):
    import subprocess
    import sys
    from pathlib import Path
    node = Path(__file__).parent / "nodes" / "txn.py"
    p = subprocess.run(
        [sys.executable, "-m", "splitbrain.cli", "test", "--bin", str(node), "--workload",
         workload, "--nodes", str(nodes), "--time-limit", "3", "--rate", "150", "--seed", "2",
         "--store", str(tmp_path / "store"), "--json", "--opt", "harness.reports=false",
         "--opt", "harness.recovery_s=0.3", "--opt", "workload.key-count=2"],
        capture_output=True, text=True, timeout=180)
    return p, json.loads(p.stdout) if p.stdout.strip().startswith("{") else None


def test_bin_node_speaks_maelstroms_txn_and_is_checked(tmp_path):
    """A Maelstrom node program (tests/nodes/txn.py) over the txn request: one node is valid;
    three nodes that do not replicate are caught."""
    p, out = _bin_run(tmp_path / "one", "txn-list-append", 1)
    assert p.returncode == 0 and out is not None, p.stdout[-1500:] + p.stderr[-1500:]
    la = out["results"]["children"]["list-append"]
    assert la["valid"] is True and la["stats"]["committed"] > 100
    p, out = _bin_run(tmp_path / "three", "txn-rw-register", 3)
    assert p.returncode == 1, p.stdout[-1500:] + p.stderr[-1500:]
    rw = out["results"]["children"]["rw-register"]
    assert rw["valid"] is False and rw["anomaly_names"]


@pytest.mark.slow
@pytest.mark.parametrize("system", ["raft", "multi-paxos", "zab", "vr", "primary-backup",
                                    "active-active"])
def test_many_simulated_schedules_of_txn_list_append_are_valid(system):
    """The slow tier: 20 seeds per system, every fault the simulator has."""
    for seed in range(20):
        run = simulate(SimConfig(system=system, workload="txn-list-append", seed=seed,
                                 time_limit_s=5))
        res = check_run(run)
        assert res.children["list-append"].valid is True, (system, seed)
        assert res.valid is True, (system, seed, {k: v.valid for k, v in res.children.items()})
