"""Maelstrom's own workloads for third-party nodes: echo, unique-ids, broadcast, g-set,
g-counter and pn-counter (lin-kv and kafka live in workloads.py).

Every request and reply body is exactly Maelstrom's (its doc/workloads.md), so a node written
for Maelstrom runs unchanged; the history values are what Maelstrom's clients record:

  workload    history op (invoke value -> ok value)         request -> reply
  echo        echo "Please echo N" -> {"echo": payload}     echo {echo} -> echo_ok {echo}
  unique-ids  generate null -> the id                       generate -> generate_ok {id}
  broadcast   broadcast m -> m ; read null -> [m...]        broadcast {message} -> broadcast_ok;
                                                            read -> read_ok {messages}
              plus, once per node before the run:           topology {topology} -> topology_ok
  g-set       add e -> e ; read null -> [e...]              add {element} -> add_ok;
                                                            read -> read_ok {value}
  g-counter   add d -> d ; read null -> n                   add {delta} -> add_ok;
  pn-counter                                                read -> read_ok {value}

A reply field that is missing is recorded as null (the checkers then name the malformed read)
rather than turned into an `info`: a node that answers `_ok` said the operation happened.

Generators follow Maelstrom's: echo payloads "Please echo N" (N < 128); broadcast and g-set mix
unique integers with reads half and half; pn-counter adds deltas in -5..4 (g-counter 0..4) half
and half with reads. The final phase reads every node once (Maelstrom: each client thread), after
the runner healed the cluster and waited its quiet period; the eventually consistent checkers
judge those final reads (broadcast / g-set: lost elements; counters: only the final reads).
"""

from __future__ import annotations

import math
import random
from typing import Any, Iterable

from .workloads import WORKLOADS, FinalOp, Invocation, Workload, _weighted

# Maelstrom sleeps 10 s between healing and the final reads of a workload that has them; the
# eventually consistent workloads here wait as long (--opt harness.recovery_s overrides it).
EVENTUAL_RECOVERY_S = 10.0
TOPOLOGIES = ("grid", "line", "total", "tree2", "tree3", "tree4")
ECHO_PAYLOAD_MAX = 128     # Maelstrom's "Please echo (rand-int 128)"


class EchoWorkload(Workload):
    """Maelstrom's echo: the node sends back the payload it was sent."""

    name = "echo"
    machine = None
    ops = ("echo",)
    description = ("Maelstrom's echo: echo {echo} -> echo_ok {echo}; every ok reply must carry "
                   "exactly the payload sent")

    def next_invocation(self, rng: random.Random) -> Invocation:
        return Invocation("echo", f"Please echo {rng.randrange(ECHO_PAYLOAD_MAX)}")

    def request(self, inv: Invocation) -> dict:
        return {"type": "echo", "echo": inv.value}

    def ok_value(self, inv: Invocation, reply: dict) -> Any:
        # The reply as Maelstrom keeps it, minus bookkeeping (no echo field: the checker says so)
        return {k: v for k, v in reply.items() if k not in ("type", "msg_id", "in_reply_to")}

    def final_invocations(self, nodes: Iterable[str]) -> list[FinalOp]:
        return []

    def checker_names(self) -> list[tuple[str, dict]]:
        return [("echo", {}), ("stats", {})]


class UniqueIdsWorkload(Workload):
    """Maelstrom's unique-ids: every generated id is globally unique (ids may be any JSON)."""

    name = "unique-ids"
    machine = None
    ops = ("generate",)
    description = ("Maelstrom's unique-ids: generate -> generate_ok {id}; no two ok generates "
                   "return the same id (JSON value identity: true is not 1)")

    def next_invocation(self, rng: random.Random) -> Invocation:
        return Invocation("generate")

    def request(self, inv: Invocation) -> dict:
        return {"type": "generate"}

    def ok_value(self, inv: Invocation, reply: dict) -> Any:
        return reply.get("id")

    def final_invocations(self, nodes: Iterable[str]) -> list[FinalOp]:
        return []

    def checker_names(self) -> list[tuple[str, dict]]:
        return [("unique-ids", {}), ("stats", {})]


