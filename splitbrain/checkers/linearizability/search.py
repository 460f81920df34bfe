"""The linearizability search for one key: just-in-time (JIT) linearization, depth first.

The history of one key becomes a list of calls and a list of events (invoke / complete) in history
order (`prepare.py`), compiled into one *step* per completion of an ok call. A search node is
(step i, model state, linearized open calls as a bitset):

- an invoked call is open: it may be linearized from then on;
- at the completion of ok call `o` (step i) `o` must be linearized: the node's children linearize
  one open call each (trying them in invocation order, WGL's order); a child that has linearized
  `o` moves on to step i + 1 (and `o` leaves the set), the others stay at step i;
- a crashed (info) call never completes: it stays open forever and is optional.

Nodes are memoized (a node seen once is never expanded again), so an invalid history is proved
invalid by exhausting the reachable nodes; the deepest step reached is then the completion that
cannot be linearized, the very place a breadth-first search over every possible configuration
would stop. A valid history usually needs few nodes: depth first finds a witness without
enumerating the alternatives. (A breadth-first variant was measured too: as fast on the etcd logs,
orders of magnitude slower on Porcupine's kv logs, where concurrent appends have many orders.)

What keeps it small and fast (measured in benchmarks/bench_linearizability.py):
- Transitions are cached per class of identical calls (f, argument, result): state -> next
  state, so a repeated step is a dict lookup, not a model call.
- Open calls own a *slot* (a bit), freed when the call completes, so the bitsets stay as narrow
  as the concurrency (plus the crashed calls) instead of the history's length.
- Absorption: an open ok call of a read-only operation (the model's `read_only`: a read, an
  observation) that is legal in the current state is linearized at once. The node with it
  linearized dominates the one without: every continuation of the latter must linearize it
  somewhere, and dropping it there leaves a valid continuation of the former (it changes no
  state). This does NOT hold for an update that merely happens to be a no-op in this state
  (`mul 2` on 0): that is explored like any other call.
- Subsumption of crashed calls: a crashed call is optional, so among nodes with the same step,
  state and linearized ok calls, one whose linearized crashed calls are a subset of another's
  makes the other redundant (it is not pushed). A crashed call that would not change the state is
  never linearized.
- Symmetry of crashed calls: identical crashed calls (same f, argument) are interchangeable once
  both are invoked, so they are linearized in invocation order only.
- Crashed reads (and other read-only calls with unknown results) are dropped before the search.
- Growth guards, from the model's optional hint (`monotone`, `may_grow_into`: models.py): while
  only monotone calls (string append, set add, log append) can be linearized before a read that
  must still be linearized, a state that cannot grow into that read's result is dropped. On
  Porcupine's kv/c50-ok this cuts the expansions from 211k to 9k. When the search is invalid
  and a dropped configuration might have reached as far as the deepest step, it is run again
  with only the guards of earlier reads, so the failing call and the states listed are exactly
  those of the search without guards (tests/test_lin_properties.py checks that).
"""

from __future__ import annotations

import time as _time
from dataclasses import dataclass, field
from typing import Any

from .models import Call, Model

# How many configuration expansions between two looks at the clock (the time limit).
CLOCK_EVERY_STEPS = 1024
# Growth guards per step from reads invoked after it (open reads are all checked): the next few
# to complete are the tightest bounds; more cost time per node and rarely prune more.
GUARD_FUTURE_MAX = 2


# Preparing and compiling look at the clock every this many ops / events (a power of 2, minus 1).
PREPARE_CLOCK_MASK = 4095


class TimeLimitReached(Exception):
    """The search ran past its deadline: the verdict is "unknown", never a pass."""


# How many configurations the search may remember per key (its memo table: every (step, state,
# linearized ok calls) key and every set of crashed calls in its antichain counts; measured
# 40-200 bytes each, under 0.8 GB at the default). Past it the key is "unknown": memory stays
# bounded. The raft stale-reads history of issue 16 needs 1.5M.
MEMO_MAX_DEFAULT = 4_000_000


