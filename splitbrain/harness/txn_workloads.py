"""Maelstrom's transactional workloads: txn-list-append and txn-rw-register.

A transaction is a list of micro-ops `[f, k, v]`: `["r", k, null]` reads key k, `["append", k,
v]` appends v to k's list (txn-list-append), `["w", k, v]` sets register k to v
(txn-rw-register). The request is Maelstrom's `{"type": "txn", "txn": [...]}`; the node answers
`{"type": "txn_ok", "txn": [...]}` with every read's value filled in. The history op is `f`
"txn" with the micro-ops as its value (the completion's with reads filled in), which the
transactional checker (splitbrain/checkers/transactions) reads.

Generation follows Elle's and Maelstrom's generators (options by Maelstrom's names, with `_`
for `-`: `--opt workload.key_count=3` or `workload.key-count=3`):
  key_count           keys in use at a time (default 3)
  max_txn_length      micro-ops per transaction, 1..this (default 4)
  max_writes_per_key  writes a key receives before it is retired for a fresh key (default 16):
                      keeps lists short and the dependency graph's components small
Written values are unique per key (1, 2, 3, ... per key), as both checkers require.

Completion: `txn_ok` with a well-formed `txn` of the same micro-ops (same f and key, same
written values, a list or null read for list-append) is `ok`; a malformed answer is `info`
(the node may have done it); errors follow the usual rule (definite code -> `fail`).

The final phase reads every key the test wrote, a few keys per transaction, through any node:
the longest reads give the checker the version order of each key.
"""

from __future__ import annotations

import random
import threading
from typing import Any, ClassVar, Iterable

from .workloads import INFO, OK, WORKLOADS, Completion, FinalOp, Invocation, Workload

FINAL_KEYS_MAX = 400      # keys read in the final phase (the most recent ones)


class TxnWorkload(Workload):
    """Shared generator and reply decoding; subclasses set the write micro-op."""

    machine = "txn"
    ops = ("txn",)
    write_f: ClassVar[str]
    checker: ClassVar[str]
    OPTIONS = {"key_count": ("keys in use at a time", 3),
               "max_txn_length": ("micro-ops per txn, at most", 4),
               "max_writes_per_key": ("writes per key", 16),
               "consistency_models": ("models to check", "strict-serializable")}

    def __init__(self, options: dict[str, Any] | None = None):
        opts = {str(k).replace("-", "_"): v for k, v in (options or {}).items()}
        super().__init__(opts)
        for name in ("key_count", "max_txn_length", "max_writes_per_key"):
            if self.options[name] < 1:
                raise ValueError(f"workload {self.name}: option {name} must be at least 1, "
                                 f"got {self.options[name]}")
        from ..checkers.transactions.models import canonical
        for m in self._models():
            canonical(m)                        # ValueError naming the choices
        self._lock = threading.Lock()           # client threads generate concurrently
        self._active = list(range(self.options["key_count"]))
        self._next_key = self.options["key_count"]
        self._writes: dict[int, int] = {}

    def _models(self) -> list[str]:
        ms = self.options["consistency_models"]
        if isinstance(ms, str):
            ms = [m.strip() for m in ms.split(",") if m.strip()]
        return list(ms)

    def keys(self) -> list[Any]:
        return list(range(self._next_key))

    def next_invocation(self, rng: random.Random) -> Invocation:
        n = rng.randint(1, self.options["max_txn_length"])
        txn: list[list] = []
        with self._lock:
            for _ in range(n):
                k = self._active[rng.randrange(len(self._active))]
                if rng.random() < 0.5:
                    txn.append(["r", k, None])
                    continue
                w = self._writes.get(k, 0) + 1
                self._writes[k] = w
                txn.append([self.write_f, k, w])
                if w >= self.options["max_writes_per_key"]:
                    self._active[self._active.index(k)] = self._next_key
                    self._next_key += 1
        return Invocation("txn", txn)

    def request(self, inv: Invocation) -> dict:
        return {"type": "txn", "txn": inv.value}

    def completion(self, inv: Invocation, reply: dict) -> Completion:
        t = reply.get("type")
        if t == "error":
            return super().completion(inv, reply)
        if t != "txn_ok":
            return Completion(INFO, inv.value, f"unexpected-reply-{t}")
        out = reply.get("txn")
        if not self._well_formed(inv.value, out):
            return Completion(INFO, inv.value, "malformed-reply")
        return Completion(OK, [list(m) for m in out])

    def _well_formed(self, sent: list, got: Any) -> bool:
        if not isinstance(got, list) or len(got) != len(sent):
            return False
        for a, b in zip(sent, got):
            if not isinstance(b, (list, tuple)) or len(b) != 3 or b[0] != a[0] or b[1] != a[1]:
                return False
            if a[0] != "r" and b[2] != a[2]:
                return False
            if a[0] == "r" and self.write_f == "append" and not (b[2] is None
                                                                 or isinstance(b[2], list)):
                return False
        return True

    def final_invocations(self, nodes: Iterable[str]) -> list[FinalOp]:
        keys = self.keys()[-FINAL_KEYS_MAX:]
        step = self.options["max_txn_length"]
        return [FinalOp(None, Invocation("txn", [["r", k, None] for k in keys[i:i + step]]))
                for i in range(0, len(keys), step)]

    def checker_names(self) -> list[tuple[str, dict]]:
        return [(self.checker, {"consistency_models": self._models()}), ("stats", {})]


class TxnListAppendWorkload(TxnWorkload):
    """Maelstrom's txn-list-append: append unique values to lists by key, read whole lists."""

    name = "txn-list-append"
    write_f = "append"
    checker = "list-append"
    description = ("Maelstrom's txn-list-append: transactions that read and append to "
                   "lists by key; Elle-style cycles and anomalies")


class TxnRwRegisterWorkload(TxnWorkload):
    """Maelstrom's txn-rw-register: write unique values to registers by key, read them."""

    name = "txn-rw-register"
    write_f = "w"
    checker = "rw-register"
    description = ("Maelstrom's txn-rw-register: transactions that read and write "
                   "registers by key; Elle-style cycles and anomalies")


WORKLOADS.update((w.name, w) for w in (TxnListAppendWorkload, TxnRwRegisterWorkload))
