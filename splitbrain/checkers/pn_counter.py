"""Maelstrom's g-counter / pn-counter checker: an eventually consistent counter.

Only the FINAL reads are judged, as Maelstrom does: after the cluster healed and was quiet, every
node's read must be a value the adds allow. Reads during the run may lag (a CRDT counter is not
linearizable) and are reported as statistics only.

The acceptable values: the sum of every `add` that completed `ok` (definite), plus the delta of
any subset of the adds whose outcome is unknown (`info`, or never completed); a `fail`ed add
certainly did not happen. Like Maelstrom's range set, this is the exact set of subset sums, kept
as disjoint integer ranges (so one indefinite add of 4 on a total of 0 allows 0 and 4, not 2).
Past RANGES_MAX ranges the set is widened to its hull [definite + negative deltas, definite +
positive deltas]; a read that lies in the hull but might be outside the exact set then gives
"unknown", never a pass.

Which reads are final: the reads the harness pinned to a node in its final phase (an `invoke`
with `node` set). A history with no pinned read (an import) uses the ok reads invoked after every
add had been invoked and completed (or became indefinite) and after the last nemesis event; the
stats say which rule applied (`final-reads-by`).

Values are JSON values: a read of `true` is not the number 1 (`malformed-read`, invalid); 3.0 is 3.
Anomalies: `out-of-bounds-read` (a final read outside the acceptable set), `malformed-read`.
Verdict: False with an anomaly; "unknown" when no final read completed ok (the counter's final
value was never observed), when some node's final read was invoked and did not complete ok (a
node down at the end must not pass unobserved), or in the widened case above; else True.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

from ..history.errors import HistoryError
from ..history.op import FAIL, INVOKE, NEMESIS, OK
from .result import UNKNOWN, Anomaly, Result

RANGES_MAX = 10_000
ANOMALIES_MAX = 1000


def _int(v: Any) -> int | None:
    """`v` as an integer when it is a JSON integer (or an integral float); else None."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return None


def add_delta(ranges: list[tuple[int, int]], delta: int) -> list[tuple[int, int]]:
    """The union of `ranges` and `ranges` shifted by `delta`, as sorted disjoint ranges (closed
    integer intervals; touching ranges merge)."""
    both = sorted(ranges + [(lo + delta, hi + delta) for lo, hi in ranges])
    out: list[tuple[int, int]] = []
    for lo, hi in both:
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def contains(ranges: list[tuple[int, int]], v: int) -> bool:
    import bisect
    i = bisect.bisect_right(ranges, (v, float("inf"))) - 1
    return i >= 0 and ranges[i][0] <= v <= ranges[i][1]