class MemoFull(Exception):
    """The search's memo table reached its bound (`memo_max`): the verdict is "unknown"."""

    def __init__(self, size: int):
        super().__init__(f"memo table full ({size} configurations)")
        self.size = size


# What a check stopped by its time limit had built (millions of objects on a large history):
# freeing them takes seconds, so they are kept until the next check starts (or the process
# ends) and the "unknown" verdict is out within the limit. Bounded: one stopped check's worth.
_DEFERRED: list = []


def defer_free(*objs: Any) -> None:
    """Keep `objs` alive until `release_deferred` (see _DEFERRED)."""
    _DEFERRED.append(objs)


def release_deferred() -> None:
    _DEFERRED.clear()


def check_deadline(deadline: float | None) -> None:
    """Raise TimeLimitReached when `deadline` (time.monotonic()) has passed."""
    if deadline is not None and _time.monotonic() > deadline:
        raise TimeLimitReached()


@dataclass
class Partition:
    """The calls and events of one key, ready for the search (plain, picklable data).

    `calls[i]` is what the model sees; `crashed[i]` is True for an info / never-completed call;
    `events` encodes `call_id << 1` for an invoke and `call_id << 1 | 1` for a completion, in
    history order. `invoke_index` / `complete_index` (None when crashed) are history indices,
    `process`, `invoke_time`, `complete_time` are for the counterexample.
    """

    key: Any
    calls: list[Call] = field(default_factory=list)
    crashed: list[bool] = field(default_factory=list)
    events: list[int] = field(default_factory=list)
    invoke_index: list[int] = field(default_factory=list)
    complete_index: list[int | None] = field(default_factory=list)
    process: list[Any] = field(default_factory=list)
    invoke_time: list[int] = field(default_factory=list)
    complete_time: list[int | None] = field(default_factory=list)
    completion_type: list[str] = field(default_factory=list)
    dropped: int = 0


@dataclass
class Failure:
    """Where the search got stuck: the call that cannot be linearized and the evidence."""

    call: int                      # the call whose completion could not be linearized
    event: int                     # the position in Partition.events of that completion
    states: list[Any]              # the model states possible just before it (all considered)
    linearization: list[int]       # one linearization of the prefix (call ids, in order)
    prefix_states: list[Any]       # the state after each call of `linearization`
    open_calls: list[int]          # calls open (invoked, not completed) at that moment


@dataclass
class Outcome:
    valid: bool
    failure: Failure | None = None
    stats: dict = field(default_factory=dict)


class StepBudgetExceeded(Exception):
    """The search expanded more configurations than its `steps_max` (the caller decides)."""


@dataclass
class _Step:
    """What holds at the completion of one ok call (everything static, computed once)."""

    cid: int                       # the call that completes
    ob: int                        # its slot bit
    opens: list                    # (bit, cache, need, call, skip no-op?, call id) of open calls
    ok_open: list                  # (bit, cache, call) of the open ok read-only calls
    cmask: int                     # the slot bits of crashed calls invoked so far
    # The growth guards (the model's pruning hint): (bit or 0, cache, read call, its step) of
    # reads that must still be linearized; apply only when every open state-changing call that
    # is not monotone is linearized (lin & nm_mask == nm_mask).
    guards: list = field(default_factory=list)
    nm_mask: int = 0


# Transition cache values: the next state, or ILLEGAL. MISS: not computed yet.
ILLEGAL = object()
MISS = object()


