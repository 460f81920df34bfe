"""Readers and writers for Porcupine's test logs (anishathalye/porcupine, `test_data/`).

Two formats, read the way Porcupine's own tests read them (tests/data/porcupine/README.md):

porcupine-etcd (`jepsen/etcd_NNN.log`): one compare-and-set register, lines like
    INFO  jepsen.util - 3	:invoke	:cas	[1 4]
(tabs or spaces). Columns: process, type, f (`:read` `:write` `:cas`), value (`nil`, an integer,
`[from to]` or a keyword such as `:timed-out`). Mapping onto splitbrain ops (model cas-register):
- `:invoke`/`:ok` map one to one; `nil` is None, `[a b]` is the list [a, b];
- `:fail :cas [a b]` is a cas whose compare was evaluated and failed: `fail` with error
  "precondition-failed" (an observation that the register did not hold `a`);
- a keyword value on `:fail`/`:info` is the error (`:fail :read :timed-out` -> `fail` read with
  error "timed-out", which constrains nothing; `:info :cas :timed-out` -> `info` with error
  "timed-out"); the op's value is then the invoke's value (Jepsen's convention);
- an invoke without a completion stays open (the checker treats it as crashed).

porcupine-kv (`kv/cNN-{ok,bad}.txt`): EDN maps like
    {:process 0, :type :invoke, :f :append, :key "3", :value "x 0 1 y"}
`get` becomes `read`, `put` becomes `write`, `append` stays `append`; `key` is kept (a string),
values are strings (`nil` is None). Check them with model "kv" (a read of "" matches an absent
key, as Porcupine's kv model starts every key at "").

Both formats carry no time: `time` is synthetic, SYNTHETIC_STEP_NS per line, increasing. Ops get
dense indices in file order. A line that does not parse, a completion with no invocation, or an
invocation by a busy process is a HistoryError naming the file and line.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from .errors import HistoryError
from .op import FAIL, INFO, INVOKE, Op

__all__ = ["read_etcd_log", "write_etcd_log", "read_kv_log", "write_kv_log", "sniff",
           "SYNTHETIC_STEP_NS"]

SYNTHETIC_STEP_NS = 1_000_000  # one line = 1 ms of synthetic time
SNIFF_LINES_MAX = 5            # how many non-blank lines sniff() looks at

# (The value is everything after the f, right-stripped by the caller: a lazy `(.*?)\s*\Z` took
# seconds on a line with a long run of spaces inside, as did `\s*,?\s+` in _PAIR.)
_ETCD_LINE = re.compile(
    r"INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:([\w-]+)\s+(.*)\Z")
_ETCD_F = ("read", "write", "cas")
_INT = re.compile(r"-?\d+\Z")
_PAIR = re.compile(r"\[\s*+(-?\d+|nil)(?:\s*+,\s++|\s++)(-?\d+|nil)\s*+\]\Z")
_KEYWORD = re.compile(r":([\w-]+)\Z")

_KV_STR = r'"((?:[^"\\]|\\.)*)"'
_KV_LINE = re.compile(
    r"\{\s*:process\s+(\d+),?\s+:type\s+:(invoke|ok|fail|info),?\s+:f\s+:([\w-]+),?\s+"
    r":key\s+" + _KV_STR + r",?\s+:value\s+(nil|" + _KV_STR + r")\s*\}\s*\Z")
_KV_F_IN = {"get": "read", "put": "write", "append": "append"}
_KV_F_OUT = {v: k for k, v in _KV_F_IN.items()}
_EDN_ESCAPES = {'"': '"', "\\": "\\", "n": "\n", "t": "\t", "r": "\r"}


def _open_lines(path: str):
    try:
        fh = open(path, "r", encoding="utf-8")
    except OSError as e:
        raise HistoryError(f"cannot open: {e.strerror}", path=path) from None
    return fh


class _Pairing:
    """Tracks each process's outstanding invoke: fills in completion values, rejects nonsense."""

    def __init__(self, path: str):
        self.path = path
        self.pending: dict[int, Op] = {}

    def invoke(self, op: Op, line: int) -> None:
        if op.process in self.pending:
            raise HistoryError(f"process {op.process} invokes while its invoke on line "
                               f"{self._line(self.pending[op.process])} is outstanding",
                               path=self.path, line=line, field="process")
        self.pending[op.process] = op

    def complete(self, process: int, typ: str, line: int) -> Op:
        inv = self.pending.pop(process, None)
        if inv is None:
            raise HistoryError(f"a :{typ} of process {process} with no :invoke before it",
                               path=self.path, line=line, field="type")
        return inv

    @staticmethod
    def _line(op: Op) -> int:
        return op.time // SYNTHETIC_STEP_NS  # the reader sets time = line * step


