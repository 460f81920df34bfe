"""Cycles in words and in pictures.

`describe_cycle` turns a cycle [(T1, T2, kind), (T2, T3, kind), ...] into lines a person can
check against the history: each transaction with its op index, process, node and micro-ops,
then the relation that ties it to the next and why ("T1 read key 4 as [1, 2], without 3, which
T2 appended next"). `write_cycle_html` draws the same cycle as an SVG inside an HTML page: one
row per transaction, a bar from its invocation to its completion on the history's clock, its
process and node, and an arrow per edge labelled with the relation.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import jinja2

from .graph import KIND_NAMES, PROCESS, REALTIME
from .history import STATUS_NAMES, TxnHistory

RELATION_WORDS = {
    "ww": "overwrote (write-write)",
    "wr": "was read by (write-read)",
    "rw": "read a version overwritten by (read-write, an anti-dependency)",
    "process": "came before, in the same process,",
    "realtime": "completed before the invocation of (real time)",
}

ANOMALY_WORDS = {
    "G0": "a cycle of writes alone (write cycle): the writes of these transactions "
          "interleave",
    "G1c": "a cycle of writes and reads (circular information flow): each saw or overwrote "
           "the next",
    "G-single": "a cycle with exactly one anti-dependency (read skew): one transaction missed "
                "a write that the others' order says it must have seen",
    "G-nonadjacent": "a cycle with several anti-dependencies, no two in a row",
    "G2-item": "a cycle with anti-dependencies in a row (write skew on items)",
}


def anomaly_words(name: str) -> str:
    base = name.removesuffix("-process").removesuffix("-realtime")
    words = ANOMALY_WORDS.get(base, name)
    if name.endswith("-process"):
        words += ", with the order of a process's own transactions"
    elif name.endswith("-realtime"):
        words += ", with the real-time order of transactions"
    return words


def txn_label(h: TxnHistory, t: int) -> str:
    op = h.op_of(t)
    node = f", node {op.node}" if getattr(op, "node", None) else ""
    return (f"T{t} (op {op.index}, process {h.process[t]}{node}, {STATUS_NAMES[h.status[t]]}): "
            f"{json.dumps(h.mops[t], default=str)}")


def describe_cycle(name: str, cycle: list[tuple[int, int, int]], h: TxnHistory,
                   explain_edge: Callable[[int, int, int], str]) -> str:
    n = len(cycle)
    lines = [f"{name}: {anomaly_words(name)}. {n} transactions, each must come before the "
             "next, and the last before the first:"]
    for a, b, kind in cycle:
        lines.append("  " + txn_label(h, a))
        lines.append(f"    -{KIND_NAMES[kind]}-> T{b}: {_why(h, a, b, kind, explain_edge)}")
    order = " < ".join(f"T{a}" for a, _, _ in cycle) + f" < T{cycle[0][0]}"
    lines.append(f"  so {order}: no order of these transactions explains what they saw.")
    return "\n".join(lines)


def _why(h: TxnHistory, a: int, b: int, kind: int,
         explain_edge: Callable[[int, int, int], str]) -> str:
    if kind == PROCESS:
        return f"process {h.process[a]} ran T{a} and then T{b}"
    if kind == REALTIME:
        return (f"T{a} completed (op {h.done[a]}) before T{b} was invoked (op {h.inv[b]})")
    return explain_edge(a, b, kind)


def cycle_details(cycle: list[tuple[int, int, int]], h: TxnHistory,
                  explain_edge: Callable[[int, int, int], str]) -> list[dict]:
    out = []
    for a, b, kind in cycle:
        op = h.op_of(a)
        out.append({"txn": a, "op": op.index, "process": h.process[a], "node": op.node,
                    "status": STATUS_NAMES[h.status[a]], "mops": h.mops[a],
                    "edge": KIND_NAMES[kind], "to": b,
                    "why": _why(h, a, b, kind, explain_edge)})
    return out


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{{ name }}</title>
<style>
 body { font: 14px system-ui, sans-serif; margin: 1.5em; }
 pre { background: #f6f6f6; padding: 0.8em; white-space: pre-wrap; }
 svg text { font: 12px system-ui, sans-serif; }
 .bar { fill: #cfe3ff; stroke: #3b6fb6; }
 .edge { stroke: #c0392b; fill: none; stroke-width: 1.5; marker-end: url(#arrow); }
</style></head><body>
<h1>{{ name }}</h1>
<p>{{ words }}</p>
<svg xmlns="http://www.w3.org/2000/svg" width="{{ width }}" height="{{ height }}">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7"
 markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#c0392b"/>
</marker></defs>
{% for r in rows %}
<rect class="bar" x="{{ r.x }}" y="{{ r.y }}" width="{{ r.w }}" height="22" rx="3"/>
<text x="8" y="{{ r.y + 15 }}">{{ r.label }}</text>
<text x="{{ r.x + 4 }}" y="{{ r.y + 15 }}">{{ r.inner }}</text>
{% endfor %}
{% for e in edges %}
<path class="edge" d="M{{ e.x1 }},{{ e.y1 }} C{{ e.cx }},{{ e.y1 }} {{ e.cx }},{{ e.y2 }} {{ e.x2 }},{{ e.y2 }}"/>
<text x="{{ e.cx + 4 }}" y="{{ (e.y1 + e.y2) / 2 + 4 }}" fill="#c0392b">{{ e.label }}</text>
{% endfor %}
<text x="{{ left }}" y="{{ height - 6 }}">time (ms since the test start), invocation to completion</text>
</svg>
<pre>{{ text }}</pre>
</body></html>
"""