class _Compiled:
    """A Partition turned into per-completion steps, with cached transitions.

    Calls with the same (f, value, result) share one cache: state -> next state or ILLEGAL
    (states are used as they are: hashable values whose hashes Python caches, e.g. strings).
    Slots are assigned statically: the lowest free bit at invoke, freed after the completion;
    crashed calls keep theirs. `need` holds the bits of identical crashed calls invoked earlier,
    which must be linearized first (symmetry).
    """

    def __init__(self, model: Model, part: Partition, prune: bool = True,
                 deadline: float | None = None):
        self.init = model.init
        self.deadline = deadline
        class_of: dict[tuple, tuple[dict, Call]] = {}
        shared = []
        for c in part.calls:
            k = (c.f, c.value, c.result)
            entry = class_of.get(k)
            if entry is None:
                entry = class_of[k] = ({}, c, len(class_of))
            shared.append(entry)
        self.steps: list[_Step] = []
        slot_bit = [0] * len(part.calls)
        used = cmask = 0
        crashed_bits_of_class: dict[int, int] = {}
        opens: list[tuple] = []
        read_only = model.read_only
        for n_ev, ev in enumerate(part.events):
            if not n_ev & PREPARE_CLOCK_MASK:
                check_deadline(deadline)
            cid = ev >> 1
            cache, call, ci = shared[cid]
            if not ev & 1:
                bit = ~used & (used + 1)
                used |= bit
                slot_bit[cid] = bit
                need = 0
                if part.crashed[cid]:
                    cmask |= bit
                    need = crashed_bits_of_class.get(ci, 0)
                    crashed_bits_of_class[ci] = need | bit
                # A crashed call that changes nothing is pointless (it is optional); an ok
                # read-only call is absorbed instead. Both skip being a no-op child.
                skip_noop = part.crashed[cid] or call.f in read_only
                opens.append((bit, cache, need, call, skip_noop, cid))
                continue
            ob = slot_bit[cid]
            assert ob and not part.crashed[cid], "a completion follows its invoke, never crashed"
            ok_open = [(b, tr, c) for b, tr, _, c, _, k in opens
                       if not part.crashed[k] and c.f in read_only]
            self.steps.append(_Step(cid, ob, list(opens), ok_open, cmask))
            used &= ~ob
            opens = [e for e in opens if e[0] != ob]
        if prune and model.monotone and model.grow_checked:
            self._add_guards(model, part, slot_bit)

    def _add_guards(self, model: Model, part: Partition, slot_bit: list[int]) -> None:
        """Attach to each step the reads whose results bound the state (see _Step.guards).

        At step i (the completion at event position p), an ok read R of `grow_checked` that
        completes at or after p and is not linearized yet must be linearized later, at a state
        equal to its result. If no call that is neither monotone nor read-only can be
        linearized before it -- the open ones are all linearized (nm_mask), and none is
        invoked between p and R's completion -- then only monotone calls change the state until
        then, so a state that `may_grow_into` rejects leads nowhere. Open reads are checked
        unless already linearized (their bit); of the reads invoked later, the first
        GUARD_FUTURE_MAX to complete.
        """
        changing = [c.f not in model.monotone and c.f not in model.read_only
                    for c in part.calls]
        checked = [not part.crashed[k] and c.f in model.grow_checked
                   for k, c in enumerate(part.calls)]
        step_of = {st.cid: i for i, st in enumerate(self.steps)}
        caches: dict[tuple, dict] = {}
        # Positions, in event order: invokes and completions of each call.
        inv_pos: dict[int, int] = {}
        comp_pos: dict[int, int] = {}
        for pos, ev in enumerate(part.events):
            (comp_pos if ev & 1 else inv_pos)[ev >> 1] = pos
        # next_change[p]: the first position >= p that invokes a state-changing call.
        n_ev = len(part.events)
        next_change = [n_ev] * (n_ev + 1)
        for pos in range(n_ev - 1, -1, -1):
            ev = part.events[pos]
            next_change[pos] = pos if (not ev & 1 and changing[ev >> 1]) else next_change[pos + 1]
        # next_read[p]: the first position >= p that completes a checked read.
        next_read = [n_ev] * (n_ev + 1)
        for pos in range(n_ev - 1, -1, -1):
            ev = part.events[pos]
            next_read[pos] = pos if (ev & 1 and checked[ev >> 1]) else next_read[pos + 1]
        for n_st, st in enumerate(self.steps):
            if not n_st & PREPARE_CLOCK_MASK:
                check_deadline(self.deadline)
            p = comp_pos[st.cid]
            limit = next_change[p]
            guards = []
            nm = 0
            open_ids = set()
            for bit, _, _, call, _, k in st.opens:
                open_ids.add(k)
                if changing[k]:
                    nm |= bit
                elif checked[k] and comp_pos[k] >= p and comp_pos[k] < limit:
                    guards.append((bit, k))
            future = 0
            q = next_read[p + 1]
            while q < limit and future < GUARD_FUTURE_MAX:
                k = part.events[q] >> 1
                if k not in open_ids:
                    guards.append((0, k))
                    future += 1
                q = next_read[q + 1]
            for bit, k in guards:
                c = part.calls[k]
                cache = caches.setdefault((c.f, c.value, c.result), {})
                st.guards.append((bit, cache, c, step_of[k]))
            st.nm_mask = nm


