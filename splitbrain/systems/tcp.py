"""The TCP transport: the node protocol's envelopes as newline-delimited JSON over TCP, so that
nodes in network namespaces, containers or on other hosts talk to each other with real addresses
and the kernel, not the harness, decides which packets arrive.

A node listens on its address. It sends to a peer over one outgoing connection per peer (made on
demand, re-made after a failure with a back-off); it reads envelopes from every inbound connection.
A client (the harness, ids like "c0", "c12") connects to the node and sends requests; the node
answers a client on the connection that client's last envelope came from.

Loss and partitions are the kernel's: when iptables drops a peer's packets, the data this node sends is never
acknowledged and the connection is aborted after PEER_USER_TIMEOUT_MS (TCP_USER_TIMEOUT), which the
node logs as "connection to nX lost: ... timed out". Messages to a peer with no usable connection
are dropped (a lossy network is what every protocol core already tolerates), and so are messages
beyond OUTBUF_BYTES_MAX queued for one connection.

Latency and duplication cannot come from the kernel here (no netem qdisc), so they are injected in
user space, on the sending side of peer traffic: `set_network(latency_ms=(lo, hi), duplicate=p)`
holds each message to a peer for a uniform random delay (which also reorders them) and sends a
second copy with probability p. The harness sets them with the control message
`{"type": "splitbrain_net", "latency_ms": [lo, hi], "duplicate": p}`.
"""

from __future__ import annotations

import errno
import heapq
import itertools
import json
import os
import random
import selectors
import socket
import sys
import time
from typing import Callable

READ_CHUNK_BYTES = 1 << 16
LINE_BYTES_MAX = 64 << 20
OUTBUF_BYTES_MAX = 16 << 20
PEER_USER_TIMEOUT_MS = 3_000
CONNECT_TIMEOUT_MS = 2_000
RECONNECT_BACKOFF_MS = 200
LISTEN_BACKLOG = 128
CONTROL_NET = "splitbrain_net"
HARNESS_CLIENT = "c0"       # the harness's control client (backends.base.CONTROL_CLIENT)


