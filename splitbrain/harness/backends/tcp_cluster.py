"""What the `netns` and `docker` backends share: nodes that speak the node protocol over TCP on
real addresses, and network faults made by iptables inside each node's own network stack.

The harness holds one TCP connection to every node, on which it sends client requests and its own
control requests (init, status, clock) and reads the replies; peer traffic flows directly between
the nodes and never passes through the harness. A partition is Jepsen's: in each node's network
stack, a chain SPLITBRAIN hooked into INPUT drops packets from the addresses the node holds a
grudge against (grudges.py); packet loss is a `statistic` match in the same chain, limited to the
nodes' addresses so that the harness's client traffic is never cut. The chain lives inside the
namespace or container, so it goes away with it: no rule can outlive the test.

Subclasses provide the places nodes run in: `_setup_infra`, `_launch`, `_signal`,
`_process_alive`, `_iptables`, `_teardown_infra`, and the addresses in `self.addr`.
The kernel has no netem qdisc here, so latency and duplication are injected in user space by the
nodes' TCP transports (splitbrain.systems.tcp), on the harness's control message.
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import socket
import time
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Callable, Sequence

from ...systems.runtime import CLOCK_FILE, RECORDS_FILE, cut_to_last_sync
from ..grudges import Grudge
from .base import CONTROL_CLIENT, ControlRequests, Loop
from .routing import Routing, log_tail
from .wire import LineReader, parse_envelope

NODE_PORT = 7000
INIT_TIMEOUT_S = 30.0
CONNECT_RETRY_S = 0.1
READ_CHUNK_BYTES = 1 << 18
OUTBUF_BYTES_MAX = 32 << 20
CHAIN = "SPLITBRAIN"
EXIT_CHECK_DELAY_S = 0.5         # after a lost connection, when to look whether the node exited
EXIT_CHECK_MAX_S = 10.0          # ... and for how long to look again

log = logging.getLogger("splitbrain.tcp")


class _NodeConn:
    """The harness's connection to one node (loop thread only)."""

    def __init__(self, node: str):
        self.node = node
        self.sock: socket.socket | None = None
        self.reader = LineReader()
        self.outbuf = bytearray()
        self.events = 0
        self.up = False          # init_ok received: client traffic may flow


