"""The Op record: one operation event of a history (DESIGN.md, "The history").

Semantics are Jepsen's:
- a process has at most one operation outstanding; an `invoke` is followed by one completion from
  the same process, or none at all;
- `ok`: it took effect with this result; `fail`: it certainly did not take effect;
- `info`: unknown - it may take effect at any moment after its invocation, or never. After an
  `info` the process never invokes again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

INVOKE = "invoke"
OK = "ok"
FAIL = "fail"
INFO = "info"
TYPES = (INVOKE, OK, FAIL, INFO)
COMPLETIONS = (OK, FAIL, INFO)
NEMESIS = "nemesis"

Process = Union[int, str]


@dataclass(frozen=True, slots=True)
class Op:
    """One line of a history.

    `key` and `node` and `error` are None when absent; they are omitted from the JSON then.
    `index` is the dense 0-based position in the history; `time` is nanoseconds since the start.
    """

    index: int
    time: int
    process: Process
    type: str
    f: str
    value: Any = None
    key: Any = None
    node: str | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        d = {"index": self.index, "time": self.time, "process": self.process, "type": self.type,
             "f": self.f}
        if self.key is not None:
            d["key"] = self.key
        d["value"] = self.value
        if self.node is not None:
            d["node"] = self.node
        if self.error is not None:
            d["error"] = self.error
        return d

    @property
    def is_invoke(self) -> bool:
        return self.type == INVOKE

    @property
    def is_client(self) -> bool:
        return self.process != NEMESIS


class _OpFields:
    """The fields of an Op, set without the frozen dataclass's per-field object.__setattr__.

    Same slots as Op, so an instance can take Op as its class once its fields are set (CPython
    allows __class__ assignment between classes of one layout); from then on it is an ordinary,
    immutable Op. 0.3 us instead of 1.3 us per op: readers build millions of them.
    """

    __slots__ = Op.__slots__

    def __init__(self, index, time, process, type, f, value, key, node, error):
        self.index = index
        self.time = time
        self.process = process
        self.type = type
        self.f = f
        self.value = value
        self.key = key
        self.node = node
        self.error = error
        self.__class__ = Op


def make_op(index: int, time: int, process: Process, type: str, f: str, value: Any = None,
            key: Any = None, node: str | None = None, error: str | None = None) -> Op:
    """Op(index, time, process, type, f, value, key, node, error), faster (readers use it).

    The arguments are not checked: the caller has (jsonl.op_from_dict)."""
    return _OpFields(index, time, process, type, f, value, key, node, error)  # type: ignore
