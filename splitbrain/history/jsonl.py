"""Streaming reading and writing of histories in splitbrain's JSON Lines format.

Reading validates each line's shape (fields and types) and names file, line and field in the
HistoryError it raises. Semantic validation across lines (a second invoke by a busy process, a
completion with no invoke) lives in `splitbrain.history.validate`.

The stdlib json parser and `op_from_dict` define what is read. Ops are read in batches
(`read_batches`): orjson parses a batch's lines and whole columns are checked at once; a batch
where anything is unusual is read again line by line with json, so values, errors and warnings
are json's (tests/test_history_fast_reader.py compares the two on hostile input).
"""

from __future__ import annotations

import json
import os
import re
import sys
from itertools import repeat
from operator import add, itemgetter
from typing import IO, Callable, Iterable, Iterator

from .errors import HistoryError
from .op import NEMESIS, TYPES, Op, _OpFields, make_op
from .sanity import INT_DIGITS_MAX, VALUE_DEPTH_MAX, raw_json_needs_walk, value_problem

try:
    from orjson import loads as _orjson_loads
except ImportError:  # a dependency (pyproject.toml); the stdlib parser reads alone without it
    _orjson_loads = None

_REQUIRED = ("index", "time", "process", "type", "f")
_KNOWN = set(_REQUIRED) | {"value", "key", "node", "error"}
# The op types as the reader stores them: one str object each, not one per op.
_TYPE_OF = {t: t for t in TYPES}
# JSON that orjson may read otherwise than json: an integer of 19 digits or more (orjson 3.8
# turns one beyond 64 bits into a float; later versions refuse it).
_LONG_DIGITS = re.compile(rb"[0-9]{19}")
_intern = sys.intern


def op_from_dict(d: object, *, path: str | None = None, line: int | None = None,
                 expected_index: int | None = None) -> Op:
    """Build an Op from a decoded JSON object, checking every field's type.

    Unknown extra fields are ignored (forward compatibility), missing or mistyped ones raise.
    """
    op = _op_fast(d, expected_index)
    if op is None:
        op = _op_checked(d, path, line, expected_index)
    return op


def _op_fast(d: object, expected_index: int | None) -> Op | None:
    """The Op of `d` when every field is of its plainest type (JSON's own int, str, null): the
    common case, in a few type tests; None otherwise (then `_op_checked` decides or explains)."""
    if type(d) is not dict:
        return None
    get = d.get
    index = get("index")
    time = get("time")
    process = get("process")
    typ = get("type")
    f = get("f")
    if not (type(index) is int and index >= 0 and type(time) is int and time >= 0
            and type(f) is str and f and type(typ) is str):
        return None
    if expected_index is not None and index != expected_index:
        return None
    if type(process) is not int:
        if process != NEMESIS:
            return None
        process = NEMESIS
    typ = _TYPE_OF.get(typ)
    if typ is None:
        return None
    node = get("node")
    if node is not None:
        if type(node) is not str:
            return None
        node = _intern(node)
    error = get("error")
    if error is not None and type(error) is not str:
        return None
    return make_op(index, time, process, typ, _intern(f), get("value"), get("key"), node, error)


def _op_checked(d: object, path: str | None, line: int | None,
                expected_index: int | None) -> Op:
    """op_from_dict's every check, in order; raises HistoryError at the first that fails."""
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
    if type(f) is str:
        f = _intern(f)
    if type(typ) is str:
        typ = _TYPE_OF.get(typ, typ)
    return make_op(index, time, process, typ, f, d.get("value"), d.get("key"), node, error)


def warn_stderr(message: str) -> None:
    """The default `on_warning`: one line on stderr, control characters escaped."""
    from ..termsafe import safe_line

    sys.stderr.write(f"splitbrain: warning: {safe_line(message)}\n")
    sys.stderr.flush()


def ignore_warning(message: str) -> None:
    """An `on_warning` that drops the message (a file read again after a first, warned pass)."""


class _Torn(Exception):
    """The torn last line (see `iter_json_lines`): reading stops there."""


