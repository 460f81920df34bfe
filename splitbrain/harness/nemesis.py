"""The nemesis: faults injected into a running cluster, recorded as nemesis ops in the history.

Faults (`--nemesis a,b,...`; every one records an `invoke` then an `info` by process "nemesis",
so the reports can shade its interval):

| name        | opens with        | closes with      | what it does                                      |
|-------------|-------------------|------------------|---------------------------------------------------|
| partition   | start-partition   | stop-partition   | a grudge of a random shape (grudges.SHAPES, incl. |
|             |                   |                  | the current leader isolated)                      |
| partition-leader | start-partition | stop-partition | always the current leader isolated              |
| kill        | kill              | restart          | SIGKILL one node, a minority, a majority, all of  |
|             |                   |                  | them or the leader; later restart from disk       |
| lost-writes | kill              | restart          | as kill, and cut each file to its last fsync      |
| pause       | pause             | resume           | SIGSTOP / SIGCONT one, a minority, a majority or  |
|             |                   |                  | the leader                                        |
| clock       | clock-skew        | reset-clock      | offset a random minority's clocks by +-0.1..5 s   |
| loss        | start-loss        | stop-loss        | drop 20-50% of messages between nodes             |
| latency     | start-latency     | stop-latency     | delay messages by 20-300 ms (reorders them)       |
| duplicate   | start-duplicate   | stop-duplicate   | deliver 30% of messages twice                     |
| crash-storm | start-crash-storm | stop-crash-storm | while in force, SIGKILL a node (the leader half   |
|             |                   |                  | the time) and restart it 10-50 ms later, again    |
|             |                   |                  | every 10-60 ms, at most a minority down at once   |
| crash-point | start-crash-point | stop-crash-point | while in force, the router crashes a node right   |
|             |                   |                  | after (or before) it sends a message of one of    |
|             |                   |                  | its system's crash-point types (local backend)    |

Crash points are the simulator's crash-right-after-a-message in wall-clock time: a random SIGKILL
rarely lands in the millisecond between a server granting a vote and the next message it gets,
but the router sees the vote leave. Each system names its crash points (the `CRASH_POINTS` of its
core class, listed by `splitbrain systems`): the messages after which a crash tests what the
server wrote to disk. `--opt harness.crash_point_types=a,b` chooses others (for a --bin node the
default is every message type; `a.f` means messages of type a whose field f is true, `a@0.05`
gives type a its own chance), `harness.crash_point_p` the chance that one such message is its
sender's last (default 0.2), `harness.crash_point_down_ms` how long the crashed node stays down
before its restart from disk begins (default 10-50 ms; a start-up takes ~0.2 s more),
`harness.crash_point_before_p` the share of crashes before the message leaves (default 0.5). At
most a minority is down for crash points at once (`harness.crash_point_down_max` changes that:
raft's figure 8 in three nodes needs two servers down together), and after each crash the next
waits 50-300 ms.

The schedule is a pure generator (generators.nemesis_cycle): quiet for `interval`, one fault
started, held for `interval`, stopped. With `overlapping_schedules` there is one such schedule per
fault family (partition, kill, pause, clock, network, storm), each in its own thread, so faults of
different families overlap. Which nodes and which shape are drawn from a seeded rng
when the fault starts. `heal_all()` ends every fault still in force (recorded too) before the
final phase. A backend lacking an ability makes the corresponding fault a usage error up front.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from . import grudges
from .generators import PENDING, Ctx, GenOp, Seq, as_gen, nemesis_cycle
from .store import Recorder

NEMESIS = "nemesis"

FAULTS: dict[str, tuple[str, str, str]] = {
    # name: (start f, stop f, ability the backend needs)
    "partition": ("start-partition", "stop-partition", "partition"),
    "partition-leader": ("start-partition", "stop-partition", "partition"),
    "kill": ("kill", "restart", "kill"),
    "lost-writes": ("kill", "restart", "lose-unsynced"),
    "pause": ("pause", "resume", "pause"),
    "clock": ("clock-skew", "reset-clock", "clock"),
    "loss": ("start-loss", "stop-loss", "network"),
    "latency": ("start-latency", "stop-latency", "network"),
    "duplicate": ("start-duplicate", "stop-duplicate", "network"),
    "crash-storm": ("start-crash-storm", "stop-crash-storm", "kill"),
    "crash-point": ("start-crash-point", "stop-crash-point", "crash-point"),
}
DESCRIPTIONS = {
    "partition": "network partition of a random shape: " + ", ".join(grudges.SHAPES),
    "partition-leader": "the current leader (as its status says) isolated from everyone else",
    "kill": ("SIGKILL one node, a minority, a majority, all, or the leader; then restart them "
             "from their data directories"),
    "lost-writes": "kill, and cut each killed node's records file back to its last fsync",
    "pause": "SIGSTOP one node, a minority, a majority or the leader; then SIGCONT",
    "clock": "offset a random minority's clocks by 0.1 to 5 s either way, then reset",
    "loss": "drop 20-50% of the messages between nodes",
    "latency": "delay messages between nodes by 20-300 ms (reordering them)",
    "duplicate": "deliver 30% of the messages between nodes twice",
    "crash-storm": ("many crashes a second: SIGKILL a node (the leader half the time) and restart "
                    "it from disk 10-50 ms later, another every 10-60 ms while the fault is in "
                    "force (at most a minority down at once)"),
    "crash-point": ("crashes at protocol points: the router SIGKILLs a node right after (or "
                    "before) it sends a message of one of its system's crash-point types, and it "
                    "restarts from disk 10-50 ms later (local backend)"),
}
ALIASES = {"lose-unsynced": "lost-writes", "clock-skew": "clock", "packet-loss": "loss"}
CLOCK_OFFSET_MS_MAX = 5_000
KILL_TARGETS = ("one", "minority", "majority", "all", "leader")
PAUSE_TARGETS = ("one", "minority", "majority", "leader")
# The crash storm (the simulator's crash-right-after-a-message, in wall-clock time): how long a
# crashed node stays down, and the gap before the next crash.
STORM_DOWN_MS_MIN, STORM_DOWN_MS_MAX = 10, 50
STORM_GAP_MS_MIN, STORM_GAP_MS_MAX = 10, 60
STORM_LEADER_P = 0.5     # the share of crashes aimed at the current leader
CRASH_POINT_P = 0.2      # default chance that a crash-point message is its sender's last
CRASH_POINT_BEFORE_P = 0.5   # share of crash-point crashes before the message leaves
CRASH_POINT_GAP_MS_MIN, CRASH_POINT_GAP_MS_MAX = 50, 300   # quiet time after each one
CRASH_POINT_DOWN_MS = (STORM_DOWN_MS_MIN, STORM_DOWN_MS_MAX)


def parse_faults(spec: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """`"partition,kill"` -> ["partition", "kill"]; "none" or empty -> []; "all" -> every fault.
    ValueError naming the choices for an unknown fault."""
    if spec is None:
        return []
    items = spec.split(",") if isinstance(spec, str) else [x for s in spec for x in s.split(",")]
    out: list[str] = []
    for raw in items:
        name = ALIASES.get(raw.strip(), raw.strip())
        if name in ("", "none"):
            continue
        if name == "all":
            return list(FAULTS)
        if name not in FAULTS:
            raise ValueError(f"unknown nemesis {raw.strip()!r} (choose from "
                             f"{', '.join(FAULTS)}, all, none)")
        if name not in out:
            out.append(name)
    return out


def schedule(faults: list[str], interval_s: float, seed: int):
    """The nemesis generator for these faults (a pure value): one fault at a time."""
    pairs = [(GenOp(FAULTS[f][0], f), GenOp(FAULTS[f][1], f)) for f in faults]
    return nemesis_cycle(pairs, interval_s, seed)


FAMILIES = {"partition": "partition", "partition-leader": "partition", "kill": "kill",
            "lost-writes": "kill", "pause": "pause", "clock": "clock", "loss": "network",
            "latency": "network", "duplicate": "network", "crash-storm": "storm",
            "crash-point": "storm"}


def overlapping_schedules(faults: list[str], interval_s: float, seed: int) -> list:
    """One schedule per fault family (partition, kill, pause, clock, network), each with its own
    seed and phase, so that faults of different families overlap (a partition during a kill)."""
    families: dict[str, list[str]] = {}
    for f in faults:
        families.setdefault(FAMILIES[f], []).append(f)
    out = []
    for i, (_, fs) in enumerate(sorted(families.items())):
        # Stagger the families' phases so that their faults start at different moments.
        offset_ns = int(interval_s * 1e9 * i / len(families))
        sched = schedule(fs, interval_s, seed + 7919 * i)
        out.append(Seq((as_gen(GenOp("sleep", offset_ns)), sched)) if offset_ns else sched)
    return out


@dataclass(frozen=True)
class CrashPointSettings:
    """The crash-point fault's settings (see the module docstring).

    types: message type -> its own chance, or None for `p`; empty means every message type.
    names: the system's own crash-point names of a message (Core.crash_point_names), if any.
    down_max: most nodes down for crash points at once; None means a minority.
    """

    types: dict[str, float | None] = field(default_factory=dict)
    p: float = CRASH_POINT_P
    before_p: float = CRASH_POINT_BEFORE_P
    down_ms: tuple[int, int] = CRASH_POINT_DOWN_MS
    down_max: int | None = None
    names: Callable[[dict], tuple[str, ...]] | None = None

    def types_json(self):
        """The types for the history: "all", or their names ("name@p" with a chance)."""
        return sorted(t if p is None else f"{t}@{p}" for t, p in self.types.items()) or "all"

    def to_json(self) -> dict:
        """The settings as recorded in test.json (`local`)."""
        return {"crash_point_types": self.types_json(), "crash_point_p": self.p,
                "crash_point_before_p": self.before_p, "crash_point_down_ms": list(self.down_ms),
                "crash_point_down_max": self.down_max}


class Nemesis:
    """Carries out nemesis ops on a backend and records them. Runs in its own thread."""

    def __init__(self, backend, recorder: Recorder, *, seed: int, t0_ns: int,
                 on_op: Callable[[Any], None] | None = None, log: Callable[[str], None] = print,
                 crash_points: CrashPointSettings | None = None,
                 partition_shapes: tuple[str, ...] = grudges.SHAPES,
                 fault_log: Callable[[str], None] | None = None):
        """crash_points: the crash-point fault's settings (default CrashPointSettings()).
        partition_shapes: the shapes the partition fault draws from (default all of them).
        fault_log: where each fault's start and stop is written, with its time and what it did
        (the run's splitbrain.log; not the terminal, which shows the progress line)."""
        self.fault_log = fault_log
        self.backend = backend
        self.recorder = recorder
        self.rng = random.Random(f"nemesis/{seed}")
        self.t0_ns = t0_ns
        self.on_op = on_op
        self.log = log
        self.nodes = list(backend.nodes)
        self.killed: set[str] = set()
        self.paused: set[str] = set()
        self.skewed: set[str] = set()
        self.partitioned = False
        self._said_no_leader = False
        self.network: str | None = None   # the closing op of the network fault in force
        self._storm: tuple[threading.Thread, threading.Event, dict] | None = None
        unknown = set(partition_shapes) - set(grudges.SHAPES)
        if unknown or not partition_shapes:
            raise ValueError(f"unknown partition shape {sorted(unknown)[0] if unknown else ''!r} "
                             f"(choose from {', '.join(grudges.SHAPES)})")
        self.partition_shapes = tuple(partition_shapes)
        self.crash_point_settings = crash_points or CrashPointSettings()
        self._crash_points: _CrashPointRun | None = None
        self.stop_event = threading.Event()
        self._threads: list[threading.Thread] = []
        # Overlapping schedules (one thread per fault family) share the fault state.
        self._lock = threading.RLock()
        self.error: BaseException | None = None

    def now_ns(self) -> int:
        return time.monotonic_ns() - self.t0_ns

    def _minority(self) -> list[str]:
        k = self.rng.randint(1, max(1, (len(self.nodes) - 1) // 2))
        return sorted(self.rng.sample(self.nodes, k))

    def _targets(self, choices: tuple[str, ...]) -> tuple[str, list[str]]:
        """Jepsen's node specs: one, minority, majority, all, or the current leader."""
        spec = self.rng.choice(choices)
        n = len(self.nodes)
        if spec == "leader":
            leader = self._leader()
            if leader is not None:
                return spec, [leader]
            spec = "one"
        if spec == "one":
            return spec, [self.rng.choice(self.nodes)]
        if spec == "minority":
            return spec, self._minority()
        if spec == "majority":
            return spec, sorted(self.rng.sample(self.nodes, n // 2 + 1))
        assert spec == "all", spec
        return spec, list(self.nodes)

    def _leader(self) -> str | None:
        """The current leader by the nodes' status, or None. Third-party (--bin) nodes are
        never probed (they get only what Maelstrom would send them): a leader-targeted fault
        then picks a random node, and the nemesis log says so (once per run)."""
        b = self.backend
        # A real database's backend asks the database itself (splitbrain/dbs: probes_leader).
        if not getattr(b, "in_house", True) and not getattr(b, "probes_leader", False):
            if not self._said_no_leader:
                self._said_no_leader = True
                self.log("nemesis: --bin nodes are never probed for their leader; "
                         "leader-targeted faults pick a random node")
            return None
        return b.leader() if hasattr(b, "leader") else None

    def _record(self, f: str, value: Any, fn: Callable[[], Any]) -> Any:
        op = self.recorder.invoke(NEMESIS, f, value, time_ns=self.now_ns())
        if self.on_op:
            self.on_op(op)
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - recorded, then re-raised to fail the run
            op = self.recorder.complete(NEMESIS, "info", value, time_ns=self.now_ns(),
                                        error=f"{type(e).__name__}: {e}")
            if self.on_op:
                self.on_op(op)
            raise
        op = self.recorder.complete(NEMESIS, "info", result if result is not None else value,
                                    time_ns=self.now_ns())
        if self.on_op:
            self.on_op(op)
        if self.fault_log is not None:
            import json
            self.fault_log(f"nemesis {f} at {op.time / 1e9:.3f} s: "
                           f"{json.dumps(op.value, default=str, separators=(',', ':'))}")
        return result

    # ---- the faults ---------------------------------------------------------------------------

    def invoke(self, f: str, fault: str) -> None:
        """Carry out one op of the schedule (f as in FAULTS; fault names which one)."""
        storm = self._storm
        if f == "stop-crash-storm" and storm is not None:
            # The storm thread takes the lock for each crash: stop it before taking the lock.
            storm[1].set()
            storm[0].join(timeout=120)
        points = self._crash_points
        if f == "stop-crash-point" and points is not None:
            points.stop()      # its restarts take the lock: wait for them before taking it
        with self._lock:
            self._invoke(f, fault)

    def _invoke(self, f: str, fault: str) -> None:
        b = self.backend
        if f == "start-partition":
            shape = ("leader" if fault == "partition-leader"
                     else self.rng.choice(self.partition_shapes))
            leader = self._leader() if shape in grudges.LEADER_SHAPES else None
            g = grudges.shape(shape, self.nodes, self.rng, leader=leader)

            def part():
                b.partition(g)
                return {"shape": shape, "grudge": grudges.to_json(g),
                        **({"leader": leader} if shape in grudges.LEADER_SHAPES else {})}
            self._record(f, {"shape": shape}, part)
            self.partitioned = True
        elif f == "stop-partition":
            self._record(f, None, lambda: b.partition({}))
            self.partitioned = False
        elif f == "kill":
            spec, nodes = self._targets(KILL_TARGETS)
            lose = fault == "lost-writes"

            def kill():
                out = [b.kill(n, lose_unsynced=lose) for n in nodes]
                self.killed.update(nodes)
                return {"nodes": nodes, "targets": spec, **({"lost": out} if lose else {})}
            self._record(f, {"nodes": nodes, "targets": spec, "lose_unsynced": lose} if lose
                         else {"nodes": nodes, "targets": spec}, kill)
        elif f == "restart":
            nodes = sorted(self.killed)

            def restart():
                for n in nodes:
                    b.restart(n)
                    self.killed.discard(n)
                return {"nodes": nodes}
            self._record(f, {"nodes": nodes}, restart)
        elif f == "pause":
            _, nodes = self._targets(PAUSE_TARGETS)

            def pause():
                for n in nodes:
                    b.pause(n)
                    self.paused.add(n)
                return {"nodes": nodes}
            self._record(f, {"nodes": nodes}, pause)
        elif f == "resume":
            nodes = sorted(self.paused)

            def resume():
                for n in nodes:
                    b.resume(n)
                    self.paused.discard(n)
                return {"nodes": nodes}
            self._record(f, {"nodes": nodes}, resume)
        elif f == "clock-skew":
            offsets = {n: self.rng.choice((-1, 1)) * self.rng.randint(100, CLOCK_OFFSET_MS_MAX)
                       for n in self._minority()}

            def skew():
                for n, off in offsets.items():
                    b.set_clock(n, off)
                    self.skewed.add(n)
                return {"offsets_ms": offsets}
            self._record(f, {"offsets_ms": offsets}, skew)
        elif f == "reset-clock":
            nodes = sorted(self.skewed)

            def reset():
                for n in nodes:
                    b.set_clock(n, 0)
                    self.skewed.discard(n)
                return {"nodes": nodes}
            self._record(f, {"nodes": nodes}, reset)
        elif f in ("start-loss", "start-latency", "start-duplicate"):
            if f == "start-loss":
                setting = {"loss": round(self.rng.uniform(0.2, 0.5), 2)}
            elif f == "start-latency":
                setting = {"latency_ms": (20, self.rng.choice((100, 200, 300)))}
            else:
                setting = {"duplicate": 0.3}
            self._record(f, setting, lambda: b.set_network(**setting))
            self.network = "stop-" + f[len("start-"):]
        elif f == "start-crash-storm":
            if self._storm is not None:
                return
            stop = threading.Event()
            counts = {"crashes": 0, "leader_crashes": 0}
            rng = random.Random(self.rng.random())

            def begin():
                t = threading.Thread(target=self._storm_run, args=(stop, counts, rng),
                                     daemon=True, name="splitbrain-crash-storm")
                self._storm = (t, stop, counts)
                t.start()
                return {"down_ms": [STORM_DOWN_MS_MIN, STORM_DOWN_MS_MAX],
                        "gap_ms": [STORM_GAP_MS_MIN, STORM_GAP_MS_MAX]}
            self._record(f, None, begin)
        elif f == "stop-crash-storm":
            def end():
                return self._end_storm()
            self._record(f, None, end)
        elif f == "start-crash-point":
            if self._crash_points is not None:
                return
            run = _CrashPointRun(self, random.Random(self.rng.random()))

            def arm():
                run.arm()
                self._crash_points = run
                cps = self.crash_point_settings
                return {"types": cps.types_json(), "p": cps.p}
            self._record(f, None, arm)
        elif f == "stop-crash-point":
            def disarm():
                run, self._crash_points = self._crash_points, None
                if run is None:
                    return {}
                run.stop()
                return run.counts()
            self._record(f, None, disarm)
        elif f in ("stop-loss", "stop-latency", "stop-duplicate"):
            self._record(f, None, lambda: b.set_network())
            self.network = None
        else:
            raise ValueError(f"unknown nemesis op {f!r}")

    def _storm_run(self, stop: threading.Event, counts: dict, rng: random.Random) -> None:
        """The crash storm's thread: crash a node, restart it 10-50 ms later (in a thread of its
        own, since a restart takes a process start-up), crash another after a 20-100 ms gap, and
        so on until `stop` (or the whole nemesis stops). At most a minority is down for the storm
        at once. Every node it crashed is restarted before it returns; nodes that other faults
        killed or paused are left alone."""
        b = self.backend
        down: set[str] = set()
        restarts: list[threading.Thread] = []
        down_max = max(1, (len(self.nodes) - 1) // 2)

        def restart(node: str, delay_s: float) -> None:
            try:
                self._restart_later(node, delay_s, "crash storm")
            finally:
                with self._lock:
                    down.discard(node)
        try:
            while not (stop.is_set() or self.stop_event.is_set()):
                leader = self._leader() if rng.random() < STORM_LEADER_P else None
                node = None
                with self._lock:
                    free = [n for n in self.nodes if n not in self.killed | self.paused | down]
                    if free and len(down) < down_max:
                        node = leader if leader in free else rng.choice(free)
                        b.kill(node)
                        down.add(node)
                        counts["crashes"] += 1
                        counts["leader_crashes"] += node == leader
                if node is not None:
                    delay_s = rng.uniform(STORM_DOWN_MS_MIN, STORM_DOWN_MS_MAX) / 1e3
                    t = threading.Thread(target=restart, args=(node, delay_s), daemon=True,
                                         name=f"splitbrain-storm-restart-{node}")
                    restarts.append(t)
                    t.start()
                restarts = [t for t in restarts if t.is_alive()]
                if stop.wait(rng.uniform(STORM_GAP_MS_MIN, STORM_GAP_MS_MAX) / 1e3):
                    return
        except BaseException as e:  # noqa: BLE001 - surfaced by stop()
            self.error = e
            self.log(f"crash storm failed: {type(e).__name__}: {e}")
        finally:
            for t in restarts:
                t.join(timeout=120)

    def _restart_later(self, node: str, delay_s: float, what: str, *, reap: bool = False) -> None:
        """Restart a node that a storm or a crash point took down, `delay_s` later, unless the
        kill fault has taken it meanwhile (that fault restarts it). `reap`: first reap the
        process the router killed. A failure is kept in `error` (stop() surfaces it)."""
        try:
            if reap:
                self.backend.kill(node)
            time.sleep(delay_s)
            with self._lock:
                if node not in self.killed:
                    self.backend.restart(node)
        except BaseException as e:  # noqa: BLE001 - surfaced by stop()
            self.error = e
            self.log(f"{what}: restart of {node} failed: {type(e).__name__}: {e}")

    def _end_storm(self) -> dict:
        """Stop the crash storm (if any) and wait for its last restart; returns its counts."""
        if self._storm is None:
            return {}
        t, stop, counts = self._storm
        stop.set()
        t.join(timeout=120)
        self._storm = None
        return dict(counts)

    def heal_all(self) -> None:
        """End every fault still in force (each recorded as its closing op)."""
        if self._storm is not None:
            self.invoke("stop-crash-storm", "crash-storm")
        if self._crash_points is not None:
            self.invoke("stop-crash-point", "crash-point")
        if self.partitioned:
            self.invoke("stop-partition", "partition")
        if self.network:
            self.invoke(self.network, self.network[len("stop-"):])
        if self.paused:
            self.invoke("resume", "pause")
        if self.killed:
            self.invoke("restart", "kill")
        if self.skewed:
            self.invoke("reset-clock", "clock")

    # ---- the interpreter thread ---------------------------------------------------------------

    def start(self, gen) -> None:
        """Run one schedule (a generator) in a thread of its own; may be called several times
        (overlapping schedules, e.g. one per fault family)."""
        t = threading.Thread(target=self._run, args=(gen,), daemon=True,
                             name=f"splitbrain-nemesis-{len(self._threads)}")
        self._threads.append(t)
        t.start()

    def _run(self, gen) -> None:
        try:
            while not self.stop_event.is_set():
                now = self.now_ns()
                r = gen.op(Ctx(now, NEMESIS, (NEMESIS,), frozenset({NEMESIS})))
                if r is None:
                    return
                o, gen = r
                if o is PENDING:
                    self.stop_event.wait(0.05)
                    continue
                if o.f == "sleep":
                    self.stop_event.wait(o.value / 1e9)
                    continue
                wait_s = (o.time_ns - now) / 1e9
                if wait_s > 0 and self.stop_event.wait(wait_s):
                    return
                self.invoke(o.f, o.value)
        except BaseException as e:  # noqa: BLE001 - surfaced by stop()
            self.error = e
            self.log(f"nemesis failed: {type(e).__name__}: {e}")

    def stop(self) -> None:
        """Stop the schedule and wait for the op in progress (it may be a restart)."""
        self.stop_event.set()
        for t in self._threads:
            t.join(timeout=120)
        if self._storm is not None:
            # The storm ends its round (a crashed node restarted); heal_all records the stop.
            self._storm[0].join(timeout=120)


class _CrashPointRun:
    """One crash-point fault in force: arms the backend's router, reaps and restarts the nodes it
    crashes (a thread per crash: a restart is a process start-up), counts them.

    The router calls `allow` and `crashed` on its loop thread, so they only touch `down` and
    `quiet_until` (owned by the loop thread) and read the nemesis's sets; they never block.
    """

    def __init__(self, nemesis: Nemesis, rng: random.Random):
        self.nemesis = nemesis
        self.rng = rng
        self.down: set[str] = set()
        self.settings = nemesis.crash_point_settings
        self.down_max = self.settings.down_max or max(1, (len(nemesis.nodes) - 1) // 2)
        self.quiet_until = 0.0
        self.threads: list[threading.Thread] = []
        self.points = None

    def arm(self) -> None:
        from .backends.local import CrashPoints
        cps = self.settings
        self.points = CrashPoints(types=dict(cps.types), p=cps.p, before_p=cps.before_p,
                                  allow=self.allow, on_crash=self.crashed, names=cps.names)
        self.nemesis.backend.arm_crash_points(self.points)

    def allow(self, node: str) -> bool:
        nem = self.nemesis
        return (time.monotonic() >= self.quiet_until and len(self.down) < self.down_max
                and node not in self.down and node not in nem.killed and node not in nem.paused)

    def crashed(self, node: str, info: dict) -> None:
        self.down.add(node)
        self.quiet_until = time.monotonic() + self.rng.uniform(
            CRASH_POINT_GAP_MS_MIN, CRASH_POINT_GAP_MS_MAX) / 1e3
        delay_s = self.rng.uniform(*self.settings.down_ms) / 1e3
        t = threading.Thread(target=self._restart, args=(node, delay_s), daemon=True,
                             name=f"splitbrain-crash-point-{node}")
        self.threads.append(t)
        t.start()

    def _restart(self, node: str, delay_s: float) -> None:
        try:
            self.nemesis._restart_later(node, delay_s, "crash point", reap=True)
        finally:
            self.down.discard(node)

    def stop(self) -> None:
        """Disarm the router and wait for the last restart (idempotent)."""
        self.nemesis.backend.arm_crash_points(None)
        for t in list(self.threads):
            t.join(timeout=120)

    def counts(self) -> dict:
        fired = dict(self.points.fired) if self.points is not None else {}
        return {"crashes": sum(fired.values()), "by_type": fired}
