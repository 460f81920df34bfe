"""The deterministic simulator: protocol cores in one process, virtual time, one seed.

`simulate(config) -> SimRun` runs one test:

1. Safety phase, [0, time_limit): `concurrency` client workers issue the workload's ops at `rate`
   ops per virtual second in total, while the fault schedule runs (partitions as grudges, crashes
   that discard everything not persisted, restarts from the persisted records, pauses, clock
   offsets and jumps, message loss). The network delays, reorders, duplicates and drops peer
   messages according to the run's Settings.
2. Heal: every fault still active ends (restart, resume, heal, loss off, clocks reset). Clients
   stop issuing; outstanding ops complete or time out.
3. Liveness phase: the cluster must converge (every node reports the same applied_index and
   state digest) within `liveness_ms`; otherwise the `liveness` result is invalid.
4. Final phase: the workload's final ops - reads through the protocol (following leader hints,
   with retries) and, per node, its own committed state (`read`, from the node's machine) and
   `status`.

Jepsen's client semantics: one outstanding op per process; no reply within the client timeout
-> `info` "timed-out", and the worker continues under a fresh process id (process + concurrency);
an indefinite error -> `info`, same; a definite error -> `fail` (error 11 with a `leader` hint:
the hint is remembered for the worker's next op, the failed op is not retried).

Determinism: every random choice comes from a random.Random derived from the seed by a fixed
label (network, clients, faults, node/incarnation), events are ordered by (virtual time, sequence
number), and nothing iterates over an unordered set. The same config gives the same history,
byte for byte. History times are virtual nanoseconds.

The durability order of the Core API holds by construction: a Ready's records are appended to the
node's disk before any of its messages is scheduled. A Ready with sync=False leaves its records
"unsynced"; a crash with `lose_unsynced` cuts the disk back to a random point of that unsynced
tail (the lost-unsynced-writes fault). A crash drops the node's memory and every message in
flight TO it (messages it already sent may still arrive, as on a real network).
"""

from __future__ import annotations

import heapq
import math
import random
import time as _time
from dataclasses import dataclass, field
from typing import Any, Callable

from ...checkers.result import Anomaly, Result
from ...history.op import Op
from ...systems.core import Core
from ...systems.machines import make_machine
from ...systems.registry import get_system
from ..store import Recorder
from ..workloads import (FAIL, INFO, NODE_DOWN, OK, Completion, FinalOp, Invocation, Workload,
                         make_workload)
from .schedule import (Fault, Settings, grudge_bridge, grudge_ring, grudge_split,
                       merge_grudges, random_schedule)

NS_PER_MS = 1_000_000
TICK_MS = 10
CLOCK_BASE_MS = 1_000_000        # node clocks start here so offsets never make them negative
REORDER_FACTOR = 5               # a reordered message takes up to this many times delay_max
LIVENESS_CHECK_MS = 20
SETTLE_MS = 500                  # the converged state must hold this long (with a leader)
FINAL_ATTEMPTS_MAX = 30          # protocol attempts per final op before giving up
FINAL_RETRY_MS = 50
EVENTS_MAX = 200_000_000         # a runaway guard, far above any real run
FINAL_PHASE_MS_MAX = 60_000
STORM_DOWN_MS_MAX = 50           # a node crashed by a crash storm restarts within this

# Event kinds (small ints: the heap compares tuples).
_DELIVER, _TICK, _CLIENT_GO, _CLIENT_REPLY, _CLIENT_TIMEOUT, _FAULT_START, _FAULT_STOP, \
    _HEAL, _CHECK, _FINAL_GO = range(10)


@dataclass
class SimConfig:
    """Everything one simulated run depends on. `schedule=None`: generated from the seed."""

    system: str
    workload: str = "register"
    seed: int = 0
    nodes: int = 5
    concurrency: int = 10
    rate: float = 500.0               # client ops per virtual second, all workers together
    time_limit_s: float = 10.0        # length of the safety phase, virtual seconds
    nemesis: tuple[str, ...] = ("partition", "kill", "pause", "clock", "loss")
    bugs: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)         # the system's --opt
    workload_options: dict[str, Any] = field(default_factory=dict)
    schedule: list[Fault] | None = None
    settings: Settings | None = None  # None: randomized from the seed
    liveness_ms: int = 10_000
    ops_max: int | None = None        # stop issuing after this many client invocations

    def node_ids(self) -> list[str]:
        return [f"n{i}" for i in range(1, self.nodes + 1)]