class TcpClusterBackend(ControlRequests, Routing):
    """Base class of backends whose nodes talk TCP on real addresses (see the module docstring)."""

    name = "tcp"

    def __init__(self, nodes: Sequence[str], run_dir: str | os.PathLike, *,
                 in_house: bool = True, logger: Callable[[str], None] | None = None,
                 seed: int = 0):
        self.nodes = list(nodes)
        self.run_dir = Path(run_dir)
        self.in_house = in_house
        self.loop = Loop()
        self.on_client_message: Callable[[str, str, dict], None] | None = None
        self.addr: dict[str, tuple[str, int]] = {}
        self.conns = {n: _NodeConn(n) for n in self.nodes}
        self.grudge: Grudge = {}
        self.loss = 0.0
        self.latency_ms: tuple[int, int] = (0, 0)
        self.duplicate = 0.0
        self.stats = {"client": 0, "refused": 0}
        self._log = logger or (lambda m: log.info(m))
        self._init_control()
        self._init_routing(seed)
        self.crashes: list[dict] = []    # nodes that exited by themselves (not killed by us)
        self._expected: set[str] = set() # nodes we killed (their exit is no crash)
        self._boots: dict[str, int] = {}
        self.base_latency_ms = 0.0      # Maelstrom's --latency: added to every peer message
        self._torn_down = False
        self._started_infra = False
        for n in self.nodes:
            self.node_dir(n).mkdir(parents=True, exist_ok=True)
            if in_house:
                self.data_dir(n).mkdir(parents=True, exist_ok=True)

    # ---- hooks for subclasses -------------------------------------------------------------------

    def _setup_infra(self) -> None: raise NotImplementedError
    def _launch(self, node: str) -> None: raise NotImplementedError
    def _kill_process(self, node: str) -> None: raise NotImplementedError
    def _pause_process(self, node: str) -> None: raise NotImplementedError
    def _resume_process(self, node: str) -> None: raise NotImplementedError
    def _process_alive(self, node: str) -> bool: raise NotImplementedError
    def _iptables(self, node: str, args: list[str], check: bool = True) -> bool:
        """Run iptables in the node's network stack; raise on failure when `check`, else
        return whether it succeeded."""
        raise NotImplementedError
    def _teardown_infra(self) -> None: raise NotImplementedError

    # ---- paths and abilities ------------------------------------------------------------------

    def node_dir(self, node: str) -> Path:
        return self.run_dir / "nodes" / node

    def data_dir(self, node: str) -> Path:
        return self.node_dir(node) / "data"

    def supports(self, ability: str) -> bool:
        if ability in ("clock", "lose-unsynced"):
            return self.in_house
        return ability in ("kill", "pause", "partition", "network")

    def peer_args(self) -> list[str]:
        out = []
        for n in self.nodes:
            host, port = self.addr[n]
            out += ["--peer", f"{n}={host}:{port}"]
        return out

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self.loop.start()
        self._started_infra = True
        self._setup_infra()
        for n in self.nodes:
            self._boot(n)
            self._install_chain(n)
        self._init_all(self.nodes)
        if self.base_latency_ms:
            for n in self.nodes:
                self._send_net(n)

    def _install_chain(self, node: str) -> None:
        """Make the chain and its jump from INPUT unless they exist (a namespace outlives its
        process across kill/restart; a container's stack does not), then fill it."""
        if not self._iptables(node, ["-S", CHAIN], check=False):
            self._iptables(node, ["-N", CHAIN])
        if not self._iptables(node, ["-C", "INPUT", "-j", CHAIN], check=False):
            self._iptables(node, ["-I", "INPUT", "-j", CHAIN])
        self._apply_rules(node)

    def _apply_rules(self, node: str) -> None:
        """Rewrite the node's chain from the current grudge and loss."""
        rules = [["-F", CHAIN]]
        for src in sorted(self.grudge.get(node, ())):
            rules.append(["-A", CHAIN, "-s", self.addr[src][0], "-j", "DROP"])
        if self.loss > 0:
            for src in self.nodes:
                if src != node:
                    rules.append(["-A", CHAIN, "-s", self.addr[src][0], "-m", "statistic",
                                  "--mode", "random", "--probability", f"{self.loss:.4f}",
                                  "-j", "DROP"])
        self._iptables_many(node, rules)

    def _iptables_many(self, node: str, rules: list[list[str]]) -> None:
        """Run several iptables commands in order (a subclass may batch them)."""
        for args in rules:
            self._iptables(node, args)

    def _init_all(self, nodes: list[str]) -> None:
        deadline = time.monotonic() + INIT_TIMEOUT_S
        for n in nodes:
            while True:
                if self.loop.call(lambda n=n: self._connect(n)):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cannot connect to node {n} at {self.addr[n]} within "
                                       f"{INIT_TIMEOUT_S:.0f} s (see {self.node_dir(n) / 'node.log'})")
                time.sleep(CONNECT_RETRY_S)
        futs = {n: self._send_control(n, {"type": "init", "node_id": n, "node_ids": self.nodes},
                                      force=True) for n in nodes}
        for n, fut in futs.items():
            try:
                reply = fut.result(timeout=max(1.0, deadline - time.monotonic()))
            except FutureTimeout:
                raise RuntimeError(f"node {n} did not answer init within {INIT_TIMEOUT_S:.0f} s "
                                   f"(see {self.node_dir(n) / 'node.log'})") from None
            if reply.get("type") != "init_ok":
                raise RuntimeError(f"node {n} answered init with {reply!r}")
            self.loop.call(lambda n=n: setattr(self.conns[n], "up", True))

    def kill(self, node: str, lose_unsynced: bool = False) -> dict:
        self.loop.call(lambda: self._expected.add(node))
        self.loop.call(lambda: self._disconnect(node))
        self._kill_process(node)
        out = {"node": node}
        if lose_unsynced and self.in_house:
            out["lost_bytes"] = cut_to_last_sync(str(self.data_dir(node) / RECORDS_FILE))
        self._log(f"{node}: killed {out}")
        return out

    def restart(self, node: str) -> None:
        if self._process_alive(node):
            return
        self._boot(node)
        self._install_chain(node)
        self._init_all([node])
        if self.latency_ms != (0, 0) or self.duplicate or self.base_latency_ms:
            self._send_net(node)

    def pause(self, node: str) -> None:
        self._pause_process(node)

    def resume(self, node: str) -> None:
        self._resume_process(node)

    def partition(self, grudge: Grudge) -> None:
        self.grudge = {n: frozenset(v) for n, v in grudge.items()}
        for n in self.nodes:
            if self._process_alive(n):
                self._apply_rules(n)

    def heal(self) -> None:
        self.grudge = {}
        self.set_network()

    def set_network(self, loss: float = 0.0, latency_ms: tuple[int, int] = (0, 0),
                    duplicate: float = 0.0) -> None:
        """Loss by iptables in each node's stack; latency and duplication in the nodes' TCP
        transports (user space: the kernel here has no netem), set by a control message."""
        assert 0.0 <= loss <= 1.0 and 0.0 <= duplicate <= 1.0
        assert 0 <= latency_ms[0] <= latency_ms[1]
        self.loss = loss
        self.latency_ms, self.duplicate = (int(latency_ms[0]), int(latency_ms[1])), duplicate
        for n in self.nodes:
            if self._process_alive(n):
                self._apply_rules(n)
                self._send_net(n)

    def _send_net(self, node: str) -> None:
        base = int(self.base_latency_ms)
        lat = [self.latency_ms[0] + base, self.latency_ms[1] + base]
        try:
            self.control(node, {"type": "splitbrain_net", "latency_ms": lat,
                                "duplicate": self.duplicate}, timeout_s=2.0)
        except TimeoutError:
            self._log(f"{node}: did not confirm the network setting (down or paused)")

    def set_clock(self, node: str, offset_ms: int) -> None:
        if not self.in_house:
            raise RuntimeError("clock offsets need an in-house node (the runtime's clock control)")
        (self.data_dir(node) / CLOCK_FILE).write_text(str(int(offset_ms)))
        if self.loop.call(lambda: self.conns[node].up):
            try:
                self.control(node, {"type": "splitbrain_clock", "offset_ms": int(offset_ms)},
                             timeout_s=2.0)
            except TimeoutError:
                pass

    def collect_logs(self) -> None:
        """Node logs are written into nodes/<node>/node.log as the nodes run."""

    def teardown(self) -> None:
        """Stop every node and remove everything the backend made. Idempotent."""
        if self._torn_down:
            return
        self._torn_down = True
        try:
            for n in self.nodes:
                try:
                    self.loop.call(lambda n=n: self._disconnect(n), timeout_s=5)
                except Exception:  # noqa: BLE001 - teardown goes on whatever failed
                    pass
            self.loop.stop()
        finally:
            if self._started_infra:
                self._teardown_infra()
            self._fail_controls()

    # ---- the harness's connections (loop thread) ----------------------------------------------

    def _connect(self, node: str) -> bool:
        c = self.conns[node]
        if c.sock is not None:
            return True
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(1.0)
        try:
            sock.connect(self.addr[node])
        except OSError:
            sock.close()
            return False
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.sock, c.outbuf, c.events = sock, bytearray(), 0
        c.reader.reset()
        self._set_events(c)
        return True

    def _disconnect(self, node: str) -> None:
        c = self.conns[node]
        c.up = False
        if c.sock is None:
            return
        try:
            self.loop.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        c.sock, c.events = None, 0
        c.outbuf = bytearray()

    def _set_events(self, c: _NodeConn) -> None:
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if c.outbuf else 0)
        if want == c.events or c.sock is None:
            return
        if c.events:
            self.loop.sel.modify(c.sock, want, lambda mask, c=c: self._ready(c, mask))
        else:
            self.loop.sel.register(c.sock, want, lambda mask, c=c: self._ready(c, mask))
        c.events = want

    def _write(self, c: _NodeConn, data: bytes) -> bool:
        if c.sock is None or len(c.outbuf) + len(data) > OUTBUF_BYTES_MAX:
            return False
        c.outbuf += data
        self._flush(c)
        return True

    def _flush(self, c: _NodeConn) -> None:
        if c.sock is None:
            return
        if c.outbuf:
            try:
                k = c.sock.send(c.outbuf)
            except (BlockingIOError, InterruptedError):
                k = 0
            except OSError as e:
                self._lost(c, e.strerror or str(e))
                return
            del c.outbuf[:k]
        self._set_events(c)

    def _lost(self, c: _NodeConn, why: str) -> None:
        if not self._torn_down:
            self._log(f"{c.node}: harness connection lost ({why})")
            if c.node not in self._expected:
                # Did the node exit by itself? Its process needs a moment to be reaped.
                self.loop.call_later(EXIT_CHECK_DELAY_S, lambda n=c.node: self._check_exit(n))
        self._disconnect(c.node)

    def _boot(self, node: str) -> None:
        self.loop.call(lambda: self._expected.discard(node))
        self._boots[node] = self._boots.get(node, 0) + 1
        self._launch(node)

    def _exit_code(self, node: str) -> int | None:
        """The exit code of the node's process once it ended (a subclass that knows it)."""
        return None

    def _check_exit(self, node: str, waited_s: float = EXIT_CHECK_DELAY_S) -> None:
        """(LOOP THREAD) A node whose connection closed and whose process is gone, though we
        did not kill it, exited by itself: a crash (runner.node_crash_result). It stays down:
        only the nemesis restarts nodes. A process still there is looked at again (a shim
        takes a moment to exit after its node), for up to EXIT_CHECK_MAX_S."""
        if self._torn_down or node in self._expected:
            return
        if self._process_alive(node):
            if waited_s < EXIT_CHECK_MAX_S and self.conns[node].sock is None:
                self.loop.call_later(EXIT_CHECK_DELAY_S,
                                     lambda: self._check_exit(node, waited_s + EXIT_CHECK_DELAY_S))
            return
        self._expected.add(node)      # recorded once
        code = self._exit_code(node)
        lines = log_tail(self.node_dir(node) / "node.log")
        self._log(f"{node}: exited unexpectedly (code {code}); see "
                  f"{self.node_dir(node) / 'node.log'}")
        self.crashes.append({"node": node, "code": code, "boot": self._boots.get(node, 1),
                             "last_log": lines[-1] if lines else "(empty log)",
                             "last_lines": lines})

    def _ready(self, c: _NodeConn, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush(c)
        if not mask & selectors.EVENT_READ or c.sock is None:
            return
        try:
            chunk = c.sock.recv(READ_CHUNK_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._lost(c, e.strerror or str(e))
            return
        if not chunk:
            self._lost(c, "closed by the node")
            return
        for line in c.reader.feed(chunk):
            self._route(c.node, line)

    def _route(self, node: str, line: bytes) -> None:
        """A line from the node's connection: its replies to clients and to the harness, its
        requests to services. `src` is kept as written (see routing.py)."""
        env, why = parse_envelope(line)
        if env is None:
            self._bad_line(node, line, why)
            return
        if env["dest"] in self.conns:
            # Peer traffic flows between the nodes over TCP (through iptables); the harness
            # never relays it, which would bypass the partition. Recorded, not delivered.
            mid, sent = self.msglog.send()
            self.msglog.record(mid, sent, env["src"], env["dest"], env["body"], "dropped")
            return
        self._to_harness(node, env)

    # ---- Routing hooks -------------------------------------------------------------------------

    def _readers(self) -> list:
        return [c.reader for c in self.conns.values()]

    def _deliver_node(self, dest: str, data: bytes, mid: int, sent: int, src: str,
                      body: dict) -> None:
        c = self.conns[dest]
        ok = c.sock is not None and c.up and self._write(c, data)
        self.msglog.record(mid, sent, src, dest, body, "delivered" if ok else "lost")

    def _later(self, delay_s: float, fn) -> None:
        self.loop.call_later(delay_s, fn)

    def send_client(self, client: str, node: str, body: dict, op: int | None = None) -> bool:
        """Send a client request (LOOP THREAD). False when the node cannot be reached now.
        `op`: the history index of the operation's invoke (for the message log)."""
        c = self.conns[node]
        mid, sent = self.msglog.send()
        if c.sock is None or not c.up:
            self.stats["refused"] += 1
            self.msglog.record(mid, sent, client, node, body, "lost", op=op)
            return False
        self.stats["client"] += 1
        ok = self._write(c, json.dumps({"src": client, "dest": node, "body": body},
                                       separators=(",", ":")).encode() + b"\n")
        self.msglog.record(mid, sent, client, node, body, "delivered" if ok else "lost", op=op)
        return ok

    # ---- control requests (ControlRequests) --------------------------------------------------

    def _deliver_control(self, node: str, data: bytes, force: bool) -> bool:
        c = self.conns[node]
        mid, sent = self.msglog.send()
        ok = c.sock is not None and (c.up or force) and self._write(c, data)
        self.msglog.record(mid, sent, CONTROL_CLIENT, node, json.loads(data)["body"],
                           "delivered" if ok else "lost", control=self.in_house)
        return ok
