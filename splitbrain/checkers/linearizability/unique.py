"""A polynomial-time linearizability check for registers whose written values are unique.

When every value is written at most once per key (and never the initial value), every read
names the one write it observed: the *read mapping* of Gibbons and Korach ("Testing shared
memories", SIAM J. Comput. 1997). Linearizability of a register is then a question about the
order of writes only, decided here in O(n log n) per key instead of by the exponential search.

Precondition (checked per key while the history is streamed; a key that breaks it is handed to
the general search in search.py, with the reason in the result's stats):
- the model is `register`, `cas-register` or `kv` (the cas-register part: no `append`);
- no value is written twice on the key (by `write` or by a `cas` [from, to]), none equals the
  initial value (null; for kv also "", which a read of an absent key returns);
- no `cas` failed with "precondition-failed": that observation says "the value was NOT x", a
  negative fact the read mapping cannot express (see below). A cas that failed with
  "key-does-not-exist" is a read of the initial value; one that failed otherwise did not happen.

The argument (each step proved in the README, "Linearizability at scale"):
1. Blocks. In a legal sequential history of a register with unique values, the write of v is
   followed by exactly the reads of v, then by the next write: the history is a sequence of
   *blocks* B(v) = [write v, reads of v]. The initial value's block (no write) comes first.
2. A successful `cas [a, b]` reads a and writes b atomically: it is the last operation of B(a)
   and the first of B(b), so B(b) directly follows B(a). These links form *chains* of blocks that
   occur contiguously and in a fixed order; within a chain every operation has a rank
   (write of v1, reads of v1, cas v1->v2, reads of v2, ...).
3. Real time. Operation x precedes y (x completed before y was invoked) forces x before y. For two
   chains X, Y this holds for some pair iff f(X) < s(Y), where f is the smallest completion and s
   the largest invocation among a chain's operations: the chains' order is constrained by
   these two numbers alone. A history is linearizable iff (a) within each chain no operation of a
   higher rank precedes one of a lower rank, (b) no value has two successful cas from it, the
   cas links have no cycle and every value read has a write, and (c) the graph X -> Y iff
   f(X) < s(Y) is acyclic. Sufficiency: a topological order of the chains, each expanded by rank
   (reads of one value by completion), respects real time and is legal. Necessity: blocks are
   contiguous in every legal order, so every edge must be respected.
4. (c) is decided by Kahn's algorithm without building the dense graph: chain Y has no incoming
   edge iff s(Y) <= min f over the other chains, so the candidates are the chain with the
   smallest f (against the second smallest) and the chain with the smallest s.
5. Crashed operations (info, or no completion) are optional and have no completion (f = +inf).
   A crashed write or cas whose value is *observed* (an ok read returns it, an ok cas or an
   observed crashed cas takes it as `from`) must have taken effect and is kept; one whose value
   is never observed is left out: removing it from any linearization leaves a legal one (no
   kept operation reads its value; see `reduce_unobserved_crashed` in search.py, which applies
   the same reduction to the general search). A crashed read constrains nothing and is dropped.

Where the argument does not carry over (so the general search runs): a failed cas with
"precondition-failed" (a negative observation: a crashed write nobody reads can make it true, so
crashed writes can no longer be dropped, and which write the state came from is not named);
values written twice (a read no longer names its write: NP-complete in general, Gibbons and
Korach); `append` (kv), whose state is the concatenation of several writes.

The counterexample: the first ok completion (in history order) whose prefix cannot be
linearized is found by galloping + binary search over prefixes (each prefix checked the same
way, ops still open at the cut being optional); the states possible just before it, and one
linearization of the prefix, come from the same analysis. They equal what the general search
reports (tests/test_lin_unique.py checks the failing call and the set of states).
"""

from __future__ import annotations

import time
from array import array
from typing import Any, Iterable

from ...history.op import FAIL, OK, Op
from .models import CasRegisterModel, KvModel, Model, RegisterModel, freeze
from .prepare import client_calls
from .search import Failure, TimeLimitReached

METHOD_POLY = "unique-values polynomial"
METHOD_SEARCH = "search"

