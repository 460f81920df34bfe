"""Jepsen's set-full checker: what happened to every element added to a set.

Ops (common rules): `add` v -> ok v; `read` null -> ok list (the whole set). Order is the
history's order (op index): a read "begins" at its invoke and "ends" at its completion.

For each element:
- it is *known* from the completion of its ok add, or from the completion of the first read that
  saw it (whichever is earlier): from then on it must be in the set;
- a read that began after it was known either contains it (present) or not (absent).
Outcomes (Jepsen's set-full, https://github.com/jepsen-io/jepsen checker.clj):
- `lost`: known, and absent from the last read that began after it was known;
- `stale`: known, absent from some read that began after it was known, but present in a later
  one (a stale read; an anomaly for a linearizable set, `linearizable` option, default True);
- `unexpected`: present in a read but no add of it was ever invoked, or its add failed;
- `recovered`: an add that ended info (or never completed) whose element was read: counted in
  stats, not an anomaly; `never-read`: known elements with no read after: stats only.
Valid is False with any lost or unexpected element (or stale, when linearizable); "unknown"
when elements were added ok but no read began after any of them; else True.
"""

from __future__ import annotations

import bisect
from typing import Any, Iterable

from ..history.errors import HistoryError
from ..history.op import INVOKE, OK
from .log import hkey, unkey
from .result import UNKNOWN, Anomaly, Result

NAME = "set"
ANOMALIES_PER_NAME_MAX = 1000


class SetFullChecker:
    name = NAME

    def __init__(self, linearizable: bool = True):
        self.linearizable = linearizable

    def check(self, history: Iterable, test: dict | None = None) -> Result:
        pending: dict[Any, Any] = {}
        adds: dict[Any, dict] = {}           # hkey -> {"invoke", "ok", "fail", "info"} indices
        reads: list[tuple[int, int, set, Any, Any]] = []  # (invoke, complete, set, process, node)
        for op in history:
            if op.f not in ("add", "read"):
                continue
            if op.type == INVOKE:
                pending[op.process] = op
                if op.f == "add":
                    adds.setdefault(hkey(op.value), {})["invoke"] = op.index
                continue
            inv = pending.pop(op.process, None)
            if op.f == "add":
                h = hkey(inv.value if inv is not None else op.value)
                a = adds.setdefault(h, {})
                a[op.type] = op.index
                continue
            if op.type != OK:
                continue
            if not isinstance(op.value, list):
                raise HistoryError(f"op {op.index}: an ok read of a set must return a list, got "
                                   f"{type(op.value).__name__}", field="value")
            start = inv.index if inv is not None else op.index
            reads.append((start, op.index, {hkey(v) for v in op.value}, op.process,
                          op.node if op.node is not None else getattr(inv, "node", None)))
        return self._judge(adds, reads)

    def _judge(self, adds: dict, reads: list) -> Result:
        reads.sort(key=lambda r: r[0])
        starts = [r[0] for r in reads]
        seen_in: dict[Any, list[int]] = {}          # hkey -> read ordinals that contain it
        for i, r in enumerate(reads):
            for h in r[2]:
                seen_in.setdefault(h, []).append(i)
        first_seen_end: dict[Any, int] = {h: min(reads[i][1] for i in ords)
                                          for h, ords in seen_in.items()}
        anomalies: list[Anomaly] = []
        counts = {"lost": 0, "stale": 0, "unexpected": 0, "recovered": 0, "never-read": 0,
                  "stable": 0, "attempted": len(adds)}

        def add(name: str, msg: str, ops: list, **details) -> None:
            counts[name] += 1
            if counts[name] <= ANOMALIES_PER_NAME_MAX:
                anomalies.append(Anomaly(name, msg, ops, details))

        def rdesc(i: int) -> str:
            r = reads[i]
            node = f", node {r[4]}" if r[4] is not None else ""
            return f"read op {r[1]} (process {r[3]}{node})"

        for h in sorted(seen_in, key=lambda h: first_seen_end[h]):
            a = adds.get(h)
            if a is None or "invoke" not in a or ("fail" in a and "ok" not in a):
                why = "was never added" if a is None or "invoke" not in a else \
                    f"was added by op {a['fail']}, which failed"
                i = seen_in[h][0]
                add("unexpected", f"{rdesc(i)} contains {unkey(h)!r}, which {why}",
                    [reads[i][1]] + ([a["fail"]] if a and "fail" in a else []),
                    element=unkey(h), read=reads[i][1])
        for h, a in sorted(adds.items(), key=lambda t: t[1].get("invoke", -1)):
            if "fail" in a and "ok" not in a:
                continue
            if "ok" not in a and h in seen_in:
                counts["recovered"] += 1
            cands = ([a["ok"]] if "ok" in a else []) + ([first_seen_end[h]] if h in seen_in
                                                         else [])
            if not cands:
                continue                       # info add never seen: may never have happened
            known = min(cands)
            k0 = bisect.bisect_right(starts, known)   # first read that began after it was known
            after = len(reads) - k0
            if after == 0:
                counts["never-read"] += 1
                continue
            ords = seen_in.get(h, [])
            present = len(ords) - bisect.bisect_left(ords, k0)
            last = len(reads) - 1
            if not ords or ords[-1] != last:
                j = ords[-1] if ords else None
                msg = (f"{unkey(h)!r} was known at op {known} but is absent from the last "
                       f"{rdesc(last)}")
                if j is not None:
                    msg += f" (last present in {rdesc(j)})"
                add("lost", msg, [known, reads[last][1]], element=unkey(h), known=known,
                    last_absent=reads[last][1], last_present=None if j is None else reads[j][1])
            elif present < after:
                absent = next(i for i in range(k0, len(reads)) if h not in reads[i][2])
                if self.linearizable:
                    add("stale", f"{unkey(h)!r} was known at op {known}, absent from "
                        f"{rdesc(absent)} which began later, and present again afterwards",
                        [known, reads[absent][1]], element=unkey(h), known=known,
                        absent_in=reads[absent][1])
                else:
                    counts["stale"] += 1
            else:
                counts["stable"] += 1
        valid: Any
        if anomalies:
            valid = False
        elif counts["never-read"] and not counts["stable"] and not counts["stale"]:
            valid = UNKNOWN
        else:
            valid = True
        res = Result(valid=valid, checker=NAME, anomalies=anomalies, stats=counts)
        if valid == UNKNOWN:
            res.error = "no read began after any element was known"
        return res


def make_checker(options: dict) -> SetFullChecker:
    """Registry factory. Options: `linearizable` (bool, default True: stale reads are anomalies)."""
    return SetFullChecker(linearizable=options.get("linearizable", True) is not False)
