"""Generators as pure values (Jepsen's design), with a deterministic model of time.

A generator is an immutable object. Asked for an operation for one thread at one moment,

    gen.op(ctx) -> None                  exhausted: nothing more, ever, for any thread
                | (PENDING, gen')        nothing for this thread now; ask again later
                | (GenOp, gen')          do this op, not before `GenOp.time_ns`

it returns its successor instead of changing itself, so the same generator asked the same
questions gives the same answers: randomness comes from seeds carried in the values, never from a
global RNG, and time only from `ctx.time_ns` (nanoseconds since the test started). Only the
interpreter (splitbrain.harness.runner) has threads, clocks and I/O; it asks for the next op when
a thread is free, waits until the op's time, runs it, and re-asks PENDING threads whenever an op
completes (and every few milliseconds).

An op whose `f` is "sleep" is not performed: the thread waits `value` ns and asks again (the
nemesis schedule is made of sleeps and fault ops).

Combinators: once, fn (a seeded function of an rng, repeated), seq, cycle, sleep, mix, stagger,
rate, time_limit, limit, each_thread, synchronize, phases, independent (a group of threads per key),
map_ops, and nemesis_cycle (the fault schedule).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

NS_PER_S = 1_000_000_000
_MASK64 = (1 << 64) - 1


class _Pending:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PENDING"


PENDING = _Pending()


@dataclass(frozen=True, slots=True)
class GenOp:
    """An operation a generator asks for: history fields plus the earliest time to start it."""

    f: str
    value: Any = None
    key: Any = None
    time_ns: int = 0
    node: str | None = None   # a specific node to send it to (final reads), else the client's


@dataclass(frozen=True, slots=True)
class Ctx:
    """What a generator may look at: the time, the asking thread, all threads, the free ones."""

    time_ns: int
    thread: Any
    threads: tuple = ()
    free: frozenset = frozenset()

    def restrict(self, threads: tuple) -> "Ctx":
        return Ctx(self.time_ns, self.thread, threads, self.free & frozenset(threads))


def _next_seed(seed: int) -> int:
    # splitmix64: a cheap, well-mixed successor, so pure generators need no Random object per op.
    z = (seed + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _unit(seed: int) -> float:
    """A float in [0, 1) from a seed."""
    return (seed >> 11) / float(1 << 53)


class Gen:
    """Base class of generators. Subclasses are frozen dataclasses implementing `op`."""

    def op(self, ctx: Ctx):
        raise NotImplementedError


def as_gen(x: Any) -> Gen:
    """Generators, GenOps (one op, once) and lists/tuples (a sequence) are all generators."""
    if isinstance(x, Gen):
        return x
    if isinstance(x, GenOp):
        return Once(x)
    if isinstance(x, (list, tuple)):
        return Seq(tuple(as_gen(g) for g in x))
    raise TypeError(f"not a generator: {x!r}")


@dataclass(frozen=True)
class Once(Gen):
    """One op, once (at the time asked, unless the op carries a later time)."""

    gen_op: GenOp

    def op(self, ctx):
        return replace(self.gen_op, time_ns=max(self.gen_op.time_ns, ctx.time_ns)), Done()


@dataclass(frozen=True)
class Done(Gen):
    def op(self, ctx):
        return None


@dataclass(frozen=True)
class Fn(Gen):
    """`fn(rng) -> GenOp` called for every op, forever; rng is seeded from the carried seed."""

    fn: Callable[[random.Random], GenOp]
    seed: int = 0

    def op(self, ctx):
        o = self.fn(random.Random(self.seed))
        return replace(o, time_ns=max(o.time_ns, ctx.time_ns)), Fn(self.fn, _next_seed(self.seed))


@dataclass(frozen=True)
class Seq(Gen):
    """Each generator in turn, moving on when one is exhausted."""

    gens: tuple

    def op(self, ctx):
        gens = self.gens
        while gens:
            r = gens[0].op(ctx)
            if r is not None:
                o, g = r
                return o, Seq((g,) + gens[1:])
            gens = gens[1:]
        return None


@dataclass(frozen=True)
class Cycle(Gen):
    """Repeat a generator forever (or `times` times): restarts it from its original value."""

    original: Gen
    current: Gen | None = None
    times: int | None = None

    def op(self, ctx):
        cur = self.current if self.current is not None else self.original
        r = cur.op(ctx)
        if r is not None:
            return r[0], Cycle(self.original, r[1], self.times)
        if self.times is not None and self.times <= 1:
            return None
        if self.current is None:
            return None    # the original itself is empty: stop rather than spin
        nxt = Cycle(self.original, None, None if self.times is None else self.times - 1)
        return nxt.op(ctx)


def sleep(dt_ns: int) -> Once:
    """Wait dt_ns (the interpreter sleeps; nothing is recorded)."""
    return Once(GenOp("sleep", int(dt_ns)))


@dataclass(frozen=True)
class Mix(Gen):
    """A random choice among generators for every op; exhausted ones drop out."""

    gens: tuple
    seed: int = 0

    def op(self, ctx):
        gens = list(self.gens)
        seed = self.seed
        pending = False
        while gens:
            seed = _next_seed(seed)
            i = int(_unit(seed) * len(gens))
            r = gens[i].op(ctx)
            if r is None:
                del gens[i]
                continue
            o, g = r
            gens[i] = g
            if o is PENDING:
                pending = True
                # Try another branch rather than wait on one pending branch.
                others = [j for j in range(len(gens)) if j != i]
                for j in others:
                    r2 = gens[j].op(ctx)
                    if r2 is not None and r2[0] is not PENDING:
                        gens[j] = r2[1]
                        return r2[0], Mix(tuple(gens), seed)
                return PENDING, Mix(tuple(gens), seed)
            return o, Mix(tuple(gens), seed)
        return (PENDING, self) if pending else None


@dataclass(frozen=True)
class Stagger(Gen):
    """Ops spaced by a random interval uniform in [0, 2*dt_ns) (mean dt_ns), across all threads."""

    dt_ns: int
    gen: Gen
    seed: int = 0
    next_ns: int | None = None

    def op(self, ctx):
        r = self.gen.op(ctx)
        if r is None:
            return None
        o, g = r
        if o is PENDING or o.f == "sleep":
            return o, Stagger(self.dt_ns, g, self.seed, self.next_ns)
        t = max(o.time_ns, ctx.time_ns if self.next_ns is None else self.next_ns)
        seed = _next_seed(self.seed)
        nxt = t + int(_unit(seed) * 2 * self.dt_ns)
        return replace(o, time_ns=t), Stagger(self.dt_ns, g, seed, nxt)


def stagger(dt_s: float, gen: Any, seed: int = 0) -> Stagger:
    return Stagger(int(dt_s * NS_PER_S), as_gen(gen), seed)


def rate(ops_per_s: float, gen: Any, seed: int = 0) -> Gen:
    """About `ops_per_s` ops per second in total (0 or less: no limit)."""
    if ops_per_s <= 0:
        return as_gen(gen)
    return Stagger(int(NS_PER_S / ops_per_s), as_gen(gen), seed)


@dataclass(frozen=True)
class TimeLimit(Gen):
    """Ops until `dt_ns` after the first one was asked for; then exhausted."""

    dt_ns: int
    gen: Gen
    deadline_ns: int | None = None

    def op(self, ctx):
        deadline = self.deadline_ns if self.deadline_ns is not None else ctx.time_ns + self.dt_ns
        if ctx.time_ns >= deadline:
            return None
        r = self.gen.op(ctx)
        if r is None:
            return None
        o, g = r
        if o is not PENDING and o.time_ns >= deadline:
            return None
        if o is not PENDING and o.f == "sleep" and ctx.time_ns + o.value > deadline:
            o = replace(o, value=deadline - ctx.time_ns)
        return o, TimeLimit(self.dt_ns, g, deadline)


def time_limit(dt_s: float, gen: Any) -> TimeLimit:
    return TimeLimit(int(dt_s * NS_PER_S), as_gen(gen))


@dataclass(frozen=True)
class Limit(Gen):
    """At most n ops (sleeps do not count)."""

    n: int
    gen: Gen

    def op(self, ctx):
        if self.n <= 0:
            return None
        r = self.gen.op(ctx)
        if r is None:
            return None
        o, g = r
        if o is PENDING or o.f == "sleep":
            return o, Limit(self.n, g)
        return o, Limit(self.n - 1, g)


def limit(n: int, gen: Any) -> Limit:
    return Limit(n, as_gen(gen))


@dataclass(frozen=True)
class EachThread(Gen):
    """Every thread gets its own copy of `template`; exhausted when every thread's copy is."""

    template: Gen
    per: tuple = ()          # ((thread, gen), ...) for threads that started

    def op(self, ctx):
        states = dict(self.per)
        g = states.get(ctx.thread, self.template)
        r = g.op(ctx)
        if r is None:
            states[ctx.thread] = Done()
            nxt = EachThread(self.template, tuple(states.items()))
            done = all(isinstance(states.get(t), Done) for t in ctx.threads) if ctx.threads else True
            return None if done else (PENDING, nxt)
        states[ctx.thread] = r[1]
        return r[0], EachThread(self.template, tuple(states.items()))