W, R, CAS = 0, 1, 2           # kinds of call
INF = 1 << 62                 # the completion of a crashed (or still open) call
NEG = -1                      # the initial value's "write": before everything

# The value id of the initial value (null) on every key.
INIT = 0


def supports(model: Model) -> bool:
    """The models whose keys may be checked by the polynomial method."""
    return isinstance(model, (RegisterModel, CasRegisterModel))


class UniqueKey:
    """The calls of one key as compact columns (no per-call Python object).

    Call ids are those partition_history gives the same key's calls (completion order, the
    calls still open at the end last), so a Partition built later for the counterexample lines
    up. `a` holds the value id written (write), read (read) or expected (cas); `b` the id a cas
    writes. `values[id]` is the frozen value.
    """

    __slots__ = ("key", "kind", "crashed", "inv", "comp", "a", "b", "values", "vid", "written",
                 "dropped", "why", "empty_id", "n_ops")

    def __init__(self, key: Any):
        self.key = key
        self.kind = bytearray()
        self.crashed = bytearray()
        self.inv = array("q")
        self.comp = array("q")
        self.a = array("q")
        self.b = array("q")
        self.values: list = [None]
        self.vid: dict = {}       # value -> id (the initial value null is id 0, not in vid)
        self.written = bytearray(1)   # by value id: 1 once written (a bytearray, not a set)
        self.dropped = 0
        self.why: str | None = None   # set when the key breaks the precondition
        self.empty_id = -1        # kv: the id of "" (a read of an absent key returns it)
        self.n_ops = 0

    def __len__(self) -> int:
        return len(self.kind)

    def _id(self, v: Any) -> int:
        if v is None:
            return INIT
        i = self.vid.get(v)
        if i is None:
            i = self.vid[v] = len(self.values)
            self.values.append(v)
            self.written.append(0)
        return i

    def _write_id(self, v: Any, kv: bool) -> int:
        if v is None or (kv and v == ""):
            raise _Ineligible("a write of the initial value")
        i = self._id(v)
        if self.written[i]:
            # (no repr of the value: it may be a huge integer, and the reasons are counted)
            raise _Ineligible("a value is written twice")
        self.written[i] = 1
        return i

    def add(self, kind: int, crashed: bool, inv: int, comp: int, a: int, b: int) -> None:
        self.kind.append(kind)
        self.crashed.append(crashed)
        self.inv.append(inv)
        self.comp.append(comp)
        self.a.append(a)
        self.b.append(b)

    def release(self) -> None:
        """Drop the columns (the key goes to the general search)."""
        self.kind = self.crashed = bytearray()
        self.inv = self.comp = self.a = self.b = array("q")
        self.values, self.vid, self.written = [None], {}, bytearray(1)


class _Ineligible(Exception):
    pass


def stream_unique(history: Iterable[Op], model: Model, deadline: float | None = None
                  ) -> dict[Any, UniqueKey]:
    """One pass over the history: per key (frozen) a UniqueKey, `why` set when the key breaks the
    precondition (its columns are then dropped). Same op semantics and errors as
    partition_history (prepare.py)."""
    kv = isinstance(model, KvModel)
    ignore = model.ignore
    keys: dict[Any, UniqueKey] = {}

    def settle(inv: Op, comp: Op | None) -> None:
        f = inv.f
        if f in ignore:
            return
        key = freeze(inv.key)
        u = keys.get(key)
        if u is None:
            u = keys[key] = UniqueKey(inv.key)
        u.n_ops += 1 if comp is None else 2
        if u.why is not None:
            return
        try:
            _settle(u, inv, comp, f, kv, model)
        except _Ineligible as e:
            u.why = str(e)
            u.release()

    for inv, comp in client_calls(history, deadline, model):
        settle(inv, comp)
    if kv:
        for u in keys.values():
            if u.why is None:
                _alias_empty(u)
    return keys


def _alias_empty(u: UniqueKey) -> None:
    """kv: a read of "" is a read of the absent key (the initial value) when nobody writes ""."""
    e = u.vid.get("")
    if e is None:
        return
    if u.written[e]:  # cannot happen: _write_id refuses "" on kv
        u.why = 'value "" is written'
        u.release()
        return
    kind, a = u.kind, u.a
    for c in range(len(kind)):
        if kind[c] == R and a[c] == e:
            a[c] = INIT


