"""From a history to the per-key Partitions the search works on (Jepsen semantics).

- nemesis operations are ignored; so are operations whose `f` the model ignores;
- ok: the call happened, with this result;
- fail: it did not happen, unless the model turns it into an observation (the cas-register's
  failed precondition), which must then linearize between invoke and completion like an ok call;
- info, or no completion at all: the call may take effect at any time after its invoke, or never
  (crashed). A crashed read-only call constrains nothing and is dropped here;
- ops are partitioned by `key` (None is a key like any other): P-compositionality.
"""

from __future__ import annotations

import time
from typing import Any, Iterable

from ...history.errors import HistoryError
from ...history.op import FAIL, INVOKE, NEMESIS, OK, Op
from .models import UNKNOWN, Call, Model, freeze
from .search import PREPARE_CLOCK_MASK, Partition, TimeLimitReached, defer_free


def partition_history(history: Iterable[Op], model: Model,
                      deadline: float | None = None) -> dict[Any, Partition]:
    """Split a history by key into Partitions (insertion order = first appearance of the key).

    Values and keys are canonicalized here, once (`freeze`: JSON identity, see models.py).
    Raises TimeLimitReached past `deadline` (time.monotonic()): preparing counts against the
    time limit like the search.

    Raises HistoryError for a completion whose process has no invocation outstanding, or a second
    invocation by a process that is still busy (the search relies on both).
    """
    parts: dict[Any, Partition] = {}
    pending: dict[Any, Op] = {}
    # events as (history position, code) per partition; sorted once at the end.
    events: dict[Any, list[tuple[int, int]]] = {}
    ignore = model.ignore
    read_only = model.read_only

    def add_call(inv: Op, comp: Op | None, call: Call, is_crashed: bool) -> None:
        key = freeze(inv.key)
        part = parts.get(key)
        if part is None:
            part = parts[key] = Partition(key=inv.key)
            events[key] = []
        cid = len(part.calls)
        part.calls.append(call)
        part.crashed.append(is_crashed)
        part.invoke_index.append(inv.index)
        part.complete_index.append(None if comp is None else comp.index)
        part.process.append(inv.process)
        part.invoke_time.append(inv.time)
        part.complete_time.append(None if comp is None else comp.time)
        part.completion_type.append("missing" if comp is None else comp.type)
        ev = events[key]
        ev.append((inv.index, cid << 1))
        if not is_crashed:
            ev.append((comp.index, cid << 1 | 1))

    dropped: dict[Any, int] = {}
    clock = time.monotonic

    def drop(inv: Op) -> None:
        k = freeze(inv.key)
        dropped[k] = dropped.get(k, 0) + 1

    def settle(inv: Op, comp: Op | None) -> None:
        f = inv.f
        if f in ignore:
            return
        value = freeze(inv.value)
        if comp is not None and comp.type == OK:
            add_call(inv, comp, Call(f, value, freeze(comp.value)), False)
        elif comp is not None and comp.type == FAIL:
            obs = model.fail_observation(f, value, comp.error)
            if obs is None:
                drop(inv)
            else:
                add_call(inv, comp, Call(obs[0], obs[1], None), False)
        elif f in read_only:
            drop(inv)  # a crashed read constrains nothing
        else:
            add_call(inv, comp, Call(f, value, UNKNOWN), True)  # info, or no completion at all

    for n_op, op in enumerate(history):
        if not n_op & PREPARE_CLOCK_MASK and deadline is not None and clock() > deadline:
            defer_free(parts, events, pending, dropped)  # freed later: see search._DEFERRED
            raise TimeLimitReached()
        p = op.process
        if p == NEMESIS:
            continue
        if op.type == INVOKE:
            if p in pending:
                raise HistoryError(f"op at index {op.index}: process {p} invokes while its op at "
                               f"index {pending[p].index} is still outstanding", field="process")
            pending[p] = op
            continue
        inv = pending.pop(p, None)
        if inv is None:
            raise HistoryError(f"op at index {op.index}: a {op.type} completion of process {p} "
                               "with no invocation", field="type")
        settle(inv, op)
    for inv in pending.values():
        settle(inv, None)

    for key, part in parts.items():
        part.events = [code for _, code in sorted(events[key])]
        part.dropped = dropped.get(key, 0)
    return parts
