"""Fault schedules and per-run settings of the simulator: plain data, randomized from ONE seed.

A schedule is a list of Fault intervals in virtual milliseconds. It is data (JSON round-trips),
so Hypothesis can build and shrink it and a person can read and replay it:

    {"kind": "partition", "at_ms": 1200, "for_ms": 800, "shape": "split", "nodes": ["n1", "n2"]}
    {"kind": "kill", "at_ms": 3000, "for_ms": 500, "nodes": ["n3"], "lose_unsynced": true}
    {"kind": "pause", "at_ms": ..., "for_ms": ..., "nodes": ["n2"]}
    {"kind": "kill", "at_ms": ..., "for_ms": ..., "shape": "leader"}   (whoever leads then)
    {"kind": "kill", "at_ms": ..., "for_ms": ..., "shape": "storm", "p": 0.02}
        (a crash storm: after each message it handles, a node crashes with probability p and
        restarts within 50 ms - crashes land right after a vote, an ack, a commit)
    {"kind": "clock", "at_ms": ..., "for_ms": ..., "deltas": {"n1": 900, "n4": -300}}
    {"kind": "loss", "at_ms": ..., "for_ms": ..., "p": 0.3}

Partition shapes (pure functions from the fault and the node list to a grudge, Jepsen's style):
  split     `nodes` against everyone else (halves, random halves, one node isolated)
  ring      majorities ring: `nodes` in ring order; each node sees itself and its neighbours
            within a majority window, so every node sees a majority but no two see the same one
  bridge    `nodes[0]` is a bridge that sees everyone; `nodes[1:]` against the rest
  leader    the node(s) that currently believe they lead, against the rest (decided when the
            fault starts, from the cluster's state; deterministic)

A grudge is {node: set of nodes it drops messages from}. Overlapping faults compose: grudges
union, loss takes the highest probability, clock deltas add, a node killed twice is killed once.

Settings (network delays, duplication, reorder, base loss, client timeout, clock offsets) are
randomized from the seed by `Settings.from_seed`, and printed next to the seed (`describe()`).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

KINDS = ("partition", "kill", "pause", "clock", "loss")
SHAPES = ("split", "ring", "bridge", "leader")
# The nemesis names of the command line -> fault kinds.
NEMESES = {"partition": "partition", "kill": "kill", "pause": "pause", "clock": "clock",
           "loss": "loss"}

FAULT_MIN_MS = 5
FAULT_MAX_MS = 3_000
FAULT_GAP_MAX_MS = 2_000
CLOCK_JUMP_MAX_MS = 5_000
SCHEDULE_FAULTS_MAX = 10_000


@dataclass(frozen=True)
class Fault:
    """One fault interval: starts at `at_ms` (virtual, from the test start), lasts `for_ms`."""

    kind: str
    at_ms: int
    for_ms: int
    nodes: tuple[str, ...] = ()
    shape: str = ""
    p: float = 0.0
    deltas: tuple[tuple[str, int], ...] = ()
    lose_unsynced: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.at_ms < 0 or self.for_ms < 0:
            raise ValueError(f"fault times must be >= 0, got at_ms={self.at_ms} "
                             f"for_ms={self.for_ms}")
        if self.kind == "partition" and self.shape not in SHAPES:
            raise ValueError(f"partition shape {self.shape!r} is not one of {', '.join(SHAPES)}")
        if self.kind == "kill" and self.shape not in ("", "leader", "storm"):
            raise ValueError(f"kill targets `nodes` or shape 'leader' or 'storm', "
                             f"not {self.shape!r}")
        if self.kind == "pause" and self.shape not in ("", "leader"):
            raise ValueError(f"pause targets `nodes` or shape 'leader', not {self.shape!r}")
        if self.shape == "storm" and not 0.0 < self.p <= 1.0:
            raise ValueError(f"a crash storm needs p in (0, 1], got {self.p}")
        if self.kind == "loss" and not 0.0 <= self.p <= 1.0:
            raise ValueError(f"loss probability must be in [0, 1], got {self.p}")

    @property
    def end_ms(self) -> int:
        return self.at_ms + self.for_ms

    def to_json(self) -> dict:
        d: dict[str, Any] = {"kind": self.kind, "at_ms": self.at_ms, "for_ms": self.for_ms}
        if self.kind == "partition":
            d["shape"] = self.shape
        if self.kind in ("kill", "pause") and self.shape:
            d["shape"] = self.shape
        if self.kind in ("partition", "kill", "pause") and self.shape not in ("leader", "storm"):
            d["nodes"] = list(self.nodes)
        if self.shape == "storm":
            d["p"] = self.p
        if self.kind == "kill" and self.lose_unsynced:
            d["lose_unsynced"] = True
        if self.kind == "clock":
            d["deltas"] = dict(self.deltas)
        if self.kind == "loss":
            d["p"] = self.p
        return d

    @classmethod
    def from_json(cls, d: Any, where: str = "schedule") -> "Fault":
        """Build from JSON; ValueError naming the entry and field on bad input."""
        if not isinstance(d, dict):
            raise ValueError(f"{where}: each fault must be an object, got {type(d).__name__}")
        known = {"kind", "at_ms", "for_ms", "nodes", "shape", "p", "deltas", "lose_unsynced"}
        extra = set(d) - known
        if extra:
            raise ValueError(f"{where}: unknown field(s) {', '.join(sorted(extra))}")
        try:
            deltas = d.get("deltas", {})
            if not isinstance(deltas, dict):
                raise ValueError("deltas must be an object {node: ms}")
            return cls(kind=str(d["kind"]), at_ms=int(d["at_ms"]), for_ms=int(d["for_ms"]),
                       nodes=tuple(str(n) for n in d.get("nodes", ())),
                       shape=str(d.get("shape", "")), p=float(d.get("p", 0.0)),
                       deltas=tuple(sorted((str(k), int(v)) for k, v in deltas.items())),
                       lose_unsynced=bool(d.get("lose_unsynced", False)))
        except KeyError as e:
            raise ValueError(f"{where}: missing field {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from None


def schedule_to_json(schedule: Iterable[Fault]) -> list[dict]:
    return [f.to_json() for f in schedule]


def schedule_from_json(data: Any, node_ids: list[str] | None = None) -> list[Fault]:
    """Parse a schedule; with `node_ids`, every node named must exist."""
    if not isinstance(data, list):
        raise ValueError(f"schedule: expected a JSON list of faults, got {type(data).__name__}")
    out = [Fault.from_json(d, f"schedule[{i}]") for i, d in enumerate(data)]
    if node_ids is not None:
        known = set(node_ids)
        for i, f in enumerate(out):
            names = set(f.nodes) | {n for n, _ in f.deltas}
            if names - known:
                raise ValueError(f"schedule[{i}]: unknown node(s) {', '.join(sorted(names - known))}"
                                 f" (nodes are {', '.join(node_ids)})")
    return sorted(out, key=lambda f: (f.at_ms, KINDS.index(f.kind)))


# ---- partition shapes: pure functions -> grudge ------------------------------------------------

def grudge_split(group: Iterable[str], node_ids: list[str]) -> dict[str, set[str]]:
    a = set(group) & set(node_ids)
    b = set(node_ids) - a
    g: dict[str, set[str]] = {}
    for n in a:
        g[n] = set(b)
    for n in b:
        g[n] = set(a)
    return {n: s for n, s in g.items() if s}


def grudge_ring(order: list[str], node_ids: list[str]) -> dict[str, set[str]]:
    ring = [n for n in order if n in node_ids] + [n for n in node_ids if n not in order]
    size = len(ring)
    majority = size // 2 + 1
    g: dict[str, set[str]] = {}
    for i, n in enumerate(ring):
        # n sees the window of `majority` nodes centred (left-biased) on itself.
        sees = {ring[(i + d) % size] for d in range(-(majority // 2), majority - majority // 2)}
        drops = set(ring) - sees
        if drops:
            g[n] = drops
    # A grudge must be symmetric to model a cut link: if a drops b, b drops a.
    for a, drops in list(g.items()):
        for b in drops:
            g.setdefault(b, set()).add(a)
    return g


def grudge_bridge(nodes: list[str], node_ids: list[str]) -> dict[str, set[str]]:
    if not nodes:
        return {}
    bridge, side = nodes[0], set(nodes[1:]) - {nodes[0]}
    other = set(node_ids) - side - {bridge}
    g = grudge_split(side, [n for n in node_ids if n != bridge])
    return {n: s for n, s in g.items() if n in side | other}


def merge_grudges(grudges: Iterable[dict[str, set[str]]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for g in grudges:
        for n, s in g.items():
            out.setdefault(n, set()).update(s)
    return out


# ---- per-run settings --------------------------------------------------------------------------

@dataclass
class Settings:
    """Network, client and clock settings of one run; every one randomized from the seed."""

    delay_min_ms: float = 0.5
    delay_max_ms: float = 10.0
    reorder_p: float = 0.02        # a message takes up to 5x delay_max (overtaken by later ones)
    dup_p: float = 0.01            # a peer message is delivered twice
    loss_p: float = 0.0            # base loss of peer messages outside loss faults
    client_timeout_ms: int = 1_000
    clock_offsets_ms: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_seed(cls, seed: int, node_ids: list[str]) -> "Settings":
        rng = random.Random(f"{seed}/settings")
        delay_min = round(rng.uniform(0.1, 2.0), 2)
        return cls(
            delay_min_ms=delay_min,
            delay_max_ms=round(delay_min + rng.uniform(1.0, 30.0), 2),
            reorder_p=round(rng.choice((0.0, rng.uniform(0.0, 0.1))), 3),
            dup_p=round(rng.choice((0.0, rng.uniform(0.0, 0.05))), 3),
            loss_p=round(rng.choice((0.0, 0.0, rng.uniform(0.0, 0.02))), 3),
            client_timeout_ms=rng.randint(400, 2_000),
            clock_offsets_ms={n: rng.randint(-500, 500) for n in node_ids},
        )

    def to_json(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        offsets = max((abs(v) for v in self.clock_offsets_ms.values()), default=0)
        return (f"delay {self.delay_min_ms}-{self.delay_max_ms}ms, reorder {self.reorder_p:.1%}, "
                f"dup {self.dup_p:.1%}, loss {self.loss_p:.1%}, client timeout "
                f"{self.client_timeout_ms}ms, clock offsets up to ±{offsets}ms")


def random_schedule(seed: int, kinds: Iterable[str], node_ids: list[str],
                    time_limit_ms: int) -> list[Fault]:
    """The fault schedule that `seed` stands for: per enabled kind, intervals with random gaps."""
    kinds = [k for k in KINDS if k in set(kinds)]
    rng = random.Random(f"{seed}/schedule")
    faults: list[Fault] = []
    n = len(node_ids)
    for kind in kinds:
        t = rng.randint(0, FAULT_GAP_MAX_MS)
        while t < time_limit_ms and len(faults) < SCHEDULE_FAULTS_MAX:
            # Log-uniform: many short faults (leader churn within an election timeout, the
            # figure-8 kind of history) and some long ones (elections under a partition).
            dur = int(math.exp(rng.uniform(math.log(FAULT_MIN_MS), math.log(FAULT_MAX_MS))))
            faults.append(_random_fault(rng, kind, t, dur, node_ids))
            # Gaps are log-uniform too (bursts of faults and quiet stretches), and grow with the
            # number of kinds so that the cluster is sometimes whole.
            gap_max = FAULT_GAP_MAX_MS * len(kinds)
            t += dur + int(math.exp(rng.uniform(0.0, math.log(gap_max))))
    assert n > 0
    return sorted(faults, key=lambda f: (f.at_ms, KINDS.index(f.kind)))


def random_nodes(rng: random.Random, node_ids: list[str], *, all_ok: bool) -> tuple[str, ...]:
    """Mostly one node, often a minority, sometimes a majority, rarely (all_ok) every node."""
    n = len(node_ids)
    r = rng.random()
    if r < 0.5:
        k = 1
    elif r < 0.8:
        k = rng.randint(1, max(1, (n - 1) // 2))
    elif r < 0.95 or not all_ok:
        k = rng.randint(1, n - 1) if n > 1 else 1
    else:
        k = n
    return tuple(sorted(rng.sample(node_ids, k)))


def _random_fault(rng: random.Random, kind: str, at: int, dur: int,
                  node_ids: list[str]) -> Fault:
    if kind == "partition":
        shape = rng.choice(SHAPES if len(node_ids) >= 3 else ("split", "leader"))
        if shape == "split":
            k = rng.randint(1, max(1, len(node_ids) // 2))
            nodes = tuple(sorted(rng.sample(node_ids, k)))
        elif shape in ("ring", "bridge"):
            nodes = tuple(rng.sample(node_ids, len(node_ids)))
            if shape == "bridge":
                nodes = (nodes[0],) + tuple(sorted(nodes[1:1 + (len(node_ids) - 1) // 2]))
        else:
            nodes = ()
        return Fault("partition", at, dur, nodes=nodes, shape=shape)
    if kind == "kill":
        r = rng.random()
        if r < 0.3:
            # A crash storm: any node may crash right after any step (just after it voted,
            # acknowledged, or committed) and restarts within STORM_DOWN_MS_MAX.
            return Fault("kill", at, dur, shape="storm", p=round(rng.uniform(0.005, 0.05), 3),
                         lose_unsynced=rng.random() < 0.5)
        if r < 0.6:
            return Fault("kill", at, dur, shape="leader", lose_unsynced=rng.random() < 0.5)
        return Fault("kill", at, dur, nodes=random_nodes(rng, node_ids, all_ok=True),
                     lose_unsynced=rng.random() < 0.5)
    if kind == "pause":
        if rng.random() < 0.4:
            return Fault("pause", at, dur, shape="leader")
        return Fault("pause", at, dur, nodes=random_nodes(rng, node_ids, all_ok=False))
    if kind == "clock":
        chosen = random_nodes(rng, node_ids, all_ok=True)
        return Fault("clock", at, dur, deltas=tuple(
            (nd, rng.randint(-CLOCK_JUMP_MAX_MS, CLOCK_JUMP_MAX_MS)) for nd in chosen))
    if kind == "loss":
        return Fault("loss", at, dur, p=round(rng.uniform(0.05, 0.6), 3))
    raise AssertionError(kind)