def _settle(u: UniqueKey, inv: Op, comp: Op | None, f: str, kv: bool, model: Model) -> None:
    """Mirror of prepare.partition_history's `settle` for one call of the register family."""
    ok = comp is not None and comp.type == OK
    if f == "read":
        if ok:
            u.add(R, False, inv.index, comp.index, u._id(freeze(comp.value)), -1)
        else:
            u.dropped += 1  # failed, or crashed: a read constrains nothing then
        return
    if f == "write":
        if comp is not None and comp.type == FAIL:
            u.dropped += 1
            return
        v = u._write_id(freeze(inv.value), kv)
        if ok:
            u.add(W, False, inv.index, comp.index, v, -1)
        else:
            u.add(W, True, inv.index, INF, v, -1)
        return
    if f == "cas" and not isinstance(model, RegisterModel):
        value = freeze(inv.value)
        if not (isinstance(value, tuple) and len(value) == 2):
            raise _Ineligible("a cas whose argument is not [from, to]")  # the search says why
        if comp is not None and comp.type == FAIL:
            obs = model.fail_observation(f, value, comp.error)
            if obs is None:
                u.dropped += 1
            elif obs[0] == "absent":
                u.add(R, False, inv.index, comp.index, INIT, -1)
            else:
                raise _Ineligible("a cas failed with precondition-failed (a negative "
                                  "observation)")
            return
        frm = u._id(value[0]) if not (kv and value[0] == "") else u._id("")
        to = u._write_id(value[1], kv)
        if ok:
            u.add(CAS, False, inv.index, comp.index, frm, to)
        else:
            u.add(CAS, True, inv.index, INF, frm, to)
        return
    if f == "append":
        raise _Ineligible("append (the state is a concatenation)")
    raise _Ineligible(f"operation {f!r}")


# --- the analysis ------------------------------------------------------------------------------

class _Verdict:
    __slots__ = ("ok", "why", "chains", "chain_f", "chain_s", "need", "order")

    def __init__(self, ok: bool, why: str = ""):
        self.ok = ok
        self.why = why