def write_cycle_html(path: str, name: str, text: str, cycle: list[tuple[int, int, int]],
                     h: TxnHistory) -> str:
    """Write the picture of one cycle to `path` (an .html file); returns the path."""
    txns = [a for a, _, _ in cycle]
    times = []
    for t in txns:
        inv_t = h.ops[h.inv[t]].time
        done_t = h.ops[h.done[t]].time if h.done[t] >= 0 else None
        times.append((inv_t, done_t))
    t0 = min(a for a, _ in times)
    t1 = max(max(a, b or a) for a, b in times)
    span = max(t1 - t0, 1)
    left, width_px = 330, 520
    rows: list[dict[str, Any]] = []
    for i, (t, (a, b)) in enumerate(zip(txns, times)):
        x = left + (a - t0) * width_px / span
        end = (b if b is not None else t1)
        w = max((end - a) * width_px / span, 6)
        op = h.op_of(t)
        node = f" {op.node}" if op.node else ""
        done_op = "?" if h.done[t] < 0 else h.done[t]
        ms = f"{(a - t0) / 1e6:.1f}-{'?' if b is None else f'{(b - t0) / 1e6:.1f}'} ms"
        mops = json.dumps(h.mops[t], default=str)
        rows.append({"x": round(x, 1), "y": 20 + i * 44, "w": round(w, 1),
                     "label": f"T{t}  p{h.process[t]}{node}  ops {h.inv[t]}-{done_op}  {ms}",
                     "inner": mops if len(mops) <= 60 else mops[:57] + "...", "end": x + w})
    edges = []
    for i, (a, b, kind) in enumerate(cycle):
        j = (i + 1) % len(cycle)
        r1, r2 = rows[i], rows[j]
        x1, x2 = r1["end"], rows[j]["x"]
        cx = max(x1, x2) + 30 + 12 * i
        edges.append({"x1": round(x1, 1), "y1": r1["y"] + 11, "x2": round(x2, 1),
                      "y2": r2["y"] + 11, "cx": round(cx, 1), "label": KIND_NAMES[kind]})
    height = 40 + len(rows) * 44 + 20
    width = left + width_px + 60 + 12 * len(cycle) + 60
    html = jinja2.Environment(autoescape=True).from_string(_TEMPLATE).render(
        name=name, words=anomaly_words(name), rows=rows, edges=edges, width=int(width),
        height=height, left=left, text=text)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(html)
    return path
