"""ZooKeeper (ZAB), from Debian's zookeeper 3.8: the adapter and its client.

Server: the JVM running QuorumPeerMain in the foreground with nodes/<n>/zoo.cfg (server.K lines
with the quorum port 2888 and election port 3888 on every node's own address, client port 2181),
nodes/<n>/data/myid, log4j to the console (node.log). The admin HTTP server is off; the four-letter
word `srvr` is whitelisted and tells readiness and the leader ("Mode: leader").
tickTime is 500 ms (sessions of 1-10 s; a follower cut off from its leader gives up after
syncLimit ticks, 2.5 s), so faults show within a short test.

Client: kazoo, two sessions per node, one for writes and one for reads (each worker talks to its
home node, as Jepsen's clients do; kazoo's sessions are thread-safe; ZooKeeper orders a session's
requests, so a read must not queue behind a write that a cut-off node cannot commit), created with `command_retry=None` (kazoo never retries an
operation) and used only through the async calls with a deadline on `.get(timeout=...)`: kazoo's
synchronous calls block for as long as a session is suspended. A call made while the session is
not connected is refused here (`node-down`, definite: kazoo would queue it and send it
whenever the session comes back). After the call was handed to kazoo: ConnectionLoss, a session
expiry, an operation timeout or our deadline are indefinite for writes; NoNode, NodeExists and
BadVersion are answers of the server that prove nothing was written (definite). Any failed read
is definite.

Mapping: the register workloads' keys /kv/<key> (/r for an op with no key) hold JSON text (a missing znode reads as null); write =
setData (NoNode: create; NodeExists: setData again); cas = read the data and its version, compare,
then setData with that version (a value other than `from` is `precondition-failed`, an
observation the cas-register model uses; BadVersion, another write won, is `cas-conflict`: nothing
happened, nothing observed). set =
children of /set (add creates /set/<v>). append-log = sequential znodes /log/v<value>- : the
sequence number ZooKeeper appends is the offset, and a read is one getChildren (names carry
values and offsets), so it is atomic.

Reads: `sync` then the read (ZooKeeper's linearizable-read recipe) unless the known-bad option
`reads=plain` is set: a follower answers from its own state, which may lag (ZooKeeper promises
only sequential consistency without sync). The final phase's per-node reads are plain reads of
that node's own state.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from pathlib import Path
from typing import Any

from ..harness.workloads import NODE_DOWN
from .base import Database, DbClient, deadline_left, error, ok

ZK_JAR_DIR = Path("/usr/share/java")
ZK_JAR = ZK_JAR_DIR / "zookeeper.jar"
TICK_MS = 500
SESSION_TIMEOUT_S = 4.0
CLOSE_TIMEOUT_S = 2.0
JVM_HEAP = "-Xmx192m"
NOTIFY_MAX_MS = 400
ELECTION_CONNECT_MS = 1000
PATHS = ("/kv", "/set", "/log")

LOG4J = """log4j.rootLogger=INFO, CONSOLE
log4j.appender.CONSOLE=org.apache.log4j.ConsoleAppender
log4j.appender.CONSOLE.Target=System.err
log4j.appender.CONSOLE.layout=org.apache.log4j.PatternLayout
log4j.appender.CONSOLE.layout.ConversionPattern=%d{ISO8601} %-5p [%t:%C{1}@%L] - %m%n
"""


def four_letter(host: str, port: int, word: str = "srvr", timeout_s: float = 1.0) -> str | None:
    """The answer of a four-letter word, or None when the server does not answer."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as s:
            s.settimeout(timeout_s)
            s.sendall(word.encode())
            chunks = []
            while True:
                c = s.recv(4096)
                if not c:
                    break
                chunks.append(c)
        return b"".join(chunks).decode(errors="replace")
    except OSError:
        return None


def mode(text: str | None) -> str | None:
    for line in (text or "").splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return None


