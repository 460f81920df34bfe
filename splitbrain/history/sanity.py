"""Bounds on the values a history may hold, checked while it is read (bad input, not a crash).

A history is input: a value nested a thousand deep, a lone UTF-16 surrogate or an integer of
more digits than Python converts would otherwise crash a checker, the terminal output or a
report long after loading. Every reader (JSONL, EDN, Porcupine) checks each op's value and key
here and raises a HistoryError naming the file and line:

- nesting deeper than VALUE_DEPTH_MAX lists/objects (Jepsen's deepest values, transactions, are
  4 deep; the bound keeps every recursive walk of a value far from Python's recursion limit);
- a string holding a lone surrogate (`"\\ud800"` in JSON): not Unicode text, it cannot be
  printed or written as UTF-8;
- integers of more than INT_DIGITS_MAX digits are refused by the parsers themselves (Python's
  own limit on int/str conversion), and reported as bad input.
"""

from __future__ import annotations

import re
import sys
from typing import Any

VALUE_DEPTH_MAX = 100
INT_DIGITS_MAX = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 4300
# A raw JSON line that may hold a surrogate escape (\uD800-\uDFFF): only those are walked.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def value_problem(v: Any) -> str | None:
    """Why the JSON value `v` is refused (see the module docstring), or None. Iterative."""
    t = type(v)
    if t is int or t is float or t is bool or v is None:
        return None
    if t is str:
        return _str_problem(v)
    stack = [(v, 1)]
    while stack:
        x, depth = stack.pop()
        t = type(x)
        if t is str:
            p = _str_problem(x)
            if p:
                return p
            continue
        if t is list or t is tuple:
            items = x
        elif t is dict:
            items = list(x.keys()) + list(x.values())
        else:
            continue
        if depth > VALUE_DEPTH_MAX:
            return f"value nested deeper than {VALUE_DEPTH_MAX} lists/objects"
        for y in items:
            ty = type(y)
            if ty is list or ty is dict or ty is tuple or ty is str:
                stack.append((y, depth + 1))
    return None


def _str_problem(s: str) -> str | None:
    if s.isascii():
        return None
    m = _SURROGATE.search(s)
    if m:
        return (f"string with a lone UTF-16 surrogate \\u{ord(m.group()):04x} "
                "(not Unicode text)")
    return None


def raw_json_needs_walk(raw: bytes) -> bool:
    """Whether a raw JSON line could break a bound: more openers than the depth bound, or a
    surrogate escape. False for almost every line (two C-speed scans), so most ops are never
    walked."""
    return ((len(raw) > VALUE_DEPTH_MAX and raw.count(b"[") + raw.count(b"{") > VALUE_DEPTH_MAX)
            or (b"\\u" in raw and _SURROGATE_ESCAPE.search(raw) is not None))
