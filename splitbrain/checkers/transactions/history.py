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

Orders between transaction numbers:
  process   consecutive committed-or-info transactions of one process (a process is
            single-threaded: its next transaction began after the previous one ended), built in
            the same pass;
  realtime  T1 -> T2 when T1 completed OK before T2 was invoked: for the components of the
            whole graph, a chain of extra nodes (`realtime_chain`, 3 edges per transaction
            instead of O(n)); inside a component, every such pair (graph.py).

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


def parse(ops: Sequence[Any]) -> TxnHistory:
    """One pass over the history: pair invocations and completions, number the transactions,
    build the process order. Raises HistoryShapeError for a malformed transaction."""
    h = TxnHistory(ops)
    status, mops, inv, done, process = h.status, h.mops, h.inv, h.done, h.process
    proc_src, proc_dst = h.proc_src, h.proc_dst
    pending: dict[Any, int] = {}           # process -> its open transaction
    last: dict[Any, int] = {}              # process -> its last committed-or-info transaction
    n = 0
    for op in ops:
        if op.f != TXN_F:
            continue
        p = op.process
        if p == NEMESIS:
            continue
        if op.type == INVOKE:
            status.append(INFO_S)
            mops.append(op.value)
            inv.append(op.index)
            done.append(-1)
            process.append(p)
            pending[p] = n
            prev = last.get(p)
            if prev is not None:
                proc_src.append(prev)
                proc_dst.append(n)
            n += 1
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
        elif typ == FAIL:
            status[t] = FAIL_S
        else:
            last[p] = t                   # info: it may have happened; the process ends here
    for t in range(n):
        v = mops[t]
        if type(v) is not list:
            _check_mops(v, h.op_of(t))
    return h


def realtime_chain(h: TxnHistory) -> tuple[Any, Any, int]:
    """The real-time order as a chain of extra nodes (numpy, no Python loop): node n + i stands
    for the i-th OK completion in history order; T -> its completion's node, each node -> the
    next, and the node of the last completion before T's invocation -> T. T1 completed before
    T2 was invoked exactly when a path T1 -> ... -> T2 runs through the chain, so strongly
    connected components are those of the graph with every real-time edge, at 3 edges per
    transaction. Returns (src, dst, number of chain nodes)."""
    import numpy as np
    n = len(h)
    status = np.frombuffer(bytes(h.status), dtype=np.uint8)
    inv = np.frombuffer(h.inv, dtype=np.int64)
    done = np.frombuffer(h.done, dtype=np.int64)
    ok = np.nonzero(status == OK_S)[0]
    order = np.argsort(done[ok], kind="stable")
    ok_sorted = ok[order]
    done_sorted = done[ok][order]
    c = len(ok_sorted)
    chain = n + np.arange(c, dtype=np.int64)
    live = np.nonzero(status != FAIL_S)[0]
    before = np.searchsorted(done_sorted, inv[live], side="left") - 1
    has = before >= 0
    src = np.concatenate([ok_sorted, chain[:-1], n + before[has]])
    dst = np.concatenate([chain, chain[1:], live[has]])
    return src.astype(np.int32), dst.astype(np.int32), c


def validate_mops(h: TxnHistory, t: int) -> None:
    """Raise HistoryShapeError when transaction t's micro-ops are malformed."""
    _check_mops(h.mops[t], h.op_of(t))
