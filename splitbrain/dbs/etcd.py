"""etcd (Raft), from Debian's etcd-server 3.4: the adapter and its client.

Server: `etcd` in the foreground, one member per node, client port 2379 and peer port 2380 on the
node's own address, a static `--initial-cluster` with a run-unique token; the data directory is
nodes/<n>/data (a restart reuses it, and etcd then ignores the initial-cluster flags).

Client: plain HTTP/1.1 to etcd's v3 JSON gateway (`/v3/kv/range`, `/v3/kv/put`, `/v3/kv/txn`;
keys and values base64), one fresh connection per operation with the operation's deadline on
every socket call. Why not the gRPC client: it needs an old protobuf, and its errors hide whether a
request was sent. Here a connection that cannot be made is `NotSent` (definite), and anything
after the request was written (reset, timeout, "leader changed", "request timed out") is
indefinite. Errors the gateway returns with gRPC code 3 (invalid argument) or 8 (too many
requests: rejected before it was proposed) are definite.

Values are stored as JSON text. Keys: the register, cas-register and kv workloads' keys "k/<key>"
("r" for an op with no key), the set's elements "s/<v>" (one key per element; a read is a prefix
range), the append-log is one key
"log" holding a JSON list, appended to by a txn guarded on the key's mod revision (a read, then
the guarded put; a guard that failed proves nothing was written and the append is retried while
the deadline allows, else `fail`). The mutex is etcd's lock service (`/v3/lock/lock` with a lease
per acquisition, renewed while held; see `_acquire`).

Reads are linearizable (`serializable=false`, a ReadIndex through the leader) unless the known-bad
option `reads=serializable` is set: then every member answers from its own state, and a member cut
off from the majority serves stale reads (the checker must find them). The final phase's per-node
reads (append-log) are serializable reads of that member: its own state.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time
from typing import Any

from ..harness.workloads import NODE_DOWN
from .base import (Database, DbClient, Indefinite, NotSent, deadline_left, error, ok)

REVOKE_TIMEOUT_S = 2.0
APPEND_ATTEMPTS_MAX = 20        # guarded appends retried after a lost race, within the deadline
PROBE_KEY = "splitbrain/ready"


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def unb64(s: str) -> str:
    return base64.b64decode(s).decode()


def prefix_end(prefix: str) -> str:
    """The range_end that makes a range cover every key starting with `prefix`."""
    raw = prefix.encode()
    return base64.b64encode(raw[:-1] + bytes([raw[-1] + 1])).decode()


class EtcdError(Exception):
    """An error answer of the gateway: gRPC `code` and message."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


DEFINITE_CODES = {3, 8}         # InvalidArgument, ResourceExhausted (too many requests)