def _etcd_value(text: str, path: str, line: int) -> tuple[Any, str | None]:
    """(value, keyword) of an etcd log's value column; exactly one is meaningful."""
    if text == "nil":
        return None, None
    if _INT.match(text):
        return int(text), None
    m = _PAIR.match(text)
    if m:
        return [None if g == "nil" else int(g) for g in m.groups()], None
    m = _KEYWORD.match(text)
    if m:
        return None, m.group(1)
    raise HistoryError(f"cannot read value {text!r} (expected nil, an integer, [a b] or a "
                       "keyword)", path=path, line=line, field="value")


def read_etcd_log(path: str) -> list[Op]:
    """Read a Porcupine/Jepsen etcd log (see the module docstring for the mapping)."""
    ops: list[Op] = []
    pairing = _Pairing(path)
    fh = _open_lines(path)
    with fh:
        lineno = 0
        try:
            for lineno, raw in enumerate(fh, start=1):
                text = raw.strip()
                if not text:
                    continue
                m = _ETCD_LINE.match(text)
                if m is None:
                    raise HistoryError("not an etcd log line (expected `INFO  jepsen.util - "
                                       "<process> :<type> :<f> <value>`)", path=path, line=lineno)
                proc_s, typ, f, value_s = m.groups()
                value_s = value_s.rstrip()
                if f not in _ETCD_F:
                    raise HistoryError(f"unknown operation :{f} (expected :read, :write or :cas)",
                                       path=path, line=lineno, field="f")
                try:
                    process = int(proc_s)
                except ValueError:  # over Python's 4,300-digit limit for int()
                    raise HistoryError(f"process number of {len(proc_s)} digits is too long",
                                       path=path, line=lineno, field="process") from None
                value, keyword = _etcd_value(value_s, path, lineno)
                t = lineno * SYNTHETIC_STEP_NS
                if typ == "invoke":
                    if keyword is not None:
                        raise HistoryError(f"an :invoke cannot carry :{keyword}", path=path,
                                           line=lineno, field="value")
                    op = Op(index=len(ops), time=t, process=process, type=INVOKE, f=f,
                            value=value)
                    pairing.invoke(op, lineno)
                    ops.append(op)
                    continue
                inv = pairing.complete(process, typ, lineno)
                if inv.f != f:
                    raise HistoryError(f"a :{typ} :{f} completes an :invoke :{inv.f}",
                                       path=path, line=lineno, field="f")
                error = None
                if keyword is not None:
                    if typ == "ok":
                        raise HistoryError(f"an :ok cannot carry :{keyword}", path=path,
                                           line=lineno, field="value")
                    error, value = keyword, inv.value
                elif typ == "fail" and f == "cas":
                    error = "precondition-failed"
                ops.append(Op(index=len(ops), time=t, process=process, type=typ, f=f,
                              value=value, error=error))
        except UnicodeDecodeError as e:
            raise HistoryError(f"not UTF-8 text: {e.reason}", path=path,
                               line=lineno + 1) from None
    return ops


def _etcd_show(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool) or not isinstance(value, (int, list, tuple)):
        raise ValueError(f"cannot write {value!r} in an etcd log (integers, nil, [a b] only)")
    if isinstance(value, int):
        return str(value)
    if len(value) != 2:
        raise ValueError(f"cannot write {value!r} in an etcd log ([from to] pairs only)")
    return f"[{_etcd_show(value[0])} {_etcd_show(value[1])}]"