def parse_addr(text: str) -> tuple[str, int]:
    """"host:port" -> (host, port); ValueError naming the text otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host, int(port)


def parse_peers(pairs: list[str]) -> dict[str, tuple[str, int]]:
    """["n1=HOST:PORT", ...] -> {"n1": (host, port)}; ValueError naming a bad pair."""
    peers = {}
    for p in pairs:
        node, sep, addr = p.partition("=")
        if not sep or not node:
            raise ValueError(f"--peer {p!r}: expected NODE=HOST:PORT")
        peers[node] = parse_addr(addr)
    return peers


def _log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} tcp: {message}", file=sys.stderr, flush=True)


class _Conn:
    """One TCP connection: a socket, a read buffer and a bounded write buffer."""

    __slots__ = ("sock", "peer", "inbuf", "outbuf", "connecting", "deadline", "events", "label")

    def __init__(self, sock: socket.socket, label: str, peer: str | None = None,
                 connecting: bool = False):
        self.sock = sock
        self.peer = peer          # the peer node id for an outgoing connection
        self.inbuf = b""
        self.outbuf = bytearray()
        self.connecting = connecting
        self.deadline = 0.0
        self.events = 0
        self.label = label


class TcpTransport:
    """The Transport of splitbrain.systems.runtime over TCP (receive / send / close)."""

    def __init__(self, listen: tuple[str, int], peers: dict[str, tuple[str, int]],
                 log: Callable[[str], None] = _log):
        self.listen_addr = listen
        self.peers = dict(peers)
        self.log = log
        self.sel = selectors.DefaultSelector()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(listen)
        self.listener.listen(LISTEN_BACKLOG)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, None)
        self.out: dict[str, _Conn] = {}           # peer id -> outgoing connection
        self.retry_at: dict[str, float] = {}      # peer id -> when we may connect again
        self.client_conn: dict[str, _Conn] = {}   # client id -> the connection it spoke on
        self.inbound: set[_Conn] = set()
        self.dropped = 0
        self._received: list[dict] = []
        self.latency_ms: tuple[int, int] = (0, 0)
        self.duplicate = 0.0
        self._rng = random.Random()
        self._delayed: list[tuple[float, int, str, bytes]] = []
        self._seq = itertools.count()
        # The harness's connection: the one the control client's envelopes (init) came on.
        # With `to_harness` (the shim for --bin nodes), every envelope whose dest is not a peer
        # goes there, whoever wrote `src`: replies to clients (also for requests another node
        # forwarded with the client's src kept), service requests, unknown destinations.
        self.harness_conn: _Conn | None = None
        self.to_harness = False

    def set_network(self, latency_ms: tuple[int, int] = (0, 0), duplicate: float = 0.0) -> None:
        """User-space latency (uniform in [lo, hi] ms) and duplication of peer messages."""
        lo, hi = int(latency_ms[0]), int(latency_ms[1])
        if not (0 <= lo <= hi) or not 0.0 <= duplicate <= 1.0:
            raise ValueError(f"bad network setting latency_ms={latency_ms} duplicate={duplicate}")
        self.latency_ms, self.duplicate = (lo, hi), float(duplicate)

    # -- the Transport protocol --

    def receive(self, timeout_s: float) -> list[dict]:
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            self._check_connect_deadlines()
            self._release_delayed()
            wait = max(0.0, deadline - time.monotonic())
            if self._delayed:
                wait = min(wait, max(0.0, self._delayed[0][0] - time.monotonic()))
            for key, mask in self.sel.select(wait):
                if key.data is None:
                    self._accept()
                elif callable(key.data):
                    key.data()
                else:
                    self._ready(key.data, mask)
            if self._received or time.monotonic() >= deadline:
                out, self._received = self._received, []
                return out

    def send(self, envelopes: list[dict]) -> None:
        for env in envelopes:
            dest = env.get("dest")
            data = json.dumps(env, separators=(",", ":")).encode() + b"\n"
            if dest in self.peers:
                copies = 2 if self.duplicate and self._rng.random() < self.duplicate else 1
                for _ in range(copies):
                    if self.latency_ms[1] > 0:
                        due = time.monotonic() + self._rng.uniform(*self.latency_ms) / 1000
                        heapq.heappush(self._delayed, (due, next(self._seq), dest, data))
                    else:
                        self._enqueue(self._peer_conn(dest), data)
            elif self.to_harness:
                self._enqueue(self.harness_conn, data)
            else:
                self._enqueue(self.client_conn.get(dest), data)

    def send_raw(self, data: bytes) -> None:
        """Bytes for the harness as they are (the shim passes on lines it cannot parse, so that
        the harness counts and logs them)."""
        self._enqueue(self.harness_conn, data)

    def _enqueue(self, conn: "_Conn | None", data: bytes) -> None:
        if conn is None or len(conn.outbuf) + len(data) > OUTBUF_BYTES_MAX:
            self.dropped += 1
            return
        conn.outbuf += data
        if not conn.connecting:
            self._flush(conn)

    def _release_delayed(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, dest, data = heapq.heappop(self._delayed)
            self._enqueue(self._peer_conn(dest), data)

    def inject(self, env: dict) -> None:
        """Hand the node an envelope as if it had arrived (a self-initialising node's `init`)."""
        self._received.append(env)

    def watch(self, fd: int, on_readable: Callable[[], None]) -> None:
        """Also wait on `fd` in receive() and call `on_readable` when it has data (the shim
        for stdio binaries watches the child's stdout this way)."""
        self.sel.register(fd, selectors.EVENT_READ, on_readable)

    def unwatch(self, fd: int) -> None:
        try:
            self.sel.unregister(fd)
        except (KeyError, ValueError):
            pass

    def close(self) -> None:
        for conn in list(self.out.values()) + list(self.inbound):
            self._close(conn, None)
        try:
            self.sel.unregister(self.listener)
        except (KeyError, ValueError):
            pass
        self.listener.close()
        self.sel.close()

    # -- connections --

    def _set_events(self, conn: _Conn) -> None:
        want = selectors.EVENT_READ
        if conn.outbuf or conn.connecting:
            want |= selectors.EVENT_WRITE
        if want != conn.events:
            if conn.events:
                self.sel.modify(conn.sock, want, conn)
            else:
                self.sel.register(conn.sock, want, conn)
            conn.events = want

    def _peer_conn(self, peer: str) -> _Conn | None:
        conn = self.out.get(peer)
        if conn is not None:
            return conn
        now = time.monotonic()
        if now < self.retry_at.get(peer, 0.0):
            return None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            # Unacknowledged data for this long aborts the connection: how a partition shows.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, PEER_USER_TIMEOUT_MS)
        err = sock.connect_ex(self.peers[peer])
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            self.retry_at[peer] = now + RECONNECT_BACKOFF_MS / 1000
            return None
        conn = _Conn(sock, f"to {peer}", peer=peer, connecting=True)
        conn.deadline = now + CONNECT_TIMEOUT_MS / 1000
        self.out[peer] = conn
        self._set_events(conn)
        return conn

    def _check_connect_deadlines(self) -> None:
        now = time.monotonic()
        for conn in list(self.out.values()):
            if conn.connecting and now > conn.deadline:
                self._close(conn, f"connect timed out after {CONNECT_TIMEOUT_MS} ms")

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock, "inbound")
            self.inbound.add(conn)
            self._set_events(conn)

    def _close(self, conn: _Conn, why: str | None) -> None:
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()
        conn.events = 0
        if conn.peer is not None and self.out.get(conn.peer) is conn:
            del self.out[conn.peer]
            self.retry_at[conn.peer] = time.monotonic() + RECONNECT_BACKOFF_MS / 1000
            if why:
                self.log(f"connection to {conn.peer} lost: {why}")
        self.inbound.discard(conn)
        if self.harness_conn is conn:
            self.harness_conn = None
        for cid in [c for c, v in self.client_conn.items() if v is conn]:
            del self.client_conn[cid]

    def _ready(self, conn: _Conn, mask: int) -> None:
        if conn.connecting and mask & selectors.EVENT_WRITE:
            err = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._close(conn, os.strerror(err))
                return
            conn.connecting = False
        if mask & selectors.EVENT_WRITE and not conn.connecting:
            self._flush(conn)
        if mask & selectors.EVENT_READ and conn.sock.fileno() >= 0:
            self._read(conn)

    def _flush(self, conn: _Conn) -> None:
        if conn.outbuf:
            try:
                n = conn.sock.send(conn.outbuf)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as e:
                self._close(conn, e.strerror or str(e))
                return
            del conn.outbuf[:n]
        self._set_events(conn)

    def _read(self, conn: _Conn) -> None:
        try:
            chunk = conn.sock.recv(READ_CHUNK_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as e:
            self._close(conn, e.strerror or str(e))
            return
        if not chunk:
            self._close(conn, "closed by the other side")
            return
        buf = conn.inbuf + chunk
        if b"\n" not in chunk:
            if len(buf) > LINE_BYTES_MAX:
                self._close(conn, f"a line exceeds {LINE_BYTES_MAX} bytes")
                return
            conn.inbuf = buf
            return
        *lines, conn.inbuf = buf.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                env = json.loads(line)
            except ValueError:
                self.log(f"ignoring a line that is not JSON: {line[:200]!r}")
                continue
            if not isinstance(env, dict) or not isinstance(env.get("body"), dict):
                self.log(f"ignoring an envelope without a body: {line[:200]!r}")
                continue
            src = env.get("src")
            if src == HARNESS_CLIENT and conn.peer is None:
                self.harness_conn = conn
            if isinstance(src, str) and src not in self.peers and conn.peer is None:
                self.client_conn[src] = conn
                if env["body"].get("type") == CONTROL_NET:
                    self._control_net(env)
                    continue
            self._received.append(env)

    def _control_net(self, env: dict) -> None:
        """The harness's network-fault control message is the transport's own business: the
        node (or the binary behind the shim) never sees it."""
        body = env["body"]
        try:
            self.set_network(tuple(body.get("latency_ms") or (0, 0)),
                             float(body.get("duplicate") or 0.0))
            reply = {"type": CONTROL_NET + "_ok", "latency_ms": list(self.latency_ms),
                     "duplicate": self.duplicate}
            self.log(f"network faults: latency {self.latency_ms} ms, duplicate {self.duplicate}")
        except (TypeError, ValueError) as e:
            reply = {"type": "error", "code": 12, "text": str(e)}
        if "msg_id" in body:
            reply["in_reply_to"] = body["msg_id"]
        self._enqueue(self.client_conn.get(env["src"]),
                      json.dumps({"src": env.get("dest"), "dest": env["src"], "body": reply},
                                 separators=(",", ":")).encode() + b"\n")