def search(model: Model, part: Partition, deadline: float | None = None, *,
           steps_max: int | None = None, prune: bool = True, memo_max: int | None = None,
           _guard_step_max: int | None = None, _compiled: "_Compiled | None" = None
           ) -> Outcome:
    """Decide whether one key's calls are linearizable with respect to `model`.

    A depth-first search over nodes (completion step, state, linearized open calls), memoized,
    that tries the open calls in invocation order (WGL's order). It finds a witness quickly for
    a valid history; for an invalid one it exhausts the reachable nodes, and the deepest
    completion step reached is where the history breaks (the same step a breadth-first search
    would stop at).

    Raises TimeLimitReached past `deadline` (time.monotonic()), StepBudgetExceeded past
    `steps_max` expansions and MemoFull when the memo table holds more than `memo_max`
    configurations (looked at with the clock, every CLOCK_EVERY_STEPS expansions).
    """
    try:
        # (The search again for an exact failure, below, reuses what was compiled: the steps,
        # transition caches and guards do not depend on _guard_step_max.)
        comp = _compiled if _compiled is not None else _Compiled(model, part, prune, deadline)
    except TimeLimitReached as e:
        defer_free(e.__traceback__)  # the frames hold what was compiled so far
        raise
    steps = comp.steps
    n = len(steps)
    if n == 0:
        return Outcome(True, None, {"steps": 0, "nodes": 0})
    step = model.step
    clock = _time.monotonic
    budget = steps_max if steps_max is not None else -1
    clock_mask = CLOCK_EVERY_STEPS - 1

    def absorb(i: int, s: Any, lin: int) -> int:
        """Linearize every open ok read-only call legal in state `s` (it dominates)."""
        for bit, tr, call in steps[i].ok_open:
            if not lin & bit:
                ns = tr.get(s, MISS)
                if ns is MISS:
                    legal, ns = step(s, call)
                    if not legal:
                        ns = ILLEGAL
                    tr[s] = ns
                if ns is not ILLEGAL:
                    lin |= bit
        return lin

    # discovered: (step, state, ok bits) -> antichain of crashed-bit sets already pushed.
    disc: dict[tuple[int, Any, int], list[int]] = {}
    deepest = 0
    grow = model.may_grow_into
    pruned = 0           # configurations dropped by a growth guard
    pruned_reach = -1    # the furthest step a dropped configuration might have reached
    deep_pruned: list = []   # states of dropped configurations at step `deepest`
    # Only guards of reads completing by step gmax prune (for the exact failure, below).
    gmax = n if _guard_step_max is None else _guard_step_max
    s0 = comp.init
    lin0 = absorb(0, s0, 0)
    disc[(0, s0, lin0 & ~steps[0].cmask)] = [lin0 & steps[0].cmask]
    memo = 1             # configurations remembered (every antichain entry counts)
    stack = [(0, s0, lin0)]
    expanded = 0
    while stack:
        i, s, lin = stack.pop()
        expanded += 1
        if not expanded & clock_mask:
            if deadline is not None and clock() > deadline:
                defer_free(comp, disc, stack)
                raise TimeLimitReached()
            if 0 <= budget < expanded:
                raise StepBudgetExceeded()
            if memo_max is not None and memo > memo_max:
                defer_free(comp, disc, stack)
                raise MemoFull(memo)
        st = steps[i]
        ob = st.ob
        # The children in order of preference: the open calls in invocation order (measured:
        # faster on Porcupine's kv logs than trying the completing call first, or completion
        # order). Pushed in reverse, so that the first is popped next.
        kids = []
        if lin & ob:
            kids.append((i + 1, s, lin ^ ob))
        else:
            for bit, tr, need, call, skip_noop, _ in st.opens:
                if lin & bit or lin & need != need:
                    continue
                ns = tr.get(s, MISS)
                if ns is MISS:
                    legal, ns = step(s, call)
                    if not legal:
                        ns = ILLEGAL
                    tr[s] = ns
                if ns is ILLEGAL or (skip_noop and ns == s):
                    continue  # illegal; or a crashed no-op (pointless) or an absorbed read
                if bit == ob:
                    kids.append((i + 1, ns, lin))
                else:
                    nlin = absorb(i, ns, lin | bit) if st.ok_open else lin | bit
                    if nlin & ob:
                        kids.append((i + 1, ns, nlin ^ ob))
                    else:
                        kids.append((i, ns, nlin))
        for j, cs, clin in reversed(kids):
            if j != i:
                if j == n:
                    return Outcome(True, None, {"steps": expanded, "nodes": len(disc),
                                                "pruned": pruned})
                if steps[j].ok_open:
                    clin = absorb(j, cs, clin)
                if j > deepest:
                    deepest = j
                    deep_pruned = []
            sj = steps[j]
            if sj.guards and clin & sj.nm_mask == sj.nm_mask:
                dead = False
                for gbit, gc, gcall, gstep in sj.guards:
                    if clin & gbit or gstep > gmax:
                        continue  # that read is linearized already (or see gmax)
                    ok = gc.get(cs)
                    if ok is None:
                        ok = gc[cs] = grow(cs, gcall)
                    if not ok:
                        dead = True
                        if gstep > pruned_reach:
                            pruned_reach = gstep
                        break
                if dead:
                    pruned += 1
                    if j == deepest:
                        deep_pruned.append(cs)  # reached, so a state possible there
                    continue
            cm = sj.cmask
            pk = (j, cs, clin & ~cm)
            c = clin & cm
            lst = disc.get(pk)
            if lst is None:
                disc[pk] = [c]
                memo += 1
            else:
                dominated = False
                for x in lst:
                    if x & c == x:
                        dominated = True
                        break
                if dominated:
                    continue
                # Entries that c dominates (supersets of c) will never dominate anything c does
                # not: dropping them keeps the list an antichain, and short.
                n_before = len(lst)
                lst[:] = [x for x in lst if x & c != c]
                memo -= n_before - len(lst)
                lst.append(c)
                memo += 1
            stack.append((j, cs, clin))

    # Exhausted: the call completing at the deepest step reached cannot be linearized.
    if pruned_reach >= deepest:
        # A dropped configuration might have got as far as its guard's read, further than
        # any kept one, or reached `deepest` in a state not listed: the failure would not be
        # exact. Search again with only the guards of reads completing BEFORE `deepest`: a
        # configuration dropped by one of those never reaches that step, so that search
        # reaches the same deepest step as a search without guards, in the same states.
        # (Once: its guards all end before its own deepest step.)
        return search(model, part, deadline, steps_max=steps_max, prune=prune,
                      memo_max=memo_max, _guard_step_max=deepest - 1, _compiled=comp)
    possible = []
    seen_states = set()
    for (i, s, _) in disc:
        if i == deepest and s not in seen_states:
            seen_states.add(s)
            possible.append(s)
    for s in deep_pruned:
        if s not in seen_states:
            seen_states.add(s)
            possible.append(s)
    failure = _explain(model, comp, deadline, deepest, possible, gmax)
    return Outcome(False, failure, {"steps": expanded, "nodes": len(disc)})