def _decode_exact(raw: bytes, path: str, lineno: int, warn: Callable[[str], None]) -> object:
    """The line's JSON value as the stdlib parser reads it, or HistoryError; _Torn for a torn
    last line (after warning). None for a blank line (never a JSON value: `null` is not blank).

    This is the reader's reference semantics; orjson only stands in for it where the two agree
    (`_decode_lines`)."""
    if not raw.strip():
        return _BLANK
    # Only the last line of a file can lack a newline; a cut one begins like an op does
    # (binary junk without a newline stays an error).
    torn = not raw.endswith(b"\n") and raw.lstrip().startswith(b"{")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if torn:
            warn(_torn_message(path, lineno, f"not UTF-8: {e.reason}"))
            raise _Torn() from None
        raise HistoryError(f"not UTF-8 text: {e.reason}", path=path, line=lineno) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        if torn:
            warn(_torn_message(path, lineno, f"{e.msg} (column {e.colno})"))
            raise _Torn() from None
        raise HistoryError(f"not valid JSON: {e.msg} (column {e.colno})", path=path,
                           line=lineno) from None
    except RecursionError:
        raise HistoryError(f"not valid JSON here: nested deeper than "
                           f"{VALUE_DEPTH_MAX} lists/objects", path=path, line=lineno) from None
    except ValueError as e:  # e.g. an integer over Python's int/str digit limit
        msg = str(e).split(";")[0]
        raise HistoryError(f"not valid JSON here: {msg}", path=path, line=lineno) from None


_BLANK = object()


def _decode_lines(path: str, warn: Callable[[str], None]
                  ) -> Iterator[tuple[int, bytes, object, bool]]:
    """(line number, raw line, decoded value, exact) for every non-blank line, bounds checked.

    orjson decodes first (6x faster than json); any line it refuses goes to the stdlib parser
    (`_decode_exact`), so errors and what is accepted stay those of json. One difference is
    left to the caller: an integer of 19+ digits, which orjson may read as a float. `exact` is
    False for orjson's values; `exact_value` re-reads such a line with json when it matters.
    """
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise HistoryError(f"cannot open: {e.strerror}", path=path) from None
    loads = _orjson_loads
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            exact = False
            try:
                if loads is None:
                    raise ValueError
                d = loads(raw)
            except Exception:  # noqa: BLE001 - any refusal: the reference parser decides
                try:
                    d = _decode_exact(raw, path, lineno, warn)
                except _Torn:
                    return
                if d is _BLANK:
                    continue
                exact = True
            if raw_json_needs_walk(raw):
                if not exact:
                    d, exact = exact_value(raw, d, path, lineno), True
                problem = value_problem(d)
                if problem:
                    raise HistoryError(problem, path=path, line=lineno)
            yield lineno, raw, d, exact


