"""Loading a history in any supported format, with detection and validation.

Formats (`FORMATS`):
  jsonl           splitbrain's own JSON Lines (DESIGN.md, "The history")
  jepsen-edn      Jepsen's history.edn and Knossos data files (splitbrain/history/edn.py)
  porcupine-etcd  Porcupine's etcd logs, `INFO  jepsen.util - 3 :invoke :cas [1 4]`
  porcupine-kv    Porcupine's kv logs, `{:process 0, :type :invoke, :f :append, :key "3", ...}`
                  (the last two are read by splitbrain/history/porcupine.py)

Detection (`detect_format`, used for `fmt="auto"`) looks at the first 64 KiB only:
  1. an empty (or blank) file is an empty JSONL history;
  2. a first line that starts with `{"` or is a JSON object is JSONL (so a malformed later line is
     reported by the JSONL reader, with its line number);
  3. EDN maps that carry `:index` or `:time` are Jepsen's (Porcupine's kv logs carry neither);
  4. otherwise Porcupine's own sniffer decides between its two formats;
  5. otherwise text that opens like EDN (`[`, `(`, `{`, `#`, `;`) is Jepsen EDN.
Anything else is a one-line HistoryError asking for `--format`.

A path that is a directory holding `history.jsonl` or `history.edn` (a stored run, DESIGN.md "The
store") stands for that file.

Every loaded history is validated (splitbrain/history/validate.py) unless `validate=False`; every
problem is a HistoryError naming the file, the line (or op index) and the field.
"""

from __future__ import annotations

import json
import os
import re
from array import array
from typing import Callable, Sequence

from .errors import HistoryError
from .jsonl import read_batches
from .op import Op
from .sanity import value_problem
from .validate import HistoryValidator

__all__ = ["FORMATS", "AUTO", "load_history", "detect_format", "resolve_path",
           "read_jsonl_with_lines"]

AUTO = "auto"
FORMATS = ("jsonl", "jepsen-edn", "porcupine-etcd", "porcupine-kv")
HEAD_BYTES_MAX = 64 * 1024  # how much of a file detection reads
_STORE_FILES = ("history.jsonl", "history.edn")
_EDN_OPENERS = ("[", "(", "{", "#", ";")
_JEPSEN_FIELD = re.compile(r":(index|time)[\s,]")


def resolve_path(path: str) -> str:
    """The history file that `path` names; HistoryError if there is none to read."""
    p = str(path)
    if os.path.isdir(p):
        for name in _STORE_FILES:
            candidate = os.path.join(p, name)
            if os.path.isfile(candidate):
                return candidate
        raise HistoryError(f"is a directory without {' or '.join(_STORE_FILES)}; "
                           "pass a history file", path=p)
    if not os.path.exists(p):
        raise HistoryError("no such file", path=p)
    if not os.path.isfile(p):
        raise HistoryError("not a regular file", path=p)
    if not os.access(p, os.R_OK):
        raise HistoryError("cannot read: permission denied", path=p)
    return p


