"""Jepsen's stats checker: ok / fail / info counts of client operations, per `f` and overall.

An `f` that was completed at least once and never succeeded (no `ok`) makes the result
"unknown" - the test exercised nothing there - with a `never-succeeded` anomaly naming it.
Nemesis events are not counted. Invokes that never completed are counted as "pending".
"""

from __future__ import annotations

from typing import Any, Iterable

from ..history.op import COMPLETIONS, INVOKE, NEMESIS
from .result import UNKNOWN, Anomaly, Result

NAME = "stats"


class StatsChecker:
    name = NAME

    def check(self, history: Iterable, test: dict | None = None) -> Result:
        by_f: dict[str, dict[str, int]] = {}
        pending: dict[Any, str] = {}
        for op in history:
            if op.process == NEMESIS:
                continue
            if op.type == INVOKE:
                pending[op.process] = op.f
                continue
            pending.pop(op.process, None)
            c = by_f.setdefault(op.f, {"ok": 0, "fail": 0, "info": 0, "pending": 0})
            c[op.type] += 1
        for f in pending.values():
            by_f.setdefault(f, {"ok": 0, "fail": 0, "info": 0, "pending": 0})["pending"] += 1
        total = {t: sum(c[t] for c in by_f.values()) for t in (*COMPLETIONS, "pending")}
        anomalies = []
        for f in sorted(by_f):
            c = by_f[f]
            if c["ok"] == 0:
                anomalies.append(Anomaly(
                    "never-succeeded",
                    f"no {f!r} operation succeeded ({c['fail']} fail, {c['info']} info, "
                    f"{c['pending']} pending)", [], {"f": f, **c}))
        stats = {"by-f": {f: {**c, "count": sum(c.values())} for f, c in sorted(by_f.items())},
                 **total, "count": sum(total.values())}
        return Result(valid=UNKNOWN if anomalies else True, checker=NAME, anomalies=anomalies,
                      stats=stats,
                      error=("some operation never succeeded: "
                             + ", ".join(a.details["f"] for a in anomalies)) if anomalies
                      else None)


def make_checker(options: dict) -> StatsChecker:
    """Registry factory; the stats checker has no options."""
    return StatsChecker()