def exact_value(raw: bytes, d: object, path: str, lineno: int) -> object:
    """`d` (orjson's reading of `raw`) as json reads it: the same unless `raw` holds a run of
    19+ digits (an integer beyond 64 bits, or over Python's digit limit: a HistoryError then)."""
    if _LONG_DIGITS.search(raw) is None:
        return d
    return _decode_exact(raw, path, lineno, ignore_warning)


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

    Values are those of the stdlib json parser (orjson reads most lines, `_decode_lines`).
    """
    warn = warn_stderr if on_warning is None else on_warning
    for lineno, raw, d, exact in _decode_lines(path, warn):
        yield lineno, (d if exact else exact_value(raw, d, path, lineno))


def _torn_message(path: str, line: int, why: str) -> str:
    return (f"{path}:line {line}: the last line is cut short (no newline at its end, {why}): "
            "ignored, as a crash or a full disk leaves it; the ops before it are checked")


# How much of the file one batch reads (whole lines): a batch's parsed lines are the reader's
# only transient memory (about 1 MB). Larger batches are no faster, and churn through more
# fresh memory (more system time: 2.7 s instead of 1.3 s of 19 s for 4M lines at 1 MB).
BATCH_BYTES = 1 << 16
_get_required = [itemgetter(name) for name in _REQUIRED]
_get_value = itemgetter("value")
_get_key = itemgetter("key")
_get = dict.get
_NONE_TYPE = type(None)
_TYPES_SET = frozenset(TYPES)
# Digits to b"0", everything else to b" ": a run of 19+ digits is then a run of b"0" (C speed).
_DIGIT_MAP = bytes(0x30 if 0x30 <= c <= 0x39 else 0x20 for c in range(256))
_DIGIT_RUN = b"0" * 19


class Batch:
    """Consecutive ops of a JSONL history as columns (no Op object per line).

    `index` is a range when the indices are dense (as they always are once checked), `lines`
    a range when the lines are consecutive; `key`, `node`, `error` are None when every op's is.
    `type` and `f` hold shared str objects (op.TYPES' own, interned).
    """

    __slots__ = ("index", "lines", "time", "process", "type", "f", "value", "key", "node",
                 "error")

    def __init__(self, index, lines, time, process, type, f, value, key, node, error):
        self.index = index
        self.lines = lines
        self.time = time
        self.process = process
        self.type = type
        self.f = f
        self.value = value
        self.key = key
        self.node = node
        self.error = error

    def __len__(self) -> int:
        return len(self.lines)

    def ops(self) -> list[Op]:
        """The batch's Ops."""
        none = repeat(None)
        return list(map(_OpFields, self.index, self.time, self.process, self.type, self.f,
                        self.value, none if self.key is None else self.key,
                        none if self.node is None else self.node,
                        none if self.error is None else self.error))

    def op(self, i: int) -> Op:
        """The batch's i-th Op."""
        return make_op(self.index[i], self.time[i], self.process[i], self.type[i], self.f[i],
                       self.value[i], None if self.key is None else self.key[i],
                       None if self.node is None else self.node[i],
                       None if self.error is None else self.error[i])

    @classmethod
    def of_ops(cls, ops: list[Op], lines: list[int]) -> "Batch":
        def col(name: str) -> list | None:
            c = [getattr(op, name) for op in ops]
            return None if c.count(None) == len(c) else c

        return cls([op.index for op in ops], lines, [op.time for op in ops],
                   [op.process for op in ops], [op.type for op in ops], [op.f for op in ops],
                   [op.value for op in ops], col("key"), col("node"), col("error"))


def read_batches(path: str, *, check_dense: bool = True,
                 on_warning: Callable[[str], None] | None = None,
                 validator=None) -> Iterator[Batch]:
    """The ops of a JSONL history file as Batches of about BATCH_BYTES of lines.

    Every op is checked as `op_from_dict` checks it, and by `validator.feed` (a
    validate.HistoryValidator) when one is given, line by line in file order: the first bad line
    raises its HistoryError, as reading one op at a time would. A torn last line is ignored
    with a warning (`iter_json_lines`).

    Each batch is first read the fast way: orjson over every line and each field checked for a
    whole column at once (`_fast_batch`); a batch where anything is unusual (a line orjson
    refuses, a blank line, a value to walk for sanity.py, a run of 19+ digits, a field of an
    unusual type) is read again line by line, exactly as json reads it (`_slow_batch`).
    """
    warn = warn_stderr if on_warning is None else on_warning
    try:
        fh = open(path, "rb")
    except OSError as e:
        raise HistoryError(f"cannot open: {e.strerror}", path=path) from None
    lineno = 1
    expected = 0
    with fh:
        while True:
            raws = fh.readlines(BATCH_BYTES)
            if not raws:
                return
            stop = False
            b = _fast_batch(raws, lineno, expected if check_dense else None)
            if b is None:
                b, stop = _slow_batch(raws, lineno, expected, check_dense, path, warn,
                                      validator)
            elif validator is not None:
                validator.feed_columns(b.index, b.time, b.process, b.type, b.f, b.lines, b.op)
            lineno += len(raws)
            expected += len(b)
            if len(b):
                yield b
            if stop:
                return


def _fast_batch(raws: list[bytes], first_line: int, expected: int | None) -> Batch | None:
    """The batch of `raws` when every line is a plain op that orjson reads as json does; None
    when any line needs `_slow_batch`."""
    loads = _orjson_loads
    if loads is None:
        return None
    try:
        ds = list(map(loads, raws))
    except Exception:  # noqa: BLE001 - any refusal: the line-by-line reader explains
        return None
    n = len(ds)
    if set(map(type, ds)) != {dict}:
        return None
    joined = b"".join(raws)
    # The bounds of sanity.py (a backslash-u escape, or nesting deeper than the bound), what
    # orjson reads otherwise than json (an integer of 19+ digits; an integer over Python's
    # digit limit has as many): the line-by-line reader.
    if b"\\u" in joined or _DIGIT_RUN in joined.translate(_DIGIT_MAP):
        return None
    if max(map(len, raws)) > VALUE_DEPTH_MAX and max(map(
            add, map(bytes.count, raws, repeat(b"[")),
            map(bytes.count, raws, repeat(b"{")))) > VALUE_DEPTH_MAX:
        return None
    try:
        index, time, process, typ, f = (list(map(g, ds)) for g in _get_required)
    except KeyError:
        return None
    if set(map(type, index)) != {int} or set(map(type, time)) != {int} or min(time) < 0:
        return None
    if expected is not None:
        if index != list(range(expected, expected + n)):
            return None
        index = range(expected, expected + n)
    elif min(index) < 0:
        return None
    tp = set(map(type, process))
    if tp != {int}:
        if not tp <= {int, str} or {p for p in set(process) if type(p) is str} != {NEMESIS}:
            return None
    if set(map(type, typ)) != {str} or not set(typ) <= _TYPES_SET:
        return None
    if set(map(type, f)) != {str} or "" in set(f):
        return None
    intern = _intern
    # The optional fields. The common shapes first: every op with exactly the required fields
    # and a value (a register's history), or a value and a key (kv): the others are absent.
    value = key = node = error = None
    lens = set(map(len, ds))
    try:
        if lens == {6}:
            value = list(map(_get_value, ds))
        elif lens == {7}:
            value = list(map(_get_value, ds))
            key = list(map(_get_key, ds))
    except KeyError:
        value = key = None
    if value is None:
        value = list(map(_get, ds, repeat("value")))
        key = list(map(_get, ds, repeat("key")))
        node = list(map(_get, ds, repeat("node")))
        error = list(map(_get, ds, repeat("error")))
        tn = set(map(type, node))
        te = set(map(type, error))
        if not tn <= {_NONE_TYPE, str} or not te <= {_NONE_TYPE, str}:
            return None
        node = None if tn == {_NONE_TYPE} else [x if x is None else intern(x) for x in node]
        error = None if te == {_NONE_TYPE} else error
    return Batch(index, range(first_line, first_line + n), time, process,
                 list(map(_TYPE_OF.__getitem__, typ)), list(map(intern, f)), value,
                 None if key is None or key.count(None) == n else key, node, error)


def _slow_batch(raws: list[bytes], first_line: int, expected: int, check_dense: bool,
                path: str, warn: Callable[[str], None], validator
                ) -> tuple[Batch, bool]:
    """The batch of `raws` line by line, as json reads each (and validated op by op when a
    validator is given); (batch, True) when the last line was torn."""
    ops: list[Op] = []
    lines: list[int] = []
    torn = False
    for lineno, raw in enumerate(raws, start=first_line):
        try:
            d = _decode_exact(raw, path, lineno, warn)
        except _Torn:
            torn = True
            break
        if d is _BLANK:
            continue
        if raw_json_needs_walk(raw):
            problem = value_problem(d)
            if problem:
                raise HistoryError(problem, path=path, line=lineno)
        exp = expected + len(ops) if check_dense else None
        op = _op_fast(d, exp) or _op_checked(d, path, lineno, exp)
        if validator is not None:
            validator.feed(op, lineno)
        ops.append(op)
        lines.append(lineno)
    return Batch.of_ops(ops, lines), torn


def iter_ops_with_lines(path: str, *, check_dense: bool = True,
                        on_warning: Callable[[str], None] | None = None
                        ) -> Iterator[tuple[int, Op]]:
    """(line number, Op) for every op of a JSONL history file, one at a time (a batch of
    ops in memory at most: `read_batches`).

    Shape errors are HistoryErrors naming the file, line and field (`op_from_dict`); a torn last
    line is ignored with a warning (`iter_json_lines`)."""
    for b in read_batches(path, check_dense=check_dense, on_warning=on_warning):
        yield from zip(b.lines, b.ops())


def iter_jsonl(path: str, *, check_dense: bool = True,
               on_warning: Callable[[str], None] | None = None) -> Iterator[Op]:
    """Yield the Ops of a JSONL history file one at a time (constant memory).

    Blank lines are skipped; a torn last line is ignored with a warning (`iter_json_lines`).
    Raises HistoryError naming the file, line and field on bad input.
    """
    for _, op in iter_ops_with_lines(path, check_dense=check_dense, on_warning=on_warning):
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
