"""The `local` backend: node processes on this machine and the harness's message router (Maelstrom's
model). Nodes never talk to each other directly: every envelope a node writes on stdout comes to
the router, which delivers it to the destination's stdin, or drops, delays or duplicates it
according to the current grudge and network settings. Client requests and replies travel the same
way but are never subject to network faults (Jepsen's clients sit on the control node).

Each node runs in its own session (process group), so a Ctrl-C at the terminal reaches only the
harness, and kill/pause signal the whole group. Its stderr goes to `nodes/<node>/node.log`, its
data directory is `nodes/<node>/data` (in-house nodes; a --bin node gets `nodes/<node>/` as its
working directory). A node whose stdin closes exits (the runtime's contract), so even a harness
killed with SIGKILL leaves nodes that stop on their own; teardown() kills every group anyway.
A node whose leader process exits by itself has the rest of its group killed at once (a `--bin`
program that forks a child and exits leaves nothing running). Against a harness killed outright:
each --bin node asks the kernel for SIGKILL when the harness's loop thread dies
(PR_SET_PDEATHSIG, ownership.pdeathsig_launch; in-house nodes exit at EOF), and every process
started is recorded in the run directory's `pids.jsonl` (pid, pgid, start time) for
`splitbrain cleanup`. A child that leaves its process
group (setsid) escapes both; cleanup cannot find it either.

Messages are routed by `dest`; `src` is kept exactly as the node wrote it (Maelstrom's rule: a
follower that forwards a client's request unchanged makes the leader answer the client
directly). Network faults apply to the true sender. Everything that is not for a node (services,
clients, unknown destinations) goes through routing.py; every message is recorded in the message
log (msglog.py). Whatever a node writes is untrusted input (wire.py): malformed lines are
counted and logged, never fatal, and what is buffered per node is bounded.

Messages to a node that is down are lost; a client request to a node that is down is refused
(`send_client` returns False: the request certainly did not happen). A node that exits by itself
is recorded in `crashes` (exit code, last lines of node.log) and stays down: only the nemesis
restarts nodes.

Crash points (`arm_crash_points`): because every message passes through the router, the router can
crash a node at a precise point of its protocol, as the simulator does: when a node sends a
message of a chosen type, the router may SIGKILL it right after the message leaves, or right
before (the message is dropped: the node crashed between its fsync and its send; the runtime
writes records to disk before the Ready's messages, so either point is one a real crash can hit).
Nothing the node wrote after that message is routed. Whoever armed the crash points (the nemesis)
is told and restarts the node.
"""

from __future__ import annotations

import json
import logging
import os
import random
import selectors
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ...systems.runtime import RECORDS_FILE, cut_to_last_sync
from ..grudges import Grudge, drops
from ..ownership import ProcessLedger, kill_group, pdeathsig_launch
from .base import CONTROL_CLIENT, ControlRequests, Loop
from .routing import CRASH_LOG_LINES, Routing, log_tail
from .wire import LineReader, parse_envelope

READ_CHUNK_BYTES = 1 << 18
OUTBUF_BYTES_MAX = 32 << 20      # bytes queued for a stopped node before messages are dropped
INIT_TIMEOUT_S = 20.0
KILL_WAIT_S = 10.0
EXIT_CODE_WAIT_S = 0.2           # how long the loop waits for the exit code of a node whose stdout closed

log = logging.getLogger("splitbrain.local")


@dataclass
class CrashPoints:
    """When the router crashes a node at a protocol point (see the module docstring).

    types: message type -> the probability that one such message is its sender's last (None:
    `p`); empty means every message between nodes, with `p`. A key "t.f" names messages of
    type t whose body field f is true (e.g. "rv_r.granted": granted votes); other keys are
    matched against `names(body)`, the system's own crash-point names (Core.crash_point_names).
    p: the default probability.
    before_p: the share of those crashes in which the message is dropped (crash before the send).
    allow(node): whether the node may crash now (called on the loop thread; must not block).
    on_crash(node, info): called on the loop thread right after the SIGKILL (must not block);
    the node is silenced and marked as an expected exit, and it is the callee's job to reap it
    (`kill`) and restart it.
    """

    types: dict[str, float | None]
    p: float
    before_p: float
    allow: Callable[[str], bool]
    on_crash: Callable[[str, dict], None]
    names: Callable[[dict], tuple[str, ...]] | None = None   # the system's extra names
    fired: dict[str, int] = field(default_factory=dict)   # message type -> crashes


