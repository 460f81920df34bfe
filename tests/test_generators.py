"""Pure generators: determinism, time limits, rates, phases, each-thread, independent keys, nemesis."""

from __future__ import annotations

from collections import Counter

from splitbrain.harness import generators as g
from splitbrain.harness.generators import NS_PER_S, PENDING, Ctx, GenOp


def w(rng):
    return GenOp("write", rng.randrange(1000))


def r(rng):
    return GenOp("read")


def test_same_generator_same_answers():
    gen = g.limit(50, g.Mix((g.Fn(w, 1), g.Fn(r, 2)), seed=3))
    a = g.drain(gen, threads=(0, 1, 2))
    b = g.drain(gen, threads=(0, 1, 2))
    assert a == b and len(a) == 50
    # and the generator value itself was not changed by being used
    assert g.drain(gen, threads=(0,)) == g.drain(gen, threads=(0,))


def test_mix_uses_every_branch_roughly_evenly():
    ops = g.drain(g.limit(1000, g.Mix((g.Fn(w), g.Fn(r)), seed=9)))
    counts = Counter(o.f for _, o in ops)
    assert 400 < counts["write"] < 600 and counts["read"] == 1000 - counts["write"]


def test_different_seeds_differ():
    a = g.drain(g.limit(20, g.Fn(w, seed=1)))
    b = g.drain(g.limit(20, g.Fn(w, seed=2)))
    assert [o.value for _, o in a] != [o.value for _, o in b]


def test_time_limit_and_rate():
    gen = g.time_limit(2.0, g.rate(100, g.Fn(r), seed=4))
    ops = g.drain(gen, threads=(0, 1, 2, 3))
    times = [o.time_ns for _, o in ops]
    assert all(t < 2 * NS_PER_S for t in times)
    assert 150 < len(ops) < 250      # ~100/s for 2 s across all threads
    assert times == sorted(times)    # stagger hands out increasing times


def test_phases_wait_for_all_threads():
    gen = g.phases(g.each_thread(GenOp("a")), g.each_thread(GenOp("b")))
    ops = g.drain(gen, threads=(0, 1, 2))
    fs = [o.f for _, o in ops]
    assert fs == ["a", "a", "a", "b", "b", "b"]


def test_synchronize_is_pending_while_a_thread_is_busy():
    gen = g.phases(GenOp("x"))
    res = gen.op(Ctx(0, 0, (0, 1), frozenset({0})))
    assert res[0] is PENDING
    o, _ = gen.op(Ctx(0, 0, (0, 1), frozenset({0, 1})))
    assert o.f == "x"


def test_each_thread_gives_every_thread_its_own_copy():
    ops = g.drain(g.each_thread([GenOp("a"), GenOp("b")]), threads=(0, 1))
    per = {t: [o.f for tt, o in ops if tt == t] for t in (0, 1)}
    assert per == {0: ["a", "b"], 1: ["a", "b"]}


def test_independent_groups_of_threads_per_key():
    gen = g.independent(range(4), 2, lambda k: g.limit(3, g.Fn(w)))
    ops = g.drain(gen, threads=(0, 1, 2, 3))
    by_key = Counter(o.key for _, o in ops)
    assert by_key == {0: 3, 1: 3, 2: 3, 3: 3}
    # threads 0,1 share a key at a time, and 2,3 another
    for t, o in ops:
        partner = {0: 1, 1: 0, 2: 3, 3: 2}[t]
        assert all(oo.key != o.key for tt, oo in ops if tt not in (t, partner))


def test_limit_counts_ops_not_sleeps():
    gen = g.limit(3, g.Cycle(g.as_gen([g.sleep(10), GenOp("x")])))
    assert [o.f for _, o in g.drain(gen)] == ["x", "x", "x"]


def test_nemesis_cycle_pairs_start_and_stop():
    faults = [(GenOp("start-partition"), GenOp("stop-partition")), (GenOp("kill"), GenOp("restart"))]
    gen = g.time_limit(31, g.nemesis_cycle(faults, 5.0, seed=11))
    ops = g.drain(gen, threads=("nemesis",))
    fs = [o.f for _, o in ops]
    assert len(fs) == 6 and fs.count("kill") + fs.count("start-partition") == 3
    for start, stop in zip(fs[::2], fs[1::2]):
        assert (start, stop) in (("start-partition", "stop-partition"), ("kill", "restart"))
    times = [o.time_ns for _, o in ops]
    assert times[0] == 5 * NS_PER_S and times[1] == 10 * NS_PER_S


def test_cycle_times():
    ops = g.drain(g.Cycle(g.as_gen([GenOp("a"), GenOp("b")]), times=2))
    assert [o.f for _, o in ops] == ["a", "b", "a", "b"]


def test_nemesis_rounds_start_every_fault_once_before_any_repeats():
    from splitbrain.harness.generators import GenOp, drain, nemesis_cycle
    faults = [(GenOp(f"start-{k}", k), GenOp(f"stop-{k}", k)) for k in ("a", "b", "c")]
    for seed in range(20):
        ops = [o.f for _, o in drain(nemesis_cycle(faults, 1.0, seed), max_ops=12)]
        starts = [f for f in ops if f.startswith("start-")]
        assert len(starts) == 6
        assert sorted(starts[:3]) == sorted(starts[3:]) == ["start-a", "start-b", "start-c"]
