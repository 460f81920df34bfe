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
