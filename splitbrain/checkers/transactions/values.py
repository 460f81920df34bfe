"""Fast hashable forms of keys and values, with JSON identity (splitbrain/history/values.py).

`fast_key(x)` is `x` itself for a plain `int` or `str` (the usual case, no allocation) and
`json_key(x)` otherwise, folded back to the plain int or str when JSON says it is one (`1.0` is
the key `1`). Two values get equal fast keys exactly when `json_equal` says they are equal: an
int and a str never compare equal in Python, and every other type goes through `json_key`,
whose tuples never equal an int or a str.
"""

from __future__ import annotations

from typing import Any

from ...history.values import json_key

_PLAIN = (int, str)


def slow_key(x: Any) -> Any:
    k = json_key(x)
    if (k[0] == "#" or k[0] == "s") and len(k) == 2 and type(k[1]) in _PLAIN:
        return k[1]
    return k


def fast_key(x: Any) -> Any:
    t = type(x)
    if t is int or t is str:
        return x
    return slow_key(x)
