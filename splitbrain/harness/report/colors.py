"""The one table of fault colours, shared by every report (timeline.html, latency.png, rate.png,
messages.html, the web UI of `splitbrain serve`).

A fault type always has the same colour, in every run and every report, so that a person who has
learnt "purple is kill" can read any page at a glance. The names are the fault intervals' names
(splitbrain.harness.report.intervals: `start-X`/`stop-X` gives X; kill, pause, clock-skew).
A name not in the table (a new nemesis) gets a colour from FALLBACK picked by a stable hash of
the name (CRC-32, not Python's randomized hash()), so it too is the same in every run.
"""

from __future__ import annotations

import zlib

__all__ = ["FAULT_COLORS", "fault_color", "fault_colors"]

FAULT_COLORS: dict[str, str] = {
    "partition": "#1e88e5",     # blue
    "kill": "#8e24aa",          # purple
    "pause": "#fdd835",         # yellow
    "clock-skew": "#00897b",    # teal
    "loss": "#d81b60",          # pink
    "latency": "#6d4c41",       # brown
    "duplicate": "#00acc1",     # cyan
    "crash-storm": "#5e35b1",   # deep purple
    "crash-point": "#f4511e",   # deep orange
}
# For fault names not in the table: distinct from the table's colours and from the outcome
# colours (ok green, fail red, info orange, open grey).
FALLBACK = ["#546e7a", "#c0ca33", "#3949ab", "#7cb342", "#ad1457", "#0277bd"]


def fault_color(name: str) -> str:
    """The colour (#rrggbb) of fault type `name`, the same in every run."""
    color = FAULT_COLORS.get(name)
    if color is None:
        color = FALLBACK[zlib.crc32(str(name).encode("utf-8")) % len(FALLBACK)]
    return color


def fault_colors(names) -> dict[str, str]:
    """{name: colour} for the given fault names (for a page's legend and its script)."""
    return {n: fault_color(n) for n in names}