def write_etcd_log(ops: Iterable[Op], path: str) -> int:
    """Write ops as a Porcupine/Jepsen etcd log; returns the number of lines.

    Nemesis ops are skipped (the format has none). The inverse of read_etcd_log for histories it
    can express: f in read/write/cas, integer values, fail/info errors written as keywords
    (a failed cas with error "precondition-failed" is written with its value).
    """
    lines = []
    for op in ops:
        if not isinstance(op.process, int):
            continue
        if op.f not in _ETCD_F:
            raise ValueError(f"op {op.index}: f {op.f!r} cannot be written in an etcd log")
        if op.type in (FAIL, INFO) and op.error is not None and not (
                op.type == FAIL and op.f == "cas" and op.error == "precondition-failed"):
            shown = ":" + op.error
        else:
            shown = _etcd_show(op.value)
        lines.append(f"INFO  jepsen.util - {op.process}\t:{op.type}\t:{op.f}\t{shown}\n")
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(lines)
    return len(lines)


def _unescape(s: str) -> str:
    if "\\" not in s:
        return s
    return re.sub(r"\\(.)", lambda m: _EDN_ESCAPES.get(m.group(1), m.group(1)), s)


def _escape(s: str) -> str:
    return (s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            .replace("\t", "\\t").replace("\r", "\\r"))


def read_kv_log(path: str) -> list[Op]:
    """Read a Porcupine kv log (see the module docstring for the mapping)."""
    ops: list[Op] = []
    pairing = _Pairing(path)
    fh = _open_lines(path)
    with fh:
        lineno = 0
        try:
            for lineno, raw in enumerate(fh, start=1):
                text = raw.strip()
                if not text:
                    continue
                m = _KV_LINE.match(text)
                if m is None:
                    raise HistoryError("not a kv log line (expected `{:process N, :type :T, "
                                       ":f :F, :key \"K\", :value V}`)", path=path, line=lineno)
                proc_s, typ, f_in, key, value_raw, value_s = m.groups()
                f = _KV_F_IN.get(f_in)
                if f is None:
                    raise HistoryError(f"unknown operation :{f_in} (expected :get, :put or "
                                       ":append)", path=path, line=lineno, field="f")
                process = int(proc_s)
                value = None if value_raw == "nil" else _unescape(value_s)
                op = Op(index=len(ops), time=lineno * SYNTHETIC_STEP_NS, process=process,
                        type=typ, f=f, value=value, key=_unescape(key))
                if typ == "invoke":
                    pairing.invoke(op, lineno)
                else:
                    inv = pairing.complete(process, typ, lineno)
                    if inv.f != f or inv.key != op.key:
                        raise HistoryError(f"a :{typ} of :{f_in} on key {op.key!r} completes a "
                                           f"different invoke", path=path, line=lineno, field="f")
                ops.append(op)
        except UnicodeDecodeError as e:
            raise HistoryError(f"not UTF-8 text: {e.reason}", path=path,
                               line=lineno + 1) from None
    return ops


def write_kv_log(ops: Iterable[Op], path: str) -> int:
    """Write ops as a Porcupine kv log; returns the number of lines (nemesis ops skipped).

    Keys are written as strings; values must be strings or None.
    """
    lines = []
    for op in ops:
        if not isinstance(op.process, int):
            continue
        f = _KV_F_OUT.get(op.f)
        if f is None:
            raise ValueError(f"op {op.index}: f {op.f!r} cannot be written in a kv log")
        if op.value is not None and not isinstance(op.value, str):
            raise ValueError(f"op {op.index}: kv log values are strings, got {op.value!r}")
        value = "nil" if op.value is None else f'"{_escape(op.value)}"'
        key = _escape(str(op.key))
        lines.append(f'{{:process {op.process}, :type :{op.type}, :f :{f}, :key "{key}", '
                     f':value {value}}}\n')
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(lines)
    return len(lines)


def sniff(head: str) -> str | None:
    """"porcupine-etcd", "porcupine-kv" or None, from the first few KB of a file."""
    seen = 0
    for raw in head.splitlines():
        text = raw.strip()
        if not text:
            continue
        seen += 1
        if _ETCD_LINE.match(text):
            return "porcupine-etcd"
        if _KV_LINE.match(text):
            return "porcupine-kv"
        if seen >= SNIFF_LINES_MAX:
            break
    return None
