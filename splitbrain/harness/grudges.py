"""Partition shapes as pure functions returning a grudge (Jepsen's nemesis.combined).

A grudge maps each node to the set of nodes whose messages it DROPS (it "holds a grudge" against
them): `{"n1": {"n3", "n4"}, ...}`. A node absent from the grudge drops nothing. Grudges are
applied by a backend (the local router drops those messages; netns/docker use iptables); the
shape functions here have no I/O and take their randomness from the rng they are handed.

Shapes: halves, random_halves, majorities_ring, bridge, one (a node isolated), isolate(node) (e.g.
the current leader), primaries... and complete_grudge(components) for any set of components.
"""

from __future__ import annotations

import random
from typing import Iterable, Sequence

Grudge = dict[str, frozenset[str]]


def complete_grudge(components: Iterable[Iterable[str]]) -> Grudge:
    """Nodes talk only within their component: each drops every node of the other components."""
    comps = [frozenset(c) for c in components]
    everyone = frozenset().union(*comps) if comps else frozenset()
    out: Grudge = {}
    for c in comps:
        for n in c:
            out[n] = everyone - c
    return out


def halves(nodes: Sequence[str]) -> Grudge:
    """The first half (the smaller one for an odd count) cut off from the rest."""
    nodes = list(nodes)
    k = len(nodes) // 2
    return complete_grudge([nodes[:k], nodes[k:]])


def random_halves(nodes: Sequence[str], rng: random.Random) -> Grudge:
    nodes = list(nodes)
    rng.shuffle(nodes)
    return halves(nodes)


def one(nodes: Sequence[str], rng: random.Random) -> Grudge:
    """One random node isolated from all others."""
    return isolate(nodes, rng.choice(list(nodes)))


def isolate(nodes: Sequence[str], node: str) -> Grudge:
    """`node` alone on one side (e.g. the current leader), everyone else on the other."""
    assert node in nodes, f"{node} is not one of {list(nodes)}"
    return complete_grudge([[node], [n for n in nodes if n != node]])


def bridge(nodes: Sequence[str], rng: random.Random, mid: str | None = None) -> Grudge:
    """Two halves that cannot talk to each other, except through one bridge node in the middle.

    Jepsen's bridge: with 5 nodes, {n1 n2} and {n4 n5} both see n3, who sees everyone. `mid`
    chooses the bridge (the "bridge-leader" shape puts the current leader there: it keeps both
    halves' logs equal, and when it fails each half elects on its own).
    """
    nodes = list(nodes)
    rng.shuffle(nodes)
    k = len(nodes) // 2
    if mid is not None:
        nodes.remove(mid)
        nodes.insert(k, mid)
    left, mid, right = nodes[:k], nodes[k], nodes[k + 1:]
    out: Grudge = {}
    for n in left:
        out[n] = frozenset(right)
    for n in right:
        out[n] = frozenset(left)
    out[mid] = frozenset()
    return out


def majorities_ring(nodes: Sequence[str], rng: random.Random) -> Grudge:
    """Every node sees a majority (itself and its ring neighbours), but no two see the same one.

    Nodes are shuffled into a ring; each node talks to the `len//2` nodes nearest it on the ring
    (itself included in the majority) and drops the rest. Reachability is symmetric.
    """
    nodes = list(nodes)
    rng.shuffle(nodes)
    n = len(nodes)
    if n < 3:
        return {x: frozenset() for x in nodes}
    majority = n // 2 + 1
    span = majority - 1                       # neighbours a node sees in total
    left, right = span // 2, span - span // 2
    visible: dict[str, set[str]] = {x: {x} for x in nodes}
    for i, x in enumerate(nodes):
        for d in range(1, right + 1):
            y = nodes[(i + d) % n]
            visible[x].add(y)
            visible[y].add(x)
        for d in range(1, left + 1):
            y = nodes[(i - d) % n]
            visible[x].add(y)
            visible[y].add(x)
    return {x: frozenset(nodes) - visible[x] for x in nodes}


SHAPES = ("halves", "random-halves", "one", "bridge", "majorities-ring", "leader",
          "bridge-leader")
LEADER_SHAPES = ("leader", "bridge-leader")     # shapes built around the current leader


def shape(name: str, nodes: Sequence[str], rng: random.Random, leader: str | None = None) -> Grudge:
    """A grudge by shape name. `leader` is needed (and only used) for the LEADER_SHAPES; when
    no leader is known they fall back to one random node (isolated, or as the bridge)."""
    if name == "halves":
        return halves(nodes)
    if name == "random-halves":
        return random_halves(nodes, rng)
    if name == "one":
        return one(nodes, rng)
    if name == "bridge":
        return bridge(nodes, rng)
    if name == "majorities-ring":
        return majorities_ring(nodes, rng)
    if name == "leader":
        return isolate(nodes, leader) if leader in nodes else one(nodes, rng)
    if name == "bridge-leader":
        return bridge(nodes, rng, mid=leader if leader in nodes else None)
    raise ValueError(f"unknown partition shape {name!r} (choose from {', '.join(SHAPES)})")


def drops(grudge: Grudge, src: str, dest: str) -> bool:
    """Whether a message from src to dest is dropped under this grudge."""
    return src in grudge.get(dest, ())


def components(grudge: Grudge, nodes: Sequence[str]) -> list[frozenset[str]]:
    """The groups of nodes that can all talk to each other both ways (for tests and logs)."""
    out: list[frozenset[str]] = []
    for n in nodes:
        group = frozenset(m for m in nodes if not drops(grudge, n, m) and not drops(grudge, m, n))
        if group not in out:
            out.append(group)
    return out


def to_json(grudge: Grudge) -> dict[str, list[str]]:
    """A grudge as JSON for the history (the nemesis op's value)."""
    return {n: sorted(d) for n, d in sorted(grudge.items()) if d}
