"""The workloads a database serves: the harness's workloads (harness/workloads.py), decoded from
a database client's replies (dbs/base.py `ok` / `error`) instead of Maelstrom's error codes.

A reply `error` carries the history's error name and whether it is definite: definite -> `fail`
(it certainly did not happen), else `info`. The generators, request bodies and checkers are the
harness's own, with one change:
- append-log: the final phase reads every node's own log (per-node reads), but asks for no
  `status` (a database reports no state digest of ours), so its checkers are `log` and `stats`
  (agreement, one total order, durability, offsets), not `convergence`.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..harness.workloads import (FAIL, INFO, AppendLogWorkload, Completion, FinalOp, Invocation,
                                 KvWorkload, RegisterWorkload, SetWorkload, Workload)
from ..harness.txn_workloads import TxnListAppendWorkload, TxnRwRegisterWorkload


class DbReplies:
    """Mixin: decode a database client's reply (see the module docstring)."""

    def completion(self, inv: Invocation, reply: dict) -> Completion:
        if reply.get("type") == "error" and "definite" in reply:
            return Completion(FAIL if reply["definite"] else INFO, inv.value,
                              str(reply.get("error") or "error"))
        return super().completion(inv, reply)   # type: ignore[misc]


class DbRegister(DbReplies, RegisterWorkload):
    pass


class DbKv(DbReplies, KvWorkload):
    pass


class DbSet(DbReplies, SetWorkload):
    pass


class DbAppendLog(DbReplies, AppendLogWorkload):
    description = ("append v (unique) / read the log; final read of every node's own log; "
                   "agreement, total order, durability, offsets")

    def final_invocations(self, nodes: Iterable[str]) -> list[FinalOp]:
        return [FinalOp(n, Invocation("read")) for n in nodes]

    def checker_names(self) -> list[tuple[str, dict]]:
        return [("log", {}), ("stats", {})]


class DbMutex(DbReplies, Workload):
    """One lock: each process alternates acquire and release (Jepsen's lock workload); checked
    for linearizability against the mutex model (an acquire of a held lock is illegal).

    A process that holds the lock (by its own ok acquire) releases it next; otherwise it
    acquires. A process whose op ended `info` is never used again (the client pool moves the
    worker to a fresh process), and the database client revokes the lease of an acquire that
    did not end ok, so an abandoned acquisition frees the lock within its lease's TTL."""

    name = "mutex"
    machine = None
    ops = ("acquire", "release")
    description = "one lock: acquire / release, alternating per process; linearizable mutex"

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        self._holding: set[int] = set()

    def next_invocation(self, rng) -> Invocation:
        return Invocation("acquire")

    def prepare(self, process: int, inv: Invocation) -> Invocation:
        return Invocation("release") if process in self._holding else inv

    def observe(self, process: int, inv: Invocation, c: Completion) -> None:
        if inv.f == "acquire" and c.type == "ok":
            self._holding.add(process)
        elif inv.f == "release" or c.type == INFO:
            self._holding.discard(process)

    def final_invocations(self, nodes: Iterable[str]) -> list[FinalOp]:
        return []

    def checker_names(self) -> list[tuple[str, dict]]:
        return [("linearizable", {"model": "mutex"}), ("stats", {})]


class DbTxnListAppend(DbReplies, TxnListAppendWorkload):
    pass


class DbTxnRwRegister(DbReplies, TxnRwRegisterWorkload):
    pass


DB_WORKLOADS: dict[str, type[Workload]] = {
    "register": DbRegister, "kv": DbKv, "set": DbSet, "append-log": DbAppendLog,
    "mutex": DbMutex, "txn-list-append": DbTxnListAppend, "txn-rw-register": DbTxnRwRegister,
}


# ---- counter: add a delta / read, judged by its final reads (issue 17) --------------------------

from ..harness.maelstrom_workloads import PnCounterWorkload  # noqa: E402


class DbCounter(DbReplies, PnCounterWorkload):
    """One integer counter: `add` {delta} (-5..4; INCRBY-like) and `read`; checked as Maelstrom
    checks its pn-counter: every node's FINAL read (its own state, after the heal and the quiet
    period) must be the sum of the acknowledged adds plus some subset of the indefinite ones
    (checkers/pn_counter.py: `out-of-bounds-read` names a lost or invented increment). Reads
    during the run are statistics only: a database's counter need not be linearizable for this
    check, only durable. The quiet period is the database's (Database.RECOVERY_S) or the
    runner's, not Maelstrom's 10 s for CRDTs."""

    name = "counter"
    recovery_s = None
    description = ("one counter: add delta (-5..4) / read; every node's final read must be the "
                   "acknowledged sum plus some of the indefinite adds (pn-counter check)")

    def checker_names(self) -> list[tuple[str, dict]]:
        return [("pn-counter", {}), ("stats", {})]


DB_WORKLOADS["counter"] = DbCounter


def make_db_workload(db: str, name: str, options: dict[str, Any] | None = None) -> Workload:
    """The workload `name` for database `db`; ValueError naming the choices."""
    from . import get_db
    cls = get_db(db)
    if name not in cls.WORKLOADS or name not in DB_WORKLOADS:
        raise ValueError(f"--db {db} serves the workloads {', '.join(cls.WORKLOADS)}, not "
                         f"{name!r}")
    return DB_WORKLOADS[name](options)
