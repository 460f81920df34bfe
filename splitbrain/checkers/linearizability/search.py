"""The linearizability search for one key: a just-in-time (JIT) linearization over configurations.

The history of one key becomes a list of calls and a list of events (invoke / complete) in history
order (`prepare.py`). The search walks the events keeping the *frontier*: every configuration
(state, set of linearized open calls) that some linearization of the history so far can be in.

- invoke of a call: it becomes open (may be linearized from now on); nothing else changes.
- completion of an ok call `o`: every configuration must have linearized `o` by now. From each
  configuration we explore, breadth first and memoized, every sequence of open calls ending with
  `o`; the configurations reached by linearizing `o` are the new frontier (`o` leaves the set).
  If none is reached, `o` cannot be linearized: the history is not linearizable, and the frontier
  just before is the evidence (the longest linearizable prefix, the states possible).
- a crashed (info) call is invoked and never completes: it stays open forever and is optional.

Why this is fast enough in Python (measured in benchmarks/bench_linearizability.py):
- A call's effect depends only on (call class, state): transitions are cached per class in a dict
  of interned state ids, so a search step is a dict lookup, not a model call.
- Open calls own a *slot* (a bit); the slot is freed when the call completes, so the linearized-set
  bitsets stay as narrow as the concurrency (plus the crashed calls) instead of the history length.
- Absorption: an ok call that leaves the current state unchanged (a read that matches, a write of
  the value already there) is linearized at once. The configuration with it linearized dominates
  the one without: every continuation of the latter must linearize it somewhere, and dropping it
  there leaves a valid continuation of the former.
- Subsumption of crashed calls: a crashed call is optional, so among configurations with the same
  state and the same linearized ok calls, one whose linearized crashed calls are a subset of
  another's makes the other redundant. The breadth-first order meets the smaller sets first.
- Symmetry of crashed calls: identical crashed calls (same f, argument) are interchangeable once
  both are invoked, so they are linearized in invocation order only.
- Crashed reads (and other read-only calls with unknown results) are dropped before the search.
"""

from __future__ import annotations

import time as _time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from .models import UNKNOWN, Call, Model

# How many configuration expansions between two looks at the clock (the time limit).
CLOCK_EVERY_STEPS = 2048


class TimeLimitReached(Exception):
    """The search ran past its deadline: the verdict is "unknown", never a pass."""


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