def analyze(u: UniqueKey, cut: int = INF - 1, exclude: int = -1, *, order: bool = False
            ) -> _Verdict:
    """Is the prefix of key `u` up to history index `cut` linearizable (every ok call completed
    by `cut` linearized, calls invoked by then optional otherwise), without call `exclude`?

    With order=True a feasible verdict carries the chains in a topological order.
    """
    kind, inv, comp, A, B = u.kind, u.inv, u.comp, u.a, u.b
    n = len(kind)
    nv = len(u.values)
    writer = array("q", [-1]) * nv
    need = bytearray(n)
    present = bytearray(n)          # invoked by the cut and not excluded
    observed = bytearray(nv)
    todo: list[int] = []
    full = cut >= INF - 1
    for c in range(n):
        if not full and inv[c] > cut:
            continue
        if c == exclude:
            continue
        present[c] = 1
        k = kind[c]
        if k != R:
            writer[B[c] if k == CAS else A[c]] = c
        if comp[c] <= cut:          # an ok call completed by the cut: required
            if k == W:
                need[c] = 1
                continue
            if k == CAS:
                need[c] = 1
            v = A[c]
            if not observed[v]:
                observed[v] = 1
                todo.append(v)
    # Values observed must have been written; a crashed writer of one took effect.
    while todo:
        v = todo.pop()
        if v == INIT:
            continue
        w = writer[v]
        if w < 0:
            return _Verdict(False, "a value is read but never written (by then)")
        if not need[w]:
            need[w] = 1
            if kind[w] == CAS:
                a = A[w]
                if not observed[a]:
                    observed[a] = 1
                    todo.append(a)
    # Blocks and cas links.
    succ = array("q", [-1]) * nv
    pred = array("q", [-1]) * nv
    wS = array("q", [NEG]) * nv     # the writer's invocation and completion
    wF = array("q", [NEG]) * nv
    rS = array("q", [NEG]) * nv     # the reads': largest invocation, smallest completion
    rF = array("q", [INF]) * nv
    has = bytearray(nv)             # a block present (its writer needed, or the initial value)
    has[INIT] = 1
    for c in range(n):
        if not present[c]:
            continue
        k = kind[c]
        if k == R:
            if comp[c] > cut:
                continue            # a read still open at the cut: optional, dropped
            v = A[c]
            if inv[c] > rS[v]:
                rS[v] = inv[c]
            if comp[c] < rF[v]:
                rF[v] = comp[c]
            continue
        if not need[c]:
            continue                # an unobserved crashed (or still open) write: left out
        v = B[c] if k == CAS else A[c]
        has[v] = 1
        wS[v] = inv[c]
        wF[v] = comp[c] if comp[c] <= cut else INF
        if k == CAS:
            a = A[c]
            if succ[a] >= 0:
                return _Verdict(False, "two cas from one value took effect")
            succ[a] = v
            pred[v] = a
    # Chains: from each head (a block not written by a cas) follow the links, checking ranks.
    chains = array("q")             # head value of each chain
    cf = array("q")
    cs = array("q")
    seen = 0
    for v in range(nv):
        if not has[v] or pred[v] >= 0:
            continue
        f_min = INF
        prev_s = NEG - 1             # largest invocation among lower ranks
        x = v
        while x >= 0:
            seen += 1
            # rank 2i: the writer of x; rank 2i+1: the reads of x
            if wF[x] <= prev_s:
                return _Verdict(False, "a write completes before an operation it must "
                                       "follow is invoked")
            if wS[x] > prev_s:
                prev_s = wS[x]
            if rF[x] < INF:
                if rF[x] <= prev_s:
                    return _Verdict(False, "a read completes before an operation it must "
                                           "follow is invoked")
            if wF[x] < f_min:
                f_min = wF[x]
            if rF[x] < f_min:
                f_min = rF[x]
            if rS[x] > prev_s:
                prev_s = rS[x]
            x = succ[x]
        chains.append(v)
        cf.append(f_min)
        cs.append(prev_s)           # the chain's largest invocation
    if seen != sum(has):
        return _Verdict(False, "the cas links form a cycle")
    topo = _kahn(cf, cs)
    if topo is None:
        return _Verdict(False, "the real-time order of the writes has a cycle")
    out = _Verdict(True)
    out.chains, out.chain_f, out.chain_s, out.need = chains, cf, cs, need
    out.order = [chains[i] for i in topo] if order else None
    return out


def _kahn(cf: array, cs: array) -> list[int] | None:
    """A topological order of the chains under X -> Y iff cf[X] < cs[Y], or None (a cycle)."""
    m = len(cf)
    by_f = sorted(range(m), key=cf.__getitem__)
    by_s = sorted(range(m), key=cs.__getitem__)
    gone = bytearray(m)
    pf = ps = 0
    out: list[int] = []
    while len(out) < m:
        while gone[by_f[pf]]:
            pf += 1
        a = by_f[pf]
        q = pf + 1
        while q < m and gone[by_f[q]]:
            q += 1
        m2 = cf[by_f[q]] if q < m else INF
        if cs[a] <= m2:
            gone[a] = 1
            out.append(a)
            continue
        while gone[by_s[ps]]:
            ps += 1
        b = by_s[ps]
        if b == a:
            q = ps + 1
            while q < m and gone[by_s[q]]:
                q += 1
            if q == m:
                return None
            b = by_s[q]
        if cs[b] <= cf[a]:
            gone[b] = 1
            out.append(b)
            continue
        return None
    return out


# --- verdict and counterexample ------------------------------------------------------------------

def check_unique(u: UniqueKey, deadline: float | None = None) -> tuple[bool, Failure | None]:
    """(valid, failure) for one key; the failure in search.py's terms (call ids as in the key's
    Partition)."""
    if analyze(u).ok:
        return True, None
    return False, explain(u, deadline)


