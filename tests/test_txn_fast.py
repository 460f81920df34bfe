"""The faster list-append inference (checkers/transactions/list_append.py) against the reference
it replaced (list_append_reference.py): on generated histories with injected anomalies of every
kind, both must find the same edges, version orders and non-cycle anomalies, and the checker the
same verdict, anomalies (names, words, ops, cycles) and models ruled out.

rw-register's inference did not change; its histories go through the same comparison so that
the shared code (parse, graph) is covered for both kinds."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import splitbrain.checkers.transactions as txn_pkg
from splitbrain.checkers.transactions import TxnChecker
from splitbrain.checkers.transactions.history import parse
from splitbrain.checkers.transactions.list_append import ListAppend
from splitbrain.checkers.transactions.list_append_reference import ListAppend as Reference
from splitbrain.checkers.transactions.synth import simulate
from splitbrain.history.op import Op

MUTATIONS = ["swap", "truncate", "garbage", "duplicate", "drop-first", "fail", "info",
             "true-for-1", "float-for-int", "stale-rmw", "internal", "extend-other",
             "intermediate", "none-read"]


def mutate(ops: list[Op], kind: str, rnd: random.Random) -> list[Op]:
    """Inject one anomaly-provoking change into a copy of `ops` (may change nothing when the
    history offers no place for it)."""
    ops = list(ops)
    oks = [i for i, o in enumerate(ops) if o.type == "ok"]
    if not oks:
        return ops
    i = rnd.choice(oks)
    o = ops[i]
    val = [list(m) for m in o.value]
    reads = [j for j, m in enumerate(val) if m[0] == "r" and isinstance(m[2], list)]
    writes = [j for j, m in enumerate(val) if m[0] != "r"]
    longest = max((m[2] for o2 in ops if o2.type == "ok" for m in o2.value
                   if m[0] == "r" and isinstance(m[2], list)), key=len, default=[])
    if kind in ("fail", "info"):
        if kind == "fail":
            ops[i] = dataclasses.replace(o, type="fail")      # its appends were seen: G1a
        else:
            del ops[i]                                        # never completes
            ops = [dataclasses.replace(x, index=n) for n, x in enumerate(ops)]
        return ops
    if kind == "internal" and writes:
        j = writes[0]
        val.append(["r", val[j][1], [rnd.randrange(100, 200)]])
    elif kind == "intermediate" and writes:
        # a second append of the same key right after the first: the first is intermediate
        j = writes[0]
        if isinstance(val[j][2], int):
            val.insert(j + 1, [val[j][0], val[j][1], val[j][2] + 10_000])
    elif reads:
        j = rnd.choice(reads)
        r = list(val[j][2])
        if kind == "swap" and len(r) >= 2:
            a = rnd.randrange(len(r) - 1)
            r[a], r[a + 1] = r[a + 1], r[a]
        elif kind == "truncate" and r:
            r = r[:rnd.randrange(len(r))]
        elif kind == "garbage":
            r.append(rnd.choice([999_999, "x", [1], {"a": 1}, None]))
        elif kind == "duplicate" and r:
            r.insert(rnd.randrange(len(r) + 1), rnd.choice(r))
        elif kind == "drop-first" and r:
            r = r[1:]
        elif kind == "true-for-1" and r:
            r = [True if x == 1 else False if x == 0 else x for x in r]
        elif kind == "float-for-int" and r:
            a = rnd.randrange(len(r))
            if isinstance(r[a], int):
                r[a] = float(r[a])
        elif kind == "stale-rmw" and r and writes:
            r = r[:-1]                     # read an older version, then append: lost update
        elif kind == "extend-other" and longest:
            r = list(longest) + [rnd.randrange(1, 40)]
        elif kind == "none-read":
            r = None
        val[j][2] = r
    ops[i] = dataclasses.replace(o, value=val)
    return ops


def inference(cls, ops):
    h = parse(ops)
    inf = cls(h)
    inf.run()
    edges = sorted(zip(inf.edges.src, inf.edges.dst, inf.edges.kind))
    found = {name: [(f.txns, f.message, repr(f.details)) for f in items]
             for name, items in inf.found.items.items()}
    return edges, found, dict(inf.found.counts), inf.keys, inf.orders, inf.order_writers


def outcome(result):
    stats = {k: v for k, v in result.stats.items() if k != "time_s"}
    return (result.valid, [(a.name, a.message, a.ops, repr(a.details)) for a in result.anomalies],
            stats)


def both(kind, ops, models=None):
    """(fast result, reference result) of the whole checker."""
    fast = TxnChecker(kind, models).check(ops, {})
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(txn_pkg, "ListAppend", Reference)
        ref = TxnChecker(kind, models).check(ops, {})
    return fast, ref


def same_or_same_error(f, *args):
    """f(*args) for the fast and the reference inference: equal results, or the same error."""
    out = []
    for cls in (ListAppend, Reference):
        try:
            out.append(("ok", f(cls, *args)))
        except (ValueError, TypeError) as e:
            out.append(("error", type(e).__name__, str(e)))
    assert out[0] == out[1]
    return out[0]


histories = st.builds(
    lambda seed, n, keys, mops, conc, fail_p: simulate(
        n, seed=seed, mops=mops, active_keys=keys, writes_per_key=rnd_writes(seed),
        concurrency=conc, fail_p=fail_p),
    st.integers(0, 10**6), st.integers(1, 60), st.integers(1, 4), st.integers(1, 5),
    st.integers(1, 6), st.sampled_from([0.0, 0.0, 0.2]))


def rnd_writes(seed):
    return 3 + seed % 6


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories, st.lists(st.tuples(st.sampled_from(MUTATIONS), st.integers(0, 10**6)),
                           max_size=3))
def test_fast_list_append_inference_equals_the_reference(ops, muts):
    for kind, seed in muts:
        ops = mutate(ops, kind, random.Random(seed))
    res = same_or_same_error(inference, ops)
    if res[0] == "ok":
        for model in (None, ["serializable"], ["read-committed"]):
            fast, ref = both("list-append", ops, model)
            assert outcome(fast) == outcome(ref)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 10**6), st.integers(1, 40),
       st.lists(st.tuples(st.sampled_from(["swap", "truncate", "garbage", "fail", "info",
                                           "none-read", "true-for-1"]),
                          st.integers(0, 10**6)), max_size=3))
def test_rw_register_histories_give_the_same_results_through_the_shared_code(seed, n, muts):
    ops = simulate(n, kind="rw-register", seed=seed, active_keys=2, mops=3, concurrency=4,
                   writes_per_key=5)
    rnd = random.Random(seed)
    for kind, s in muts:
        # registers: replace a read value by another key's value or an older one
        oks = [i for i, o in enumerate(ops) if o.type == "ok"]
        if kind in ("fail", "info"):
            ops = mutate(ops, kind, random.Random(s))
            continue
        if not oks:
            continue
        i = rnd.choice(oks)
        val = [list(m) for m in ops[i].value]
        rd = [j for j, m in enumerate(val) if m[0] == "r"]
        if rd:
            j = rnd.choice(rd)
            val[j][2] = {"swap": rnd.randrange(1, 6), "truncate": None, "garbage": 999,
                         "none-read": None, "true-for-1": True}[kind]
            ops[i] = dataclasses.replace(ops[i], value=val)
    fast, ref = both("rw-register", ops)
    assert outcome(fast) == outcome(ref)


def test_large_history_with_anomalies_gives_the_reference_results():
    """A bigger history (many keys, every kind of mutation several times)."""
    ops = simulate(3000, seed=7, mops=4, active_keys=6, writes_per_key=12, concurrency=8,
                   fail_p=0.05)
    rnd = random.Random(3)
    for _ in range(40):
        ops = mutate(ops, rnd.choice(MUTATIONS), rnd)
    assert same_or_same_error(inference, ops)[0] == "ok"
    fast, ref = both("list-append", ops)
    assert outcome(fast) == outcome(ref)
    assert fast.valid is False and len({a.name for a in fast.anomalies}) >= 4


def test_clean_keys_take_the_fast_path():
    """The comparison above means something only if the fast path runs: on a valid history
    no key goes to the per-read loop."""
    ops = simulate(500, seed=1, mops=4, active_keys=5)
    inf = ListAppend(parse(ops))
    general = []
    orig = inf._key_general
    inf._key_general = lambda *a: (general.append(a[0]), orig(*a))
    inf.run()
    assert inf.keys and general == []