def each_thread(gen: Any) -> EachThread:
    return EachThread(as_gen(gen))


@dataclass(frozen=True)
class Synchronize(Gen):
    """PENDING until every thread is free (all earlier ops completed); then `gen`."""

    gen: Gen

    def op(self, ctx):
        if ctx.threads and not set(ctx.threads) <= set(ctx.free):
            return PENDING, self
        return self.gen.op(ctx)


def phases(*gens: Any) -> Seq:
    """Each phase starts only when every thread finished the previous one."""
    return Seq(tuple(Synchronize(as_gen(g)) for g in gens))


@dataclass(frozen=True)
class MapOps(Gen):
    fn: Callable[[GenOp], GenOp]
    gen: Gen

    def op(self, ctx):
        r = self.gen.op(ctx)
        if r is None:
            return None
        o, g = r
        return (o if o is PENDING or o.f == "sleep" else self.fn(o)), MapOps(self.fn, g)


def map_ops(fn: Callable[[GenOp], GenOp], gen: Any) -> MapOps:
    return MapOps(fn, as_gen(gen))


@dataclass(frozen=True)
class Independent(Gen):
    """Jepsen's independent concurrent generator: a group of `group_size` threads per key.

    Threads (in the order of ctx.threads) are split into groups; each group works on one key with
    `key_gen(key)` (ops get `key` set), and takes the next unused key from `keys` when that
    generator is exhausted. Exhausted when the keys run out and every group is done.
    """

    keys: tuple
    group_size: int
    key_gen: Callable[[Any], Gen]
    next_key: int = 0
    groups: tuple = ()      # ((group index, key, gen or None when done), ...)

    def op(self, ctx):
        assert self.group_size >= 1, "group_size must be at least 1"
        threads = tuple(ctx.threads) or (ctx.thread,)
        try:
            pos = threads.index(ctx.thread)
        except ValueError:
            return None
        gi = pos // self.group_size
        members = threads[gi * self.group_size:(gi + 1) * self.group_size]
        state = {g: (k, gen) for g, k, gen in self.groups}
        next_key = self.next_key
        while True:
            key, gen = state.get(gi, (None, None))
            if gen is None:
                if next_key >= len(self.keys):
                    state[gi] = (None, Done())
                    nxt = self._with(next_key, state)
                    n_groups = (len(threads) + self.group_size - 1) // self.group_size
                    done = all(isinstance(state.get(i, (None, None))[1], Done)
                               for i in range(n_groups))
                    return None if done else (PENDING, nxt)
                key, gen = self.keys[next_key], self.key_gen(self.keys[next_key])
                next_key += 1
            if isinstance(gen, Done):
                return PENDING, self._with(next_key, state)
            r = gen.op(ctx.restrict(members))
            if r is None:
                state[gi] = (None, None)   # take the next key
                continue
            o, g = r
            state[gi] = (key, g)
            if o is not PENDING and o.f != "sleep":
                o = replace(o, key=key)
            return o, self._with(next_key, state)

    def _with(self, next_key: int, state: dict) -> "Independent":
        return Independent(self.keys, self.group_size, self.key_gen, next_key,
                           tuple((g, k, gen) for g, (k, gen) in sorted(state.items())))


