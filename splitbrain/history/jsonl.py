"""Streaming reading and writing of histories in splitbrain's JSON Lines format.

Reading validates each line's shape (fields and types) and names file, line and field in the
HistoryError it raises. Semantic validation across lines (a second invoke by a busy process, a
completion with no invoke) lives in `splitbrain.history.validate`.
"""

from __future__ import annotations

import json
import os
from typing import IO, Iterable, Iterator

from .errors import HistoryError
from .op import NEMESIS, TYPES, Op

_REQUIRED = ("index", "time", "process", "type", "f")
_KNOWN = set(_REQUIRED) | {"value", "key", "node", "error"}


def op_from_dict(d: object, *, path: str | None = None, line: int | None = None,
                 expected_index: int | None = None) -> Op:
    """Build an Op from a decoded JSON object, checking every field's type.

    Unknown extra fields are ignored (forward compatibility), missing or mistyped ones raise.
    """
    def err(msg: str, field: str | None = None) -> HistoryError:
        return HistoryError(msg, path=path, line=line, field=field)

    if not isinstance(d, dict):
        raise err(f"expected a JSON object, got {type(d).__name__}")
    for name in _REQUIRED:
        if name not in d:
            raise err("missing required field", name)
    index = d["index"]
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise err(f"must be a non-negative integer, got {index!r}", "index")
    if expected_index is not None and index != expected_index:
        raise err(f"indices must be dense and 0-based: expected {expected_index}, got {index}",
                  "index")
    time = d["time"]
    if not isinstance(time, int) or isinstance(time, bool) or time < 0:
        raise err(f"must be a non-negative integer (nanoseconds), got {time!r}", "time")
    process = d["process"]
    if not ((isinstance(process, int) and not isinstance(process, bool)) or process == NEMESIS):
        raise err(f"must be an integer or \"nemesis\", got {process!r}", "process")
    typ = d["type"]
    if typ not in TYPES:
        raise err(f"unknown type {typ!r} (expected one of {', '.join(TYPES)})", "type")
    f = d["f"]
    if not isinstance(f, str) or not f:
        raise err(f"must be a non-empty string, got {f!r}", "f")
    node = d.get("node")
    if node is not None and not isinstance(node, str):
        raise err(f"must be a string, got {node!r}", "node")
    error = d.get("error")
    if error is not None and not isinstance(error, str):
        error = json.dumps(error)
    return Op(index=index, time=time, process=process, type=typ, f=f, value=d.get("value"),
              key=d.get("key"), node=node, error=error)


def iter_jsonl(path: str, *, check_dense: bool = True) -> Iterator[Op]:
    """Yield the Ops of a JSONL history file one at a time (constant memory).

    Blank lines are skipped. Raises HistoryError naming the file, line and field on bad input.
    """
    try:
        fh = open(path, "r", encoding="utf-8")
    except OSError as e:
        raise HistoryError(f"cannot open: {e.strerror}", path=path) from None
    with fh:
        expected = 0
        lineno = 0
        try:
            for lineno, raw in enumerate(fh, start=1):
                if not raw.strip():
                    continue
                try:
                    d = json.loads(raw)
                except json.JSONDecodeError as e:
                    raise HistoryError(f"not valid JSON: {e.msg} (column {e.colno})", path=path,
                                       line=lineno) from None
                op = op_from_dict(d, path=path, line=lineno,
                                  expected_index=expected if check_dense else None)
                expected += 1
                yield op
        except UnicodeDecodeError as e:
            raise HistoryError(f"not UTF-8 text: {e.reason}", path=path, line=lineno + 1) from None


def read_jsonl(path: str, *, check_dense: bool = True) -> list[Op]:
    """Read a whole JSONL history into a list."""
    return list(iter_jsonl(path, check_dense=check_dense))


def dumps_op(op: Op) -> str:
    """The canonical one-line JSON of an op (no trailing newline)."""
    return json.dumps(op.to_dict(), separators=(",", ":"), ensure_ascii=False)


class HistoryWriter:
    """Appends ops to a JSONL file, flushing after every op so that a crash leaves a usable prefix.

    Use as a context manager. `fsync=True` also forces each line to disk (slower).
    """

    def __init__(self, path: str, *, fsync: bool = False):
        self.path = path
        self._fh: IO[str] = open(path, "a", encoding="utf-8")
        self._fsync = fsync
        self.count = 0

    def write(self, op: Op) -> None:
        self._fh.write(dumps_op(op) + "\n")
        self._fh.flush()
        if self._fsync:
            os.fsync(self._fh.fileno())
        self.count += 1

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            self._fh.close()

    def __enter__(self) -> "HistoryWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_jsonl(path: str, ops: Iterable[Op]) -> int:
    """Write ops to a fresh JSONL file; returns how many were written."""
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for op in ops:
            fh.write(dumps_op(op) + "\n")
            n += 1
    return n
