"""Semantic validation of histories (splitbrain/history/validate.py) and pairing of ops."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splitbrain.history import HistoryError, Op
from splitbrain.history.validate import (
    HistoryValidator, completion_of, pair_index, pairs, validate_history)


def ops_of(*rows) -> list[Op]:
    """Rows are (process, type, f[, value]); index and time are the position."""
    return [Op(i, i, r[0], r[1], r[2], r[3] if len(r) > 3 else None) for i, r in enumerate(rows)]


def error_of(history, **kw) -> HistoryError:
    with pytest.raises(HistoryError) as e:
        validate_history(history, **kw)
    return e.value


def test_valid_history_with_overlapping_nemesis_and_open_invoke():
    h = ops_of((0, "invoke", "write", 1), ("nemesis", "invoke", "start-partition"),
               (1, "invoke", "read"), ("nemesis", "invoke", "kill"), (0, "ok", "write", 1),
               ("nemesis", "info", "start-partition"), (1, "info", "read"),
               (2, "invoke", "read"), (0, "invoke", "cas", [1, 2]), (0, "fail", "cas", [1, 2]))
    validate_history(h)
    v = HistoryValidator()
    for op in h:
        v.feed(op)
    assert v.outstanding() == [7]  # process 2's read never completed: legal, counts as info
    assert v.count == len(h)


def test_second_invoke_by_busy_process_names_line_and_field():
    h = ops_of((0, "invoke", "read"), (1, "invoke", "write", 3), (0, "invoke", "write", 2))
    e = error_of(h, path="h.jsonl", lines=[1, 2, 5])
    assert (e.path, e.line, e.field) == ("h.jsonl", 5, "process")
    assert "line 1" in e.message and "outstanding" in e.message
    assert str(e).startswith("h.jsonl:line 5: field 'process': ")


def test_without_lines_the_error_names_the_op_index():
    h = ops_of((0, "invoke", "read"), (0, "invoke", "read"))
    e = error_of(h, path="h.edn")
    assert e.line is None and "op index 1" in str(e) and "op index 0" in str(e)


def test_completion_with_no_invoke():
    e = error_of(ops_of((1, "invoke", "read"), (0, "ok", "read", 3)), lines=[1, 2])
    assert (e.line, e.field) == (2, "type") and "no outstanding invoke" in e.message


def test_completion_of_another_f():
    e = error_of(ops_of((0, "invoke", "read"), (0, "ok", "write", 3)), lines=[1, 2])
    assert (e.line, e.field) == (2, "f") and "'write'" in e.message and "'read'" in e.message


def test_invoke_after_info_is_rejected():
    h = ops_of((0, "invoke", "write", 1), (0, "info", "write", 1), (0, "invoke", "read"))
    e = error_of(h, lines=[1, 2, 3])
    assert (e.line, e.field) == (3, "process") and "after its 'info'" in e.message


def test_completion_after_info_is_rejected():
    h = ops_of((0, "invoke", "write", 1), (0, "info", "write", 1), (0, "ok", "write", 1))
    e = error_of(h, lines=[1, 2, 3])
    assert (e.line, e.field) == (3, "type") and "crashed" in e.message


def test_completion_before_its_invoke_in_time():
    h = [Op(0, 50, 0, "invoke", "read"), Op(1, 40, 0, "ok", "read", 1)]
    e = error_of(h, lines=[1, 2])
    assert (e.line, e.field) == (2, "time")


def test_nemesis_is_exempt():
    validate_history(ops_of(("nemesis", "info", "stop-partition"),
                            ("nemesis", "invoke", "kill"), ("nemesis", "invoke", "kill")))


def test_pairing():
    h = ops_of((0, "invoke", "write", 1), ("nemesis", "invoke", "kill"), (1, "invoke", "read"),
               (0, "ok", "write", 1), ("nemesis", "info", "kill"), (2, "invoke", "read"),
               (1, "ok", "read", 1))
    assert pair_index(h) == [3, 4, 6, 0, 1, None, 2]
    assert [(a.index, b.index if b else None) for a, b in pairs(h)] == [(0, 3), (2, 6), (5, None)]
    assert completion_of(h) == {0: 3, 2: 6}


# A random valid history: workers run ops one at a time, a crash (info) retires a process id.
@st.composite
def valid_histories(draw):
    workers = draw(st.integers(1, 4))
    procs = list(range(workers))
    busy: dict[int, str] = {}
    next_pid = workers
    ops: list[Op] = []
    for _ in range(draw(st.integers(0, 40))):
        if draw(st.booleans()) and draw(st.booleans()):
            ops.append(Op(len(ops), len(ops), "nemesis", draw(st.sampled_from(["invoke", "info"])),
                          "kill"))
            continue
        w = draw(st.integers(0, workers - 1))
        p = procs[w]
        if p in busy:
            t = draw(st.sampled_from(["ok", "fail", "info"]))
            ops.append(Op(len(ops), len(ops), p, t, busy.pop(p)))
            if t == "info":
                procs[w] = next_pid
                next_pid += 1
        else:
            f = draw(st.sampled_from(["read", "write", "cas"]))
            busy[p] = f
            ops.append(Op(len(ops), len(ops), p, "invoke", f))
    return ops


@settings(max_examples=100, deadline=None)
@given(valid_histories())
def test_generated_valid_histories_pass_and_pair_consistently(h):
    validate_history(h)
    partner = pair_index(h)
    for i, j in enumerate(partner):
        if j is not None:
            assert partner[j] == i and h[i].process == h[j].process and h[i].f == h[j].f
    for i, op in enumerate(h):
        if op.process != "nemesis" and op.type != "invoke":
            assert partner[i] is not None and partner[i] < i


@settings(max_examples=100, deadline=None)
@given(valid_histories(), st.data())
def test_duplicating_an_open_invoke_is_caught(h, data):
    """Inserting a copy of an invoke right after it makes the process invoke while busy."""
    invokes = [i for i, op in enumerate(h) if op.type == "invoke" and op.process != "nemesis"]
    if not invokes:
        return
    i = data.draw(st.sampled_from(invokes))
    bad = h[:i + 1] + [h[i]] + h[i + 1:]
    bad = [Op(k, k, o.process, o.type, o.f, o.value) for k, o in enumerate(bad)]
    e = error_of(bad)
    assert e.field == "process" and f"op index {i + 1}" in str(e)
