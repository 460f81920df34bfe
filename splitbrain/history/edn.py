"""Import and export of Jepsen EDN histories (history.edn, Knossos data files).

Accepted layouts: a single vector (or list) of op maps, `[{...} {...} ...]`, or a sequence of op
maps one after another (Jepsen's `history.edn` is one map per line). Parsing is done by the
`edn_format` package; a small scanner of our own finds where each op starts so that every error
names the file and line.

How EDN becomes an Op (splitbrain/history/op.py):
- keywords and symbols become strings (`:read` -> "read"); `:process :nemesis` -> "nemesis";
  sets become lists (sorted when their elements compare), maps become dicts with string keys
  (a non-string key is written as its JSON text), `#inst`/`#uuid` become strings;
- any other tagged literal (`#jepsen.history.Op{...}`, `#error {...}`, `#object[...]`) is read as
  the value it tags;
- `:index`, when present, must be the op's 0-based position; `:time` (nanoseconds), when absent,
  is taken to be the position (or the previous op's time, if that is later), which keeps the
  order for histories (Knossos files) without times;
- `:error` becomes a string: a keyword's name, a string as is, anything else as its JSON text;
- unknown keys (`:debug`, ...) are ignored;
- an op whose value is a transaction (a vector of `[:append k v]` / `[:r k v]` / `[:w k v]`)
  may omit `:f` (it is "txn") and `:process` (it is 0), as Elle's own test histories do.

Independent keys. Jepsen's `jepsen.independent` writes a multi-key op's value as a tuple `[k v]`:
`read` invokes `[k nil]`, `write` `[k v]`, `cas` `[k [from to]]`. A plain cas-register's cas value
`[from to]` has the same shape, so the tuple reading is decided once per history, by this rule:
  1. if any op map carries a `:key` entry, keys come from `:key` and values are never unwrapped;
  2. otherwise the history is independent when it has at least one client invoke, every client
     invoke's value is a pair whose first element is a key (an integer or a string/keyword), and
     every `cas` value that is present is `[k [from to]]` (a nested pair). A plain register
     history never passes: its read invokes carry `nil` and its cas values hold no nested pair.
     Completions then take `[k v]` apart the same way; a completion with another value keeps it
     and takes the key of its invocation.
`read_edn(..., independent=True/False)` overrides the rule.

The writer (`write_edn`, `dumps_edn_op`) emits one map per line with every field, keys as `:key`
entries (or as Jepsen tuples with `tuples=True`), so that `read_edn(write_edn(ops)) == ops`. When a
key-less history would be mistaken for an independent one by rule 2, the writer adds `:key nil` to
its first client op, which switches rule 2 off on reading.
"""

from __future__ import annotations

import datetime
import decimal
import fractions
import json
import math
import re
import uuid
from collections.abc import Mapping
from typing import IO, Any, Iterable, Sequence

import edn_format

from .errors import HistoryError
from .op import INVOKE, NEMESIS, TYPES, Op

__all__ = ["read_edn", "loads_edn", "parse_edn_ops", "write_edn", "dumps_edn",
           "dumps_edn_op", "edn_to_json", "looks_independent"]

# One lexical token of EDN, enough to find form boundaries and line numbers. The order matters:
# strings and comments first (they may contain brackets), then character literals (`\(`).
_TOKEN = re.compile(r'''
    (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<comment>;[^\n]*)
  | (?P<char>\\(?:newline|space|tab|return|backspace|formfeed|u[0-9a-fA-F]{4}|[^\s]))
  | (?P<open>\#\{|[\[{(])
  | (?P<close>[\]})])
  | (?P<discard>\#_)
  | (?P<symbolic>\#\#-?[A-Za-z]+)
  | (?P<tag>\#[A-Za-z:][^\s,\[\]{}()"\\;]*)
  | (?P<atom>[^\s,\[\]{}()"\\;\#][^\s,\[\]{}()"\\;]*)
  | (?P<nl>\n)
  | (?P<ws>[ \t\r\f,]+)
  | (?P<bad>.)
''', re.X | re.S)

_CLOSER = {"[": "]", "(": ")", "{": "}", "#{": "}"}

