"""Reading what a node writes: newline-delimited JSON envelopes, treated as untrusted input.

Every backend that reads a node's output (the local router from a node's stdout, the TCP
backends from the harness's connection to a node, the TCP shim from its child's stdout) cuts
the byte stream into lines with `LineReader` and decodes each line with `parse_envelope`. A node
program is third-party code: whatever it writes must never crash or stall the harness.

Contract (issue 12, item 6):
- Every byte is counted (`LineReader.bytes`), every line too (`lines`).
- A line longer than `line_bytes_max` (default LINE_BYTES_MAX, 1 MiB) is discarded, counted in
  `discarded` and never buffered past the bound: what arrives after the bound up to the next
  newline is dropped as it comes (an endless line costs constant memory).
- `parse_envelope` returns `(envelope, None)` for a well-formed envelope (a JSON object with a
  string `dest`, a string `src` and an object `body`), else `(None, reason)`. JSON nested too deep
  for the decoder (RecursionError), invalid UTF-8, non-JSON garbage: all are reasons, never
  exceptions. Field values inside `body` are not checked here: each consumer checks what it uses
  (the client pool ignores an `in_reply_to` that is not an integer; services answer 12).
"""

from __future__ import annotations

import json
from typing import Any

LINE_BYTES_MAX = 1 << 20          # a longer line is discarded (and counted)
BAD_LOG_MAX = 20                  # malformed lines described in the log per node (then counted)


class LineReader:
    """Cuts a byte stream into lines with a bound on what is buffered (see module docstring)."""

    __slots__ = ("buf", "bytes", "lines", "discarded", "skipping", "line_bytes_max")

    def __init__(self, line_bytes_max: int = LINE_BYTES_MAX):
        self.buf = b""
        self.bytes = 0
        self.lines = 0
        self.discarded = 0          # lines over the bound
        self.skipping = False       # inside a line already over the bound
        self.line_bytes_max = line_bytes_max

    def reset(self) -> None:
        """Forget a partial line (the writer restarted)."""
        self.buf = b""
        self.skipping = False

    def feed(self, chunk: bytes) -> list[bytes]:
        """The complete lines in buf + chunk (without newlines; empty lines dropped)."""
        self.bytes += len(chunk)
        if self.skipping:
            i = chunk.find(b"\n")
            if i < 0:
                return []
            self.skipping = False
            chunk = chunk[i + 1:]
        if b"\n" not in chunk:
            if len(self.buf) + len(chunk) > self.line_bytes_max:
                self.buf = b""
                self.skipping = True
                self.discarded += 1
                self.lines += 1
            else:
                self.buf += chunk
            return []
        *lines, rest = (self.buf + chunk).split(b"\n")
        out = []
        for line in lines:
            if not line:
                continue
            self.lines += 1
            if len(line) > self.line_bytes_max:
                self.discarded += 1
                continue
            out.append(line)
        if len(rest) > self.line_bytes_max:
            self.discarded += 1
            self.lines += 1
            self.skipping = True
            rest = b""
        self.buf = rest
        return out


def parse_envelope(line: bytes | str) -> tuple[dict | None, str | None]:
    """(envelope, None) or (None, why it is not a usable envelope). Never raises."""
    try:
        env: Any = json.loads(line)
    except RecursionError:
        return None, "JSON nested too deep"
    except UnicodeDecodeError:
        return None, "not UTF-8"
    except ValueError as e:
        return None, f"not JSON ({e.__class__.__name__})"
    if not isinstance(env, dict):
        return None, "not a JSON object"
    dest, src, body = env.get("dest"), env.get("src"), env.get("body")
    if not isinstance(dest, str):
        return None, "dest is not a string"
    if not isinstance(src, str):
        return None, "src is not a string"
    if not isinstance(body, dict):
        return None, "body is not an object"
    return env, None


def dumps(obj: Any) -> str | None:
    """Compact JSON, or None when the object cannot be written back (nested too deep, a float
    JSON cannot spell is still written as Python does)."""
    try:
        return json.dumps(obj, separators=(",", ":"))
    except (RecursionError, ValueError, TypeError):
        return None


def preview(line: bytes, n: int = 200) -> str:
    """A short printable preview of a raw line for the log."""
    return repr(line[:n]) + ("..." if len(line) > n else "")