class Etcd(Database):
    name = "etcd"
    description = "etcd 3.4 (Raft), through its v3 JSON gateway over HTTP"
    PACKAGES = ("etcd-server", "etcd-client")
    BINARIES = ("etcd",)
    PORTS = {"client": 2379, "peer": 2380}
    WORKLOADS = ("register", "cas-register", "kv", "set", "append-log", "mutex")
    OPTIONS = {
        "reads": ("linearizable: ReadIndex reads (serializable=false); serializable: each "
                  "member's local state (known-bad: stale reads)", "linearizable",
                  ("linearizable", "serializable")),
        "heartbeat_ms": ("etcd --heartbeat-interval", 100, None),
        "election_ms": ("etcd --election-timeout", 1000, None),
        "lease_ttl_s": ("mutex: the TTL of the lease each acquisition holds the lock with, "
                        "renewed every third of it while held", 2, None),
    }
    KNOWN_BAD = {"reads=serializable": "a member cut off from the majority answers reads from "
                                       "its own stale state: INVALID (stale read) under partitions"}
    REFUSED_FAULTS = {
        "clock": "etcd is a Go binary: its runtime reads the clock through the vDSO, not libc, so "
                 "libfaketime (LD_PRELOAD) does not reach it, and the harness has no other "
                 "per-process clock",
        "lost-writes": "etcd fsyncs its WAL itself; cutting files to the last fsync is for the "
                       "in-house runtime's records file",
        "latency": "no netem in this kernel, and etcd's peer traffic bypasses the harness",
        "duplicate": "no netem in this kernel, and etcd's peer traffic bypasses the harness",
        "crash-point": "crash points need the local router to see protocol messages",
    }

    def command(self, node: str) -> list[str]:
        n = self.nodes[node]
        peers = ",".join(f"{m.name}=http://{m.host}:{self.port('peer')}"
                         for m in self.nodes.values())
        client = f"http://{n.host}:{self.port('client')}"
        peer = f"http://{n.host}:{self.port('peer')}"
        return ["etcd", "--name", node, "--data-dir", str(n.data),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", peers, "--initial-cluster-state", "new",
                "--initial-cluster-token", f"splitbrain-{self.run_id}",
                "--heartbeat-interval", str(self.options["heartbeat_ms"]),
                "--election-timeout", str(self.options["election_ms"]),
                "--logger", "zap", "--log-outputs", "stderr"]

    def cluster_ready(self, timeout_s: float = 1.0) -> bool:
        """A linearizable write acknowledged through the first node."""
        c = EtcdClient(self)
        node = next(iter(self.nodes))
        try:
            c.call(node, "/v3/kv/put", {"key": b64(PROBE_KEY), "value": b64("1")},
                   time.monotonic() + timeout_s)
            return True
        except (NotSent, Indefinite, EtcdError):
            return False

    def member_ids(self, timeout_s: float = 1.0) -> dict[str, str]:
        c = EtcdClient(self)
        out = {}
        for n in self.nodes:
            try:
                st = c.call(n, "/v3/maintenance/status", {}, time.monotonic() + timeout_s)
                out[n] = str(st.get("header", {}).get("member_id"))
            except (NotSent, Indefinite, EtcdError):
                pass
        return out

    def leader(self) -> str | None:
        """The member a majority-connected node names as leader (maintenance/status)."""
        c = EtcdClient(self)
        ids: dict[str, str] = {}
        leaders: list[str] = []
        for n in self.nodes:
            try:
                st = c.call(n, "/v3/maintenance/status", {}, time.monotonic() + 1.0)
            except (NotSent, Indefinite, EtcdError):
                continue
            ids[str(st.get("header", {}).get("member_id"))] = n
            if st.get("leader"):
                leaders.append(str(st["leader"]))
        for lid in leaders:
            if lid in ids:
                return ids[lid]
        return None

    def client(self) -> "EtcdClient":
        return EtcdClient(self)