def search(model: Model, part: Partition, deadline: float | None = None, *,
           explain: bool = False) -> Outcome:
    """Decide whether one key's calls are linearizable with respect to `model`.

    Raises TimeLimitReached past `deadline` (time.monotonic()). With `explain`, the configurations
    carry their linearization so that a Failure can show one; it is slower and only used to
    explain a key already found invalid.
    """
    calls = part.calls
    crashed = part.crashed
    step = model.step

    # Intern states as ints and group calls into classes of identical (f, value, result).
    states: list[Any] = [model.init]
    state_id: dict[Any, int] = {model.init: 0}
    class_of: dict[tuple, int] = {}
    cls: list[int] = []
    trans: list[dict[int, int]] = []
    class_call: list[Call] = []
    for c in calls:
        k = (c.f, c.value, c.result)
        ci = class_of.get(k)
        if ci is None:
            ci = class_of[k] = len(trans)
            trans.append({})
            class_call.append(c)
        cls.append(ci)

    def transition(ci: int, sid: int) -> int:
        """Fill the cache: the next state id, or -1 when the call is illegal in that state."""
        legal, nxt = step(states[sid], class_call[ci])
        if legal:
            n = state_id.get(nxt)
            if n is None:
                n = state_id[nxt] = len(states)
                states.append(nxt)
        else:
            n = -1
        trans[ci][sid] = n
        return n

    slot_bit = [0] * len(calls)
    used = 0           # slot bits held by open calls
    cmask = 0          # slot bits held by crashed calls (never freed)
    crashed_bits_of_class: dict[int, int] = {}
    # Open calls as (bit, transitions, need, call id, crashed?). `need`: the bits of identical
    # crashed calls invoked earlier, which must be linearized before this one (symmetry).
    open_list: list[tuple[int, dict, int, int, bool]] = []
    ok_open: list[tuple[int, dict, int]] = []          # the open ok calls, for absorption

    def absorb(sid: int, lin: int, path):
        """Linearize every open ok call that leaves state `sid` unchanged (it dominates)."""
        for bit, tr, cid in ok_open:
            if not lin & bit:
                n = tr.get(sid)
                if n is None:
                    n = transition(cls[cid], sid)
                if n == sid:
                    lin |= bit
                    if path is not None:
                        path = (cid, sid, path)
        return lin, path

    # The frontier: (state id, linearized bits, path). A path is a linked list (call, state
    # after, rest) of the linearization so far, kept only when explaining.
    frontier: list[tuple[int, int, Any]] = [(0, 0, () if explain else None)]
    steps = 0
    frontier_max = 1
    clock = _time.monotonic

    for ev_pos, ev in enumerate(part.events):
        cid = ev >> 1
        if not ev & 1:
            # Invoke: allocate the lowest free slot.
            bit = ~used & (used + 1)
            used |= bit
            slot_bit[cid] = bit
            need = 0
            if crashed[cid]:
                cmask |= bit
                ci = cls[cid]
                need = crashed_bits_of_class.get(ci, 0)
                crashed_bits_of_class[ci] = need | bit
            else:
                ok_open.append((bit, trans[cls[cid]], cid))
            open_list.append((bit, trans[cls[cid]], need, cid, crashed[cid]))
            continue

        # Completion of ok call `cid`: find every configuration that linearizes it now.
        ob = slot_bit[cid]
        assert ob and not crashed[cid], "a completion must follow its invoke and not be crashed"
        notc = ~cmask
        out: dict[tuple[int, int], list] = {}       # (state, ok bits) -> crashed-bit antichain
        out_path: dict[tuple[int, int, int], Any] = {}
        seen: dict[tuple[int, int], list] = {}
        queue: deque = deque()

        def emit(sid: int, lin: int, path) -> None:
            # `lin` no longer holds `ob`; absorb what the new state allows, then keep it unless
            # a configuration with fewer crashed calls in the same place already exists.
            lin, path = absorb(sid, lin | ob, path)
            lin ^= ob
            pk = (sid, lin & notc)
            c = lin & cmask
            lst = out.get(pk)
            if lst is None:
                out[pk] = [c]
            else:
                for x in lst:
                    if x & c == x:
                        return
                lst[:] = [x for x in lst if x & c != c]
                lst.append(c)
            if path is not None:
                out_path[(sid, lin & notc, c)] = path

        for sid, lin, path in frontier:
            lin, path = absorb(sid, lin, path)
            if lin & ob:
                emit(sid, lin ^ ob, path)
                continue
            pk = (sid, lin & notc)
            c = lin & cmask
            lst = seen.get(pk)
            if lst is None:
                seen[pk] = [c]
            else:
                if any(x & c == x for x in lst):
                    continue
                lst.append(c)
            queue.append((sid, lin, path))

        while queue:
            sid, lin, path = queue.popleft()
            steps += 1
            if deadline is not None and not steps % CLOCK_EVERY_STEPS and clock() > deadline:
                raise TimeLimitReached()
            for bit, tr, need, pid, is_crashed in open_list:
                if lin & bit or lin & need != need:
                    continue
                nsid = tr.get(sid)
                if nsid is None:
                    nsid = transition(cls[pid], sid)
                if nsid < 0 or nsid == sid:
                    # Illegal here; or a no-op: a crashed no-op is pointless (it is optional)
                    # and an ok no-op was absorbed already.
                    continue
                npath = (pid, nsid, path) if path is not None else None
                if bit == ob:
                    emit(nsid, lin, npath)
                    continue
                nlin, npath = absorb(nsid, lin | bit, npath)
                if nlin & ob:
                    # `o` left the state unchanged after this call: absorbed, so linearized.
                    emit(nsid, nlin ^ ob, npath)
                    continue
                pk = (nsid, nlin & notc)
                c = nlin & cmask
                lst = seen.get(pk)
                if lst is None:
                    seen[pk] = [c]
                else:
                    dominated = False
                    for x in lst:
                        if x & c == x:
                            dominated = True
                            break
                    if dominated:
                        continue
                    lst.append(c)
                queue.append((nsid, nlin, npath))

        if not out:
            return Outcome(False, _failure(part, cid, ev_pos, frontier, seen, states, open_list),
                           {"steps": steps, "frontier_max": frontier_max,
                            "states": len(states)})
        if explain:
            frontier = [(sid, plin | c, out_path[(sid, plin, c)])
                        for (sid, plin), cs in out.items() for c in cs]
        else:
            frontier = [(sid, plin | c, None) for (sid, plin), cs in out.items() for c in cs]
        if len(frontier) > frontier_max:
            frontier_max = len(frontier)
        # The call leaves: free its slot (no frontier configuration holds the bit any more).
        used &= ~ob
        open_list = [e for e in open_list if e[0] != ob]
        ok_open = [e for e in ok_open if e[0] != ob]

    return Outcome(True, None, {"steps": steps, "frontier_max": frontier_max,
                                "states": len(states)})


def _failure(part: Partition, cid: int, ev_pos: int, frontier, seen, states,
             open_list) -> Failure:
    possible = sorted({sid for sid, _ in seen} | {sid for sid, _, _ in frontier})
    # The frontier configuration with the longest linearization stands for the prefix.
    best: list[tuple[int, int]] = []
    for _, _, path in frontier:
        seq = []
        while path:
            pid, sid, path = path
            seq.append((pid, sid))
        if len(seq) >= len(best):
            best = seq[::-1]
    return Failure(call=cid, event=ev_pos, states=[states[s] for s in possible],
                   linearization=[p for p, _ in best], prefix_states=[states[s] for _, s in best],
                   open_calls=[e[3] for e in open_list if e[3] != cid])
