"""Tests of the shared foundation: the Op record, JSONL I/O, results, machines."""

import json

import pytest

from splitbrain.checkers import merge_validity, safe_check, FunctionChecker
from splitbrain.history import HistoryError, Op, read_jsonl, write_jsonl
from splitbrain.systems.machines import AppendLogMachine, ArithMachine, KvMachine, make_machine


def test_jsonl_roundtrip(tmp_path):
    ops = [Op(0, 10, 0, "invoke", "write", 3, key="a"), Op(1, 20, 0, "ok", "write", 3, key="a",
                                                          node="n1"),
           Op(2, 30, "nemesis", "info", "start-partition", ["n1"])]
    p = tmp_path / "h.jsonl"
    write_jsonl(str(p), ops)
    assert read_jsonl(str(p)) == ops


def test_bad_line_names_file_line_field(tmp_path):
    p = tmp_path / "h.jsonl"
    p.write_text(json.dumps({"index": 0, "time": 0, "process": 0, "type": "bogus", "f": "r"}) + "\n")
    with pytest.raises(HistoryError) as e:
        read_jsonl(str(p))
    assert "line 1" in str(e.value) and "'type'" in str(e.value) and str(p) in str(e.value)


def test_merge_validity():
    assert merge_validity([True, "unknown", False]) is False
    assert merge_validity([True, "unknown"]) == "unknown"
    assert merge_validity([True, True]) is True


def test_raising_checker_is_unknown():
    def boom(h, t):
        raise RuntimeError("x")
    r = safe_check(FunctionChecker("boom", boom), [], {})
    assert r.valid == "unknown" and "RuntimeError" in r.error


def test_arith_order_matters():
    a, b = ArithMachine(), ArithMachine()
    a.apply({"type": "add", "value": 1}); a.apply({"type": "mul", "value": 2})
    b.apply({"type": "mul", "value": 2}); b.apply({"type": "add", "value": 1})
    assert a.query({"type": "read"})["value"] == 2 and b.query({"type": "read"})["value"] == 1
    assert a.digest() != b.digest() and a.applied_index == b.applied_index == 2


def test_primary_backup_changes_reproduce_active_execution():
    ops = [{"type": "write", "key": 1, "value": 5}, {"type": "cas", "key": 1, "from": 5, "to": 6},
           {"type": "cas", "key": 1, "from": 5, "to": 7}, {"type": "read", "key": 1}]
    active, primary, backup = KvMachine(), KvMachine(), KvMachine()
    for op in ops:
        active.apply(op)
        reply, change = primary.execute(op)
        if op["type"] != "read":
            primary.apply_change(change)
            backup.apply_change(change)
    assert active.digest() == primary.digest() == backup.digest()
    assert active.applied_index == backup.applied_index == 3


def test_append_log_digest_is_replayable():
    m = make_machine("append-log")
    for v in range(5):
        assert m.apply({"type": "append", "value": v})["offset"] == v
    replay = AppendLogMachine()
    replay.restore(m.state(), 5)
    assert replay.digest() == m.digest() and m.applied_index == 5