class EtcdClient(DbClient):
    """Workload operations on etcd's JSON gateway (see the module docstring)."""

    def __init__(self, db: Etcd):
        super().__init__(db)
        self.serializable = db.options.get("reads") == "serializable"
        # mutex: client id -> (node, lease, lock key) held; (node, lease) of acquires under way
        self._held: dict[str, tuple[str, str, str]] = {}
        self._pending: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._keepalive: threading.Thread | None = None
        self._closed = False

    # ---- one HTTP call --------------------------------------------------------------------

    def call(self, node: str, path: str, payload: dict, deadline: float) -> dict:
        """POST `payload` to `path` on `node`. NotSent when no connection could be made (the
        request never left), Indefinite for any failure after that, EtcdError for an error
        answer of the gateway."""
        host, port = self.db.client_addr(node)
        conn = http.client.HTTPConnection(host, port, timeout=deadline_left(deadline))
        try:
            try:
                conn.connect()
            except OSError as e:
                raise NotSent(f"connect to {node}: {e.strerror or e}") from None
            try:
                conn.sock.settimeout(deadline_left(deadline))
                conn.request("POST", path, json.dumps(payload),
                             {"Content-Type": "application/json"})
                conn.sock.settimeout(deadline_left(deadline))
                resp = conn.getresponse()
                data = resp.read()
            except socket.timeout:
                raise Indefinite("timed-out") from None
            except (OSError, http.client.HTTPException) as e:
                raise Indefinite(f"connection-lost: {type(e).__name__}: {e}") from None
        finally:
            conn.close()
        try:
            doc = json.loads(data or b"{}")
        except ValueError:
            raise Indefinite(f"malformed answer (HTTP {resp.status}): {data[:100]!r}") from None
        if "error" in doc or resp.status != 200:
            raise EtcdError(int(doc.get("code", -1)), str(doc.get("message") or doc.get("error")
                                                          or f"HTTP {resp.status}"))
        return doc

    # ---- operations -------------------------------------------------------------------------

    def invoke(self, node: str, body: dict, timeout_s: float, client: str = "") -> dict:
        deadline = time.monotonic() + timeout_s
        local = body.get("type") == "splitbrain_local_read"
        if local:
            body = body["op"]
        f = body["type"]
        try:
            if f == "read":
                return ok("read", value=self._read(node, body, deadline, local))
            if f == "write":
                self._put(node, self._key(body), body["value"], deadline)
                return ok("write")
            if f == "cas":
                return self._cas(node, self._key(body), body["from"], body["to"], deadline)
            if f == "add":
                self._put(node, f"s/{json.dumps(body['value'])}", body["value"], deadline)
                return ok("add")
            if f == "append":
                return self._append(node, body["value"], deadline)
            if f == "acquire":
                return self._acquire(node, client, deadline)
            if f == "release":
                return self._release(node, client, deadline)
        except NotSent as e:
            if f == "acquire":
                self._abandon(client)
            return error(NODE_DOWN, True, str(e))
        except Indefinite as e:
            if f == "acquire":
                self._abandon(client)
            return error("timed-out" if str(e) == "timed-out" else "connection-lost",
                         f == "read", str(e))
        except EtcdError as e:
            if f == "acquire":
                self._abandon(client)
            name = _error_name(e)
            return error(name, f == "read" or e.code in DEFINITE_CODES, str(e))
        return error("not-supported", True, f"etcd: no operation {f!r}")

    # ---- mutex: etcd's lock service (v3lock) with a lease per acquisition ----------------------

    def _acquire(self, node: str, client: str, deadline: float) -> dict:
        """Grant a lease (TTL `lease_ttl_s`), then lock "lock" with it (blocks in etcd until the
        lock is ours, bounded by the deadline). While it waits and while it holds the lock,
        the keepalive thread renews the lease through the same node; if renewals fail (the node paused or cut off) the lease
        expires and etcd hands the lock to the next waiter while this client still believes it
        holds it: Jepsen's finding that etcd's locks are not mutexes under process pauses."""
        if client in self._held:
            return error("already-held", True, "this client holds the lock")
        ttl = int(self.db.options["lease_ttl_s"])
        grant = self.call(node, "/v3/lease/grant", {"TTL": ttl}, deadline)
        lease = str(grant["ID"])
        with self._lock:
            self._pending[client] = (node, lease)     # renewed while it waits, as a session is
        self._start_keepalive()
        doc = self.call(node, "/v3/lock/lock", {"name": b64("lock"), "lease": lease}, deadline)
        with self._lock:
            self._pending.pop(client, None)
            self._held[client] = (node, lease, doc["key"])
        return ok("acquire")

    def _release(self, node: str, client: str, deadline: float) -> dict:
        held = self._held.get(client)
        if held is None:
            return error("not-held", True, "this client holds no lock")
        _, lease, key = held
        with self._lock:
            self._held.pop(client, None)     # from now on: no more renewals, whatever happens
        self.call(node, "/v3/lock/unlock", {"key": key}, deadline)
        self._revoke_later(node, lease)
        return ok("release")

    def _abandon(self, client: str) -> None:
        """An acquire that did not end ok: its lease (and so any lock it may still get) is
        revoked in the background, so that an abandoned waiter does not hold the lock."""
        with self._lock:
            pending = self._pending.pop(client, None)
        if pending is not None:
            self._revoke_later(*pending)

    def _revoke_later(self, node: str, lease: str) -> None:
        def revoke() -> None:
            try:
                self.call(node, "/v3/lease/revoke", {"ID": lease},
                          time.monotonic() + REVOKE_TIMEOUT_S)
            except (NotSent, Indefinite, EtcdError):
                pass       # it expires after its TTL anyway
        threading.Thread(target=revoke, daemon=True, name="splitbrain-etcd-revoke").start()

    def _start_keepalive(self) -> None:
        with self._lock:
            if self._keepalive is not None or self._closed:
                return
            self._keepalive = threading.Thread(target=self._renew, daemon=True,
                                               name="splitbrain-etcd-keepalive")
        self._keepalive.start()

    def _renew(self) -> None:
        period = max(0.1, int(self.db.options["lease_ttl_s"]) / 3)
        while not self._closed:
            with self._lock:
                leases = ([(n, lease) for n, lease, _ in self._held.values()]
                          + list(self._pending.values()))
            for node, lease in leases:
                try:
                    self.call(node, "/v3/lease/keepalive", {"ID": lease},
                              time.monotonic() + period)
                except (NotSent, Indefinite, EtcdError):
                    pass
            time.sleep(period)

    def close(self) -> None:
        self._closed = True

    def _key(self, body: dict) -> str:
        return "r" if body.get("key") is None else f"k/{json.dumps(body['key'])}"

    def _range(self, node: str, payload: dict, deadline: float, serializable: bool) -> dict:
        if serializable:
            payload = {**payload, "serializable": True}
        return self.call(node, "/v3/kv/range", payload, deadline)

    def _read(self, node: str, body: dict, deadline: float, local: bool) -> Any:
        ser = self.serializable or local
        if self.db.workload == "set":
            doc = self._range(node, {"key": b64("s/"), "range_end": prefix_end("s/")}, deadline,
                              ser)
            return sorted(json.loads(unb64(kv["value"])) for kv in doc.get("kvs", []))
        key = "log" if self.db.workload == "append-log" else self._key(body)
        doc = self._range(node, {"key": b64(key)}, deadline, ser)
        kvs = doc.get("kvs") or []
        if not kvs:
            return [] if key == "log" else None
        return json.loads(unb64(kvs[0].get("value", "")))

    def _put(self, node: str, key: str, value: Any, deadline: float) -> None:
        self.call(node, "/v3/kv/put", {"key": b64(key), "value": b64(json.dumps(value))},
                  deadline)

    def _cas(self, node: str, key: str, old: Any, new: Any, deadline: float) -> dict:
        doc = self.call(node, "/v3/kv/txn", {
            "compare": [{"key": b64(key), "target": "VALUE", "result": "EQUAL",
                         "value": b64(json.dumps(old))}],
            "success": [{"request_put": {"key": b64(key), "value": b64(json.dumps(new))}}]},
            deadline)
        if doc.get("succeeded"):
            return ok("cas")
        return error("precondition-failed", True, f"value is not {old!r}")

    def _append(self, node: str, value: Any, deadline: float) -> dict:
        for _ in range(APPEND_ATTEMPTS_MAX):
            try:
                doc = self._range(node, {"key": b64("log")}, deadline, False)
            except (NotSent, Indefinite, EtcdError) as e:
                # Only reads and failed guards so far: nothing was written.
                return error(NODE_DOWN if isinstance(e, NotSent) else "read-failed", True,
                             f"reading the log before the append: {e}")
            kvs = doc.get("kvs") or []
            log = json.loads(unb64(kvs[0]["value"])) if kvs else []
            rev = int(kvs[0].get("mod_revision", 0)) if kvs else 0
            txn = self.call(node, "/v3/kv/txn", {
                "compare": [{"key": b64("log"), "target": "MOD", "result": "EQUAL",
                             "mod_revision": str(rev)}],
                "success": [{"request_put": {"key": b64("log"),
                                             "value": b64(json.dumps([*log, value]))}}]},
                deadline)
            if txn.get("succeeded"):
                return ok("append", offset=len(log))
            if time.monotonic() >= deadline:
                break
        # Every guard failed: nothing was written.
        return error("append-contended", True, "the log changed under every attempt")


def _error_name(e: EtcdError) -> str:
    msg = str(e).lower()
    for needle, name in (("leader changed", "leader-changed"), ("no leader", "no-leader"),
                         ("timed out", "etcd-timeout"), ("too many requests", "too-many-requests"),
                         ("unavailable", "unavailable")):
        if needle in msg:
            return name
    return f"etcd-error-{e.code}"
