"""JSON value identity: compare and hash values as JSON values, not as Python objects.

Python says `True == 1`, `False == 0`, `hash(True) == hash(1)` and `nan != nan`; JSON (and every
client that wrote the history) says `true` is not `1` and a `NaN` written is the `NaN` read.
Every checker and model that compares or hashes values taken from a history goes through here.

Decisions (the contract):
- booleans are never numbers: `true` != `1`, `false` != `0`, also inside lists and objects;
- numbers compare by numeric value: `1` == `1.0` (JSON has one number type);
- NaN equals NaN, and each infinity equals itself (a value read back is the value written);
- strings, null, lists (element-wise, in order) and objects (same keys, equal values) as in JSON;
- anything else (a tuple from an importer, a frozenset, an EDN keyword) is compared by its own
  `==` after the same treatment of its elements where it is a sequence.

`json_key(v)` returns a hashable canonical form such that `json_key(a) == json_key(b)` exactly
when `json_equal(a, b)`; use it for dict keys and set members.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["json_key", "json_equal"]

_NAN = ("#", "nan")


def json_key(v: Any) -> Any:
    """A hashable canonical form of the JSON value `v` (see the module's contract)."""
    t = type(v)
    if t is str:
        return ("s", v)
    if t is bool:
        return ("b", v)
    if t is int:
        return ("#", v)
    if t is float:
        if v != v:
            return _NAN
        if math.isinf(v) or not v.is_integer():
            return ("#", v)
        return ("#", int(v))
    if v is None:
        return ("n",)
    if t is list or t is tuple:
        return ("l", tuple(json_key(x) for x in v))
    if t is dict:
        return ("d", frozenset((json_key(k), json_key(x)) for k, x in v.items()))
    if isinstance(v, bool):
        return ("b", bool(v))
    if isinstance(v, (int, float)):
        return json_key(float(v) if isinstance(v, float) else int(v))
    if isinstance(v, (list, tuple)):
        return ("l", tuple(json_key(x) for x in v))
    if isinstance(v, (set, frozenset)):
        return ("S", frozenset(json_key(x) for x in v))
    return ("o", type(v).__name__, v)


def json_equal(a: Any, b: Any) -> bool:
    """True when `a` and `b` are the same JSON value (see the module's contract)."""
    ta, tb = type(a), type(b)
    if ta is tb and ta in (str, int):
        return a == b
    return json_key(a) == json_key(b)