class NodeProcess:
    """One node's process and its pipes; touched only on the loop thread."""

    def __init__(self, name: str, cmd: list[str], node_dir: Path, data_dir: Path | None, env: dict):
        self.name = name
        self.cmd = cmd
        self.node_dir = node_dir
        self.data_dir = data_dir
        self.env = env
        self.proc: subprocess.Popen | None = None
        self.out_fd = -1
        self.in_fd = -1
        self.reader = LineReader()
        self.outbuf = bytearray()
        self.err_fd = -1           # stderr pipe when copied to the terminal (--log-stderr)
        self.err_file = None
        self.err_reader = LineReader()
        self.up = False            # init_ok received, messages are delivered
        self.paused = False
        self.expected_exit = False
        self.dropped_full = 0
        self.write_registered = False
        self.boots = 0
        self.silenced = False      # crashed by a crash point: nothing more it wrote is routed
        self.start_time: int | None = None   # the leader's /proc start time (ownership.py)


class LocalBackend(ControlRequests, Routing):
    """Node processes + router. `command(node) -> argv` builds each node's command line.

    `log_stderr`: also copy every line a node writes on stderr to the harness's stderr, prefixed
    with the node's name (Maelstrom's --log-stderr); node.log gets them either way.
    `latency_ms`: the network's base one-way latency (Maelstrom's --latency), added to every
    message between servers (node<->node, node<->service) on top of the nemesis's latency."""

    name = "local"

    def __init__(self, nodes: Sequence[str], command: Callable[[str, Path, Path | None], list[str]],
                 run_dir: str | os.PathLike, *, seed: int = 0, in_house: bool = True,
                 env: dict | None = None, logger: Callable[[str], None] | None = None,
                 log_stderr: bool = False, latency_ms: float = 0.0):
        self.nodes = list(nodes)
        self.run_dir = Path(run_dir).resolve()   # nodes run with their own cwd
        self.in_house = in_house
        self.loop = Loop()
        self.on_client_message: Callable[[str, str, dict], None] | None = None
        self.rng = random.Random(f"network/{seed}")
        self.grudge: Grudge = {}
        self.loss = 0.0
        self.latency_ms = (0, 0)
        self.duplicate = 0.0
        self.crash_points: CrashPoints | None = None
        self.stats = {"delivered": 0, "dropped": 0, "duplicated": 0, "delayed": 0, "client": 0,
                      "lost": 0}
        self._log = logger or (lambda m: log.info(m))
        self._init_control()
        self._init_routing(seed)
        self.log_stderr = log_stderr
        self.base_latency_ms = float(latency_ms)
        self._torn_down = False
        self.crashes: list[dict] = []    # nodes that exited by themselves (not killed by us)
        self._life_lock = threading.Lock()
        self._dirty: set[str] = set()
        self.loop.after_iteration.append(self._flush_all)
        base_env = {**os.environ, **(env or {})}
        self.procs: dict[str, NodeProcess] = {}
        self._ledger = ProcessLedger(self.run_dir)
        for n in self.nodes:
            node_dir = self.run_dir / "nodes" / n
            data_dir = node_dir / "data" if in_house else None
            node_dir.mkdir(parents=True, exist_ok=True)
            if data_dir is not None:
                data_dir.mkdir(parents=True, exist_ok=True)
            self.procs[n] = NodeProcess(n, command(n, node_dir, data_dir), node_dir, data_dir, base_env)

    def supports(self, ability: str) -> bool:
        if ability in ("clock", "lose-unsynced"):
            return self.in_house
        return ability in ("kill", "pause", "partition", "network", "crash-point")

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        self.loop.start()
        for n in self.nodes:
            self.loop.call(lambda n=n: self._spawn(n))
        self._init_all(self.nodes)

    def _init_all(self, nodes: list[str]) -> None:
        futs = {n: self._send_control(n, {"type": "init", "node_id": n, "node_ids": self.nodes},
                                      force=True) for n in nodes}
        deadline = time.monotonic() + INIT_TIMEOUT_S
        for n, fut in futs.items():
            while True:
                try:
                    reply = fut.result(timeout=0.1)
                    break
                except FutureTimeout:
                    p = self.procs[n]
                    if p.proc is None or p.proc.poll() is not None:
                        raise RuntimeError(f"node {n} exited during the init handshake: "
                                           f"{self._last_log_line(n)}") from None
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"node {n} did not answer init within "
                                           f"{INIT_TIMEOUT_S:.0f} s (see {p.node_dir / 'node.log'})"
                                           ) from None
            if reply.get("type") != "init_ok":
                raise RuntimeError(f"node {n} answered init with {reply!r}")
            self.loop.call(lambda n=n: setattr(self.procs[n], "up", True))

    def _last_log_line(self, n: str) -> str:
        lines = self._last_log_lines(n, 1)
        return lines[-1] if lines else "(empty log)"

    def _last_log_lines(self, n: str, k: int = CRASH_LOG_LINES) -> list[str]:
        """The last k lines of the node's log (its stderr), each cut to 300 characters."""
        return log_tail(self.procs[n].node_dir / "node.log", k)

    def _spawn(self, n: str) -> None:
        # Under the life lock: a nemesis restart racing with teardown must not start a process
        # that teardown has already stopped looking for.
        with self._life_lock:
            if self._torn_down:
                raise RuntimeError(f"cannot start {n}: the backend was torn down")
            self._spawn_locked(n)

    def _spawn_locked(self, n: str) -> None:
        p = self.procs[n]
        assert p.proc is None, f"{n} is already running"
        errf = open(p.node_dir / "node.log", "ab")
        try:
            # An in-house node exits when its stdin closes; a --bin node may not, so it gets
            # PR_SET_PDEATHSIG. It is spawned on the loop thread, which lives as long as the run
            # (the signal follows the thread that started the process).
            cmd, preexec = (p.cmd, None) if self.in_house else pdeathsig_launch(p.cmd)
            p.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE if self.log_stderr else errf,
                                      cwd=p.node_dir, env=p.env,
                                      start_new_session=True, bufsize=0, preexec_fn=preexec)
        except OSError as e:
            errf.close()
            raise RuntimeError(f"cannot start node {n} ({' '.join(p.cmd)}): {e.strerror}") from None
        if self.log_stderr:
            p.err_file = errf            # the loop copies the pipe into it (and to the terminal)
            p.err_fd = p.proc.stderr.fileno()
            os.set_blocking(p.err_fd, False)
            p.err_reader.reset()
            self.loop.sel.register(p.err_fd, selectors.EVENT_READ,
                                   lambda mask, n=n: self._stderr_readable(n))
        else:
            errf.close()
        self._ledger.add(n, p.proc.pid, boot=p.boots + 1)
        p.start_time = self._ledger.last_start
        p.boots += 1
        p.up = False
        p.paused = False
        p.expected_exit = False
        p.silenced = False
        p.reader.reset()
        p.outbuf = bytearray()
        p.out_fd = p.proc.stdout.fileno()
        p.in_fd = p.proc.stdin.fileno()
        os.set_blocking(p.out_fd, False)
        os.set_blocking(p.in_fd, False)
        self.loop.sel.register(p.out_fd, selectors.EVENT_READ, lambda mask, n=n: self._readable(n))
        self._log(f"{n}: started pid {p.proc.pid} (boot {p.boots})")

    def _stderr_readable(self, n: str) -> None:
        """--log-stderr: copy the node's stderr to node.log and, line by line, to our stderr."""
        p = self.procs[n]
        try:
            chunk = os.read(p.err_fd, READ_CHUNK_BYTES)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._close_stderr(p)
            return
        if p.err_file is not None:
            p.err_file.write(chunk)
            p.err_file.flush()
        for line in p.err_reader.feed(chunk):
            sys.stderr.write(f"{n} | {line.decode('utf-8', 'replace')}\n")
        sys.stderr.flush()

    def _close_stderr(self, p: NodeProcess) -> None:
        if p.err_fd >= 0:
            try:
                self.loop.sel.unregister(p.err_fd)
            except (KeyError, ValueError):
                pass
            p.err_fd = -1
        if p.err_file is not None:
            p.err_file.close()
            p.err_file = None
        if p.proc is not None and p.proc.stderr is not None:
            try:
                p.proc.stderr.close()
            except OSError:
                pass

    def _reap(self, n: str) -> None:
        """Unregister and close a dead node's pipes (loop thread)."""
        p = self.procs[n]
        for fd in (p.out_fd, p.in_fd):
            if fd >= 0:
                try:
                    self.loop.sel.unregister(fd)
                except (KeyError, ValueError):
                    pass
        if p.proc is not None:
            for f in (p.proc.stdout, p.proc.stdin):
                try:
                    f.close()
                except OSError:
                    pass
        p.out_fd = p.in_fd = -1
        p.up = False
        p.outbuf = bytearray()
        p.write_registered = False
        self._close_stderr(p)

    def _signal(self, n: str, sig: int) -> None:
        p = self.procs[n]
        if p.proc is None:
            return
        try:
            os.killpg(p.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self, node: str, lose_unsynced: bool = False) -> dict:
        """SIGKILL the node's process group; with lose_unsynced, cut its file to the last fsync."""
        def do() -> dict:
            p = self.procs[node]
            if p.proc is None:
                return {"node": node, "already": "down"}
            p.expected_exit = True
            self._signal(node, signal.SIGKILL)
            try:
                p.proc.wait(timeout=KILL_WAIT_S)
            except subprocess.TimeoutExpired:
                raise RuntimeError(f"{node}: still alive {KILL_WAIT_S} s after SIGKILL") from None
            self._reap(node)
            p.proc = None
            out = {"node": node}
            if lose_unsynced and p.data_dir is not None:
                out["lost_bytes"] = cut_to_last_sync(str(p.data_dir / RECORDS_FILE))
            self._log(f"{node}: killed {out}")
            return out
        return self.loop.call(do)

    def restart(self, node: str) -> None:
        if self.loop.call(lambda: self.procs[node].proc is not None):
            return
        self.loop.call(lambda: self._spawn(node))
        self._init_all([node])

    def pause(self, node: str) -> None:
        def do() -> None:
            self._signal(node, signal.SIGSTOP)
            self.procs[node].paused = True
        self.loop.call(do)

    def resume(self, node: str) -> None:
        def do() -> None:
            self._signal(node, signal.SIGCONT)
            self.procs[node].paused = False
        self.loop.call(do)

    def partition(self, grudge: Grudge) -> None:
        g = {n: frozenset(v) for n, v in grudge.items()}
        self.loop.call(lambda: setattr(self, "grudge", g))

    def arm_crash_points(self, points: CrashPoints | None) -> None:
        """Arm (or, with None, disarm) crash points; see CrashPoints."""
        self.loop.call(lambda: setattr(self, "crash_points", points))

    def heal(self) -> None:
        def do() -> None:
            self.grudge = {}
            self.loss, self.latency_ms, self.duplicate = 0.0, (0, 0), 0.0
        self.loop.call(do)

    def set_network(self, loss: float = 0.0, latency_ms: tuple[int, int] = (0, 0),
                    duplicate: float = 0.0) -> None:
        assert 0.0 <= loss <= 1.0 and 0.0 <= duplicate <= 1.0
        assert 0 <= latency_ms[0] <= latency_ms[1]

        def do() -> None:
            self.loss, self.latency_ms, self.duplicate = loss, tuple(latency_ms), duplicate
        self.loop.call(do)

    def set_clock(self, node: str, offset_ms: int) -> None:
        """Set a node's clock offset: saved in its data dir (so a restart keeps it) and sent live."""
        p = self.procs[node]
        if p.data_dir is None:
            raise RuntimeError("clock offsets need an in-house node (the runtime's clock control)")
        (p.data_dir / "clock_offset_ms").write_text(str(int(offset_ms)))
        if self.loop.call(lambda: p.up and not p.paused):
            try:
                self.control(node, {"type": "splitbrain_clock", "offset_ms": int(offset_ms)},
                             timeout_s=2.0)
            except TimeoutError:
                pass   # the file is there: the node picks it up when it restarts

    def teardown(self) -> None:
        """Kill every node group and stop the loop. Idempotent; safe from any thread."""
        with self._life_lock:
            if self._torn_down:
                return
            self._torn_down = True
        for p in self.procs.values():
            if p.proc is not None:
                p.expected_exit = True
                self._kill_group(p)
        for p in self.procs.values():
            if p.proc is not None:
                try:
                    p.proc.wait(timeout=KILL_WAIT_S)
                except subprocess.TimeoutExpired:
                    self._log(f"{p.name}: pid {p.proc.pid} survived SIGKILL")
        self.loop.stop()
        for n, p in self.procs.items():
            self._reap(n)
            p.proc = None
        self._fail_controls()

    def collect_logs(self) -> None:
        """Logs are written straight into nodes/<node>/node.log: nothing to fetch."""

    def alive(self) -> list[int]:
        """Pids of node processes still running (for tests and teardown checks)."""
        return [p.proc.pid for p in self.procs.values() if p.proc is not None and p.proc.poll() is None]

    # ---- control requests from the harness ----------------------------------------------------

    def _deliver_control(self, node: str, data: bytes, force: bool) -> bool:
        p = self.procs[node]
        mid, sent = self.msglog.send()
        ok = p.proc is not None and (p.up or force)
        body = json.loads(data)["body"]
        self.msglog.record(mid, sent, CONTROL_CLIENT, node, body, "delivered" if ok else "lost",
                           control=self.in_house)
        if not ok:
            return False
        self._write(p, data)
        return True

    # ---- the router (loop thread) ------------------------------------------------------------

    def send_client(self, client: str, node: str, body: dict, op: int | None = None) -> bool:
        """Deliver a client request (LOOP THREAD). False when the node is down: not delivered.
        `op`: the history index of the operation's invoke (for the message log)."""
        p = self.procs[node]
        mid, sent = self.msglog.send()
        if p.proc is None or not p.up:
            self.msglog.record(mid, sent, client, node, body, "lost", op=op)
            return False
        self.stats["client"] += 1
        self._write(p, json.dumps({"src": client, "dest": node, "body": body},
                                  separators=(",", ":")).encode() + b"\n")
        self.msglog.record(mid, sent, client, node, body, "delivered", op=op)
        return True

    def _write(self, p: NodeProcess, data: bytes) -> None:
        """Queue bytes for a node's stdin; they are written at the end of this loop iteration
        (one syscall per node per iteration, and the node reads them in one go)."""
        if p.in_fd < 0:
            return
        if len(p.outbuf) + len(data) > OUTBUF_BYTES_MAX:
            p.dropped_full += 1      # a stopped node's pipe is full: the network drops it
            return
        p.outbuf += data
        self._dirty.add(p.name)

    def _flush_all(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for n in dirty:
            p = self.procs[n]
            if not p.write_registered:
                self._writable(n)

    def _writable(self, n: str, mask: int = 0) -> None:
        p = self.procs[n]
        if p.in_fd < 0:
            p.outbuf = bytearray()
            return
        k = 0
        try:
            if p.outbuf:
                k = os.write(p.in_fd, p.outbuf)
        except BlockingIOError:
            k = 0
        except OSError:             # the node died: its stdout EOF will reap it
            p.outbuf = bytearray()
        del p.outbuf[:k]
        if p.outbuf and not p.write_registered:
            # A stopped or slow node: write the rest when its pipe drains.
            self.loop.sel.register(p.in_fd, selectors.EVENT_WRITE,
                                   lambda mask, n=n: self._writable(n, mask))
            p.write_registered = True
        elif not p.outbuf and p.write_registered:
            try:
                self.loop.sel.unregister(p.in_fd)
            except (KeyError, ValueError):
                pass
            p.write_registered = False

    def _readable(self, n: str) -> None:
        p = self.procs[n]
        try:
            chunk = os.read(p.out_fd, READ_CHUNK_BYTES)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._exited(n)
            return
        if p.silenced:
            p.reader.bytes += len(chunk)
            return                  # crashed at a crash point: what it wrote since is lost
        for line in p.reader.feed(chunk):
            if p.silenced:
                break
            self._route(n, line)

    def _kill_group(self, p: NodeProcess) -> None:
        """SIGKILL what is left of a node's process group, also once its leader is gone."""
        if p.proc is None:
            return
        if p.proc.returncode is None:
            try:        # the leader is not reaped yet: its pid (= the pgid) cannot be reused
                os.killpg(p.proc.pid, signal.SIGKILL)
                return
            except ProcessLookupError:
                return
            except PermissionError:
                pass
        kill_group(p.proc.pid, p.start_time)   # reaped: only members that are provably ours

    def _exited(self, n: str) -> None:
        p = self.procs[n]
        if p.proc is not None and not p.expected_exit and _leader_exited(p.proc):
            # Its children (same group) must not outlive it: a node that forks and exits.
            # (A node we killed had its whole group killed already.)
            self._kill_group(p)
        code = p.proc.poll() if p.proc is not None else None
        if code is None and p.proc is not None and not p.expected_exit:
            try:        # stdout closed: the exit usually follows within microseconds
                code = p.proc.wait(timeout=EXIT_CODE_WAIT_S)
            except subprocess.TimeoutExpired:
                pass
        if not p.expected_exit:
            if p.err_fd >= 0:
                self._stderr_readable(n)       # the last words, before we read the log
            self._log(f"{n}: exited unexpectedly (code {code}); see {p.node_dir / 'node.log'}")
            self.crashes.append({"node": n, "code": code, "boot": p.boots,
                                 "last_log": self._last_log_line(n),
                                 "last_lines": self._last_log_lines(n)})
        self._reap(n)
        if p.proc is not None and not p.expected_exit and p.proc.poll() is not None:
            # It crashed by itself: it is down (only the nemesis restarts nodes). One that
            # closed its stdout but lives on stays in `proc` so that teardown still kills it.
            p.proc = None

    def _route(self, node: str, line: bytes) -> None:
        """One line `node` wrote. Routed by `dest`; `src` is kept as the node wrote it (a
        follower forwarding a client's request unchanged makes the leader answer the client).
        Network faults apply to the true sender `node`, whatever `src` says."""
        env, why = parse_envelope(line)
        if env is None:
            self._bad_line(node, line, why)
            return
        dest = env["dest"]
        if dest in self.procs:
            body = env["body"]
            cp = self.crash_points
            when = self._crash_point(cp, node, body) if cp is not None else None
            if when != "before":
                self._peer(node, dest, line, env)
            if when is not None:
                self._crash(cp, node, dest, body, when)
            return
        self._to_harness(node, env)

    def _peer(self, node: str, dest: str, raw: bytes, env: dict) -> None:
        log = self.msglog
        mid, sent = log.send()
        if drops(self.grudge, node, dest) or (self.loss and self.rng.random() < self.loss):
            self.stats["dropped"] += 1
            log.record(mid, sent, env["src"], dest, env["body"], "dropped")
            return
        data = raw + b"\n"
        copies = 2 if (self.duplicate and self.rng.random() < self.duplicate) else 1
        if copies == 2:
            self.stats["duplicated"] += 1
        for i in range(copies):
            if i:
                mid, sent = log.send()     # the duplicate is a message of its own
            lo, hi = self.latency_ms
            base = self.base_latency_ms
            if hi > 0 or base > 0:
                self.stats["delayed"] += 1
                delay = (self.rng.uniform(lo, hi) + base) / 1000
                log.hold(mid, sent, env["src"], dest, env["body"])
                self.loop.call_later(delay, lambda d=dest, b=data, m=mid: self._deliver(d, b, m))
            else:
                self._deliver(dest, data, None, (mid, sent, env["src"], env["body"]))

    # ---- Routing hooks -------------------------------------------------------------------------

    def _readers(self) -> list:
        return [p.reader for p in self.procs.values()]

    def _deliver_node(self, dest: str, data: bytes, mid: int, sent: int, src: str,
                      body: dict) -> None:
        self._deliver(dest, data, None, (mid, sent, src, body))

    def _later(self, delay_s: float, fn: Callable[[], None]) -> None:
        self.loop.call_later(delay_s, fn)

    def _service_delay_s(self) -> float:
        lo, hi = self.latency_ms
        base = self.base_latency_ms
        if hi <= 0 and base <= 0:
            return 0.0
        return (self.rng.uniform(lo, hi) + base) / 1000

    def _crash_point(self, cp: CrashPoints, src: str, body: dict) -> str | None:
        """"before" or "after" when this message is a crash point that fires, else None."""
        p = cp.p
        if cp.types:
            typ = body.get("type")
            if typ in cp.types:
                key = typ
            else:
                key = next((t for t in cp.types if t.startswith(f"{typ}.")
                            and body.get(t[len(typ) + 1:])), None)
                if key is None and cp.names is not None:
                    key = next((t for t in cp.names(body) if t in cp.types), None)
                if key is None:
                    return None
            if cp.types[key] is not None:
                p = cp.types[key]
        if self.rng.random() >= p or not cp.allow(src):
            return None
        return "before" if self.rng.random() < cp.before_p else "after"

    def _crash(self, cp: CrashPoints, node: str, dest: str, body: dict, when: str) -> None:
        p = self.procs[node]
        if p.proc is None or p.silenced:
            return
        p.expected_exit = True
        p.silenced = True
        p.up = False
        self._signal(node, signal.SIGKILL)
        typ = str(body.get("type"))
        cp.fired[typ] = cp.fired.get(typ, 0) + 1
        self._log(f"{node}: crashed {when} sending {typ} to {dest} (crash point)")
        cp.on_crash(node, {"node": node, "when": when, "type": typ, "dest": dest})

    def _deliver(self, dest: str, data: bytes, held: int | None = None,
                 rec: tuple | None = None) -> None:
        """Hand a message to `dest` now. Its log record is either held in the message log
        (`held`: its id) or given as `rec` = (id, sent, src, body)."""
        p = self.procs[dest]
        fate = "delivered" if (p.proc is not None and p.up) else "lost"
        if fate == "lost":
            self.stats["lost"] += 1
        else:
            self.stats["delivered"] += 1
            self._write(p, data)
        if held is not None:
            self.msglog.release(held, fate)
        elif rec is not None:
            mid, sent, src, body = rec
            self.msglog.record(mid, sent, src, dest, body, fate)


def _leader_exited(proc: subprocess.Popen, wait_s: float = EXIT_CODE_WAIT_S) -> bool:
    """Whether a node's leader process has exited, WITHOUT reaping it (its pid stays reserved,
    so its process group can still be signalled safely). Its stdout closes a moment before it
    becomes a zombie, so wait up to `wait_s` for that."""
    deadline = time.monotonic() + wait_s
    while True:
        if proc.returncode is not None:
            return True
        try:
            if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return proc.poll() is not None
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)


