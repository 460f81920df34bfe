"""Transactions of a history, in compact arrays, with their process and real-time order.

A transaction is an operation with `f == "txn"` (Jepsen's, Elle's and Maelstrom's shape) whose
value is a list of micro-operations `[f, key, value]`, f one of "append", "r", "w":
`[["append", 1, 3], ["r", 2, [1, 3]]]`. Ops with another `f` (and the nemesis) are ignored.

Each invocation paired with its completion is one transaction, numbered 0, 1, ... in invocation
order (`TxnHistory` holds them as parallel arrays, not objects: 1M transactions must fit):
  status   OK (it committed; the completion's micro-ops carry what it read), INFO (it may or may
           not have committed: the invocation's micro-ops, reads unknown; an invocation that never
           completed counts as info), FAIL (it certainly did not commit);
  mops     the micro-ops (the completion's value for OK, the invocation's otherwise);
  inv / done  history indices of the invocation and completion (done = -1 for none).

Orders computed in the same pass (edges between transaction numbers):
  process   consecutive committed-or-info transactions of one process (a process is
            single-threaded: its next transaction began after the previous one ended);
  realtime  T1 -> T2 when T1 completed OK before T2 was invoked. Only a transitive reduction is
            kept (Elle's trick): a frontier of completed transactions that no later-completed
            one follows; an invocation gets an edge from each frontier member, and a completion
            removes from the frontier what its own invocation saw. Every real-time pair is then
            joined by a path, with O(concurrency) edges per transaction instead of O(n).

`HistoryShapeError` names the op whose value is not a transaction.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any, Sequence

from ...history.op import FAIL, INVOKE, NEMESIS, OK

TXN_F = "txn"
OK_S, INFO_S, FAIL_S = 0, 1, 2
STATUS_NAMES = ("ok", "info", "fail")
MOP_FS = ("append", "r", "w")


class HistoryShapeError(ValueError):
    """A txn op whose value is not a list of [f, key, value] micro-ops."""


@dataclass
class TxnHistory:
    """The transactions of a history (see the module docstring)."""

    ops: Sequence[Any]                                   # the history itself (for explanations)
    status: bytearray = field(default_factory=bytearray)
    mops: list = field(default_factory=list)
    inv: array = field(default_factory=lambda: array("q"))
    done: array = field(default_factory=lambda: array("q"))
    process: list = field(default_factory=list)
    proc_src: array = field(default_factory=lambda: array("i"))
    proc_dst: array = field(default_factory=lambda: array("i"))
    rt_src: array = field(default_factory=lambda: array("i"))
    rt_dst: array = field(default_factory=lambda: array("i"))

    def __len__(self) -> int:
        return len(self.status)

    def op_of(self, t: int):
        """The op that shows transaction t best: its completion, else its invocation."""
        d = self.done[t]
        return self.ops[d if d >= 0 else self.inv[t]]


def _check_mops(value: Any, op: Any) -> None:
    if not isinstance(value, list):
        raise HistoryShapeError(f"op {op.index}: a txn's value must be a list of micro-ops "
                                f"[f, key, value], got {value!r}")
    for m in value:
        if not isinstance(m, (list, tuple)) or len(m) != 3 or m[0] not in MOP_FS:
            raise HistoryShapeError(f"op {op.index}: micro-op {m!r} is not [f, key, value] with "
                                    f"f one of {', '.join(MOP_FS)}")


def is_txn_history(ops: Sequence[Any]) -> bool:
    """Whether the client ops of a history are transactions (for picking a checker)."""
    seen = False
    for op in ops:
        if op.process == NEMESIS:
            continue
        if op.f != TXN_F:
            return False
        seen = True
    return seen


def parse(ops: Sequence[Any], *, realtime: bool = True) -> TxnHistory:
    """One pass over the history: pair invocations and completions, number the transactions,
    build the process and (when `realtime`) the real-time order. Raises HistoryShapeError."""
    h = TxnHistory(ops)
    status, mops, inv, done, process = h.status, h.mops, h.inv, h.done, h.process
    proc_src, proc_dst, rt_src, rt_dst = h.proc_src, h.proc_dst, h.rt_src, h.rt_dst
    pending: dict[Any, int] = {}           # process -> its open transaction
    last: dict[Any, int] = {}              # process -> its last committed-or-info transaction
    frontier: dict[int, None] = {}         # insertion-ordered set (deterministic edge order)
    seen_at: dict[int, tuple] = {}         # open transaction -> the frontier at its invocation
    n = 0
    for op in ops:
        if op.f != TXN_F:
            continue
        p = op.process
        if p == NEMESIS:
            continue
        if op.type == INVOKE:
            t = n
            n += 1
            status.append(INFO_S)
            mops.append(op.value)
            inv.append(op.index)
            done.append(-1)
            process.append(p)
            pending[p] = t
            prev = last.get(p)
            if prev is not None:
                proc_src.append(prev)
                proc_dst.append(t)
            if realtime:
                snap = tuple(frontier)
                seen_at[t] = snap
                for s in snap:
                    rt_src.append(s)
                    rt_dst.append(t)
            continue
        t = pending.pop(p, None)
        if t is None:
            continue                      # a completion without invocation: validate.py's job
        done[t] = op.index
        typ = op.type
        if typ == OK:
            status[t] = OK_S
            mops[t] = op.value
            last[p] = t
            if realtime:
                for s in seen_at.pop(t):
                    frontier.pop(s, None)
                frontier[t] = None
        elif typ == FAIL:
            status[t] = FAIL_S
            if realtime:
                seen_at.pop(t, None)
        else:
            last[p] = t                   # info: it may have happened; the process ends here
            if realtime:
                seen_at.pop(t, None)
    for t in range(n):
        v = mops[t]
        if type(v) is not list:
            _check_mops(v, h.op_of(t))
    return h


def validate_mops(h: TxnHistory, t: int) -> None:
    """Raise HistoryShapeError when transaction t's micro-ops are malformed."""
    _check_mops(h.mops[t], h.op_of(t))
