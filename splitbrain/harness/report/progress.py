"""The live progress line printed while a test runs: elapsed time, operations, ok/fail/info and
the faults currently in force. Drawn with rich on a terminal; on a non-terminal (CI logs) it prints
a plain line every PLAIN_EVERY_S seconds instead of redrawing.
"""

from __future__ import annotations

import sys
import threading
import time

from ...history.op import INVOKE, NEMESIS, Op
from .intervals import _closing_name, _opening_name

PLAIN_EVERY_S = 5.0
REFRESH_PER_S = 4


class Progress:
    """Counts ops as they are recorded (thread-safe) and shows them. Use as a context manager."""

    def __init__(self, title: str = "splitbrain", *, enabled: bool = True, stream=None):
        self.title = title
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.counts = {"invoke": 0, "ok": 0, "fail": 0, "info": 0}
        self.faults: dict[str, object] = {}
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._live = None
        self._last_plain = 0.0

    def record(self, op: Op) -> None:
        with self._lock:
            if op.process == NEMESIS:
                if op.type != INVOKE:
                    opening, closing = _opening_name(op.f), _closing_name(op.f)
                    if opening:
                        self.faults[opening] = op.value
                    elif closing:
                        self.faults.pop(closing, None)
                return
            self.counts[op.type] += 1
        if self._live is None and self.enabled:
            now = time.monotonic()
            if now - self._last_plain >= PLAIN_EVERY_S:
                self._last_plain = now
                print(self.line(), file=self.stream, flush=True)

    def line(self) -> str:
        with self._lock:
            c = dict(self.counts)
            faults = ", ".join(sorted(self.faults)) or "none"
        elapsed = time.monotonic() - self._start
        return (f"{self.title}  {elapsed:6.1f}s  ops {c['invoke']}  ok {c['ok']}  "
                f"fail {c['fail']}  info {c['info']}  faults: {faults}")

    def __rich__(self):
        return self.line()

    def __enter__(self) -> "Progress":
        self._start = time.monotonic()
        if self.enabled and getattr(self.stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.live import Live
            self._live = Live(self, console=Console(file=self.stream),
                              refresh_per_second=REFRESH_PER_S, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live is not None:
            self._live.__exit__(*exc)
            self._live = None
        elif self.enabled:
            print(self.line(), file=self.stream, flush=True)
