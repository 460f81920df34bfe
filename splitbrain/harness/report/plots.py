"""Latency and throughput plots (matplotlib, PNG) with fault intervals shaded, like Jepsen's perf
checker: `latency.png` plots each completed client operation's latency against its invocation
time, coloured by outcome and marked by f; `rate.png` plots completions per second by f and
outcome. Both shade the nemesis intervals so a reader sees what the faults did to the system.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Sequence

from ...history.op import INVOKE, NEMESIS, Op
from .colors import fault_color
from .intervals import FaultInterval, fault_intervals

_COLORS = {"ok": "#2e7d32", "fail": "#c62828", "info": "#ef6c00"}
_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
BUCKET_S = 1.0


def completed_pairs(history: Sequence[Op]) -> list[tuple[Op, Op]]:
    """(invoke, completion) pairs of client operations, in completion order."""
    pending: dict[object, Op] = {}
    pairs = []
    for op in history:
        if op.process == NEMESIS:
            continue
        if op.type == INVOKE:
            pending[op.process] = op
        else:
            inv = pending.pop(op.process, None)
            if inv is not None:
                pairs.append((inv, op))
    return pairs


def _shade(ax, intervals: list[FaultInterval]) -> None:
    """Shade each fault interval in its fault type's colour (report/colors.py: the same in every
    run and every report)."""
    labelled = set()
    for i in intervals:
        label = i.name if i.name not in labelled else None
        labelled.add(i.name)
        ax.axvspan(i.start_ns / 1e9, max(i.end_ns, i.start_ns + 1) / 1e9, color=fault_color(i.name),
                   alpha=0.25, label=label, linewidth=0)


def write_plots(out_dir: str, history: Sequence[Op], title: str = "") -> list[str]:
    """Write latency.png and rate.png into out_dir; returns the paths written."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = completed_pairs(history)
    intervals = fault_intervals(history)
    fs = sorted({inv.f for inv, _ in pairs})
    marker = {f: _MARKERS[k % len(_MARKERS)] for k, f in enumerate(fs)}
    written = []

    fig, ax = plt.subplots(figsize=(10, 5))
    _shade(ax, intervals)
    series: dict[tuple[str, str], tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for inv, comp in pairs:
        xs, ys = series[(inv.f, comp.type)]
        xs.append(inv.time / 1e9)
        ys.append(max(comp.time - inv.time, 1) / 1e6)
    for (f, typ), (xs, ys) in sorted(series.items()):
        ax.scatter(xs, ys, s=6, marker=marker[f], color=_COLORS.get(typ, "#555"), alpha=0.6,
                   label=f"{f} {typ}")
    ax.set_yscale("log")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title(f"{title} latency".strip())
    if series or intervals:
        ax.legend(loc="upper right", fontsize=7, markerscale=2)
    path = os.path.join(out_dir, "latency.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    fig, ax = plt.subplots(figsize=(10, 5))
    _shade(ax, intervals)
    buckets: dict[tuple[str, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    last = 0
    for inv, comp in pairs:
        b = int(comp.time / 1e9 / BUCKET_S)
        last = max(last, b)
        buckets[(inv.f, comp.type)][b] += 1
    for (f, typ), counts in sorted(buckets.items()):
        xs = [b * BUCKET_S for b in range(last + 1)]
        ys = [counts.get(b, 0) / BUCKET_S for b in range(last + 1)]
        ax.plot(xs, ys, color=_COLORS.get(typ, "#555"), marker=marker[f], markersize=3,
                linewidth=1, label=f"{f} {typ}")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("completions per second")
    ax.set_title(f"{title} throughput".strip())
    if buckets or intervals:
        ax.legend(loc="upper right", fontsize=7)
    path = os.path.join(out_dir, "rate.png")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written