def topology(kind: str, nodes: list[str]) -> dict[str, list[str]]:
    """Each node's neighbours in a `kind` topology (Maelstrom's --topology names).

    grid: a roughly square grid, side ceil(sqrt(n)), nodes row by row; neighbours are the nodes
      below, above, right and left (Maelstrom's grid-topology, in its order);
    line: each node and the ones before and after it; total: every other node;
    treeB (B = 2, 3, 4): node i's parent is (i - 1) // B and its children B*i + 1 .. B*i + B
      (indexes in node order); neighbours are the parent and the children.
    """
    n = len(nodes)
    if kind == "grid":
        side = math.ceil(math.sqrt(n)) if n else 0

        def at(i: int, j: int) -> str | None:
            if i < 0 or not 0 <= j < side:
                return None
            idx = i * side + j
            return nodes[idx] if idx < n else None
        out = {}
        for i in range(side):
            for j in range(side):
                me = at(i, j)
                if me is not None:
                    out[me] = [x for x in (at(i + 1, j), at(i - 1, j), at(i, j + 1),
                                           at(i, j - 1)) if x is not None]
        return out
    if kind == "line":
        return {x: [nodes[k] for k in (i - 1, i + 1) if 0 <= k < n] for i, x in enumerate(nodes)}
    if kind == "total":
        return {x: [y for y in nodes if y != x] for x in nodes}
    if kind.startswith("tree") and kind[4:] in ("2", "3", "4"):
        b = int(kind[4:])
        out = {}
        for i, x in enumerate(nodes):
            nb = [nodes[(i - 1) // b]] if i > 0 else []
            nb += [nodes[c] for c in range(b * i + 1, b * i + b + 1) if c < n]
            out[x] = nb
        return out
    raise ValueError(f"unknown topology {kind!r} (choose from {', '.join(TOPOLOGIES)})")


class BroadcastWorkload(Workload):
    """Maelstrom's broadcast: gossip unique messages to every node; topology sent at setup."""

    name = "broadcast"
    machine = None
    recovery_s = EVENTUAL_RECOVERY_S
    ops = ("broadcast", "read")
    description = ("Maelstrom's broadcast: topology at setup, broadcast {message} / read -> "
                   "{messages}; final read on every node; lost and unexpected messages, "
                   "stale count, stable latencies (set-full)")
    OPTIONS = {"topology": (f"the topology message's shape: {', '.join(TOPOLOGIES)}", "grid")}
    MIX = (("broadcast", 1), ("read", 1))

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        if self.options["topology"] not in TOPOLOGIES:
            raise ValueError(f"workload broadcast: option topology must be one of "
                             f"{', '.join(TOPOLOGIES)}, got {self.options['topology']!r}")

    def next_invocation(self, rng: random.Random) -> Invocation:
        if _weighted(rng, self.MIX) == "read":
            return Invocation("read")
        return Invocation("broadcast", self.unique_value())

    def setup_requests(self, nodes: Iterable[str]) -> list[tuple[str, dict]]:
        nodes = list(nodes)
        topo = topology(self.options["topology"], nodes)
        return [(n, {"type": "topology", "topology": topo}) for n in nodes]

    def request(self, inv: Invocation) -> dict:
        if inv.f == "broadcast":
            return {"type": "broadcast", "message": inv.value}
        return {"type": "read"}

    def ok_value(self, inv: Invocation, reply: dict) -> Any:
        if inv.f == "read":
            return reply.get("messages")
        return inv.value

    def final_invocations(self, nodes: Iterable[str]) -> list[FinalOp]:
        return [FinalOp(n, Invocation("read")) for n in nodes]

    def checker_names(self) -> list[tuple[str, dict]]:
        return [("broadcast", {}), ("stats", {})]


class GSetWorkload(Workload):
    """Maelstrom's g-set: add {element}, read -> {value}; set-full, not linearizable."""

    name = "g-set"
    machine = None
    recovery_s = EVENTUAL_RECOVERY_S
    ops = ("add", "read")
    description = ("Maelstrom's g-set: add {element} / read -> {value}; final read on every "
                   "node; lost and unexpected elements, stale count, stable latencies")
    MIX = (("add", 1), ("read", 1))

    def next_invocation(self, rng: random.Random) -> Invocation:
        if _weighted(rng, self.MIX) == "read":
            return Invocation("read")
        return Invocation("add", self.unique_value())

    def request(self, inv: Invocation) -> dict:
        if inv.f == "add":
            return {"type": "add", "element": inv.value}
        return {"type": "read"}

    def final_invocations(self, nodes: Iterable[str]) -> list[FinalOp]:
        return [FinalOp(n, Invocation("read")) for n in nodes]

    def checker_names(self) -> list[tuple[str, dict]]:
        return [("g-set", {}), ("stats", {})]


class PnCounterWorkload(Workload):
    """Maelstrom's pn-counter: add {delta} (may be negative), read -> {value}."""

    name = "pn-counter"
    machine = None
    recovery_s = EVENTUAL_RECOVERY_S
    ops = ("add", "read")
    description = ("Maelstrom's pn-counter: add {delta} in -5..4 / read -> {value}; eventually "
                   "consistent: only the final reads (after heal + quiet) must equal the "
                   "acknowledged sum plus any of the indefinite adds")
    MIX = (("add", 1), ("read", 1))
    DELTAS = range(-5, 5)

    def next_invocation(self, rng: random.Random) -> Invocation:
        if _weighted(rng, self.MIX) == "read":
            return Invocation("read")
        return Invocation("add", rng.choice(self.DELTAS))

    def request(self, inv: Invocation) -> dict:
        if inv.f == "add":
            return {"type": "add", "delta": inv.value}
        return {"type": "read"}

    def final_invocations(self, nodes: Iterable[str]) -> list[FinalOp]:
        return [FinalOp(n, Invocation("read")) for n in nodes]

    def checker_names(self) -> list[tuple[str, dict]]:
        return [(self.name, {}), ("stats", {})]


class GCounterWorkload(PnCounterWorkload):
    """Maelstrom's g-counter: the pn-counter without negative deltas."""

    name = "g-counter"
    description = ("Maelstrom's g-counter: add {delta} in 0..4 / read -> {value}; only the "
                   "final reads are judged (eventually consistent)")
    DELTAS = range(0, 5)


class CounterWorkload(GCounterWorkload):
    """splitbrain's earlier name of g-counter (same workload, same checker)."""

    name = "counter"
    description = "the same as g-counter (splitbrain's earlier name)"

    def checker_names(self) -> list[tuple[str, dict]]:
        return [("g-counter", {}), ("stats", {})]


MAELSTROM_WORKLOADS = (EchoWorkload, UniqueIdsWorkload, BroadcastWorkload, GSetWorkload,
                       GCounterWorkload, PnCounterWorkload, CounterWorkload)
WORKLOADS.update((w.name, w) for w in MAELSTROM_WORKLOADS)
