"""Import and export of Jepsen EDN histories (history.edn, Knossos data files).

Accepted layouts: a single vector (or list) of op maps, `[{...} {...} ...]`, or a sequence of op
maps one after another (Jepsen's `history.edn` is one map per line). The reader is our own
(`_read_forms`): one regex pass over the text with an explicit stack, no recursion, values built
directly as JSON values, so memory stays a small multiple of the input (a 100 MB string, an 8 MB
file) and nesting deeper than sanity.VALUE_DEPTH_MAX is a one-line error. Every error names the
file and line.

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

import dataclasses
import datetime
import decimal
import fractions
import json
import math
import re
import uuid
from collections.abc import Mapping
from typing import IO, Any, Iterable, Iterator, Sequence

from .errors import HistoryError
from .op import INVOKE, NEMESIS, TYPES, Op, make_op
from .sanity import VALUE_DEPTH_MAX

__all__ = ["read_edn", "loads_edn", "parse_edn_ops", "write_edn", "dumps_edn",
           "dumps_edn_op", "edn_to_json", "looks_independent"]

# The reader: one regex pass over the text and an explicit stack (no recursion, no per-character
# objects), building JSON values directly. Memory is the text, the values and one substring per
# token; a 100 MB string costs a few copies of itself, not a parse tree of characters.
_TOKEN = re.compile(r"""
    (?P<ws>[\s,]+)
  | (?P<comment>;[^\n]*)
  | (?P<str>"[^"\\]*(?:\\.[^"\\]*)*")
  | (?P<open>\#\{|[\[{(])
  | (?P<close>[\]})])
  | (?P<discard>\#_)
  | (?P<symbolic>\#\#-?[A-Za-z]+)
  | (?P<tag>\#[A-Za-z:][^\s,\[\]{}()"\\;]*)
  | (?P<char>\\(?:newline|space|tab|return|backspace|formfeed|u[0-9a-fA-F]{4}|[^\s]))
  | (?P<atom>[^\s,\[\]{}()"\\;\#][^\s,\[\]{}()"\\;]*)
  | (?P<bad>.)
""", re.X | re.S)

_CLOSER = {"[": "]", "(": ")", "{": "}", "#{": "}"}
_STR_ESCAPE = re.compile(r'\\(u[0-9a-fA-F]{4}|.)', re.S)
_STR_UNESCAPE = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f",
                 "/": "/"}
_CHARS = {"newline": "\n", "space": " ", "tab": "\t", "return": "\r", "backspace": "\b",
          "formfeed": "\f"}
_SYMBOLIC = {"##NaN": math.nan, "##Inf": math.inf, "##-Inf": -math.inf}
_INT = re.compile(r"[+-]?\d+N?")
_FLOAT = re.compile(r"[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?M?")
_RATIO = re.compile(r"([+-]?\d+)/(\d+)")

# Field names of an op map (keyword names).
_FIELDS = ("index", "time", "process", "type", "f", "value", "key", "node", "error")
_FIELD_SET = frozenset(_FIELDS)
_TYPE_SET = frozenset(TYPES)


class _Frame:
    """An open collection: its opener, where it started, its items so far, pending discards."""

    __slots__ = ("opener", "start", "items", "discard")

    def __init__(self, opener: str, start: int):
        self.opener, self.start, self.items, self.discard = opener, start, [], 0


def _line_at(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _unescape(body: str) -> str:
    def one(m: "re.Match[str]") -> str:
        e = m.group(1)
        if len(e) == 5:
            return chr(int(e[1:], 16))
        c = _STR_UNESCAPE.get(e)
        if c is None:
            raise ValueError(f"unsupported escape character \\{e}")
        return c

    out = _STR_ESCAPE.sub(one, body)
    if any("\ud800" <= c <= "\udfff" for c in out if ord(c) >= 0xD800):
        # \uD83D\uDE00 is one character (Clojure strings are UTF-16): join the pairs; a lone
        # surrogate stays, and the history's value check refuses it.
        out = out.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return out


def _atom(tok: str) -> Any:
    """The value of an atom token: nil, true, false, a number, a keyword or a symbol."""
    if tok == "nil":
        return None
    if tok == "true":
        return True
    if tok == "false":
        return False
    c = tok[0]
    if c.isdigit() or (c in "+-" and len(tok) > 1 and tok[1].isdigit()):
        if _INT.fullmatch(tok):
            return int(tok.rstrip("N"))  # ValueError past Python's digit limit: bad input
        if _FLOAT.fullmatch(tok):
            if tok.endswith("M"):  # a BigDecimal: an integer when written as one
                body = tok[:-1]
                return float(body) if any(x in body for x in ".eE") else int(body)
            return float(tok)
        m = _RATIO.fullmatch(tok)
        if m:
            den = int(m.group(2))
            if den == 0:
                raise ValueError(f"division by zero in {tok}")
            return int(m.group(1)) / den
        raise ValueError(f"invalid number {tok}")
    if not tok.isprintable():
        bad = next(x for x in tok if not x.isprintable())
        raise ValueError(f"Illegal character {bad!r}")
    if c == ":":
        if len(tok) == 1:
            raise ValueError("a keyword needs a name")
        return tok[1:]  # keywords become their names (:read -> "read")
    return tok  # a symbol: its text


def _close(frame: _Frame) -> Any:
    """The JSON value of a completed collection."""
    items = frame.items
    if frame.opener == "{":
        if len(items) % 2:
            raise ValueError("a map needs an even number of forms (key value pairs)")
        out = {}
        for i in range(0, len(items), 2):
            k = items[i]
            out[k if isinstance(k, str) else json.dumps(k, sort_keys=True)] = items[i + 1]
        return out
    if frame.opener == "#{":
        try:
            return sorted(items)
        except TypeError:
            return sorted(items, key=lambda x: json.dumps(x, sort_keys=True))
    return items


# The fast path (`_read_simple_lines`): Jepsen's history.edn is one flat op map per line, and a
# Knossos file the same inside one vector. A line that is exactly such a map -- keyword keys;
# values nil, true, false, a keyword, an integer of at most 18 digits, a string without escapes,
# or a vector of those (nested once: an independent cas `[k [from to]]`) -- is read by three
# regexes instead of the token loop (3-4x faster). Whatever else a file holds (a comment, a
# float, a tag, an escape, two maps on a line, a map over several lines) sends the WHOLE file to
# the general reader below, so both give the same values (tests/test_edn.py compares them).
# Separators are possessive (`*+`, `++`): a run of commas and spaces is never split two ways, so
# a hostile line cannot make the regexes backtrack quadratically.
_S_SCALAR = (r'(?:-?\d{1,18}|nil|true|false|:[A-Za-z*!_?<>=][A-Za-z0-9*!_?<>=.+\-/]*'
             r'|"[^"\\\n]*")')
_S_VEC1 = rf'\[[\s,]*+(?:{_S_SCALAR}(?:[\s,]++{_S_SCALAR})*)?[\s,]*+\]'
_S_VALUE = rf'(?:{_S_SCALAR}|\[[\s,]*+(?:(?:{_S_SCALAR}|{_S_VEC1})(?:[\s,]++(?:{_S_SCALAR}|{_S_VEC1}))*)?[\s,]*+\])'
_S_PAIR = rf':[A-Za-z*!_?<>=][A-Za-z0-9*!_?<>=.+\-/]*[\s,]++{_S_VALUE}'
_S_LINE = re.compile(rf'[\s,]*+\{{[\s,]*+(?:{_S_PAIR}(?:[\s,]++{_S_PAIR})*)?[\s,]*+\}}[\s,]*+')
_S_PAIRS = re.compile(rf':([A-Za-z*!_?<>=][A-Za-z0-9*!_?<>=.+\-/]*)[\s,]++({_S_VALUE})')
_S_ITEMS = re.compile(rf'{_S_SCALAR}|{_S_VEC1}')
_S_WORDS = {"nil": None, "true": True, "false": False}


def _simple_value(tok: str) -> Any:
    """The value of one token matched by _S_VALUE (as `_atom` / `_close` would build it)."""
    c = tok[0]
    if c == ":":
        return tok[1:]
    if c == '"':
        return tok[1:-1]
    if c == "[":
        return [_simple_value(t) for t in _S_ITEMS.findall(tok, 1, len(tok) - 1)]
    if tok in _S_WORDS:
        return _S_WORDS[tok]
    return int(tok)


# Lines longer than this go to the general reader (the fast path holds a few copies of a line).
_S_LINE_MAX = 1 << 16


def _text_lines(text: str) -> Iterator[str]:
    """The lines of `text`, one at a time (io.StringIO would copy the whole text, 4 bytes a
    character)."""
    start, find = 0, text.find
    while start < len(text):
        end = find("\n", start)
        if end < 0:
            yield text[start:]
            return
        yield text[start:end]
        start = end + 1


def _simple_layout(text: str) -> str | None:
    """The text with the brackets of an outer history vector blanked (lines kept), when it may
    be one simple op map per line; None when it cannot be (see _S_LINE)."""
    body = text.strip()
    if not body:
        return None
    if body[0] == "[":
        if body[-1] != "]":
            return None
        first, last = text.index("["), text.rindex("]")
        return text[:first] + " " + text[first + 1:last] + " " + text[last + 1:]
    return text if body[0] == "{" else None


def _simple_lines(text: str) -> list[int] | None:
    """The fast path's first pass over `_simple_layout`'s text: the line of every op map, or
    None when a non-blank line is not exactly one simple op map (the general reader then)."""
    lines: list[int] = []
    match = _S_LINE.fullmatch
    for n, line in enumerate(_text_lines(text), start=1):
        if len(line) > _S_LINE_MAX:
            return None  # a huge value: the general reader copies it fewer times
        if match(line) is None:
            if line.strip(" \t\r\n,"):
                return None
            continue  # blank
        lines.append(n)
    return lines or None


def _simple_maps(text: str) -> Iterator[dict]:
    """The fast path's second pass: the op maps of the lines `_simple_lines` accepted, one at a
    time (nothing else is held: a million maps would be half a gigabyte)."""
    pairs = _S_PAIRS.findall
    for line in _text_lines(text):
        if line.strip(" \t\r\n,"):  # (every non-blank line matched _S_LINE in the first pass)
            yield {k: _simple_value(v) for k, v in pairs(line)}


def _read_forms(text: str, path: str | None) -> tuple[list[Any], list[int]]:
    """The op forms of an EDN history (a vector or list of them, or a sequence) as JSON values,
    and the line each starts on. HistoryError naming the line on bad EDN."""
    def err(msg: str, pos: int) -> HistoryError:
        return HistoryError(f"bad EDN: {msg}", path=path, line=_line_at(text, pos))

    stack: list[_Frame] = []
    op_discard = 0               # pending #_ at the level of the op forms
    forms: list[Any] = []
    lines: list[int] = []
    target: int | None = None    # depth at which op forms sit: 1 in a vector, 0 in a sequence
    outer_closed = False
    op_start: int | None = None  # where the op form being read began
    line, line_pos = 1, 0        # the line at line_pos (op starts only move forward)
    depth_max = VALUE_DEPTH_MAX + 2  # the op map and the history vector around its value

    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "ws" or kind == "comment":
            continue
        pos = m.start()
        tok = m.group()
        if kind == "bad":
            if tok == '"':
                raise err("unterminated string", pos)
            raise err(f"Illegal character {tok!r}", pos)
        if target is None:
            if kind == "open" and tok in ("[", "("):
                target = 1
                stack.append(_Frame(tok, pos))
                continue
            target = 0
        if outer_closed:
            raise err(f"unexpected {tok!r} after the end of the history vector", pos)
        depth = len(stack)
        if depth == target and op_start is None and kind != "close":
            op_start = pos
        value: Any
        try:
            if kind == "open":
                if depth >= depth_max:
                    raise err(f"nested deeper than {VALUE_DEPTH_MAX} collections", pos)
                stack.append(_Frame(tok, pos))
                continue
            if kind == "close":
                if depth <= target:
                    if target == 1 and depth == 1:
                        frame = stack.pop()
                        if _CLOSER[frame.opener] != tok:
                            raise err(f"{tok!r} does not close {frame.opener!r} opened at line "
                                      f"{_line_at(text, frame.start)}", pos)
                        if op_start is not None:
                            raise err("the op starting here is cut short", op_start)
                        outer_closed = True
                        continue
                    raise err(f"unmatched {tok!r}", pos)
                frame = stack.pop()
                if _CLOSER[frame.opener] != tok:
                    raise err(f"{tok!r} does not close {frame.opener!r} opened at line "
                              f"{_line_at(text, frame.start)}", pos)
                if frame.discard:
                    raise err("#_ with nothing to discard before the closing bracket", pos)
                # A form about to be discarded is not converted (a map of odd length there is
                # tolerated, as the old reader did).
                dropping = op_discard if len(stack) == target else stack[-1].discard
                value = None if dropping else _close(frame)
            elif kind == "str":
                body = tok[1:-1]
                value = _unescape(body) if "\\" in body else body
            elif kind == "atom":
                value = _atom(tok)
            elif kind == "tag":
                continue  # #inst, #uuid, #jepsen.history.Op{...}: the value it tags
            elif kind == "discard":
                if depth > target:
                    stack[-1].discard += 1
                else:
                    op_discard += 1
                    op_start = None
                continue
            elif kind == "symbolic":
                if tok not in _SYMBOLIC:
                    raise err(f"unknown symbolic value {tok}", pos)
                value = _SYMBOLIC[tok]
            else:  # char
                name = tok[1:]
                value = _CHARS.get(name) or (chr(int(name[1:], 16)) if len(name) == 5
                                             and name[0] == "u" else name)
        except ValueError as e:
            raise err(str(e).split(";")[0], pos) from None
        # A complete form: into the collection it belongs to, or an op form.
        if len(stack) == target:
            if op_discard:
                op_discard -= 1
                op_start = None
                continue
            assert op_start is not None
            line += text.count("\n", line_pos, op_start)
            line_pos = op_start
            forms.append(value)
            lines.append(line)
            op_start = None
            continue
        holder = stack[-1]
        if holder.discard:
            holder.discard -= 1
            continue
        holder.items.append(value)
    if stack:
        frame = stack[-1]
        raise HistoryError(f"bad EDN: the {frame.opener!r} opened here is never closed (end of "
                           f"file at line {_line_at(text, len(text))})", path=path,
                           line=_line_at(text, frame.start))
    if op_start is not None or op_discard:
        if op_start is None:
            raise HistoryError("bad EDN: #_ with nothing to discard before the end of file",
                               path=path, line=_line_at(text, len(text)))
        raise HistoryError(f"bad EDN: the op starting here is cut short by the end of file "
                           f"(line {_line_at(text, len(text))})", path=path,
                           line=_line_at(text, op_start))
    return forms, lines


def edn_to_json(v: Any) -> Any:
    """A JSON-compatible value from what an EDN library may hand over (sets, tuples, decimals,
    fractions, dates, uuids, keywords as objects with a `name`). The reader of this module
    already builds JSON values; this is for callers that parsed EDN some other way."""
    if v is None or isinstance(v, (bool, int, str, float)):
        return v
    if isinstance(v, (list, tuple)):
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
    name = getattr(v, "name", None)  # a keyword object
    if isinstance(name, str):
        return name
    return str(v)


def _name(v: Any) -> Any:
    return v  # keywords and symbols are already their names


def _op_fields(m: Any, position: int, path: str | None, line: int,
               default_time: int) -> tuple[dict, bool]:
    """Extract the op fields of one parsed map; returns (fields, whether it had a :key entry).

    `default_time` is the time of an op without `:time`.
    """
    # The usual op map (plain fields, no :node or :error) without the general checks below:
    # the same fields, the same outcome. With :f and :process present the Elle rule is moot.
    if type(m) is dict and "node" not in m and "error" not in m:
        index, time = m.get("index", position), m.get("time", default_time)
        process, typ, f = m.get("process"), m.get("type"), m.get("f")
        if (type(index) is int and index == position and type(time) is int and time >= 0
                and (type(process) is int or process == NEMESIS)
                and type(typ) is str and typ in _TYPE_SET and type(f) is str and f):
            return {"index": index, "time": time, "process": process, "type": typ, "f": f,
                    "value": m.get("value"), "key": m.get("key"), "node": None,
                    "error": None}, "key" in m

    def err(msg: str, field: str | None = None) -> HistoryError:
        return HistoryError(msg, path=path, line=line, field=field)

    if not isinstance(m, Mapping):
        raise err(f"expected an op map, got {type(m).__name__} {json.dumps(m)[:60]}")
    # (the reader's map keys are strings: keyword names, other keys as their JSON text)
    d: dict[str, Any] = {k: v for k, v in m.items() if k in _FIELD_SET}
    v = d.get("value")
    if isinstance(v, (list, tuple)) and v and _is_elle_txn(edn_to_json(v)):
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
              "value": d.get("value"), "key": d.get("key"),
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


def _unwrap_tuples(ops: list[Op]) -> None:
    """Turn `[k v]` values into key + value, in place (ops in history order)."""
    invoke_key: dict[Any, Any] = {}
    for i, o in enumerate(ops):
        if o.process == NEMESIS:
            continue
        v = o.value
        if o.type == INVOKE:
            ops[i] = dataclasses.replace(o, key=v[0], value=v[1])
            invoke_key[o.process] = v[0]
            continue
        k = invoke_key.pop(o.process, None)
        if _is_pair(v) and _is_key(v[0]) and (k is None or v[0] == k):
            ops[i] = dataclasses.replace(o, key=v[0], value=v[1])
        else:
            ops[i] = dataclasses.replace(o, key=k)


def parse_edn_ops(text: str, *, path: str | None = None,
                  independent: bool | None = None) -> tuple[list[Op], list[int]]:
    """Parse an EDN history; returns the ops and, for each, the line it starts on.

    Raises HistoryError naming the path, the line and the field on bad input. Semantic
    validation (busy processes, stray completions) is `splitbrain.history.validate`'s job.
    """
    simple = _simple_layout(text)
    lines = None if simple is None else _simple_lines(simple)
    values: Iterable[Any]
    if lines is not None:
        values = _simple_maps(simple)  # the fast path: one map at a time
    else:
        values, lines = _read_forms(text, path)
    ops: list[Op] = []
    any_key_entry = False
    last_time = 0
    for i, (line, value) in enumerate(zip(lines, values)):
        # Without `:time`, the position, but never before the op above: time stays monotonic
        # when only some ops carry a time.
        fields, has_key = _op_fields(value, i, path, line, max(i, last_time))
        last_time = fields["time"]
        any_key_entry |= has_key
        ops.append(make_op(**fields))
    assert len(ops) == len(lines), "one op per map"
    if independent is None:
        independent = not any_key_entry and looks_independent(ops)
    if independent:
        bad = next((i for i, o in enumerate(ops)
                    if o.process != NEMESIS and o.type == INVOKE
                    and not (_is_pair(o.value) and _is_key(o.value[0]))), None)
        if bad is not None:
            raise HistoryError("an independent history's invoke value must be a [key value] "
                               "tuple", path=path, line=lines[bad], field="value")
        _unwrap_tuples(ops)
    return ops, lines


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