@dataclass
class SimRun:
    """The outcome of one simulated run (before checking)."""

    config: SimConfig
    settings: Settings
    schedule: list[Fault]
    history: list[Op]
    liveness: Result
    stats: dict[str, Any]
    replicas: Result | None = None


class _Node:
    __slots__ = ("id", "core", "up", "paused", "incarnation", "tick_gen", "disk", "synced",
                 "pending", "offset_ms")

    def __init__(self, node_id: str, offset_ms: int):
        self.id = node_id
        self.core: Core | None = None
        self.up = False
        self.paused = False
        self.incarnation = 0
        self.tick_gen = 0
        self.disk: list[dict] = []
        self.synced = 0          # records [0, synced) are on disk for sure
        self.pending: list[tuple[str, dict]] = []   # messages that arrived while paused
        self.offset_ms = offset_ms


class _Worker:
    __slots__ = ("index", "client", "process", "inv", "msg_id", "node", "hint", "sent_ns",
                 "final", "final_attempts", "done")

    def __init__(self, index: int):
        self.index = index
        self.client = f"c{index + 1}"
        self.process = index
        self.inv: Invocation | None = None
        self.msg_id = 0
        self.node: str | None = None
        self.hint: str | None = None
        self.sent_ns = 0
        self.final: FinalOp | None = None
        self.final_attempts = 0
        self.done = False