def independent(keys: Iterable[Any], group_size: int, key_gen: Callable[[Any], Any]) -> Independent:
    return Independent(tuple(keys), group_size, lambda k: as_gen(key_gen(k)))


@dataclass(frozen=True)
class NemesisCycle(Gen):
    """The fault schedule: quiet `interval`, start a fault, hold `interval`, stop it, repeat.

    `faults` are (start_op, stop_op) pairs of GenOps. Faults are drawn in rounds, without
    replacement: each round starts every fault once, in an order drawn from the carried seed, so
    a test that names `partition,kill,pause` sees each of them as soon as it runs long enough for
    one round (a draw with replacement could pick `pause` three times). The stop op is always the
    partner of the start op that preceded it.
    """

    faults: tuple
    interval_ns: int
    seed: int = 0
    step: int = 0
    current: int = -1
    used: int = 0          # bitmask of the faults already started in this round

    def op(self, ctx):
        if not self.faults:
            return None
        s = self.step % 4
        nxt = replace(self, step=self.step + 1)
        if s in (0, 2):
            return GenOp("sleep", self.interval_ns, time_ns=ctx.time_ns), nxt
        if s == 1:
            seed = _next_seed(self.seed)
            n = len(self.faults)
            used = 0 if self.used == (1 << n) - 1 else self.used
            free = [k for k in range(n) if not used >> k & 1]
            i = free[int(_unit(seed) * len(free))]
            start = self.faults[i][0]
            return replace(start, time_ns=ctx.time_ns), replace(nxt, seed=seed, current=i,
                                                                used=used | 1 << i)
        stop = self.faults[self.current][1]
        return replace(stop, time_ns=ctx.time_ns), replace(nxt, current=-1)


