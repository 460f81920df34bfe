"""Partition shapes: pure functions from nodes (and an rng) to a grudge."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, strategies as st

from splitbrain.harness import grudges as G

N5 = ["n1", "n2", "n3", "n4", "n5"]


def test_halves_splits_minority_from_majority():
    g = G.halves(N5)
    assert sorted(map(sorted, G.components(g, N5))) == [["n1", "n2"], ["n3", "n4", "n5"]]
    assert G.drops(g, "n1", "n3") and G.drops(g, "n3", "n1") and not G.drops(g, "n1", "n2")


def test_isolate_leader():
    g = G.isolate(N5, "n4")
    assert frozenset({"n4"}) in G.components(g, N5)
    assert all(G.drops(g, "n4", n) for n in N5 if n != "n4")
    assert G.shape("leader", N5, random.Random(1), leader="n2")["n2"] == frozenset(N5) - {"n2"}


def test_bridge_node_sees_everyone_but_sides_do_not_see_each_other():
    g = G.bridge(N5, random.Random(3))
    mid = [n for n in N5 if not g[n]]
    assert len(mid) == 1
    others = [n for n in N5 if n != mid[0]]
    assert all(not G.drops(g, mid[0], n) and not G.drops(g, n, mid[0]) for n in others)
    assert sum(len(g[n]) for n in others) == 8   # 2x2 each way


@given(st.integers(3, 9), st.integers(0, 10_000))
def test_majorities_ring_every_node_sees_a_distinct_majority(n, seed):
    nodes = [f"n{i}" for i in range(1, n + 1)]
    g = G.majorities_ring(nodes, random.Random(seed))
    seen = {x: frozenset(nodes) - g[x] for x in nodes}
    for x in nodes:
        assert x in seen[x] and len(seen[x]) >= n // 2 + 1
        for y in nodes:
            assert G.drops(g, x, y) == G.drops(g, y, x)          # symmetric
    if n >= 5:
        # no single majority component: the cluster is split in overlapping majorities
        assert len(set(seen.values())) > 1


@given(st.sampled_from(G.SHAPES), st.integers(2, 7), st.integers(0, 1000))
def test_every_shape_is_deterministic_and_never_drops_self(name, n, seed):
    nodes = [f"n{i}" for i in range(1, n + 1)]
    a = G.shape(name, nodes, random.Random(seed), leader="n1")
    b = G.shape(name, nodes, random.Random(seed), leader="n1")
    assert a == b
    assert all(x not in a.get(x, ()) for x in nodes)
    assert set(a) <= set(nodes)


def test_unknown_shape_names_the_choices():
    with pytest.raises(ValueError, match="majorities-ring"):
        G.shape("triangle", N5, random.Random(0))


def test_to_json_is_sorted_lists():
    assert G.to_json(G.halves(["a", "b"])) == {"a": ["b"], "b": ["a"]}