class Simulator:
    """One run. Use `simulate(config)`; `recorder` may write the history as it happens."""

    def __init__(self, config: SimConfig, recorder: Recorder | None = None,
                 log: Callable[[str], None] | None = None):
        if config.nodes < 1:
            raise ValueError(f"--nodes must be >= 1, got {config.nodes}")
        if config.concurrency < 1:
            raise ValueError(f"--concurrency must be >= 1, got {config.concurrency}")
        if config.rate <= 0:
            raise ValueError(f"--rate must be > 0, got {config.rate}")
        self.config = config
        self.cls = get_system(config.system)
        self.workload: Workload = make_workload(config.workload, config.workload_options)
        if self.workload.machine is None:
            from ..workloads import WORKLOADS
            served = ", ".join(n for n, w in WORKLOADS.items() if w.machine is not None)
            raise ValueError(f"workload {config.workload} is for third-party Maelstrom nodes; "
                             f"the in-house systems run: {served}")
        self.workload.bind_clients(config.concurrency, config.nodes)
        self.node_ids = config.node_ids()
        self.settings = config.settings or Settings.from_seed(config.seed, self.node_ids)
        if config.schedule is not None:
            self.schedule = list(config.schedule)
        else:
            self.schedule = random_schedule(config.seed, config.nemesis, self.node_ids,
                                            int(config.time_limit_s * 1000))
        self.recorder = recorder or Recorder()
        self.log = log or (lambda msg: None)
        seed = config.seed
        self.net_rng = random.Random(f"{seed}/net")
        self.client_rng = random.Random(f"{seed}/clients")
        self.fault_rng = random.Random(f"{seed}/faults")
        self.seed = seed
        self.now = 0
        self._seq = 0
        self._heap: list[tuple] = []
        self.nodes = {n: _Node(n, self.settings.clock_offsets_ms.get(n, 0))
                      for n in self.node_ids}
        self.workers = [_Worker(i) for i in range(config.concurrency)]
        self.by_client = {w.client: w for w in self.workers}
        self.grudges: dict[int, dict[str, set[str]]] = {}
        self.grudge: dict[str, set[str]] = {}
        self.losses: dict[int, float] = {}
        self.loss_p = self.settings.loss_p
        self.clock_faults: dict[int, tuple[tuple[str, int], ...]] = {}
        self.killed_by: dict[int, list[str]] = {}
        self.storms: dict[int, float] = {}
        self.storm_p = 0.0
        self.paused_by: dict[int, list[str]] = {}
        self.phase = "safety"
        self.invocations = 0
        self.finals: list[FinalOp] = []
        self.converged_at_ns: int | None = None
        self.stats: dict[str, int] = {"messages": 0, "dropped": 0, "duplicated": 0,
                                      "events": 0, "crashes": 0, "restarts": 0,
                                      "lost_unsynced_records": 0}
        self._stagger_ns = int(2 * config.concurrency / config.rate * 1e9)
        self._timeout_ns = self.settings.client_timeout_ms * NS_PER_MS
        self._dmin_ns = int(self.settings.delay_min_ms * NS_PER_MS)
        self._dspan_ns = max(0, int((self.settings.delay_max_ms - self.settings.delay_min_ms)
                                    * NS_PER_MS))
        self._limit_ns = int(config.time_limit_s * 1e9)
        self._reorder_p = self.settings.reorder_p
        self._end = False
        self._events = 0
        self.core_error: dict | None = None
        self._settle_key: tuple | None = None
        self._settle_since_ns = 0
        # A system whose cores say who leads must have a leader to count as converged.
        self._has_leaders = self.cls.is_leader is not Core.is_leader

    # ---- the event heap -----------------------------------------------------------------------

    def _push(self, at_ns: int, kind: int, a: Any = None, b: Any = None, c: Any = None,
              d: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at_ns, self._seq, kind, a, b, c, d))

    def _clock(self, node: _Node) -> int:
        return CLOCK_BASE_MS + self.now // NS_PER_MS + node.offset_ms

    # ---- nodes ----------------------------------------------------------------------------------

    def _start_node(self, node: _Node) -> None:
        node.incarnation += 1
        node.tick_gen += 1
        rng = random.Random(f"{self.seed}/{node.id}/{node.incarnation}")
        node.core = self.cls(node.id, self.node_ids, make_machine(self.workload.machine), rng,
                             bugs=frozenset(self.config.bugs), options=self.config.options)
        node.up = True
        node.paused = False
        node.pending = []
        self._handle(node, node.core.recover(list(node.disk), self._clock(node)))
        # Ticks start at a random phase so that nodes do not tick in lockstep.
        self._push(self.now + self.net_rng.randrange(1, TICK_MS * NS_PER_MS), _TICK, node.id,
                   node.tick_gen)

    def _crash(self, node: _Node, lose_unsynced: bool) -> None:
        node.core = None
        node.up = False
        node.paused = False
        node.pending = []
        node.tick_gen += 1
        self.stats["crashes"] += 1
        if lose_unsynced and len(node.disk) > node.synced:
            keep = node.synced + self.fault_rng.randrange(len(node.disk) - node.synced + 1)
            self.stats["lost_unsynced_records"] += len(node.disk) - keep
            del node.disk[keep:]
        node.synced = len(node.disk)

    def _handle(self, node: _Node, ready) -> None:
        """Carry out a Ready: records first (the durability order), then the messages."""
        if ready.persist:
            node.disk.extend(ready.persist)
            if ready.sync:
                node.synced = len(node.disk)
        if not ready.messages:
            return
        nodes = self.nodes
        rng = self.net_rng
        for env in ready.messages:
            dest = env.dest
            if dest in nodes:
                self._send_peer(node.id, dest, env.body, rng)
            else:
                w = self.by_client.get(dest)
                if w is not None:
                    self._push(self.now + self._delay(rng), _CLIENT_REPLY, w.index, node.id,
                               env.body)

    def _delay(self, rng: random.Random) -> int:
        # random() is several times cheaper than randrange(); ns resolution makes the bias moot.
        d = self._dmin_ns + int(rng.random() * self._dspan_ns)
        if self._reorder_p and rng.random() < self._reorder_p:
            d += int(rng.random() * REORDER_FACTOR * (self._dspan_ns + self._dmin_ns))
        return d

    def _send_peer(self, src: str, dest: str, body: dict, rng: random.Random) -> None:
        self.stats["messages"] += 1
        if self.loss_p and rng.random() < self.loss_p:
            self.stats["dropped"] += 1
            return
        target = self.nodes[dest]
        if not target.up:
            self.stats["dropped"] += 1
            return
        self._push(self.now + self._delay(rng), _DELIVER, dest, src, body, target.incarnation)
        if self.settings.dup_p and rng.random() < self.settings.dup_p:
            self.stats["duplicated"] += 1
            self._push(self.now + self._delay(rng), _DELIVER, dest, src, body, target.incarnation)

    def _deliver(self, dest: str, src: str, body: dict, incarnation: int) -> None:
        node = self.nodes[dest]
        if not node.up or node.incarnation != incarnation:
            self.stats["dropped"] += 1
            return
        drops = self.grudge.get(dest)
        if drops and src in drops:
            self.stats["dropped"] += 1
            return
        if node.paused:
            node.pending.append((src, body))
            return
        self._handle(node, node.core.step(src, body, self._clock(node)))
        if self.storm_p and self.fault_rng.random() < self.storm_p:
            self._storm_crash(node)

    def _storm_crash(self, node: _Node) -> None:
        """A crash storm: crash right after a step (its effects are out), restart very soon."""
        lose = any(self.schedule[i].lose_unsynced for i in self.storms)
        self._crash(node, lose)
        self._nemesis("kill", [node.id])
        down_ns = int(math.exp(self.fault_rng.uniform(0.0, math.log(STORM_DOWN_MS_MAX)))
                      * NS_PER_MS)
        self._push(self.now + down_ns, _STORM_RESTART, node.id, node.incarnation)

    # ---- clients --------------------------------------------------------------------------------

    def _pick_node(self, w: _Worker) -> str:
        if w.hint is not None and w.hint in self.nodes:
            return w.hint
        return self.node_ids[self.client_rng.randrange(len(self.node_ids))]

    def _client_go(self, w: _Worker) -> None:
        if self.phase != "safety" or self.now >= self._limit_ns:
            w.done = True
            return
        cap = self.config.ops_max
        if cap is not None and self.invocations >= cap:
            w.done = True
            return
        inv = self.workload.next_invocation(self.client_rng)
        self._invoke(w, inv, self._pick_node(w))

    def _invoke(self, w: _Worker, inv: Invocation, node_id: str) -> None:
        self.invocations += 1
        w.inv = inv = self.workload.prepare(w.process, inv)
        w.node = node_id
        w.msg_id += 1
        w.sent_ns = self.now
        self.recorder.invoke(w.process, inv.f, inv.value, time_ns=self.now, key=inv.key)
        body = self.workload.request(inv)
        body["msg_id"] = w.msg_id
        node = self.nodes[node_id]
        if node.up:
            self._push(self.now + self._delay(self.net_rng), _DELIVER_CLIENT, node_id, w.client,
                       body, node.incarnation)
        self._push(self.now + self._timeout_ns, _CLIENT_TIMEOUT, w.index, w.msg_id)

    def _deliver_client(self, dest: str, client: str, body: dict, incarnation: int) -> None:
        node = self.nodes[dest]
        if not node.up or node.incarnation != incarnation:
            return
        if node.paused:
            node.pending.append((client, body))
            return
        self._handle(node, node.core.step(client, body, self._clock(node)))

    def _complete(self, w: _Worker, ctype: str, value: Any, error: str | None) -> None:
        self.recorder.complete(w.process, ctype, value, time_ns=self.now, error=error,
                               node=w.node)
        if w.inv is not None:
            self.workload.observe(w.process, w.inv, Completion(ctype, value, error))
        w.inv = None
        if ctype == INFO:
            w.process += self.config.concurrency
            w.hint = None
        if w.final is not None:
            self._final_after(w, ctype)
            return
        if self.phase == "final":
            self._push(self.now, _FINAL_GO, w.index, True)
            return
        self._push(self.now + self.client_rng.randrange(self._stagger_ns + 1), _CLIENT_GO,
                   w.index)

    def _client_reply(self, w: _Worker, node_id: str, body: dict) -> None:
        if w.inv is None or body.get("in_reply_to") != w.msg_id:
            return  # a late reply to an op that already timed out
        c = self.workload.completion(w.inv, body)
        if c.type == FAIL and body.get("code") == 11:
            leader = body.get("leader")
            w.hint = leader if isinstance(leader, str) and leader in self.nodes else None
        self._complete(w, c.type, c.value, c.error)

    def _client_timeout(self, w: _Worker, msg_id: int) -> None:
        if w.inv is None or w.msg_id != msg_id:
            return
        c = self.workload.timeout(w.inv)
        self._complete(w, c.type, c.value, c.error)

    # ---- the final phase ------------------------------------------------------------------------

    def _final_next(self, w: _Worker) -> None:
        if not self.finals:
            w.final = None
            w.done = True
            return
        fin = self.finals.pop(0)
        w.final = fin
        w.final_attempts = 0
        self._final_attempt(w)

    def _final_attempt(self, w: _Worker) -> None:
        fin = w.final
        assert fin is not None
        w.final_attempts += 1
        if fin.node is not None:
            self._final_local(w, fin)
            return
        self._invoke(w, fin.inv, self._pick_node(w))

    def _final_local(self, w: _Worker, fin: FinalOp) -> None:
        """A node's own state, read directly from its core (it is up: the cluster healed)."""
        node = self.nodes[fin.node]
        self.recorder.invoke(w.process, fin.inv.f, fin.inv.value, time_ns=self.now,
                             node=fin.node)
        w.node = fin.node
        w.inv = fin.inv
        if not node.up:
            self._complete(w, FAIL, None, NODE_DOWN)
            return
        if fin.inv.f == "status":
            st = node.core.status()
            value = {"applied_index": st["applied_index"], "state_digest": st["state_digest"]}
        elif fin.inv.f == "read":
            value = node.core.machine.query(self.workload.request(fin.inv))["value"]
        else:
            raise AssertionError(f"no local final op {fin.inv.f}")
        self._complete(w, OK, value, None)

    def _final_after(self, w: _Worker, ctype: str) -> None:
        if ctype == OK or w.final.node is not None or w.final_attempts >= FINAL_ATTEMPTS_MAX:
            self._push(self.now, _FINAL_GO, w.index, True)
        else:
            self._push(self.now + FINAL_RETRY_MS * NS_PER_MS, _FINAL_GO, w.index, False)

    # ---- faults ---------------------------------------------------------------------------------

    def _nemesis(self, f: str, value: Any) -> None:
        self.recorder.invoke("nemesis", f, value, time_ns=self.now)
        self.recorder.complete("nemesis", "info", value, time_ns=self.now)

    def _leaders(self) -> list[str]:
        """The nodes that currently believe they lead (in node order: deterministic)."""
        return [n for n in self.node_ids
                if self.nodes[n].up and not self.nodes[n].paused and self.nodes[n].core.is_leader()]

    def _fault_start(self, i: int, fault: Fault) -> None:
        if self.phase != "safety":
            return
        kind = fault.kind
        if kind == "partition":
            if fault.shape == "split":
                g = grudge_split(fault.nodes, self.node_ids)
            elif fault.shape == "ring":
                g = grudge_ring(list(fault.nodes), self.node_ids)
            elif fault.shape == "bridge":
                g = grudge_bridge(list(fault.nodes), self.node_ids)
            else:
                leaders = self._leaders()
                g = grudge_split(leaders, self.node_ids) if leaders else {}
            self.grudges[i] = g
            self.grudge = merge_grudges(self.grudges[k] for k in sorted(self.grudges))
            self._nemesis("start-partition", {"shape": fault.shape,
                                              "grudge": {n: sorted(s) for n, s in sorted(g.items())}})
        elif kind == "kill" and fault.shape == "storm":
            self.storms[i] = fault.p
            self.storm_p = max(self.storms.values())
            self._nemesis("start-crash-storm", {"p": fault.p})
        elif kind == "kill":
            targets = self._leaders() if fault.shape == "leader" else fault.nodes
            victims = [n for n in targets if self.nodes[n].up]
            for n in victims:
                self._crash(self.nodes[n], fault.lose_unsynced)
            self.killed_by[i] = victims
            self._nemesis("kill", victims)
        elif kind == "pause":
            targets = self._leaders() if fault.shape == "leader" else fault.nodes
            victims = [n for n in targets if self.nodes[n].up and not self.nodes[n].paused]
            for n in victims:
                node = self.nodes[n]
                node.paused = True
                node.tick_gen += 1
            self.paused_by[i] = victims
            self._nemesis("pause", victims)
        elif kind == "clock":
            for n, delta in fault.deltas:
                self.nodes[n].offset_ms += delta
            self.clock_faults[i] = fault.deltas
            self._nemesis("clock-skew", dict(fault.deltas))
        elif kind == "loss":
            self.losses[i] = fault.p
            self.loss_p = max([self.settings.loss_p, *self.losses.values()])
            self._nemesis("start-loss", {"p": fault.p})

    def _fault_stop(self, i: int, fault: Fault) -> None:
        kind = fault.kind
        if kind == "partition" and i in self.grudges:
            del self.grudges[i]
            self.grudge = merge_grudges(self.grudges[k] for k in sorted(self.grudges))
            self._nemesis("stop-partition", {"shape": fault.shape})
        elif kind == "kill" and i in self.storms:
            del self.storms[i]
            self.storm_p = max(self.storms.values(), default=0.0)
            self._nemesis("stop-crash-storm", {"p": fault.p})
        elif kind == "kill" and i in self.killed_by:
            back = [n for n in self.killed_by.pop(i) if not self.nodes[n].up]
            for n in back:
                self.stats["restarts"] += 1
                self._start_node(self.nodes[n])
            self._nemesis("restart", back)
        elif kind == "pause" and i in self.paused_by:
            back = [n for n in self.paused_by.pop(i) if self.nodes[n].up and self.nodes[n].paused]
            for n in back:
                self._resume(self.nodes[n])
            self._nemesis("resume", back)
        elif kind == "clock" and i in self.clock_faults:
            deltas = self.clock_faults.pop(i)
            for n, delta in deltas:
                self.nodes[n].offset_ms -= delta
            self._nemesis("reset-clock", sorted(n for n, _ in deltas))
        elif kind == "loss" and i in self.losses:
            del self.losses[i]
            self.loss_p = max([self.settings.loss_p, *self.losses.values()])
            self._nemesis("stop-loss", {"p": fault.p})

    def _resume(self, node: _Node) -> None:
        node.paused = False
        node.tick_gen += 1
        pending, node.pending = node.pending, []
        for src, body in pending:
            if not node.up or node.paused:
                break
            self._handle(node, node.core.step(src, body, self._clock(node)))
        self._push(self.now + TICK_MS * NS_PER_MS, _TICK, node.id, node.tick_gen)

    def _heal(self) -> None:
        """End of the safety phase: end every active fault, stop issuing client ops."""
        self.phase = "liveness"
        for i in sorted(set(self.grudges) | set(self.killed_by) | set(self.storms)
                        | set(self.paused_by)
                        | set(self.clock_faults) | set(self.losses)):
            self._fault_stop(i, self.schedule[i])
        # A crash whose fault interval ended before heal already restarted; belt and braces:
        for n in self.node_ids:
            node = self.nodes[n]
            if not node.up:
                self._start_node(node)
            elif node.paused:
                self._resume(node)
        self.loss_p = 0.0
        self._push(self.now + LIVENESS_CHECK_MS * NS_PER_MS, _CHECK)

    def _converged(self) -> tuple | None:
        """The common (applied_index, digest) when every node is up and equal, and (for a system
        with leaders) some node leads; else None."""
        if any(w.inv is not None for w in self.workers):
            return None
        if self._has_leaders and not self._leaders():
            return None
        seen = None
        for n in self.node_ids:
            node = self.nodes[n]
            if not node.up or node.paused:
                return None
            m = node.core.machine
            key = (m.applied_index, m.digest())
            if seen is None:
                seen = key
            elif key != seen:
                return None
        return seen

    def _check(self, deadline_ns: int) -> None:
        # Equal is not enough: every node may be equal and behind (a committed entry that no
        # node has applied yet, until a new leader commits in its term). So the equal state must
        # also hold, with a leader, for SETTLE_MS.
        key = self._converged()
        if key is not None and key == self._settle_key:
            if self.now - self._settle_since_ns >= SETTLE_MS * NS_PER_MS:
                self.converged_at_ns = self.now
                self._start_final()
                return
        elif key is not None:
            self._settle_key, self._settle_since_ns = key, self.now
        else:
            self._settle_key = None
        if self.now >= deadline_ns:
            self._start_final()
        else:
            self._push(self.now + LIVENESS_CHECK_MS * NS_PER_MS, _CHECK)

    def _start_final(self) -> None:
        self.phase = "final"
        self.finals = list(self.workload.final_invocations(self.node_ids))
        for w in self.workers:
            w.done = False
            self._push(self.now, _FINAL_GO, w.index, True)

    # ---- the loop -------------------------------------------------------------------------------

    def run(self) -> SimRun:
        wall0 = _time.perf_counter()
        for n in self.node_ids:
            self._start_node(self.nodes[n])
        for i, fault in enumerate(self.schedule):
            if fault.at_ms * NS_PER_MS < self._limit_ns:
                self._push(fault.at_ms * NS_PER_MS, _FAULT_START, i)
                self._push(min(fault.end_ms * NS_PER_MS, self._limit_ns), _FAULT_STOP, i)
        for w in self.workers:
            self._push(self.client_rng.randrange(self._stagger_ns + 1), _CLIENT_GO, w.index)
        self._push(self._limit_ns, _HEAL)
        deadline = self._limit_ns + self.config.liveness_ms * NS_PER_MS
        final_deadline = deadline + FINAL_PHASE_MS_MAX * NS_PER_MS
        heap = self._heap
        pop = heapq.heappop
        nodes = self.nodes
        workers = self.workers
        events = 0
        try:
            events = self._loop(heap, pop, nodes, workers, deadline, final_deadline)
        except Exception as e:  # noqa: BLE001 - a core that raises is a finding, not a crash
            # An assertion in a protocol core (or any exception it raises) ends the run: report
            # it with the virtual time and the core's traceback, like a crashed replica in VOPR.
            import traceback
            self.core_error = {"error": f"{type(e).__name__}: {e}",
                               "virtual_ms": self.now // NS_PER_MS,
                               "traceback": traceback.format_exc(limit=8)}
            events = self._events
        self.stats["events"] = events
        self.stats["virtual_ms"] = self.now // NS_PER_MS
        self.stats["wall_ms"] = int((_time.perf_counter() - wall0) * 1000)
        self.stats["invocations"] = self.invocations
        return SimRun(self.config, self.settings, self.schedule, self.recorder.ops,
                      self._liveness_result(), dict(self.stats), self._replicas_result())

    def _replicas_result(self) -> Result:
        """Safety, seen from inside: nodes at the same applied_index must hold the same state
        (`state-divergence`), and no core reports a broken invariant (`invariant-violation`,
        from describe()["violations"], which cores fill when a bug switch is on).

        The simulator can look at every machine directly (a real backend asks `status`); this
        holds for every workload, not only append-log's status ops.
        """
        by_index: dict[int, dict[str, list[str]]] = {}
        for n in self.node_ids:
            node = self.nodes[n]
            if node.up and node.core is not None:
                m = node.core.machine
                by_index.setdefault(m.applied_index, {}).setdefault(m.digest(), []).append(n)
        anomalies = []
        for index in sorted(by_index):
            digests = by_index[index]
            if len(digests) > 1:
                anomalies.append(Anomaly(
                    "state-divergence",
                    f"nodes at applied_index {index} hold different states: "
                    + "; ".join(f"{', '.join(ns)} -> {d}" for d, ns in sorted(digests.items())),
                    details={"applied_index": index,
                             "digests": {d: ns for d, ns in sorted(digests.items())}}))
        # A core may report invariants it saw broken (with a bug switch on it records them in
        # describe()["violations"] instead of asserting): name them.
        for n in self.node_ids:
            node = self.nodes[n]
            if node.up and node.core is not None:
                broken = node.core.describe().get("violations")
                if broken:
                    anomalies.append(Anomaly(
                        "invariant-violation",
                        f"{n} broke a protocol invariant: {broken[0]}"
                        + (f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""),
                        details={"node": n, "violations": list(broken)[:20]}))
        return Result(valid=not anomalies, checker="replicas", anomalies=anomalies,
                      stats={"applied_index": {str(i): sum(len(v) for v in d.values())
                                               for i, d in sorted(by_index.items())}})

    def _loop(self, heap, pop, nodes, workers, deadline: int, final_deadline: int) -> int:
        events = 0
        while heap:
            t, _, kind, a, b, c, d = pop(heap)
            self.now = t
            events += 1
            if kind == _DELIVER:
                self._deliver(a, b, c, d)
            elif kind == _TICK:
                node = nodes[a]
                if node.up and not node.paused and node.tick_gen == b:
                    self._handle(node, node.core.tick(self._clock(node)))
                    self._push(t + TICK_MS * NS_PER_MS, _TICK, a, b)
            elif kind == _CLIENT_REPLY:
                self._client_reply(workers[a], b, c)
            elif kind == _DELIVER_CLIENT:
                self._deliver_client(a, b, c, d)
            elif kind == _CLIENT_TIMEOUT:
                self._client_timeout(workers[a], b)
            elif kind == _CLIENT_GO:
                w = workers[a]
                if w.inv is None and w.final is None:
                    self._client_go(w)
            elif kind == _FAULT_START:
                self._fault_start(a, self.schedule[a])
            elif kind == _FAULT_STOP:
                self._fault_stop(a, self.schedule[a])
            elif kind == _HEAL:
                self._heal()
            elif kind == _CHECK:
                self._check(deadline)
            elif kind == _STORM_RESTART:
                node = nodes[a]
                held = any(a in v for v in self.killed_by.values())
                if not node.up and node.incarnation == b and not held:
                    self.stats["restarts"] += 1
                    self._start_node(node)
                    self._nemesis("restart", [a])
            elif kind == _FINAL_GO:
                w = workers[a]
                if w.inv is None:
                    if b:
                        self._final_next(w)
                    else:
                        self._final_attempt(w)
                if self.phase == "final" and all(x.done and x.inv is None for x in workers):
                    break
            if events >= EVENTS_MAX or t > final_deadline:
                break
            if not events & 0xFFF:
                self._events = events
        return events

    def _liveness_result(self) -> Result:
        if self.core_error is not None:
            return Result(valid=False, checker="liveness", anomalies=[Anomaly(
                "core-exception",
                f"a protocol core raised at virtual {self.core_error['virtual_ms']} ms: "
                f"{self.core_error['error']}", details=dict(self.core_error))])
        stats = {"converged_after_heal_ms": (None if self.converged_at_ns is None else
                                             (self.converged_at_ns - self._limit_ns) // NS_PER_MS)}
        if self.converged_at_ns is not None:
            return Result(valid=True, checker="liveness", stats=stats)
        states = {}
        for n in self.node_ids:
            node = self.nodes[n]
            if node.up:
                states[n] = {"applied_index": node.core.machine.applied_index,
                             "state_digest": node.core.machine.digest(), **node.core.describe()}
            else:
                states[n] = {"down": True}
        return Result(valid=False, checker="liveness", stats=stats, anomalies=[Anomaly(
            "no-convergence",
            f"after the cluster healed, the nodes did not reach the same applied_index and "
            f"state digest within {self.config.liveness_ms} ms",
            details={"nodes": states})])


_DELIVER_CLIENT = 10
_STORM_RESTART = 11


def simulate(config: SimConfig, recorder: Recorder | None = None,
             log: Callable[[str], None] | None = None) -> SimRun:
    """Run one simulated test; see the module docstring."""
    return Simulator(config, recorder, log).run()
