"""The convergence checker: equal applied_index means equal state digest, and replaying the
committed log through the reference state machine reproduces every reported digest."""

from __future__ import annotations

import random
import sys
import types

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splitbrain.checkers.convergence import (ConvergenceChecker, load_machine_factory,
                                             make_checker, replay_digests)
from splitbrain.history.op import Op
from splitbrain.systems.machines import AppendLogMachine, KvMachine

from strategies_log import chain_digests, log_histories


class H:
    def __init__(self) -> None:
        self.ops: list[Op] = []

    def op(self, p, typ, f, value=None, node=None) -> int:
        self.ops.append(Op(len(self.ops), len(self.ops), p, typ, f, value, None, node))
        return len(self.ops) - 1

    def read(self, p, log, node) -> int:
        self.op(p, "invoke", "read", None, node)
        return self.op(p, "ok", "read", log, node)

    def status(self, p, n, digest, node) -> int:
        self.op(p, "invoke", "status", None, node)
        return self.op(p, "ok", "status", {"applied_index": n, "state_digest": digest}, node)


LOG = ["a", "b", "c"]
D = chain_digests(LOG)


def test_agreeing_nodes_and_replay_are_valid():
    h = H()
    h.read(0, LOG, "n1")
    h.read(1, LOG[:2], "n2")
    h.status(2, 3, D[3], "n1")
    h.status(3, 2, D[2], "n2")
    h.status(4, 2, D[2], "n1")
    h.status(5, 0, D[0], "n3")               # a node without a final read: the longest log
    r = ConvergenceChecker().check(h.ops)
    assert r.valid is True, [a.message for a in r.anomalies]
    assert r.stats["replayed"] == 4 and r.stats["unreplayable"] == 0


def test_two_nodes_same_index_different_digest():
    h = H()
    s1 = h.status(0, 2, "d-one", "n1")
    s2 = h.status(1, 2, "d-two", "n2")
    h.status(2, 2, "d-two", "n3")            # the same pair again: reported once
    r = ConvergenceChecker().check(h.ops)    # no final reads: nothing to replay
    assert r.valid is False
    (a,) = r.anomalies
    assert a.name == "state-divergence" and a.details["kind"] == "nodes"
    assert a.ops == [s1, s2] and a.details["applied_index"] == 2
    assert a.details["statuses"] == [{"index": s1, "process": 0, "node": "n1"},
                                     {"index": s2, "process": 1, "node": "n2"}]
    assert "node n1" in a.message and "node n2" in a.message


def test_replay_mismatch_names_the_node_the_index_and_the_log():
    h = H()
    rd = h.read(0, LOG, "n1")
    st_ = h.status(1, 2, D[1], "n1")         # claims 2 applied, but its digest is that of 1
    r = ConvergenceChecker().check(h.ops)
    assert r.valid is False
    (a,) = r.anomalies
    assert a.name == "state-divergence" and a.details["kind"] == "replay"
    assert a.details["expected"] == D[2] and a.details["digest"] == D[1]
    assert a.details["log_op"] == rd and a.ops == sorted([rd, st_])


def test_each_node_is_replayed_against_its_own_log():
    h = H()
    h.read(0, ["a", "b"], "n1")
    h.read(1, ["a", "x"], "n2")              # a divergent replica, self-consistent
    h.status(2, 2, chain_digests(["a", "b"])[2], "n1")
    h.status(3, 2, chain_digests(["a", "x"])[2], "n2")
    r = ConvergenceChecker().check(h.ops)
    assert [a.details["kind"] for a in r.anomalies] == ["nodes"]


def test_status_beyond_the_log_is_unreplayable_not_a_pass_of_nothing():
    h = H()
    h.read(0, LOG, "n1")
    h.status(1, 7, "whatever", "n1")
    r = ConvergenceChecker().check(h.ops)
    assert r.valid is True and r.stats["unreplayable"] == 1


def test_no_status_is_unknown_and_bad_status_is_a_history_error():
    from splitbrain.history.errors import HistoryError
    h = H()
    h.read(0, LOG, "n1")
    r = ConvergenceChecker().check(h.ops)
    assert r.valid == "unknown" and "status" in r.error
    h.op(1, "invoke", "status", None, "n1")
    h.op(1, "ok", "status", {"applied_index": "x", "state_digest": "d"}, "n1")
    with pytest.raises(HistoryError, match="applied_index"):
        ConvergenceChecker().check(h.ops)


def test_replay_digests_match_the_machine():
    m = AppendLogMachine()
    want = {0: m.digest()}
    for i, v in enumerate(LOG, start=1):
        m.apply({"type": "append", "value": v})
        want[i] = m.digest()
    assert replay_digests(AppendLogMachine, LOG, [0, 1, 2, 3, 9]) == want


