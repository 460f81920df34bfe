"""Fault intervals recovered from the nemesis events of a history, for shading plots and timelines.

A nemesis event is an `invoke` then an `info` by process "nemesis". Faults open and close in pairs
by name: `start-X`/`stop-X` (partition, loss, latency, ...), `kill`/`restart`, `pause`/`resume`,
`clock-skew`/`reset-clock`. The interval runs from the opening event's completion to the closing
event's completion; one never closed runs to the end of the history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from ...history.op import INVOKE, NEMESIS, Op

_CLOSERS = {"restart": "kill", "resume": "pause", "reset-clock": "clock-skew",
            "heal": "start-partition"}


@dataclass(frozen=True)
class FaultInterval:
    name: str          # e.g. "partition", "kill", "pause"
    start_ns: int
    end_ns: int
    value: object = None


def _opening_name(f: str) -> str | None:
    if f.startswith("start-"):
        return f[len("start-"):]
    if f in ("kill", "pause", "clock-skew"):
        return f
    return None


def _closing_name(f: str) -> str | None:
    if f.startswith("stop-"):
        return f[len("stop-"):]
    if f in _CLOSERS:
        opener = _CLOSERS[f]
        return opener[len("start-"):] if opener.startswith("start-") else opener
    return None


def fault_intervals(history: Iterable[Op]) -> list[FaultInterval]:
    """Pair nemesis events into intervals, in order of their start."""
    open_: dict[str, tuple[int, object]] = {}
    out: list[FaultInterval] = []
    end = 0
    for op in history:
        end = max(end, op.time)
        if op.process != NEMESIS or op.type == INVOKE:
            continue
        opening, closing = _opening_name(op.f), _closing_name(op.f)
        if opening is not None and opening not in open_:
            open_[opening] = (op.time, op.value)
        elif closing is not None and closing in open_:
            start, value = open_.pop(closing)
            out.append(FaultInterval(closing, start, op.time, value))
    for name, (start, value) in open_.items():
        out.append(FaultInterval(name, start, end, value))
    out.sort(key=lambda i: (i.start_ns, i.name))
    return out
