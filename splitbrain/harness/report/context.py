"""Where an anomaly happened: the operation it names, the node that served it, the faults in
force while it ran. `check_history` stores this in each anomaly's `details["where"]` (so it is in
results.json), the summary of `test`/`analyze` prints it, and the web UI shows it.

The bad operation is the first history index an anomaly names (`Anomaly.ops[0]`): the checkers
put the operation that breaks the property first (the linearizability checker: the call that
cannot be linearized, then its completion, then the prefix). Its invoke and completion are
paired by process. The node that served it is the completion's `node` (the node whose reply
completed it), else the invoke's (a request aimed at one node); None when the history does not
say. A fault is "in force" when its interval (intervals.fault_intervals) overlaps the operation,
from its invoke to its completion (to the end of the history when it never completed).
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from ...history.op import INVOKE, NEMESIS, Op
from .intervals import FaultInterval, fault_intervals

__all__ = ["OpIndex", "anomaly_where", "annotate_anomalies", "fault_label", "where_line"]

FAULT_LABEL_MAX = 160   # characters of one fault's description


def natural_key(name: str) -> tuple:
    """Sort key putting n2 before n10."""
    import re
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(name)))


def fault_label(name: str, value: Any) -> str:
    """A fault in a few words: `partition n1 n2 | n3 n4 n5`, `kill n3`, `loss {"loss": 0.3}`.

    A partition's sides are the nodes grouped by the set of nodes they drop (its grudge); a
    kill, pause or clock skew names its nodes; anything else shows its value, shortened."""
    label = name
    if isinstance(value, dict):
        grudge = value.get("grudge")
        if isinstance(value.get("shape"), str):
            label += " " + value["shape"]
        if isinstance(grudge, dict):
            groups: dict[tuple, list[str]] = {}
            for node in sorted(grudge, key=natural_key):
                dropped = grudge[node]
                if isinstance(dropped, list):
                    groups.setdefault(tuple(sorted(map(str, dropped))), []).append(str(node))
            label += (": " + " | ".join(" ".join(g) for g in groups.values())) if groups else (
                ": nobody cut off")
        elif isinstance(value.get("nodes"), list):
            label += " " + " ".join(str(n) for n in value["nodes"])
        elif isinstance(value.get("offsets_ms"), dict):
            label += " " + " ".join(f"{n} {v:+}ms" if isinstance(v, (int, float)) else str(n)
                                    for n, v in value["offsets_ms"].items())
        elif set(value) - {"shape"}:
            label += " " + json.dumps(value, sort_keys=True, default=str)
    elif isinstance(value, list):
        label += " " + " ".join(str(n) for n in value)
    elif value is not None:
        label += " " + json.dumps(value, default=str)
    return label if len(label) <= FAULT_LABEL_MAX else label[:FAULT_LABEL_MAX - 3] + "..."


class OpIndex:
    """A history's client operations by history index (invoke or completion index -> the pair)
    and its fault intervals: built once, O(n), then each look-up is O(1) plus the intervals."""

    def __init__(self, history: Sequence[Op]):
        self.pairs: dict[int, tuple[Op, Op | None]] = {}
        pending: dict[Any, Op] = {}
        end = 0
        for op in history:
            end = max(end, op.time)
            if op.process == NEMESIS:
                continue
            if op.type == INVOKE:
                pending[op.process] = op
                self.pairs[op.index] = (op, None)
            else:
                inv = pending.pop(op.process, None)
                if inv is not None:
                    self.pairs[inv.index] = self.pairs[op.index] = (inv, op)
        self.end_ns = end
        self.intervals: list[FaultInterval] = fault_intervals(history)

    def where(self, ops: Iterable[Any]) -> dict | None:
        """details["where"] for an anomaly naming `ops` (see the module docstring); None when
        it names no client operation of this history."""
        first = next((o for o in ops if isinstance(o, int) and not isinstance(o, bool)), None)
        pair = self.pairs.get(first) if first is not None else None
        if pair is None:
            return None
        inv, comp = pair
        t0, t1 = inv.time, (comp.time if comp is not None else self.end_ns)
        node = comp.node if comp is not None and comp.node else inv.node
        faults = [{"name": iv.name, "label": fault_label(iv.name, iv.value),
                   "start_s": round(iv.start_ns / 1e9, 3), "end_s": round(iv.end_ns / 1e9, 3)}
                  for iv in self.intervals if iv.start_ns <= t1 and iv.end_ns >= t0]
        return {"op": inv.index, "completion": comp.index if comp is not None else None,
                "process": inv.process if isinstance(inv.process, (int, str)) else str(inv.process),
                "f": inv.f, "type": comp.type if comp is not None else None,
                "node": node, "time_s": round(t0 / 1e9, 3), "faults": faults}


def anomaly_where(history: Sequence[Op], ops: Iterable[Any]) -> dict | None:
    """OpIndex(history).where(ops), for one anomaly."""
    return OpIndex(history).where(ops)


def annotate_anomalies(result: Any, history: Sequence[Op]) -> None:
    """Set details["where"] on every anomaly of a (composed) checkers.Result that names a client
    operation of `history` (a checker's own "where" is kept)."""
    anomalies = result.all_anomalies()
    if not anomalies:
        return
    index = OpIndex(history)
    for a in anomalies:
        if "where" in a.details:
            continue
        w = index.where(a.ops or ())
        if w is not None:
            a.details["where"] = w


def where_line(where: Any) -> str | None:
    """One line for the console: `op 1011 (read, process 7) served by n2 at 3.120 s; faults in
    force: partition: n1 n2 | n3 n4 n5, kill n3` (None for a malformed `where`)."""
    if not isinstance(where, dict) or "op" not in where:
        return None
    node = where.get("node")
    served = f"served by {node}" if node else "node not recorded"
    what = ", ".join(str(x) for x in (where.get("f"), f"process {where.get('process')}")
                     if x is not None)
    faults = [f.get("label") or f.get("name") for f in where.get("faults") or []
              if isinstance(f, dict)]
    in_force = ("faults in force: " + ", ".join(map(str, faults))) if faults else (
        "no fault in force")
    return f"op {where['op']} ({what}) {served} at {where.get('time_s')} s; {in_force}"