def nemesis_cycle(faults: Iterable[tuple[GenOp, GenOp]], interval_s: float, seed: int = 0) -> NemesisCycle:
    return NemesisCycle(tuple(faults), int(interval_s * NS_PER_S), seed)


def drain(gen: Any, threads: tuple = (0,), *, step_ns: int = 0, max_ops: int = 100_000,
          complete_ns: int = 0) -> list[tuple[Any, GenOp]]:
    """A tiny deterministic interpreter for tests: round-robin over threads in simulated time.

    Each op completes `complete_ns` after it starts; sleeps advance the thread's clock. Returns
    (thread, op) in the order issued. Stops at exhaustion or `max_ops` ops.
    """
    g = as_gen(gen)
    clock = {t: 0 for t in threads}
    out: list[tuple[Any, GenOp]] = []
    stalls = 0
    while len(out) < max_ops:
        t = min(threads, key=lambda th: (clock[th], threads.index(th)))
        ctx = Ctx(clock[t], t, threads, frozenset(threads))
        r = g.op(ctx)
        if r is None:
            break
        o, g = r
        if o is PENDING:
            stalls += 1
            assert stalls < 10_000, "generator stays PENDING"
            clock[t] += max(step_ns, 1_000_000)
            continue
        stalls = 0
        if o.f == "sleep":
            clock[t] = max(clock[t], o.time_ns) + o.value
            continue
        clock[t] = max(clock[t], o.time_ns) + complete_ns + step_ns
        out.append((t, o))
    return out
