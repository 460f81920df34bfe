"""Consistency models as a lattice, the anomalies each forbids, and Elle's "not" / "also-not".

Two small DAGs (networkx), facts from Adya's and Elle's definitions:
  MODEL_IMPLIES     m1 -> m2: every history that satisfies m1 satisfies m2;
  ANOMALY_IMPLIES   a1 -> a2: a history with a1 also has a2 (G0 is a G1c; a -process anomaly is
                    also a -realtime one, since a process is single-threaded);
  FORBIDS           model -> the anomalies it forbids directly (weaker models add the rest).

`prohibited(models)` is every anomaly whose presence breaks one of `models`: what the checker
calls invalid. `boundary(anomalies)` is Elle's {"not": the weakest models the anomalies rule
out, "also-not": the stronger ones they rule out too}; `still_possible` the rest of the lattice.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable

import networkx as nx

MODEL_IMPLIES = {
    "strict-serializable": ["serializable", "strong-snapshot-isolation",
                            "strong-session-serializable"],
    "strong-session-serializable": ["serializable", "strong-session-snapshot-isolation"],
    "serializable": ["repeatable-read", "snapshot-isolation"],
    "strong-snapshot-isolation": ["strong-session-snapshot-isolation", "strong-read-committed"],
    "strong-session-snapshot-isolation": ["snapshot-isolation", "strong-session-read-committed"],
    "snapshot-isolation": ["read-committed"],
    "repeatable-read": ["read-committed"],
    "strong-read-committed": ["strong-session-read-committed", "strong-read-uncommitted"],
    "strong-session-read-committed": ["read-committed", "strong-session-read-uncommitted"],
    "read-committed": ["read-uncommitted"],
    "strong-read-uncommitted": ["strong-session-read-uncommitted"],
    "strong-session-read-uncommitted": ["read-uncommitted"],
    "read-uncommitted": [],
}

ANOMALY_IMPLIES = {
    "G0": ["G1c", "G0-process"],
    "G0-process": ["G1c-process", "G0-realtime"],
    "G0-realtime": ["G1c-realtime"],
    "G1a": ["G1"], "G1b": ["G1"],
    "G1c": ["G1", "G1c-process"],
    "G1c-process": ["G1c-realtime", "G1-process"],
    "G1c-realtime": ["G1-realtime"],
    "G1": ["G1-process"], "G1-process": ["G1-realtime"], "G1-realtime": [],
    "G-single": ["G-nonadjacent", "G-single-process"],
    "G-single-process": ["G-nonadjacent-process", "G-single-realtime"],
    "G-single-realtime": ["G-nonadjacent-realtime"],
    "G-nonadjacent": ["G2", "G-nonadjacent-process"],
    "G-nonadjacent-process": ["G2-process", "G-nonadjacent-realtime"],
    "G-nonadjacent-realtime": ["G2-realtime"],
    "G2-item": ["G2", "G2-item-process"],
    "G2-item-process": ["G2-process", "G2-item-realtime"],
    "G2-item-realtime": ["G2-realtime"],
    "G2": ["G2-process"], "G2-process": ["G2-realtime"], "G2-realtime": [],
    # A read no single order explains, a write on an aborted state, and a read of something
    # nobody wrote are all reads of uncommitted state (Elle: incompatible-order -> G1a).
    "incompatible-order": ["G1a"], "dirty-update": ["G1a"], "garbage-read": ["G1a"],
    # Two committed read-modify-writes of one version: a G2-item on that key (Elle).
    "lost-update": ["G2-item"],
    "internal": [], "duplicate-elements": [], "cyclic-versions": [],
}

FORBIDS = {
    "read-uncommitted": ["G0", "duplicate-elements", "cyclic-versions", "garbage-read"],
    "read-committed": ["G1"],
    "repeatable-read": ["G1", "G2-item", "lost-update"],
    "snapshot-isolation": ["internal", "G1", "G-single", "G-nonadjacent", "lost-update"],
    "serializable": ["internal", "G1", "G2"],
    "strong-session-read-uncommitted": ["G0-process"],
    "strong-session-read-committed": ["G1-process"],
    "strong-read-uncommitted": ["G0-realtime"],
    "strong-read-committed": ["G1-realtime"],
    "strong-session-snapshot-isolation": ["internal", "G1-process", "G-nonadjacent-process"],
    "strong-snapshot-isolation": ["internal", "G1-realtime", "G-nonadjacent-realtime"],
    "strong-session-serializable": ["G1-process", "G2-process"],
    "strict-serializable": ["G1", "G1-realtime", "G2-realtime"],
}

# Other names people use for the same models (Adya's levels, Elle's synonyms).
ALIASES = {"PL-SS": "strict-serializable", "strong-serializable": "strict-serializable",
           "PL-3": "serializable", "conflict-serializable": "serializable",
           "PL-SI": "snapshot-isolation", "PL-2.99": "repeatable-read",
           "PL-2": "read-committed", "PL-1": "read-uncommitted"}

DEFAULT_MODELS = ("strict-serializable",)


def model_names() -> list[str]:
    return list(MODEL_IMPLIES)


def canonical(model: str) -> str:
    """The model's name in MODEL_IMPLIES; ValueError naming the choices for an unknown one."""
    m = ALIASES.get(model, model)
    if m not in MODEL_IMPLIES:
        raise ValueError(f"unknown consistency model {model!r} (choose from "
                         f"{', '.join(MODEL_IMPLIES)})")
    return m