def _explain(model: Model, comp: _Compiled, deadline: float | None, target: int,
             states: list[Any], gmax: int) -> Failure:
    """Find again, with the order kept, one linearization that reaches completion step `target`.

    The first search proved it exists; this one stops as soon as it gets there, so it costs at
    most what the first one did. Paths are linked lists (call id, state after, rest).
    """
    steps = comp.steps
    step = model.step
    grow = model.may_grow_into

    def next_state(tr, call, s):
        ns = tr.get(s, MISS)
        if ns is MISS:
            legal, ns = step(s, call)
            if not legal:
                ns = ILLEGAL
            tr[s] = ns
        return ns

    def absorb(i, s, lin, path):
        for bit, tr, call in steps[i].ok_open:
            if not lin & bit and next_state(tr, call, s) is not ILLEGAL:
                lin |= bit
                path = (_cid_of(steps[i], bit), s, path)
        return lin, path

    s0 = comp.init
    lin0, path0 = absorb(0, s0, 0, ())
    seen = {(0, s0, lin0)}
    stack = [(0, s0, lin0, path0)]
    found = None
    expanded = 0
    while stack:
        i, s, lin, path = stack.pop()
        expanded += 1
        if (not expanded & (CLOCK_EVERY_STEPS - 1) and deadline is not None
                and _time.monotonic() > deadline):
            raise TimeLimitReached()
        if i == target:
            found = path
            break
        if found is not None:
            break
        st = steps[i]
        ob = st.ob
        nxt = []
        if lin & ob:
            nxt.append((i + 1, s, lin ^ ob, path))
        else:
            for bit, tr, need, call, skip_noop, pid in st.opens:
                if lin & bit or lin & need != need:
                    continue
                ns = next_state(tr, call, s)
                if ns is ILLEGAL or (skip_noop and ns == s):
                    continue
                npath = (pid, ns, path)
                if bit == ob:
                    nxt.append((i + 1, ns, lin, npath))
                else:
                    nlin, npath = absorb(i, ns, lin | bit, npath)
                    if nlin & ob:
                        nxt.append((i + 1, ns, nlin ^ ob, npath))
                    else:
                        nxt.append((i, ns, nlin, npath))
        for j, ns, nlin, npath in reversed(nxt):
            if j > i:
                nlin, npath = absorb(j, ns, nlin, npath)
            if j == target:
                found = npath  # (the first search counts a step reached before its guards)
                break
            if not _guards_pass(steps[j], ns, nlin, grow, gmax):
                continue  # dropped by the first search as well: it reached target without
            k = (j, ns, nlin)
            if k not in seen:
                seen.add(k)
                stack.append((j, ns, nlin, npath))
    assert found is not None, "the explaining search must reach the step the first one reached"
    seq = []
    while found:
        pid, s, found = found
        seq.append((pid, s))
    seq.reverse()
    st = steps[target]
    return Failure(call=st.cid, event=target, states=states,
                   linearization=[p for p, _ in seq],
                   prefix_states=[s for _, s in seq],
                   open_calls=[e[5] for e in st.opens if e[5] != st.cid])


def _guards_pass(st: _Step, s: Any, lin: int, grow, gmax: int) -> bool:
    """The growth guards of step `st` for state `s` (see _Step.guards); the search inlines it."""
    if not st.guards or lin & st.nm_mask != st.nm_mask:
        return True
    for gbit, gc, gcall, gstep in st.guards:
        if lin & gbit or gstep > gmax:
            continue
        ok = gc.get(s)
        if ok is None:
            ok = gc[s] = grow(s, gcall)
        if not ok:
            return False
    return True


def _cid_of(st: _Step, bit: int) -> int:
    for e in st.opens:
        if e[0] == bit:
            return e[5]
    raise AssertionError("a slot bit of an open call")
