"""The message log (`messages.jsonl` in the run directory) and Maelstrom's network statistics.

One JSON object per line, one line per message the harness sees move, written when its fate is
known (the contract in DESIGN/contracts):

  {"id": 17, "src": "n1", "dest": "n2", "body": {...}, "sent": NS, "recv": NS | null,
   "fate": "delivered" | "dropped" | "lost" | "unknown-dest" | "pending", "op": 42,
   "control": true}

`id` is unique per run and increasing in send order; `sent`/`recv` are nanoseconds on the
history's clock (the Recorder's t0); `op` (client requests and their replies) is the history
index of the operation's invoke; `control` marks the harness's own traffic (init, status probes
of in-house nodes). A message still in flight when the log closes is written as "pending".
At most `max_lines` message lines; past the bound one last line `{"truncated": true, "logged": N}`
and the statistics go on counting (never a silent cut).

Statistics (`stats(op_count)`, results["net"]) in Maelstrom's meaning (maelstrom.net.journal):
for "all", "clients" (messages to or from a client, "c<N>") and "servers" (the rest: node<->node
and node<->service): send-count (messages sent), recv-count (messages delivered), msg-count
(distinct messages), msgs-per-op (msg-count / client operations invoked). Harness control
traffic counts as client traffic (Maelstrom's init comes from a client too).

Not thread-safe by design: a backend calls it from its loop thread only.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from typing import Any, Callable

MESSAGE_LOG_MAX = 2_000_000
FLUSH_BYTES = 1 << 20
QUOTED_CACHE_MAX = 10_000        # src/dest names whose JSON form is cached


def is_client(name: Any) -> bool:
    """Maelstrom's client ids: "c" followed by digits."""
    return isinstance(name, str) and len(name) > 1 and name[0] == "c" and name[1:].isdigit()