class PnCounterChecker:
    def __init__(self, name: str = "pn-counter"):
        self.name = name

    def check(self, history: Iterable, test: dict | None = None) -> Result:
        ops = [op for op in history
               if op.process == NEMESIS or op.f in ("add", "read")]
        pending: dict[Any, Any] = {}
        outcome: dict[int, str] = {}     # add invoke index -> completion type
        deltas: dict[int, int] = {}      # add invoke index -> delta
        reads: list[tuple[Any, Any]] = []   # (invoke, ok completion)
        final_invoked: set = set()          # nodes whose final (pinned) read was invoked
        last_add_event = -1
        last_nemesis = -1
        n_reads = 0
        for op in ops:
            if op.process == NEMESIS:
                last_nemesis = op.index
                continue
            if op.type == INVOKE:
                pending[op.process] = op
                if op.f == "read" and op.node is not None:
                    final_invoked.add(op.node)
                if op.f == "add":
                    d = _int(op.value)
                    if d is None:
                        raise HistoryError(f"op {op.index}: a counter add needs an integer "
                                           f"delta, got {op.value!r}", field="value")
                    deltas[op.index] = d
                    last_add_event = op.index
                continue
            inv = pending.pop(op.process, None)
            if inv is None:
                continue
            if op.f == "add":
                outcome[inv.index] = op.type
                if op.type != "info":
                    last_add_event = op.index
            elif op.type == OK:
                n_reads += 1
                reads.append((inv, op))
        definite = sum(d for i, d in deltas.items() if outcome.get(i) == OK)
        indefinite = [d for i, d in deltas.items() if outcome.get(i) not in (OK, FAIL)]
        ranges = [(definite, definite)]
        widened = False
        for d in indefinite:
            if d == 0:
                continue
            ranges = add_delta(ranges, d)
            if len(ranges) > RANGES_MAX:
                widened = True
                break
        if widened:
            lo = definite + sum(d for d in indefinite if d < 0)
            hi = definite + sum(d for d in indefinite if d > 0)
            ranges = [(lo, hi)]

        finals = [(i, c) for i, c in reads if i.node is not None]
        by = "final phase (reads pinned to a node)"
        if not finals:
            after = max(last_add_event, last_nemesis)
            finals = [(i, c) for i, c in reads if i.index > after]
            by = "reads invoked after the last add and the last nemesis event"
        no_final = sorted(str(n) for n in final_invoked - {i.node for i, _ in finals})
        anomalies: list[Anomaly] = []
        undecided: list[int] = []
        values: dict[str, Any] = {}
        for inv, op in finals:
            node = op.node if op.node is not None else inv.node
            where = f"process {op.process}" + (f", node {node}" if node is not None else "")
            v = _int(op.value)
            values[str(node if node is not None else op.process)] = op.value
            if v is None:
                if len(anomalies) < ANOMALIES_MAX:
                    anomalies.append(Anomaly(
                        "malformed-read", f"final read op {op.index} ({where}) returned "
                        f"{op.value!r:.80}, not an integer", [inv.index, op.index],
                        {"value": op.value, "node": node}))
                continue
            if contains(ranges, v):
                if widened:
                    undecided.append(op.index)
                continue
            if len(anomalies) < ANOMALIES_MAX:
                anomalies.append(Anomaly(
                    "out-of-bounds-read",
                    f"final read op {op.index} ({where}) returned {v}, but the adds allow only "
                    f"{_ranges_text(ranges)} ({definite} acknowledged"
                    f"{f', plus any of {len(indefinite)} indefinite adds' if indefinite else ''})",
                    [inv.index, op.index],
                    {"value": v, "node": node, "acceptable": [list(r) for r in ranges],
                     "definite-sum": definite}))
        stats = {"adds": len(deltas), "ok-adds": sum(1 for t in outcome.values() if t == OK),
                 "indefinite-adds": len(indefinite), "definite-sum": definite,
                 "acceptable": [list(r) for r in ranges[:100]],
                 "acceptable-ranges": len(ranges), "widened": widened,
                 "reads": n_reads, "final-reads": len(finals), "final-reads-by": by,
                 "final-values": values,
                 "mid-run-reads": n_reads - len(finals), "final-read-missing": no_final}
        # json.dumps: a node's odd answer is shown escaped (no raw control characters)
        shown = ", ".join(f"{n} {json.dumps(v, default=str)[:40]}"
                          for n, v in sorted(values.items())[:8])
        more = f" and {len(values) - 8} more" if len(values) > 8 else ""
        stats["headline"] = (f"{len(deltas)} adds ({len(indefinite)} indefinite); final reads "
                             f"{shown or 'none'}{more}; the adds allow {_ranges_text(ranges)}")
        if anomalies:
            return Result(valid=False, checker=self.name, anomalies=anomalies, stats=stats)
        if not finals:
            return Result(valid=UNKNOWN, checker=self.name, stats=stats,
                          error="no final read completed ok: the counter's final value was "
                                "never observed")
        if no_final:
            return Result(valid=UNKNOWN, checker=self.name, stats=stats,
                          error=f"the final read of {', '.join(no_final)} did not succeed: "
                                f"that node's counter was never observed at the end")
        if undecided:
            return Result(valid=UNKNOWN, checker=self.name, stats=stats,
                          error=f"too many indefinite adds to enumerate their sums exactly; "
                                f"final reads {undecided[:10]} lie within the bounds")
        return Result(valid=True, checker=self.name, stats=stats)


def _ranges_text(ranges: list[tuple[int, int]]) -> str:
    parts = [str(lo) if lo == hi else f"[{lo}, {hi}]" for lo, hi in ranges[:6]]
    more = f" and {len(ranges) - 6} more ranges" if len(ranges) > 6 else ""
    return ("{" + ", ".join(parts) + "}" if len(ranges) > 1 else parts[0]) + more


def make_checker(options: dict) -> PnCounterChecker:
    """Registry factory `pn-counter` (and `g-counter`: the same check)."""
    return PnCounterChecker(options.get("name") or "pn-counter")


def make_g_counter_checker(options: dict) -> PnCounterChecker:
    return PnCounterChecker("g-counter")