def explain(u: UniqueKey, deadline: float | None = None) -> Failure:
    """The first ok completion whose prefix cannot be linearized, and the evidence."""
    comp, crashed = u.comp, u.crashed
    steps = sorted((c for c in range(len(comp)) if not crashed[c]), key=comp.__getitem__)

    def bad(j: int) -> bool:
        if deadline is not None and time.monotonic() > deadline:
            raise TimeLimitReached()
        return not analyze(u, comp[steps[j]]).ok

    # Galloping, then binary search: O(d log d) for a failure at step d.
    hi = 0
    while not bad(hi):
        if hi == len(steps) - 1:
            raise AssertionError("an invalid key has a first failing completion")
        hi = min(2 * hi + 1, len(steps) - 1)
    lo = (hi - 1) // 2 if hi else -1   # the last one known good (or -1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if bad(mid):
            hi = mid
        else:
            lo = mid
    j = hi
    d = steps[j]
    cut = comp[d]
    before = analyze(u, cut, exclude=d, order=True)
    assert before.ok, "the prefix before the first failing completion is linearizable"
    lin, states_after = _expand(u, before, cut, d)
    states = _final_states(u, before, cut, d)
    inv = u.inv
    open_calls = sorted((c for c in range(len(comp))
                         if c != d and inv[c] < cut and comp[c] > cut), key=inv.__getitem__)
    return Failure(call=d, event=j, states=states, linearization=lin,
                   prefix_states=states_after, open_calls=open_calls)


def _expand(u: UniqueKey, v: _Verdict, cut: int, exclude: int
            ) -> tuple[list[int], list[Any]]:
    """One linearization of the analysed prefix: the chains in order, each by rank."""
    kind, comp, A, B = u.kind, u.comp, u.a, u.b
    reads: dict[int, list[int]] = {}
    writer: dict[int, int] = {}
    for c in range(len(kind)):
        if c == exclude:
            continue
        if kind[c] == R:
            if comp[c] <= cut:
                reads.setdefault(A[c], []).append(c)
        elif v.need[c] and u.inv[c] <= cut:
            writer[B[c] if kind[c] == CAS else A[c]] = c
    succ = {A[c]: B[c] for c in writer.values() if kind[c] == CAS}
    lin: list[int] = []
    after: list[Any] = []
    for head in v.order:
        x = head
        while x is not None:
            if x != INIT:
                lin.append(writer[x])
                after.append(u.values[x])
            for c in sorted(reads.get(x, ()), key=comp.__getitem__):
                lin.append(c)
                after.append(u.values[x])
            x = succ.get(x)
    return lin, after


def _final_states(u: UniqueKey, v: _Verdict, cut: int, exclude: int) -> list[Any]:
    """The states a linearization of the analysed prefix can end in (what the search lists as
    "states possible just before" the failing call).

    A chain can come last iff it has no edge to another chain: f(X) >= s(Y) for every other Y.
    After it, calls left out may still be linearized: a left-out write (crashed, or open at the
    cut) can always go last; a left-out cas [a, b] can follow a linearization ending in a.
    """
    cf, cs, chains = v.chain_f, v.chain_s, v.chains
    m = len(chains)
    top = sorted(range(m), key=lambda i: -cs[i])[:2]
    ends = []
    for i in range(m):
        other = cs[top[0]] if top[0] != i else (cs[top[1]] if len(top) > 1 else NEG)
        if cf[i] >= other:
            ends.append(_chain_last(u, v, chains[i], cut))
    kind, inv, A, B = u.kind, u.inv, u.a, u.b
    final = list(dict.fromkeys(ends))
    have = set(final)
    left_cas: list[int] = []
    for c in range(len(kind)):
        if c == exclude or inv[c] > cut or v.need[c] or kind[c] == R:
            continue
        if kind[c] == W:
            if A[c] not in have:
                have.add(A[c])
                final.append(A[c])
        else:
            left_cas.append(c)
    grew = True
    while grew and left_cas:
        grew = False
        for c in left_cas:
            if A[c] in have and B[c] not in have:
                have.add(B[c])
                final.append(B[c])
                grew = True
    return [u.values[x] for x in final]


def _chain_last(u: UniqueKey, v: _Verdict, head: int, cut: int) -> int:
    kind, A, B, inv = u.kind, u.a, u.b, u.inv
    succ = {}
    for c in range(len(kind)):
        if kind[c] == CAS and v.need[c] and inv[c] <= cut:
            succ[A[c]] = B[c]
    x = head
    while x in succ:
        x = succ[x]
    return x
