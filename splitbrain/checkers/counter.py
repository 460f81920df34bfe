"""Jepsen's counter checker: every read lies within the bounds the adds allow.

Ops: `add` n -> ok n (n an integer, possibly negative); `read` null -> ok an integer. The counter
starts at 0. For a read that began at invoke i and ended at completion c:
- certainly applied: every add that completed ok before i;
- possibly applied: every add invoked before c that did not end `fail` (ok after i, info, or
  never completed);
so the read must lie in [certain + sum of the negative possible ones, certain + sum of the
positive possible ones]. A read outside is an `out-of-bounds-read` with both bounds.
One pass to pair adds with their outcome, one pass in history order; O(n).
"""

from __future__ import annotations

from typing import Any, Iterable

from ..history.errors import HistoryError
from ..history.op import FAIL, INVOKE, OK
from .result import UNKNOWN, Anomaly, Result

NAME = "counter"
ANOMALIES_MAX = 1000


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class CounterChecker:
    name = NAME

    def check(self, history: Iterable, test: dict | None = None) -> Result:
        ops = [op for op in history if op.f in ("add", "read")]
        outcome: dict[int, str] = {}        # add invoke index -> "ok" / "fail" / "info"
        pending: dict[Any, Any] = {}
        for op in ops:
            if op.type == INVOKE:
                pending[op.process] = op
                if op.f == "add" and not _int(op.value):
                    raise HistoryError(f"op {op.index}: a counter add needs an integer, got "
                                       f"{op.value!r}", field="value")
                continue
            inv = pending.pop(op.process, None)
            if inv is not None and inv.f == "add":
                outcome[inv.index] = op.type
        certain = 0            # sum over adds completed ok
        certain_pos = 0        # ... of their positive parts
        certain_neg = 0        # ... of their negative parts
        possible_pos = 0       # sum of positive parts over invoked adds that did not fail
        possible_neg = 0
        open_reads: dict[Any, tuple] = {}   # process -> (invoke op, certain, certain_pos/neg)
        pending = {}
        anomalies: list[Anomaly] = []
        n_reads = errors = 0
        for op in ops:
            if op.type == INVOKE:
                pending[op.process] = op
                if op.f == "add":
                    if outcome.get(op.index) != FAIL:
                        possible_pos += max(0, op.value)
                        possible_neg += min(0, op.value)
                else:
                    open_reads[op.process] = (op, certain, certain_pos, certain_neg)
                continue
            inv = pending.pop(op.process, None)
            if op.f == "add":
                if op.type == OK and inv is not None:
                    certain += inv.value
                    certain_pos += max(0, inv.value)
                    certain_neg += min(0, inv.value)
                continue
            start = open_reads.pop(op.process, None)
            if op.type != OK:
                continue
            if not _int(op.value):
                raise HistoryError(f"op {op.index}: a counter read must return an integer, got "
                                   f"{op.value!r}", field="value")
            if start is None:
                continue     # a completion without invoke: no interval to judge
            n_reads += 1
            rinv, c0, cp0, cn0 = start
            lower = c0 + (possible_neg - cn0)
            upper = c0 + (possible_pos - cp0)
            if not lower <= op.value <= upper:
                errors += 1
                if len(anomalies) < ANOMALIES_MAX:
                    node = f", node {op.node}" if op.node is not None else ""
                    anomalies.append(Anomaly(
                        "out-of-bounds-read",
                        f"read op {op.index} (process {op.process}{node}) returned {op.value}, "
                        f"but the adds allow only [{lower}, {upper}]",
                        [rinv.index, op.index],
                        {"value": op.value, "lower": lower, "upper": upper,
                         "read": {"index": op.index, "process": op.process, "node": op.node}}))
        stats = {"reads": n_reads, "out-of-bounds-reads": errors,
                 "adds": len(outcome), "final-certain": certain}
        if anomalies:
            return Result(valid=False, checker=NAME, anomalies=anomalies, stats=stats)
        if n_reads == 0 and outcome:
            return Result(valid=UNKNOWN, checker=NAME, stats=stats,
                          error="no ok read: the counter's value was never observed")
        return Result(valid=True, checker=NAME, stats=stats)


def make_checker(options: dict) -> CounterChecker:
    """Registry factory; the counter checker has no options."""
    return CounterChecker()