def test_user_supplied_machine_by_dotted_path():
    mod = types.ModuleType("sb_test_machines")

    class CountingMachine:
        def __init__(self):
            self.n = 0

        def apply(self, op):
            self.n += 1
            return {"type": "append_ok"}

        def digest(self):
            return f"count-{self.n}"

    mod.CountingMachine = CountingMachine
    sys.modules["sb_test_machines"] = mod
    try:
        h = H()
        h.read(0, [1, 2, 3], "n1")
        h.status(1, 3, "count-3", "n1")
        assert make_checker({"machine": "sb_test_machines:CountingMachine"}).check(h.ops).valid
        h.status(2, 2, "count-3", "n2")
        r = make_checker({"machine": "sb_test_machines:CountingMachine"}).check(h.ops)
        assert {a.details["kind"] for a in r.anomalies} == {"replay"}
    finally:
        del sys.modules["sb_test_machines"]
    # a named machine: log entries that are op bodies are applied as such
    kv = [{"type": "write", "key": 1, "value": 5}, {"type": "write", "key": 2, "value": 6}]
    m = KvMachine()
    for e in kv:
        m.apply(e)
    h = H()
    h.read(0, kv, "n1")
    h.status(1, 2, m.digest(), "n1")
    assert make_checker({"machine": "kv"}).check(h.ops).valid is True
    for bad in ("nope", "no_such_module_xyz:C", "splitbrain.systems.machines:Nope", ""):
        with pytest.raises(ValueError):
            load_machine_factory(bad)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(log_histories(), st.integers(0, 2**32 - 1))
def test_generated_histories_converge_and_a_corrupted_digest_is_caught(h, seed):
    r = ConvergenceChecker().check(h.ops)
    assert r.valid is True, [a.message for a in r.anomalies]
    statuses = [op for op in h.ops if op.f == "status" and op.type == "ok"]
    victim = random.Random(seed).choice(statuses)
    ops = [op if op is not victim else
           Op(op.index, op.time, op.process, op.type, op.f,
              {**op.value, "state_digest": "corrupted"}, op.key, op.node)
           for op in h.ops]
    r = ConvergenceChecker().check(ops)
    assert r.valid is False
    assert {a.name for a in r.anomalies} == {"state-divergence"}
    assert any(victim.index in a.ops for a in r.anomalies)


def test_check_command_convergence_exit_codes(tmp_path):
    import importlib.util
    import json
    import subprocess

    from conftest import REPO
    from splitbrain.history.jsonl import write_jsonl
    if importlib.util.find_spec("splitbrain.commands.check") is None:
        pytest.skip("splitbrain check is not there yet")
    h = H()
    h.read(0, LOG, "n1")
    h.status(1, 3, D[3], "n1")
    h.status(2, 3, D[3], "n2")
    good = tmp_path / "good.jsonl"
    write_jsonl(str(good), h.ops)
    h.status(3, 3, D[2], "n3")
    bad = tmp_path / "bad.jsonl"
    write_jsonl(str(bad), h.ops)
    for path, rc_want in ((good, 0), (bad, 1)):
        p = subprocess.run([sys.executable, "-m", "splitbrain", "check", str(path),
                            "--checker", "convergence", "--json"],
                           capture_output=True, text=True, cwd=REPO, timeout=120)
        assert p.returncode == rc_want, p.stderr
        doc = json.loads(p.stdout)
        assert {a["name"] for a in doc["anomalies"]} == ({"state-divergence"} if rc_want else set())


def test_machine_from_the_test_metadata():
    kv = [{"type": "write", "key": 1, "value": 5}]
    m = KvMachine()
    m.apply(kv[0])
    h = H()
    h.read(0, kv, "n1")
    h.status(1, 1, m.digest(), "n1")
    assert make_checker({}).check(h.ops, {"machine": "kv"}).valid is True
    assert make_checker({}).check(h.ops, {}).valid is False          # append-log digests differ
    assert make_checker({"machine": "append-log"}).check(h.ops, {"machine": "kv"}).valid is False
    c = make_checker({})
    assert c.check(h.ops, {"machine": "kv"}).valid is True
    assert c.check(h.ops, {}).valid is False                           # no state kept between


def test_a_node_reporting_broken_invariants_is_an_invariant_violation():
    h = H()
    h.read(0, LOG, "n1")
    h.status(0, 3, D[3], "n1")
    h.op(1, "invoke", "status", None, "n2")
    bad = h.op(1, "ok", "status", {"applied_index": 3, "state_digest": D[3],
                                   "violations": ["two leaders in term 4: n1 and n3",
                                                  "Log Matching: index 2 term 4"]}, "n2")
    r = ConvergenceChecker().check(h.ops)
    assert r.valid is False
    [a] = r.anomalies
    assert a.name == "invariant-violation" and a.ops == [bad] and "n2" in a.message
    assert "two leaders in term 4" in a.message and "(and 1 more)" in a.message
    assert r.stats["invariant-violation"] == 1 and r.stats["state-divergence"] == 0
    # an empty list is no violation
    h.ops[bad] = Op(bad, bad, 1, "ok", "status",
                    {"applied_index": 3, "state_digest": D[3], "violations": []}, None, "n2")
    assert ConvergenceChecker().check(h.ops).valid is True
