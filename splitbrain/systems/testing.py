"""A hand-driven cluster of protocol cores for scenario tests (like etcd raft's interaction tests).

Nothing happens by itself: messages wait in flight until the test delivers or drops them, and time
moves only when the test advances it. That makes scenarios from the papers (Raft's figure 8, a
Paxos value accepted by a minority, a VR view change) reproducible step by step:

    c = ScenarioCluster("raft", n=3, machine="kv")
    c.advance(1000, nodes=["n1"])         # only n1's election timer fires
    c.stabilize()                          # deliver until quiet
    assert c.leader() == "n1"
    mid = c.request("n1", {"type": "write", "key": 1, "value": 5})
    c.stabilize()
    assert c.reply("c1", mid)["type"] == "write_ok"

The durability order of the Core API is honoured: a Ready's records reach `disk[node]` before its
messages are queued; `crash(node)` throws away the core (its memory) and every message to or from
it, and `restart(node)` builds a fresh core recovered from `disk[node]`.

This is a test utility with the same contract as the simulator (splitbrain.harness.sim), minus
randomness: the simulator schedules; here the test does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .core import Core, Ready
from .machines import make_machine
from .registry import get_system

TICK_MS = 10
STABILIZE_ROUNDS_MAX = 10_000


@dataclass
class InFlight:
    src: str
    dest: str
    body: dict


class ScenarioCluster:
    """Cores of one system wired by a message queue that the test controls."""

    def __init__(self, system: str | type[Core], n: int = 3, *, machine: str = "kv",
                 bugs: Iterable[str] = (), options: dict[str, Any] | None = None, seed: int = 0):
        self.system = get_system(system) if isinstance(system, str) else system
        self.node_ids = [f"n{i}" for i in range(1, n + 1)]
        self.machine_name = machine
        self.bugs = frozenset(bugs)
        self.options = dict(options or {})
        self.seed = seed
        self.now_ms: dict[str, int] = {n: 0 for n in self.node_ids}
        self.disk: dict[str, list[dict]] = {n: [] for n in self.node_ids}
        self.nodes: dict[str, Core] = {}
        self.inflight: list[InFlight] = []
        self.client_inbox: dict[str, list[dict]] = {}
        self.groups: list[set[str]] | None = None
        self._msg_id = 0
        self._restarts: dict[str, int] = {n: 0 for n in self.node_ids}
        for node in self.node_ids:
            self._start(node)

    # ---- lifecycle ---------------------------------------------------------------------------

    def _start(self, node: str) -> None:
        rng = random.Random(f"{self.seed}/{node}/{self._restarts[node]}")
        core = self.system(node, self.node_ids, make_machine(self.machine_name), rng,
                           bugs=self.bugs, options=self.options)
        self.nodes[node] = core
        self._handle(node, core.recover(list(self.disk[node]), self.now_ms[node]))

    def crash(self, node: str) -> None:
        """Kill a node: its memory and every message to or from it are lost; its disk stays."""
        assert node in self.nodes, f"{node} is already down"
        del self.nodes[node]
        self.inflight = [m for m in self.inflight if node not in (m.src, m.dest)]

    def restart(self, node: str) -> None:
        assert node not in self.nodes, f"{node} is up"
        self._restarts[node] += 1
        self._start(node)

    # ---- effects -----------------------------------------------------------------------------

    def _handle(self, node: str, ready: Ready) -> None:
        # Durability order: records first, then messages.
        self.disk[node].extend(ready.persist)
        for env in ready.messages:
            if env.dest in self.node_ids:
                self.inflight.append(InFlight(node, env.dest, env.body))
            else:
                self.client_inbox.setdefault(env.dest, []).append(env.body)

    def _connected(self, a: str, b: str) -> bool:
        if self.groups is None:
            return True
        return any(a in g and b in g for g in self.groups)

    # ---- what a test does --------------------------------------------------------------------

    def advance(self, ms: int, nodes: Iterable[str] | None = None) -> None:
        """Advance the clocks of `nodes` (default: every live node) by `ms`, ticking each TICK_MS."""
        chosen = list(nodes) if nodes is not None else list(self.nodes)
        for _ in range(max(1, ms // TICK_MS)):
            for node in chosen:
                if node in self.nodes:
                    self.now_ms[node] += TICK_MS
                    self._handle(node, self.nodes[node].tick(self.now_ms[node]))

    def matching(self, src: str | None = None, dest: str | None = None,
                 type: str | None = None) -> list[InFlight]:
        return [m for m in self.inflight
                if (src is None or m.src == src) and (dest is None or m.dest == dest)
                and (type is None or m.body.get("type") == type)]

    def deliver(self, src: str | None = None, dest: str | None = None,
                type: str | None = None) -> int:
        """Deliver the messages now in flight that match (in order); new ones stay queued.

        Messages across a partition are dropped. Returns how many were delivered.
        """
        chosen = self.matching(src, dest, type)
        ids = {id(m) for m in chosen}
        self.inflight = [m for m in self.inflight if id(m) not in ids]
        delivered = 0
        for m in chosen:
            if m.dest not in self.nodes or not self._connected(m.src, m.dest):
                continue
            delivered += 1
            self._handle(m.dest, self.nodes[m.dest].step(m.src, m.body, self.now_ms[m.dest]))
        return delivered

    def drop(self, src: str | None = None, dest: str | None = None,
             type: str | None = None) -> int:
        chosen = self.matching(src, dest, type)
        ids = {id(m) for m in chosen}
        self.inflight = [m for m in self.inflight if id(m) not in ids]
        return len(chosen)

    def stabilize(self) -> None:
        """Deliver until nothing is in flight (messages across a partition are dropped)."""
        for _ in range(STABILIZE_ROUNDS_MAX):
            if not self.inflight:
                return
            self.deliver()
        raise AssertionError(f"not stable after {STABILIZE_ROUNDS_MAX} rounds")

    def partition(self, *groups: Iterable[str]) -> None:
        """Only nodes within one group can talk; a node in no group is isolated."""
        self.groups = [set(g) for g in groups]

    def heal(self) -> None:
        self.groups = None

    def request(self, node: str, body: dict, client: str = "c1") -> int:
        """Hand a client request to a node; returns its msg_id."""
        self._msg_id += 1
        msg = {**body, "msg_id": self._msg_id}
        self._handle(node, self.nodes[node].step(client, msg, self.now_ms[node]))
        return self._msg_id

    def write(self, node: str, key: Any, value: Any, client: str = "c1") -> int:
        """Send a kv write to `node`; returns its msg_id (the reply is not awaited)."""
        return self.request(node, {"type": "write", "key": key, "value": value}, client=client)

    def read_value(self, node: str, key: Any, client: str = "cr", max_ms: int = 1000) -> Any:
        """Read a kv key through `node` and wait (delivering everything) for the answer;
        asserts that it is a read_ok and returns the value."""
        mid = self.request(node, {"type": "read", "key": key}, client=client)
        self.stabilize()
        self.run_until(lambda: self.reply(client, mid) is not None, max_ms=max_ms)
        reply = self.reply(client, mid)
        assert reply is not None and reply["type"] == "read_ok", reply
        return reply["value"]

    def reply(self, client: str, msg_id: int) -> dict | None:
        for body in self.client_inbox.get(client, []):
            if body.get("in_reply_to") == msg_id:
                return body
        return None

    def leaders(self) -> list[str]:
        return [n for n, core in self.nodes.items() if core.is_leader()]

    def leader(self) -> str | None:
        ls = self.leaders()
        return ls[0] if len(ls) == 1 else None

    def run_until(self, predicate: Callable[[], bool], max_ms: int = 10_000) -> bool:
        """Advance all clocks and deliver everything, TICK_MS at a time, until predicate holds."""
        for _ in range(max_ms // TICK_MS):
            if predicate():
                return True
            self.advance(TICK_MS)
            self.stabilize()
        return predicate()

    def random_appends(self, rng: random.Random, steps: int,
                       observe: Callable[[], None] = lambda: None) -> dict[tuple[str, int], int]:
        """A random schedule for append-log clusters: each step delivers a random in-flight
        message (sometimes also re-queueing it, a duplicate), drops one, advances one node's
        clock, sends an append of a fresh value to a live node, crashes or restarts a node;
        `observe()` runs after every step (invariant checks). Then every node is restarted, the
        network healed and the cluster left to elect a leader. Returns {(client, msg_id): value}
        of the appends sent, for checking which were acknowledged.
        """
        sent: dict[tuple[str, int], int] = {}
        value = 0
        for _ in range(steps):
            r = rng.random()
            if r < 0.45 and self.inflight:
                m = self.inflight.pop(rng.randrange(len(self.inflight)))
                if rng.random() < 0.1:
                    self.inflight.append(m)                 # duplicate it
                if m.dest in self.nodes:
                    self._handle(m.dest, self.nodes[m.dest].step(m.src, m.body,
                                                                 self.now_ms[m.dest]))
            elif r < 0.55 and self.inflight:
                self.inflight.pop(rng.randrange(len(self.inflight)))
            elif r < 0.75:
                self.advance(rng.choice([10, 50, 200]), nodes=[rng.choice(self.node_ids)])
            elif r < 0.90:
                node = rng.choice(list(self.nodes))
                value += 1
                client = f"c{value}"
                sent[(client, self.request(node, {"type": "append", "value": value},
                                           client=client))] = value
            elif r < 0.95 and len(self.nodes) > 1:
                self.crash(rng.choice(list(self.nodes)))
            else:
                down = [x for x in self.node_ids if x not in self.nodes]
                if down:
                    self.restart(rng.choice(down))
            observe()
        for node in self.node_ids:
            if node not in self.nodes:
                self.restart(node)
        self.heal()
        self.run_until(lambda: self.leader() is not None, max_ms=20_000)
        return sent

    def acknowledged(self, sent: dict[tuple[str, int], Any]) -> set:
        """The values of `sent` ({(client, msg_id): value}) whose request got an `*_ok` reply."""
        return {v for (client, mid), v in sent.items()
                if (self.reply(client, mid) or {}).get("type", "").endswith("_ok")}

    def final_logs(self) -> dict[str, list]:
        """Every live node's append-log machine entries."""
        return {node: list(core.machine.entries) for node, core in self.nodes.items()}

    def elect(self, node: str, max_ms: int = 5_000) -> None:
        """Make `node` the leader by firing only its timer, then stabilize."""
        for _ in range(max_ms // TICK_MS):
            self.advance(TICK_MS, nodes=[node])
            self.stabilize()
            if self.nodes[node].is_leader():
                return
        raise AssertionError(f"{node} did not become leader within {max_ms} ms")


def assert_append_logs_agree(acked: set, logs: dict[str, list]) -> None:
    """The replicated-log properties after a healed random run: every node's log is a prefix of
    the longest (agreement), no value twice, every acknowledged append present (durability), and
    every node caught up (convergence)."""
    longest = max(logs.values(), key=len)
    for log in logs.values():
        assert log == longest[:len(log)], "committed logs diverge"
        assert len(log) == len(set(log)), "an append applied twice"
    assert acked <= set(longest), f"acknowledged appends lost: {acked - set(longest)}"
    assert all(len(log) == len(longest) for log in logs.values()), "not converged after healing"