def _read_head(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(HEAD_BYTES_MAX)
    except OSError as e:
        raise HistoryError(f"cannot open: {e.strerror}", path=path) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        # A multi-byte character cut by the head's end (or by a crash at the file's end: a
        # torn last line, which the reader then ignores) is fine; anything else is not text.
        if e.start >= len(raw) - 3 and e.end == len(raw) and e.reason == "unexpected end of data":
            return raw[:e.start].decode("utf-8")
        line = raw[:e.start].count(b"\n") + 1
        raise HistoryError(f"not UTF-8 text ({e.reason} at byte {e.start}); is this a history?",
                           path=path, line=line) from None


def _porcupine():
    """The Porcupine readers, or None while that module is not installed."""
    try:
        from . import porcupine
    except ImportError:
        return None
    return porcupine


def detect_format(path: str) -> str:
    """Which of FORMATS the file at `path` is in (see the module docstring)."""
    path = resolve_path(path)
    head = _read_head(path)
    if head.startswith("\ufeff"):
        head = head[1:]
    stripped = head.lstrip()
    if not stripped:
        return "jsonl"
    first = stripped.splitlines()[0].strip()
    if first.startswith('{"'):
        return "jsonl"
    if first.startswith("{"):
        try:
            if isinstance(json.loads(first), dict):
                return "jsonl"
        except ValueError:
            pass
    if stripped.startswith(_EDN_OPENERS) and _JEPSEN_FIELD.search(head):
        return "jepsen-edn"
    porcupine = _porcupine()
    if porcupine is not None:
        name = porcupine.sniff(head)
        if name is not None:
            if name not in FORMATS:
                raise HistoryError(f"internal: Porcupine sniffer answered unknown format {name!r}",
                                   path=path)
            return name
    if stripped.startswith(_EDN_OPENERS):
        return "jepsen-edn"
    raise HistoryError("cannot tell the history format (not JSONL, Jepsen EDN or a Porcupine "
                       f"log); pass --format, one of {', '.join(FORMATS)}", path=path, line=1)


def read_jsonl_with_lines(path: str, *, validate: bool = True,
                          on_warning: Callable[[str], None] | None = None
                          ) -> tuple[list[Op], array]:
    """Read a JSONL history, validating each op as it arrives; also returns each op's line
    (an array of ints: 8 bytes per op).

    Unlike `jsonl.read_jsonl` this checks Jepsen's semantics too, with the line of the offending
    op in the message. A torn last line is ignored with a warning (jsonl.iter_json_lines).
    """
    ops: list[Op] = []
    lines = array("q")
    for b in read_batches(path, on_warning=on_warning,
                          validator=HistoryValidator(path) if validate else None):
        ops.extend(b.ops())
        lines.extend(b.lines)
    return ops, lines


def _read_edn(path: str) -> tuple[list[Op], list[int] | None]:
    from .edn import read_edn_with_lines
    return read_edn_with_lines(path)


def _read_porcupine(which: str) -> Callable[[str], tuple[list[Op], list[int] | None]]:
    def read(path: str) -> tuple[list[Op], list[int] | None]:
        porcupine = _porcupine()
        if porcupine is None:
            raise HistoryError(f"the {which} reader (splitbrain.history.porcupine) is not "
                               "installed", path=path)
        reader = porcupine.read_etcd_log if which == "porcupine-etcd" else porcupine.read_kv_log
        return reader(path), None
    return read


def load_history(path: str, fmt: str = AUTO, *, validate: bool = True,
                 on_warning: Callable[[str], None] | None = None) -> list[Op]:
    """Read the history at `path` in format `fmt` (one of FORMATS, or "auto") and validate it.

    Raises HistoryError (one line: file, line or op index, field) on any bad input, including an
    unknown format name. An empty file is an empty history.
    """
    return load_history_ex(path, fmt, validate=validate, on_warning=on_warning)[0]


def load_history_ex(path: str, fmt: str = AUTO, *, validate: bool = True,
                    on_warning: Callable[[str], None] | None = None,
                    jsonl_columns: bool = False) -> tuple[Sequence[Op], str, str]:
    """Like `load_history`, also returning the format used and the file actually read.

    `on_warning(message)` hears of input that was skipped (a JSONL history's torn last line);
    by default it is one line on stderr. With `jsonl_columns`, a JSONL history comes back as a
    history.columns.ColumnHistory (a re-iterable sequence of Ops held as columns: a third of
    the memory), the other formats as a list.
    """
    if fmt != AUTO and fmt not in FORMATS:
        raise HistoryError(f"unknown format {fmt!r} (choose from {AUTO}, {', '.join(FORMATS)})",
                           field="--format")
    real = resolve_path(path)
    if fmt == AUTO:
        fmt = detect_format(real)
    if fmt == "jsonl":
        if jsonl_columns:
            from .columns import load_jsonl_columns
            return load_jsonl_columns(real, validate=validate, on_warning=on_warning), fmt, real
        ops, _ = read_jsonl_with_lines(real, validate=validate, on_warning=on_warning)
        return ops, fmt, real
    reader = _read_edn if fmt == "jepsen-edn" else _read_porcupine(fmt)
    ops, lines = reader(real)
    for i, op in enumerate(ops):  # the readers' values, within the bounds of sanity.py
        problem = value_problem(op.value) or value_problem(op.key)
        if problem:
            raise HistoryError(problem, path=real, line=lines[i] if lines is not None else None,
                               field="value" if value_problem(op.value) else "key")
    if validate:
        validator = HistoryValidator(real)
        for i, op in enumerate(ops):
            validator.feed(op, lines[i] if lines is not None else None)
    return ops, fmt, real