# Field names of an op map (keyword names).
_FIELDS = ("index", "time", "process", "type", "f", "value", "key", "node", "error")


class _Form:
    __slots__ = ("start", "end", "line")

    def __init__(self, start: int, end: int, line: int):
        self.start, self.end, self.line = start, end, line


def _scan(text: str, path: str | None) -> tuple[list[_Form], str]:
    """Find the op forms of an EDN history and their first lines.

    Returns the forms and the text with tagged-literal tags blanked out (same offsets), so that
    `#jepsen.history.Op{...}` parses as the map it tags.
    """
    def err(msg: str, line: int) -> HistoryError:
        return HistoryError(f"bad EDN: {msg}", path=path, line=line)

    forms: list[_Form] = []
    blanks: list[tuple[int, int]] = []
    stack: list[tuple[str, int]] = []  # open bracket, line
    target: int | None = None          # depth at which op forms sit: 1 in a vector, 0 in a sequence
    outer_closed = False
    start: int | None = None
    start_line = 0
    discard_pending = 0
    line = 1
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        tok = m.group()
        if kind == "nl":
            line += 1
            continue
        if kind in ("ws", "comment"):
            continue
        if kind == "bad":
            if tok == '"':
                raise err("unterminated string", line)
            raise err(f"unexpected character {tok!r}", line)
        tok_line = line
        if kind == "str":
            line += tok.count("\n")
        if target is None:
            if kind == "open" and tok in ("[", "("):
                target = 1
                stack.append((tok, tok_line))
                continue
            target = 0
        if outer_closed:
            raise err(f"unexpected {tok!r} after the end of the history vector", tok_line)
        depth = len(stack)
        if depth == target and start is None:
            if kind == "close":
                if target == 1:
                    opener, oline = stack.pop()
                    if _CLOSER[opener] != tok:
                        raise err(f"{tok!r} does not close {opener!r} opened at line {oline}",
                                  tok_line)
                    outer_closed = True
                    continue
                raise err(f"unmatched {tok!r}", tok_line)
            start, start_line = m.start(), tok_line
        if kind == "tag":
            blanks.append(m.span())
            continue
        if kind == "discard":
            if depth == target:
                discard_pending += 1
                start = None
            continue
        if kind == "open":
            stack.append((tok, tok_line))
        elif kind == "close":
            if len(stack) <= target:
                raise err(f"unmatched {tok!r}", tok_line)
            opener, oline = stack.pop()
            if _CLOSER[opener] != tok:
                raise err(f"{tok!r} does not close {opener!r} opened at line {oline}", tok_line)
        if len(stack) == target and start is not None:
            if discard_pending:
                discard_pending -= 1
            else:
                forms.append(_Form(start, m.end(), start_line))
            start = None
    if stack:
        opener, oline = stack[-1]
        raise err(f"the {opener!r} opened here is never closed (end of file at line {line})",
                  oline)
    if start is not None:
        raise err(f"the op starting here is cut short by the end of file (line {line})",
                  start_line)
    if blanks:
        chars = list(text)
        for a, b in blanks:
            chars[a:b] = " " * (b - a)
        text = "".join(chars)
    return forms, text


def _parse_one(text: str, path: str | None, line: int) -> Any:
    try:
        values = edn_format.loads_all(text)
    except Exception as e:  # noqa: BLE001 - edn_format raises several types; all are bad input
        msg = str(e).splitlines()[0] if str(e).strip() else type(e).__name__
        msg = "".join(c if c.isprintable() else repr(c)[1:-1] for c in msg)
        raise HistoryError(f"bad EDN: {msg}", path=path, line=line) from None
    if len(values) != 1:
        raise HistoryError(f"bad EDN: expected one op map, found {len(values)} values",
                           path=path, line=line)
    return values[0]