def in_house_command(system: str, machine: str, *, bugs: Sequence[str] = (),
                     options: dict | None = None, seed: int = 0) -> Callable[[str, Path, Path | None], list[str]]:
    """The command line of an in-house node (python -m splitbrain.systems.node ...)."""
    def command(node: str, node_dir: Path, data_dir: Path | None) -> list[str]:
        argv = [sys.executable, "-m", "splitbrain.systems.node", "--system", system,
                "--machine", machine, "--seed", str(seed), "--data", str(data_dir)]
        for b in bugs:
            argv += ["--bug", b]
        for k, v in (options or {}).items():
            argv += ["--opt", f"{k}={json.dumps(v) if not isinstance(v, str) else v}"]
        return argv
    return command


def resolve_program(program: str) -> str:
    """The absolute path of a node program: a path (with a slash) as given, else looked up on
    PATH as a shell would. ValueError with a one-line reason when it is not an executable."""
    import shutil
    if os.sep in program or (os.altsep and os.altsep in program):
        path = Path(program).resolve()
        if not path.is_file() or not os.access(path, os.X_OK):
            raise ValueError(f"{program}: not an executable file")
        return str(path)
    found = shutil.which(program)
    if found is None:
        local = Path(program)
        if local.is_file():
            raise ValueError(f"{program}: not on PATH (for the file here, write ./{program}"
                             + ("" if os.access(local, os.X_OK) else "; it is not executable")
                             + ")")
        raise ValueError(f"{program}: no such program on PATH")
    return str(Path(found).resolve())


def bin_command(path: str, args: Sequence[str] = ()) -> Callable[[str, Path, Path | None], list[str]]:
    """The command line of a third-party Maelstrom node program and its arguments (relative
    paths in the arguments are made absolute: the node runs in its own directory)."""
    exe = resolve_program(path)
    argv = [str(Path(a).resolve()) if not a.startswith("-") and Path(a).exists() else a
            for a in args]

    def command(node: str, node_dir: Path, data_dir: Path | None) -> list[str]:
        return [exe, *argv]
    return command
