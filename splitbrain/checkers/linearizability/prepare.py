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
from typing import Any, Iterable, Iterator

from ...history.errors import HistoryError
from ...history.op import FAIL, INVOKE, NEMESIS, OK, Op
from .models import UNKNOWN, Call, Model, freeze
from .search import PREPARE_CLOCK_MASK, Partition, TimeLimitReached, defer_free


def client_calls(history: Iterable[Op], deadline: float | None = None,
                 model: Model | None = None) -> Iterator[tuple[Op, Op | None]]:
    """Every client call of `history` as (invocation, completion): in completion order, then the
    calls never completed as (invocation, None). Nemesis ops are skipped.

    Raises HistoryError for a completion whose process has no invocation outstanding, or a second
    invocation by a process that is still busy, or (given a `model` that declares its
    `operations`) an invocation of an operation the model neither describes nor ignores -- also
    when it failed or crashed, so that it would never be stepped: a history checked against the
    wrong model is bad input, not a pass; TimeLimitReached past `deadline` (time.monotonic(),
    looked at every PREPARE_CLOCK_MASK + 1 ops)."""
    pending: dict[Any, Op] = {}
    clock = time.monotonic
    known = None if model is None or model.operations is None else (
        model.operations | model.ignore)
    for n_op, op in enumerate(history):
        if not n_op & PREPARE_CLOCK_MASK and deadline is not None and clock() > deadline:
            raise TimeLimitReached()
        p = op.process
        if p == NEMESIS:
            continue
        if op.type == INVOKE:
            if known is not None and op.f not in known:
                raise HistoryError(f"op at index {op.index}: model {model.name!r} has no "
                                   f"operation {op.f!r} (it has {', '.join(sorted(known))}); "
                                   "pass the right --model", field="f")
            if p in pending:
                raise HistoryError(f"op at index {op.index}: process {p} invokes while its op at "
                                   f"index {pending[p].index} is still outstanding",
                                   field="process")
            pending[p] = op
            continue
        inv = pending.pop(p, None)
        if inv is None:
            raise HistoryError(f"op at index {op.index}: a {op.type} completion of process {p} "
                               "with no invocation", field="type")
        yield inv, op
    for inv in pending.values():
        yield inv, None


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

    try:
        for inv, comp in client_calls(history, deadline, model):
            settle(inv, comp)
    except TimeLimitReached:
        defer_free(parts, events, dropped)  # freed later: see search._DEFERRED
        raise

    for key, part in parts.items():
        part.events = [code for _, code in sorted(events[key])]
        part.dropped = dropped.get(key, 0)
    return parts


def reduce_unobserved(model: Model, part: Partition) -> tuple[Partition, int]:
    """Leave out the crashed writes whose value nobody observes: (the Partition, how many).

    For the register family (register, cas-register, kv) on a key with no `append` and no cas
    that failed with precondition-failed. A value is *observed* when an ok read returns it
    (kv: a read of "" observes "" and null), an ok cas has it as `from`, a failed cas
    key-does-not-exist says the register held null, or a kept crashed cas has it as `from`
    (a fixpoint). A crashed write or cas whose written value is not observed is removed.

    Why the verdict cannot change (values need not be unique): crashed calls are optional, so a
    linearization of the reduced key is one of the key. Conversely, take a linearization L of
    the key and drop the removed calls. A kept call that reads the state (read, cas, the
    observation of a failed cas) sees the value v its result names; the last state-changing call
    before it in L wrote v, so v is observed and that call is kept (an ok call always is): in L
    minus the removed calls the same call is still the last to change the state before it, and
    every kept call stays legal; blind writes are always legal; real-time order is a suborder.
    A "precondition-failed" observation (the value was NOT x) breaks this: a removed crashed
    write may be what made the value differ from x, so such keys are left as they are; so are
    keys with `append` (its result is the concatenation of several writes).

    The failing call and the verdict of the search are unchanged; the states listed as possible
    before the failing call may lack values only a removed call could have written
    (tests/test_lin_unique.py checks all three against the unreduced search).
    """
    from .models import CasRegisterModel, KvModel, RegisterModel

    if not isinstance(model, (RegisterModel, CasRegisterModel)) or not any(part.crashed):
        return part, 0
    kv = isinstance(model, KvModel)
    # The register model has no cas: a crashed cas stays, so the search reports it as an
    # operation the model does not describe (as it does an ok cas), instead of dropping it.
    has_cas = isinstance(model, CasRegisterModel)
    observed: set = set()
    for c, crashed in zip(part.calls, part.crashed):
        f = c.f
        if f in ("cas-failed", "append"):
            return part, 0
        if crashed:
            continue
        if f == "read":
            observed.add(c.result)
            if kv and c.result == "":
                observed.add(None)
        elif f == "absent":
            observed.add(None)
        elif f == "cas":
            if not (isinstance(c.value, tuple) and len(c.value) == 2):
                return part, 0  # the search reports the malformed cas
            observed.add(c.value[0])
            if kv and c.value[0] == "":
                observed.add(None)
    keep = [not cr for cr in part.crashed]
    grew = True
    while grew:
        grew = False
        for i, c in enumerate(part.calls):
            if keep[i]:
                continue
            if c.f == "write":
                if c.value in observed:
                    keep[i] = grew = True
            elif c.f == "cas" and has_cas and isinstance(c.value, tuple) and len(c.value) == 2:
                if c.value[1] in observed:
                    keep[i] = grew = True
                    observed.add(c.value[0])
                    if kv and c.value[0] == "":
                        observed.add(None)
            else:
                keep[i] = True  # not a write: the search judges it
    removed = keep.count(False)
    if not removed:
        return part, 0
    new_id = [-1] * len(keep)
    out = Partition(key=part.key, dropped=part.dropped)
    for i, k in enumerate(keep):
        if not k:
            continue
        new_id[i] = len(out.calls)
        out.calls.append(part.calls[i])
        out.crashed.append(part.crashed[i])
        out.invoke_index.append(part.invoke_index[i])
        out.complete_index.append(part.complete_index[i])
        out.process.append(part.process[i])
        out.invoke_time.append(part.invoke_time[i])
        out.complete_time.append(part.complete_time[i])
        out.completion_type.append(part.completion_type[i])
    out.events = [new_id[ev >> 1] << 1 | (ev & 1) for ev in part.events if keep[ev >> 1]]
    return out, removed
