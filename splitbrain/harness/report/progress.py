"""The live progress line printed while a test runs: elapsed time, operations, ok/fail/info and
the faults currently in force. Drawn with rich on a terminal; on a non-terminal (CI logs) it prints
a plain line every PLAIN_EVERY_S seconds instead of redrawing.

A plain line names every fault that was in force at any moment since the previous line (a kill
that came and went between two lines is shown, not only what happens to be in force when the line
is printed), and the closing line is printed only when it says something the last one did not.
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
        self._window: set[str] = set()   # faults in force at some moment since the last line
        self._printed: tuple | None = None   # (counts, faults) of the last plain line
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
                        self._window.add(opening)
                    elif closing:
                        self.faults.pop(closing, None)
                return
            self.counts[op.type] += 1
        if self._live is None and self.enabled:
            now = time.monotonic()
            if now - self._last_plain >= PLAIN_EVERY_S:
                self._last_plain = now
                self._print_plain()

    def _print_plain(self, only_if_new: bool = False) -> None:
        with self._lock:
            key = (tuple(sorted(self.counts.items())),
                   tuple(sorted(set(self.faults) | self._window)))
            if (only_if_new and self._printed is not None and key[0] == self._printed[0]
                    and set(key[1]) <= set(self._printed[1])):
                return       # the same counts, no fault the last line did not name
            self._printed = key
            text = self.line(window=True, locked=True)
            self._window = set(self.faults)
        print(text, file=self.stream, flush=True)

    def line(self, window: bool = False, locked: bool = False) -> str:
        """The progress line; `window`: the faults of the whole interval since the last plain
        line, not only those in force now."""
        if not locked:
            with self._lock:
                return self.line(window, locked=True)
        c = dict(self.counts)
        names = set(self.faults) | (self._window if window else set())
        faults = ", ".join(sorted(names)) or "none"
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
            self._print_plain(only_if_new=True)