@lru_cache(maxsize=None)
def _graphs() -> tuple[nx.DiGraph, nx.DiGraph]:
    models = nx.DiGraph([(a, b) for a, bs in MODEL_IMPLIES.items() for b in bs])
    models.add_nodes_from(MODEL_IMPLIES)
    anomalies = nx.DiGraph([(a, b) for a, bs in ANOMALY_IMPLIES.items() for b in bs])
    anomalies.add_nodes_from(ANOMALY_IMPLIES)
    assert nx.is_directed_acyclic_graph(models) and nx.is_directed_acyclic_graph(anomalies)
    for m, forbidden in FORBIDS.items():
        assert m in models, m
        assert all(a in anomalies for a in forbidden), (m, forbidden)
    return models, anomalies


def implied_models(models: Iterable[str]) -> set[str]:
    g, _ = _graphs()
    out: set[str] = set()
    for m in models:
        m = canonical(m)
        out |= {m} | nx.descendants(g, m)
    return out


def prohibited(models: Iterable[str]) -> set[str]:
    """Every anomaly that breaks at least one of `models`."""
    _, ag = _graphs()
    direct = {a for m in implied_models(models) for a in FORBIDS.get(m, ())}
    out = set(direct)
    for a in direct:
        out |= nx.ancestors(ag, a)
    return out


def implied_anomalies(anomalies: Iterable[str]) -> set[str]:
    _, ag = _graphs()
    out: set[str] = set()
    for a in anomalies:
        if a in ag:
            out |= {a} | nx.descendants(ag, a)
    return out


def impossible_models(anomalies: Iterable[str]) -> set[str]:
    """The models that cannot hold given these anomalies."""
    g, _ = _graphs()
    implied = implied_anomalies(anomalies)
    direct = {m for m, forbidden in FORBIDS.items() if implied & set(forbidden)}
    out = set(direct)
    for m in direct:
        out |= nx.ancestors(g, m)
    return out


def boundary(anomalies: Iterable[str]) -> dict[str, list[str]]:
    """Elle's {"not": weakest ruled-out models, "also-not": the other ruled-out ones}."""
    g, _ = _graphs()
    impossible = impossible_models(anomalies)
    weakest = sorted(m for m in impossible
                     if not any(d in impossible for d in nx.descendants(g, m)))
    return {"not": weakest, "also-not": sorted(impossible - set(weakest))}


def still_possible(anomalies: Iterable[str]) -> list[str]:
    """The strongest models the anomalies do not rule out."""
    g, _ = _graphs()
    possible = set(MODEL_IMPLIES) - impossible_models(anomalies)
    return sorted(m for m in possible if not any(a in possible for a in nx.ancestors(g, m)))
