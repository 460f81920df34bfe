"""Maelstrom's availability checker (`--availability`): enough client operations succeeded.

The goal (option `availability`, else the test's `availability`, else its
`workload_opts.availability`):
  None          no goal; the ok fraction is reported, the result is valid;
  "total"       every operation must succeed (":total", Maelstrom's keyword, is accepted too);
  a number f    0 <= f <= 1 (or a string of one): ok operations / invoked operations >= f.
Counted over client operations only (nemesis events are not operations): the ok fraction is
ok completions / invokes, 1 when nothing was invoked (Maelstrom's rule). A missed goal is the
anomaly `unavailable`, with the counts per `f` so a person sees which operations failed.
"""

from __future__ import annotations

from typing import Any, Iterable

from ..history.op import INVOKE, NEMESIS, OK
from .result import Anomaly, Result

NAME = "availability"
TOTAL = "total"


def parse_goal(v: Any) -> str | float | None:
    """The availability goal from an option value; ValueError naming a bad one."""
    if v is None or v == "":
        return None
    if isinstance(v, str):
        s = v.strip().lower().lstrip(":")
        if s == TOTAL:
            return TOTAL
        try:
            v = float(s)
        except ValueError:
            raise ValueError(f"availability must be 'total' or a fraction between 0 and 1, "
                             f"got {v!r}") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
        raise ValueError(f"availability must be 'total' or a fraction between 0 and 1, got {v!r}")
    return float(v)


def goal_from_test(test: dict | None) -> Any:
    test = test or {}
    if test.get("availability") is not None:
        return test["availability"]
    return (test.get("workload_opts") or {}).get("availability")


class AvailabilityChecker:
    name = NAME

    def __init__(self, goal: Any = None):
        self.goal = parse_goal(goal)

    def check(self, history: Iterable, test: dict | None = None) -> Result:
        goal = self.goal if self.goal is not None else parse_goal(goal_from_test(test))
        by_f: dict[str, list[int]] = {}       # f -> [invoked, ok]
        invokes = oks = 0
        for op in history:
            if op.process == NEMESIS:
                continue
            if op.type == INVOKE:
                invokes += 1
                by_f.setdefault(op.f, [0, 0])[0] += 1
            elif op.type == OK:
                oks += 1
                by_f.setdefault(op.f, [0, 0])[1] += 1
        frac = 1.0 if invokes == 0 else oks / invokes
        stats = {"goal": goal, "ok-fraction": round(frac, 6), "invoke-count": invokes,
                 "ok-count": oks,
                 "by-f": {f: {"invoked": c[0], "ok": c[1]} for f, c in sorted(by_f.items())},
                 "headline": f"{oks} of {invokes} operations ok ({frac:.4f}), goal "
                             f"{'none' if goal is None else goal}"}
        met = goal is None or (oks == invokes if goal == TOTAL else frac >= goal)
        if met:
            return Result(valid=True, checker=NAME, stats=stats)
        want = "every operation to succeed" if goal == TOTAL else f"at least {goal:g} to succeed"
        worst = ", ".join(f"{f} {c[1]}/{c[0]}" for f, c in sorted(by_f.items()) if c[1] < c[0])
        return Result(valid=False, checker=NAME, stats=stats, anomalies=[Anomaly(
            "unavailable", f"{oks} of {invokes} operations succeeded ({frac:.4f}); the "
            f"availability goal wants {want} (ok/invoked by f: {worst})", [],
            {"goal": goal, "ok-fraction": frac, "ok-count": oks, "invoke-count": invokes})])


def make_checker(options: dict) -> AvailabilityChecker:
    """Registry factory. Option `availability`: "total" or a fraction (else the test's)."""
    return AvailabilityChecker(options.get("availability"))
