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


DB_WORKLOADS: dict[str, type[Workload]] = {
    "register": DbRegister, "kv": DbKv, "set": DbSet, "append-log": DbAppendLog,
}


def make_db_workload(db: str, name: str, options: dict[str, Any] | None = None) -> Workload:
    """The workload `name` for database `db`; ValueError naming the choices."""
    from . import get_db
    cls = get_db(db)
    if name not in cls.WORKLOADS or name not in DB_WORKLOADS:
        raise ValueError(f"--db {db} serves the workloads {', '.join(cls.WORKLOADS)}, not "
                         f"{name!r}")
    return DB_WORKLOADS[name](options)