class MessageLog:
    """See the module docstring. `path` None: count only, write nothing."""

    def __init__(self, path: str | Path | None, *, max_lines: int = MESSAGE_LOG_MAX,
                 t0_ns: int | None = None):
        self.path = Path(path) if path is not None else None
        self.max_lines = int(max_lines)
        self.t0_ns = time.monotonic_ns() if t0_ns is None else t0_ns
        self._fh: io.TextIOBase | None = None
        if self.path is not None:
            self._fh = open(self.path, "w", encoding="utf-8")
        self._buf: list[str] = []
        self._buf_bytes = 0
        self.next_id = 0
        self.logged = 0
        self.truncated = False
        self.pending: dict[int, tuple] = {}          # id -> the args of its record
        self.counts = {k: {"send-count": 0, "recv-count": 0, "msg-count": 0}
                       for k in ("clients", "servers")}
        self.fates: dict[str, int] = {}
        self.closed = False
        # A failed write (disk full) stops the file at its last whole line and is reported here
        # (the runner stops the run: exit 4); None: the OSError is raised.
        self.on_write_error: Callable[[OSError], Any] | None = None
        # Records made before the history clock starts (the init handshake, setup requests)
        # wait here until set_t0 puts them on that clock (their times are then negative).
        self._early: list[tuple] | None = [] if t0_ns is None else None
        self._quoted: dict[str, str] = {}

    def now(self) -> int:
        return time.monotonic_ns() - self.t0_ns

    def set_t0(self, t0_ns: int) -> None:
        """Put the log on the history's clock (the runner calls this when the clock starts).
        Times of messages before then are negative (the init handshake)."""
        shift = self.t0_ns - t0_ns
        self.t0_ns = t0_ns
        early, self._early = self._early, None
        for mid, src, dest, body, sent, recv, fate, op, control in early or ():
            self._write(mid, src, dest, body, sent + shift,
                        None if recv is None else recv + shift, fate, op, control)
        for mid, (sent, src, dest, body, kw) in list(self.pending.items()):
            self.pending[mid] = (sent + shift, src, dest, body, kw)

    def send(self) -> tuple[int, int]:
        """A new message: (id, sent time)."""
        mid = self.next_id
        self.next_id += 1
        return mid, self.now()

    def record(self, mid: int, sent: int, src: Any, dest: Any, body: Any, fate: str, *,
               recv: int | None = None, op: int | None = None, control: bool = False) -> None:
        """The message's fate is known: count it and write its line."""
        kind = "clients" if (control or is_client(src) or is_client(dest)) else "servers"
        c = self.counts[kind]
        c["send-count"] += 1
        c["msg-count"] += 1
        if fate == "delivered":
            c["recv-count"] += 1
            if recv is None:
                recv = self.now()
        self.fates[fate] = self.fates.get(fate, 0) + 1
        if self._fh is None or self.truncated:
            return
        if fate != "delivered":
            recv = None
        if self._early is not None:
            self._early.append((mid, src, dest, body, sent, recv, fate, op, control))
            return
        self._write(mid, src, dest, body, sent, recv, fate, op, control)

    def _q(self, name: Any) -> str:
        """A JSON string for a src/dest name (cached: names repeat)."""
        q = self._quoted.get(name) if isinstance(name, str) else None
        if q is None:
            q = json.dumps(name)
            if isinstance(name, str) and len(self._quoted) < QUOTED_CACHE_MAX:
                self._quoted[name] = q
        return q

    def _write(self, mid: int, src: Any, dest: Any, body: Any, sent: int, recv: int | None,
               fate: str, op: int | None, control: bool) -> None:
        if self.truncated:
            return
        if self.logged >= self.max_lines:
            self.truncated = True
            self._emit(json.dumps({"truncated": True, "logged": self.logged}))
            return
        try:
            b = json.dumps(body, separators=(",", ":"))
        except (RecursionError, ValueError, TypeError):
            b = '{"unprintable":true}'
        # Formatted by hand (the hot path: one line per message): the same JSON object as
        # {"id", "src", "dest", "body", "sent", "recv", "fate"[, "op"][, "control"]}.
        line = (f'{{"id":{mid},"src":{self._q(src)},"dest":{self._q(dest)},"body":{b},'
                f'"sent":{sent},"recv":{"null" if recv is None else recv},"fate":"{fate}"')
        if op is not None:
            line += f',"op":{int(op)}'
        line += ',"control":true}' if control else "}"
        self.logged += 1
        self._emit(line)

    def hold(self, mid: int, sent: int, src: Any, dest: Any, body: Any, **kw: Any) -> None:
        """A message in flight (delayed by latency): written as "pending" if the log closes
        before `release`."""
        self.pending[mid] = (sent, src, dest, body, kw)

    def release(self, mid: int, fate: str, recv: int | None = None) -> None:
        held = self.pending.pop(mid, None)
        if held is None:
            return
        sent, src, dest, body, kw = held
        self.record(mid, sent, src, dest, body, fate, recv=recv, **kw)

    def _emit(self, line: str) -> None:
        self._buf.append(line)
        self._buf_bytes += len(line) + 1
        if self._buf_bytes >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._fh is not None and self._buf:
            try:
                self._fh.write("\n".join(self._buf) + "\n")
                self._fh.flush()
            except OSError as e:
                from .store import drop_text_file
                fh, self._fh = self._fh, None
                drop_text_file(fh, self.path)
                if self.on_write_error is None:
                    raise
                self.on_write_error(e)
        self._buf = []
        self._buf_bytes = 0

    def close(self) -> None:
        """Write every message still in flight as "pending", flush, close. Idempotent."""
        if self.closed:
            return
        self.closed = True
        for mid in sorted(self.pending):
            self.release(mid, "pending")
        if self._early is not None:
            self.set_t0(self.t0_ns)
        self.flush()
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def stats(self, op_count: int) -> dict:
        """results["net"]: Maelstrom's network statistics (see the module docstring)."""
        out = {k: dict(v) for k, v in self.counts.items()}
        out["all"] = {k: out["clients"][k] + out["servers"][k]
                      for k in ("send-count", "recv-count", "msg-count")}
        if op_count > 0:
            for k in ("all", "clients", "servers"):
                out[k]["msgs-per-op"] = round(out[k]["msg-count"] / op_count, 4)
        out["fates"] = dict(self.fates)
        out["logged"] = self.logged
        out["truncated"] = self.truncated
        return {"all": out["all"], "clients": out["clients"], "servers": out["servers"],
                "fates": out["fates"], "logged": out["logged"], "truncated": out["truncated"]}