class ZooKeeper(Database):
    name = "zookeeper"
    description = "Apache ZooKeeper 3.8 (ZAB), through kazoo's async API"
    PACKAGES = ("zookeeper",)
    BINARIES = (str(ZK_JAR), "java")
    PORTS = {"client": 2181, "quorum": 2888, "election": 3888}
    WORKLOADS = ("register", "cas-register", "kv", "set", "append-log")
    OPTIONS = {
        "reads": ("sync: sync() before every read (linearizable); plain: the server's local "
                  "state (known-bad: stale reads)", "sync", ("sync", "plain")),
    }
    KNOWN_BAD = {"reads=plain": "a follower answers from its own, possibly lagging state: "
                                "INVALID (stale read) under partitions"}
    REFUSED_FAULTS = {
        "clock": "ZooKeeper's timeouts run on the JVM's monotonic clock (System.nanoTime), "
                 "which libfaketime does not shift reliably; no clock fault is offered",
        "lost-writes": "ZooKeeper fsyncs its transaction log itself; cutting files to the last "
                       "fsync is for the in-house runtime's records file",
        "latency": "no netem in this kernel, and ZooKeeper's peer traffic bypasses the harness",
        "duplicate": "no netem in this kernel, and ZooKeeper's peer traffic bypasses the harness",
        "crash-point": "crash points need the local router to see protocol messages",
    }

    def setup_node(self, node: str) -> None:
        super().setup_node(node)
        n = self.nodes[node]
        (n.data / "myid").write_text(f"{n.index}\n")
        lines = [f"tickTime={TICK_MS}", "initLimit=20", "syncLimit=5",
                 f"dataDir={n.data}", f"clientPort={self.port('client')}",
                 f"clientPortAddress={n.host}", "admin.enableServer=false",
                 "4lw.commands.whitelist=srvr,ruok,mntr", "maxClientCnxns=0",
                 "minSessionTimeout=1000", "maxSessionTimeout=10000"]
        for m in self.nodes.values():
            lines.append(f"server.{m.index}={m.host}:{self.port('quorum')}:"
                         f"{self.port('election')}")
        (n.dir / "zoo.cfg").write_text("\n".join(lines) + "\n")
        (n.dir / "log4j.properties").write_text(LOG4J)

    def command(self, node: str) -> list[str]:
        n = self.nodes[node]
        # zookeeper.jar's manifest names its dependencies; log4j needs its binding on top.
        cp = ":".join(str(ZK_JAR_DIR / j) for j in ("zookeeper.jar", "slf4j-log4j12.jar",
                                                      "log4j-1.2.jar"))
        return ["java", JVM_HEAP, "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
                "-Xss512k",
                # Leader election: nodes start a few hundred ms apart, and a node alone backs
                # off its notifications exponentially (up to a minute by default): cap it.
                f"-Dzookeeper.fastleader.maxNotificationInterval={NOTIFY_MAX_MS}",
                f"-Dzookeeper.cnxTimeout={ELECTION_CONNECT_MS}",
                f"-Dlog4j.configuration=file:{n.dir / 'log4j.properties'}",
                f"-Dzookeeper.log.dir={n.dir}", "-cp", cp,
                "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(n.dir / "zoo.cfg")]

    def cluster_ready(self, timeout_s: float = 1.0) -> bool:
        """A majority of nodes in a quorum (`srvr` says leader or follower), then the workload's
        parent znodes created (an acknowledged write). A node still joining is not waited for:
        the test starts as soon as the cluster takes writes."""
        modes = [mode(four_letter(*self.client_addr(n), timeout_s=timeout_s))
                 for n in self.nodes]
        if sum(m in ("leader", "follower") for m in modes) <= len(self.nodes) // 2:
            return False
        from kazoo.client import KazooClient
        from kazoo.exceptions import NodeExistsError
        _quiet_kazoo()
        hosts = ",".join(f"{h}:{p}" for h, p in (self.client_addr(n) for n in self.nodes))
        zk = KazooClient(hosts=hosts, timeout=SESSION_TIMEOUT_S, command_retry=None)
        try:
            zk.start(timeout=timeout_s * 3)
            for path in PATHS:
                try:
                    zk.create_async(path, b"").get(timeout=timeout_s * 3)
                except NodeExistsError:
                    pass
            return True
        except Exception as e:  # noqa: BLE001 - not ready yet, whatever the reason
            self.log(f"zookeeper: not ready yet ({type(e).__name__}: {e})")
            return False
        finally:
            _close(zk)

    def leader(self) -> str | None:
        for n in self.nodes:
            if mode(four_letter(*self.client_addr(n))) == "leader":
                return n
        return None

    def client(self) -> "ZkClient":
        return ZkClient(self)


def _quiet_kazoo() -> None:
    """kazoo logs every lost connection; under a nemesis that is noise on the terminal (the
    history records what clients saw)."""
    logging.getLogger("kazoo").setLevel(logging.CRITICAL)


def _close(zk) -> None:
    """Stop a kazoo client without blocking past CLOSE_TIMEOUT_S (stop() waits for the server
    to answer the close request, which a paused or partitioned server never does)."""
    t = threading.Thread(target=lambda: (zk.stop(), zk.close()), daemon=True,
                         name="splitbrain-kazoo-close")
    t.start()
    t.join(CLOSE_TIMEOUT_S)


class ZkClient(DbClient):
    """Workload operations through kazoo (see the module docstring)."""

    def __init__(self, db: ZooKeeper):
        super().__init__(db)
        self.sync_reads = db.options.get("reads") == "sync"
        # Two sessions per node: ZooKeeper serves a session's requests in order, so a read
        # queued behind a write that cannot commit (the node is cut off) would wait with it.
        # Reads (and the read step of a cas) go through their own session, as reads of
        # separate clients would.
        self.sessions: dict[str, Any] = {}
        self.read_sessions: dict[str, Any] = {}

    def open(self) -> None:
        from kazoo.client import KazooClient
        from kazoo.retry import KazooRetry
        _quiet_kazoo()
        for n in self.db.nodes:
            host, port = self.db.client_addr(n)
            for sessions in (self.sessions, self.read_sessions):
                zk = KazooClient(hosts=f"{host}:{port}", timeout=SESSION_TIMEOUT_S,
                                 command_retry=None,
                                 connection_retry=KazooRetry(max_tries=-1, delay=0.1,
                                                             backoff=1.5, max_delay=1.0))
                zk.start_async()      # connects in the background; ops before it: node-down
                sessions[n] = zk

    def close(self) -> None:
        threads = [threading.Thread(target=_close, args=(zk,), daemon=True)
                   for zk in [*self.sessions.values(), *self.read_sessions.values()]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(CLOSE_TIMEOUT_S + 0.5)

    def wait_connected(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(zk.connected for zk in [*self.sessions.values(),
                                           *self.read_sessions.values()]):
                return True
            time.sleep(0.05)
        return False

    # ---- operations -------------------------------------------------------------------------

    def invoke(self, node: str, body: dict, timeout_s: float, client: str = "") -> dict:
        from kazoo.exceptions import (BadVersionError, NodeExistsError, NoNodeError,
                                      ZookeeperError, KazooException)
        deadline = time.monotonic() + timeout_s
        local = body.get("type") == "splitbrain_local_read"
        if local:
            body = body["op"]
        f = body["type"]
        read = f == "read"
        zk = self.sessions[node]
        rzk = self.read_sessions[node]
        if not (rzk if read else zk).connected or (f == "cas" and not rzk.connected):
            return error(NODE_DOWN, True, f"no session with {node} (the call was not made)")

        def wait(async_result):
            return async_result.get(timeout=deadline_left(deadline))

        try:
            if read:
                return ok("read", value=self._read(rzk, body, wait, sync=self.sync_reads and
                                                   not local))
            if f == "write":
                path, data = self._path(body), json.dumps(body["value"]).encode()
                try:
                    wait(zk.set_async(path, data))
                except NoNodeError:
                    try:
                        wait(zk.create_async(path, data))
                    except NodeExistsError:
                        wait(zk.set_async(path, data))
                return ok("write")
            if f == "cas":
                path = self._path(body)
                try:
                    if self.sync_reads:
                        wait(rzk.sync_async(path))
                    data, stat = wait(rzk.get_async(path))
                except NoNodeError:
                    return error("key-does-not-exist", True, "no value yet")
                except Exception as e:  # noqa: BLE001 - the read step: nothing was written
                    return error("read-failed", True, f"{type(e).__name__}: {e}")
                if _decode(data) != body["from"]:
                    return error("precondition-failed", True, f"value is not {body['from']!r}")
                try:
                    wait(zk.set_async(path, json.dumps(body["to"]).encode(),
                                      version=stat.version))
                except BadVersionError:
                    # Another write came between our read and our setData: nothing happened,
                    # but the value may well have been `from` (so not precondition-failed, which
                    # the cas-register model reads as "the value was not `from`").
                    return error("cas-conflict", True, "a concurrent write won (version)")
                return ok("cas")
            if f == "add":
                try:
                    wait(zk.create_async(f"/set/{int(body['value'])}", b""))
                except NodeExistsError:
                    return error("already-added", True, "the element exists")
                return ok("add")
            if f == "append":
                name = wait(zk.create_async(f"/log/v{int(body['value'])}-", b"", sequence=True))
                return ok("append", offset=int(name.rsplit("-", 1)[1]))
        except (NoNodeError, NodeExistsError, BadVersionError) as e:
            return error(_kebab(e), True, str(e))
        except (ZookeeperError, KazooException) as e:
            return error(_kebab(e), read, str(e) or type(e).__name__)
        except Exception as e:  # noqa: BLE001 - kazoo's timeout error and socket errors
            name = "timed-out" if "Timeout" in type(e).__name__ else _kebab(e)
            return error(name, read, f"{type(e).__name__}: {e}")
        return error("not-supported", True, f"zookeeper: no operation {f!r}")

    def _path(self, body: dict) -> str:
        return "/r" if body.get("key") is None else f"/kv/{json.dumps(body['key'])}"

    def _read(self, zk, body: dict, wait, sync: bool) -> Any:
        from kazoo.exceptions import NoNodeError
        wl = self.db.workload
        path = {"set": "/set", "append-log": "/log"}.get(wl) or self._path(body)
        if sync:
            wait(zk.sync_async(path))
        if wl == "set":
            return sorted(int(c) for c in wait(zk.get_children_async(path)))
        if wl == "append-log":
            entries = []
            for c in wait(zk.get_children_async(path)):
                v, _, seq = c[1:].rpartition("-")
                entries.append((int(seq), int(v)))
            return [v for _, v in sorted(entries)]
        try:
            data, _ = wait(zk.get_async(path))
        except NoNodeError:
            return None
        return _decode(data)


def _decode(data: bytes) -> Any:
    return json.loads(data) if data else None


def _kebab(e: BaseException) -> str:
    name = type(e).__name__.removesuffix("Error").removesuffix("Exception")
    out = "".join(f"-{c.lower()}" if c.isupper() else c for c in name).lstrip("-")
    return out or "error"
