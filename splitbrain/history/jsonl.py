"""Streaming reading and writing of histories in splitbrain's JSON Lines format.

Reading validates each line's shape (fields and types) and names file, line and field in the
HistoryError it raises. Semantic validation across lines (a second invoke by a busy process, a
completion with no invoke) lives in `splitbrain.history.validate`.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Callable, Iterable, Iterator

from .errors import HistoryError
from .op import NEMESIS, TYPES, Op
from .sanity import VALUE_DEPTH_MAX, raw_json_needs_walk, value_problem

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


def warn_stderr(message: str) -> None:
    """The default `on_warning`: one line on stderr, control characters escaped."""
    from ..termsafe import safe_line

    sys.stderr.write(f"splitbrain: warning: {safe_line(message)}\n")
    sys.stderr.flush()


def iter_json_lines(path: str, *,
                    on_warning: Callable[[str], None] | None = None) -> Iterator[tuple[int, dict]]:
    """Yield (line number, decoded JSON value) for every non-blank line of a JSONL file.

    Bad input is a HistoryError naming the file and line: not UTF-8, not JSON (including an
    integer over Python's digit limit or nesting too deep for the parser), or a value that
    breaks the bounds of splitbrain/history/sanity.py.

    A torn last line -- no newline at its end, beginning with `{` like every op, and not valid
    JSON (or not UTF-8) -- is what a
    crash or a full disk leaves behind while the history is being written: like Jepsen, the
    reader ignores it and calls `on_warning` (default: `warn_stderr`) with one line naming the
    file and line. A bad line that ends with a newline, or is followed by others, is an error.
    """
    warn = warn_stderr if on_warning is None else on_warning
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise HistoryError(f"cannot open: {e.strerror}", path=path) from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            # Only the last line of a file can lack a newline; a cut one begins like an op does
            # (binary junk without a newline stays an error).
            torn = not raw.endswith(b"\n") and raw.lstrip().startswith(b"{")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                if torn:
                    warn(_torn_message(path, lineno, f"not UTF-8: {e.reason}"))
                    return
                raise HistoryError(f"not UTF-8 text: {e.reason}", path=path,
                                   line=lineno) from None
            try:
                d = json.loads(text)
            except json.JSONDecodeError as e:
                if torn:
                    warn(_torn_message(path, lineno, f"{e.msg} (column {e.colno})"))
                    return
                raise HistoryError(f"not valid JSON: {e.msg} (column {e.colno})", path=path,
                                   line=lineno) from None
            except RecursionError:
                raise HistoryError(f"not valid JSON here: nested deeper than "
                                   f"{VALUE_DEPTH_MAX} lists/objects", path=path,
                                   line=lineno) from None
            except ValueError as e:  # e.g. an integer over Python's int/str digit limit
                msg = str(e).split(";")[0]
                raise HistoryError(f"not valid JSON here: {msg}", path=path,
                                   line=lineno) from None
            if raw_json_needs_walk(raw):
                problem = value_problem(d)
                if problem:
                    raise HistoryError(problem, path=path, line=lineno)
            yield lineno, d


def _torn_message(path: str, line: int, why: str) -> str:
    return (f"{path}:line {line}: the last line is cut short (no newline at its end, {why}): "
            "ignored, as a crash or a full disk leaves it; the ops before it are checked")


def iter_jsonl(path: str, *, check_dense: bool = True,
               on_warning: Callable[[str], None] | None = None) -> Iterator[Op]:
    """Yield the Ops of a JSONL history file one at a time (constant memory).

    Blank lines are skipped; a torn last line is ignored with a warning (`iter_json_lines`).
    Raises HistoryError naming the file, line and field on bad input.
    """
    expected = 0
    for lineno, d in iter_json_lines(path, on_warning=on_warning):
        op = op_from_dict(d, path=path, line=lineno,
                          expected_index=expected if check_dense else None)
        expected += 1
        yield op


def read_jsonl(path: str, *, check_dense: bool = True,
               on_warning: Callable[[str], None] | None = None) -> list[Op]:
    """Read a whole JSONL history into a list (a torn last line: see `iter_json_lines`)."""
    return list(iter_jsonl(path, check_dense=check_dense, on_warning=on_warning))


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