def _parse_forms(forms: list[_Form], text: str, path: str | None) -> list[Any]:
    """Parse every form, in batches, because edn_format's per-call setup costs milliseconds.

    A batch that fails is split in halves until the form at fault is found, so a bad op deep in
    a large file costs a few extra batch parses, not one call per op.
    """
    batch_max = 2000  # forms per edn_format call: amortizes the setup, bounds memory per call

    def parse(chunk: list[_Form]) -> list[Any]:
        if len(chunk) == 1:
            f = chunk[0]
            return [_parse_one(text[f.start:f.end], path, f.line)]
        try:
            values = edn_format.loads_all("\n".join(text[f.start:f.end] for f in chunk))
        except Exception:  # noqa: BLE001 - edn_format raises several types; bisect below
            values = None
        if values is not None and len(values) == len(chunk):
            return values
        mid = len(chunk) // 2
        return parse(chunk[:mid]) + parse(chunk[mid:])

    out: list[Any] = []
    for b in range(0, len(forms), batch_max):
        out.extend(parse(forms[b:b + batch_max]))
    return out


def edn_to_json(v: Any) -> Any:
    """Convert a parsed EDN value to the JSON-compatible value an Op holds."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return v
    if isinstance(v, edn_format.Keyword):
        return v.name
    if isinstance(v, edn_format.Symbol):
        return str(v)
    if isinstance(v, (list, tuple, edn_format.ImmutableList)):
        return [edn_to_json(x) for x in v]
    if isinstance(v, (frozenset, set)):
        items = [edn_to_json(x) for x in v]
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=lambda x: json.dumps(x, sort_keys=True))
    if isinstance(v, Mapping):
        out = {}
        for k, x in v.items():
            k = edn_to_json(k)
            out[k if isinstance(k, str) else json.dumps(k, sort_keys=True)] = edn_to_json(x)
        return out
    if isinstance(v, decimal.Decimal):
        return int(v) if v == v.to_integral_value() and "." not in str(v) else float(v)
    if isinstance(v, fractions.Fraction):
        return float(v)
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    if isinstance(v, uuid.UUID):
        return str(v)
    # edn_format.Char is a str subclass; TaggedElement and anything else: its text.
    return str(v)


def _name(v: Any) -> Any:
    if isinstance(v, edn_format.Keyword):
        return v.name
    if isinstance(v, edn_format.Symbol):
        return str(v)
    return v


def _op_fields(m: Any, position: int, path: str | None, line: int,
               default_time: int) -> tuple[dict, bool]:
    """Extract the op fields of one parsed map; returns (fields, whether it had a :key entry).

    `default_time` is the time of an op without `:time`.
    """
    def err(msg: str, field: str | None = None) -> HistoryError:
        return HistoryError(msg, path=path, line=line, field=field)

    if not isinstance(m, Mapping):
        raise err(f"expected an op map, got {type(edn_to_json(m)).__name__} "
                  f"{json.dumps(edn_to_json(m))[:60]}")
    d: dict[str, Any] = {}
    for k, v in m.items():
        name = _name(k)
        if isinstance(name, str) and name in _FIELDS:
            d[name] = v
    if _is_elle_txn(edn_to_json(d.get("value"))):
        # Elle's own test histories write transactions without :f, often without :process
        # (one transaction at a time): they are f "txn", process 0.
        d.setdefault("f", "txn")
        d.setdefault("process", 0)
    for name in ("process", "type", "f"):
        if name not in d:
            raise err("missing required field", name)
    index = d.get("index", position)
    if not isinstance(index, int) or isinstance(index, bool) or index != position:
        raise err(f"must be the op's 0-based position {position}, got {edn_to_json(index)!r}",
                  "index")
    time = d.get("time", default_time)
    if isinstance(time, decimal.Decimal) and time == time.to_integral_value():
        time = int(time)
    if not isinstance(time, int) or isinstance(time, bool) or time < 0:
        raise err(f"must be a non-negative integer (nanoseconds), got {edn_to_json(time)!r}",
                  "time")
    process = _name(d["process"])
    if not ((isinstance(process, int) and not isinstance(process, bool)) or process == NEMESIS):
        raise err(f"must be an integer or :nemesis, got {edn_to_json(d['process'])!r}", "process")
    typ = _name(d["type"])
    if typ not in TYPES:
        raise err(f"unknown type {edn_to_json(d['type'])!r} (expected one of "
                  f"{', '.join(':' + t for t in TYPES)})", "type")
    f = _name(d["f"])
    if not isinstance(f, str) or not f:
        raise err(f"must be a keyword or non-empty string, got {edn_to_json(d['f'])!r}", "f")
    node = d.get("node")
    if node is not None:
        node = edn_to_json(node)
        if not isinstance(node, str):
            node = json.dumps(node)
    error = d.get("error")
    if error is not None:
        error = edn_to_json(error)
        if not isinstance(error, str):
            error = json.dumps(error)
    fields = {"index": index, "time": time, "process": process, "type": typ, "f": f,
              "value": edn_to_json(d.get("value")), "key": edn_to_json(d.get("key")),
              "node": node, "error": error}
    return fields, "key" in d


_MOP_FS = ("append", "r", "w")


def _is_elle_txn(v: Any) -> bool:
    """Whether an op's value is a transaction, a non-empty vector of [f k v] micro-ops with f
    :append, :r or :w."""
    if not isinstance(v, (list, tuple)) or not v:
        return False
    return all(isinstance(m, (list, tuple)) and len(m) == 3 and _name(m[0]) in _MOP_FS
               for m in v)


def _is_key(k: Any) -> bool:
    return (isinstance(k, int) and not isinstance(k, bool)) or isinstance(k, str)


def _is_pair(v: Any) -> bool:
    return isinstance(v, list) and len(v) == 2


def looks_independent(ops: Sequence[Any]) -> bool:
    """Rule 2 of the module docstring, on ops or field dicts whose values are JSON values."""
    def get(o, name):
        return o[name] if isinstance(o, dict) else getattr(o, name)

    invokes = 0
    for o in ops:
        if get(o, "process") == NEMESIS:
            continue
        v = get(o, "value")
        if get(o, "type") == INVOKE:
            invokes += 1
            if not (_is_pair(v) and _is_key(v[0])):
                return False
        if get(o, "f") == "cas" and v is not None and not (_is_pair(v) and _is_pair(v[1])):
            return False
    return invokes > 0


def _unwrap_tuples(rows: list[dict]) -> None:
    """Turn `[k v]` values into key + value, in place (rows are field dicts in history order)."""
    invoke_key: dict[Any, Any] = {}
    for r in rows:
        if r["process"] == NEMESIS:
            continue
        v = r["value"]
        if r["type"] == INVOKE:
            r["key"], r["value"] = v[0], v[1]
            invoke_key[r["process"]] = v[0]
            continue
        k = invoke_key.pop(r["process"], None)
        if _is_pair(v) and _is_key(v[0]) and (k is None or v[0] == k):
            r["key"], r["value"] = v[0], v[1]
        else:
            r["key"] = k


def parse_edn_ops(text: str, *, path: str | None = None,
                  independent: bool | None = None) -> tuple[list[Op], list[int]]:
    """Parse an EDN history; returns the ops and, for each, the line it starts on.

    Raises HistoryError naming the path, the line and the field on bad input. Semantic
    validation (busy processes, stray completions) is `splitbrain.history.validate`'s job.
    """
    forms, text = _scan(text, path)
    values = _parse_forms(forms, text, path)
    rows: list[dict] = []
    any_key_entry = False
    last_time = 0
    for i, (form, value) in enumerate(zip(forms, values)):
        # Without `:time`, the position, but never before the op above: time stays monotonic
        # when only some ops carry a time.
        fields, has_key = _op_fields(value, i, path, form.line, max(i, last_time))
        last_time = fields["time"]
        any_key_entry |= has_key
        rows.append(fields)
    if independent is None:
        independent = not any_key_entry and looks_independent(rows)
    if independent:
        bad = next((i for i, r in enumerate(rows)
                    if r["process"] != NEMESIS and r["type"] == INVOKE
                    and not (_is_pair(r["value"]) and _is_key(r["value"][0]))), None)
        if bad is not None:
            raise HistoryError("an independent history's invoke value must be a [key value] "
                               "tuple", path=path, line=forms[bad].line, field="value")
        _unwrap_tuples(rows)
    return [Op(**r) for r in rows], [f.line for f in forms]


def loads_edn(text: str, *, independent: bool | None = None) -> list[Op]:
    """Parse an EDN history held in a string."""
    return parse_edn_ops(text, independent=independent)[0]


def read_edn(path: str, *, independent: bool | None = None) -> list[Op]:
    """Read an EDN history file (see the module docstring for the mapping)."""
    return read_edn_with_lines(path, independent=independent)[0]


def read_edn_with_lines(path: str, *,
                        independent: bool | None = None) -> tuple[list[Op], list[int]]:
    """Read an EDN history file; also returns each op's first line (for validation messages)."""
    try:
        with open(path, "r", encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError as e:
        raise HistoryError(f"not UTF-8 text: {e.reason} at byte {e.start}", path=path) from None
    except OSError as e:
        raise HistoryError(f"cannot open: {e.strerror}", path=path) from None
    return parse_edn_ops(text, path=path, independent=independent)


# --- writing -------------------------------------------------------------------------------------

# A name that is safe to write as a keyword and reads back as the same string.
_KEYWORD_SAFE = re.compile(r"^[A-Za-z*!_?<>=][A-Za-z0-9*!_?<>=.+-]*$")
_STR_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\t": "\\t", "\r": "\\r"}
_STR_SPECIAL = re.compile(r'["\\\n\t\r\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')


def _dump_str(s: str) -> str:
    return '"' + _STR_SPECIAL.sub(
        lambda m: _STR_ESCAPES.get(m.group(), f"\\u{ord(m.group()):04x}"), s) + '"'


def dumps_edn(v: Any) -> str:
    """EDN text of a JSON-compatible value (strings stay strings, lists become vectors)."""
    if v is None:
        return "nil"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "##NaN"
        if math.isinf(v):
            return "##Inf" if v > 0 else "##-Inf"
        r = repr(v)
        return r if any(c in r for c in ".eE") else r + ".0"
    if isinstance(v, str):
        return _dump_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(dumps_edn(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{dumps_edn(k)} {dumps_edn(x)}" for k, x in v.items()) + "}"
    raise TypeError(f"cannot write {type(v).__name__} as EDN")


def _dump_name(s: str) -> str:
    return ":" + s if _KEYWORD_SAFE.match(s) else _dump_str(s)


def dumps_edn_op(op: Op, *, tuples: bool = False, key_entry: bool = False) -> str:
    """One op as an EDN map on one line.

    `tuples=True` writes a keyed op's value Jepsen-style as `[k v]`; otherwise the key is a `:key`
    entry. `key_entry=True` writes `:key nil` on an op without a key (see the module docstring).
    """
    parts = [f":index {op.index}", f":time {op.time}",
             f":type {_dump_name(op.type)}",
             f":process {':nemesis' if op.process == NEMESIS else dumps_edn(op.process)}",
             f":f {_dump_name(op.f)}"]
    if op.key is not None and tuples:
        parts.append(f":value {dumps_edn([op.key, op.value])}")
    else:
        parts.append(f":value {dumps_edn(op.value)}")
        if op.key is not None or key_entry:
            parts.append(f":key {dumps_edn(op.key)}")
    if op.node is not None:
        parts.append(f":node {_dump_str(op.node)}")
    if op.error is not None:
        parts.append(f":error {_dump_name(op.error)}")
    return "{" + ", ".join(parts) + "}"


def write_edn(dest: str | IO[str], ops: Iterable[Op], *, tuples: bool = False,
              vector: bool = False) -> int:
    """Write ops as an EDN history (one map per line; `vector=True` wraps them in `[...]`).

    Returns the number of ops written. With `tuples=True` keyed ops are written as Jepsen's
    `[k v]` tuples; that reads back exactly only for histories that rule 2 recognizes (every
    client invoke keyed, cas values pairs), so the default writes `:key` entries instead.
    """
    ops = list(ops)
    keyed = any(op.key is not None for op in ops)
    mark = not keyed and looks_independent(ops)
    first_client = next((i for i, op in enumerate(ops) if op.process != NEMESIS), None)
    fh = open(dest, "w", encoding="utf-8") if isinstance(dest, str) else dest
    try:
        if vector:
            fh.write("[\n")
        for i, op in enumerate(ops):
            fh.write(dumps_edn_op(op, tuples=tuples, key_entry=mark and i == first_client))
            fh.write("\n")
        if vector:
            fh.write("]\n")
    finally:
        if isinstance(dest, str):
            fh.close()
    return len(ops)
