"""Redis 7 with Sentinel (Debian's redis-server and redis-sentinel): the adapter and its client.

What Redis promises, and what it does not (the README's database section says the same):
replication is asynchronous: the primary acknowledges a write as soon as it applied it, and
replicas copy it later. Sentinel's failover promotes a replica when a majority of Sentinels
cannot reach the primary; the old primary, when it comes back, is turned into a replica of the new
one and discards (full resynchronisation) every write it acknowledged since the replica that was
promoted last heard from it. Redis documents this: "Redis Sentinel + Redis replication cannot
guarantee that acknowledged writes are retained during failures". `WAIT n` only reports how many
replicas acknowledged the writes so far; it is not a commit (a write WAIT could not confirm stays
on the primary and may be read, then lost, or kept). `min-replicas-to-write` makes a primary that
lost its replicas (for `min-replicas-max-lag` seconds) refuse writes: it bounds the window in
which an isolated primary accepts writes, it does not close it. Jepsen (2013) measured over half
of the acknowledged writes lost under a partition of the primary; this adapter lets the harness
find that again.

Server (each node): ONE process group runs both redis-server (port 6379) and redis-sentinel (port
26379) on the node's own address, as Jepsen's Redis test ran them on each host: a kill, pause or
partition of a node hits both, as it would a real machine. The group leader is a bash wrapper
(`command`) that starts both and, when either exits, ends the other (`kill 0`), so a node is up or
down as a whole and the harness's process-group signals reach both; each child also carries
PR_SET_PDEATHSIG (util-linux `setpriv`, when present) so it dies with the wrapper.
Node 1 starts as the primary, the others as its replicas (`replicaof`). Each Sentinel's config
names the primary, the replicas and the other Sentinels (with their ids) from the start (what
Sentinel itself writes into its config once it discovered them), so the cluster can fail over as
soon as it is up, instead of after Sentinel's 10 s discovery period. Sentinel quorum: a majority
of the nodes. Both config files live in nodes/<n>/ and are rewritten by Sentinel (its state, and
the primary's `replicaof` after a failover), so a restarted node comes back as what it last was.
Persistence: the append-only file (`appendfsync everysec`, Redis's recommended setting) unless
`appendonly=no`; no RDB snapshots. Timing options are short (down-after-milliseconds 1000,
failover-timeout 3000, repl-timeout 5) so that a failover happens within a few seconds of a test.

Client: redis-py (PyPI `redis`), one fresh connection per request with the request's deadline on
the connect and every read (no pool, no retries: `Retry(NoBackoff(), 0)`). It follows Sentinel:
every operation first asks the Sentinel of the worker's node (`SENTINEL
get-master-addr-by-name`) where the primary is, then sends the command there. The harness's
clients run on the harness's host, which reaches every node whatever the partition (as Jepsen's
control node does); only the choice of the primary is the node's: so the clients of an isolated
primary keep writing to it, as long as its Sentinel still names it (Jepsen's scenario).

Definite or not (dbs/base.py): a Sentinel that cannot be reached, does not answer or names no
primary, and a primary that refuses the connection: nothing was sent (definite, `node-down` /
`sentinel-*` / `no-primary`). Error answers that prove the command was refused before it did
anything are definite: READONLY (it was a replica), NOREPLICAS (min-replicas-to-write), MASTERDOWN,
LOADING, BUSY, OOM, MISCONF, NOSCRIPT, WRONGTYPE, EXECABORT. Any other failure after sending
(timeout, reset, an unknown error) is indefinite; every failed read is definite. With `wait=N`
each write is followed by `WAIT N <ms left>` on the same connection: fewer than N replicas
acknowledged, or the WAIT failed, is indefinite `wait-short` / `wait-failed` (the write happened on
the primary: it may survive or be lost; WAIT does not undo it).

Mapping (values as JSON text): register "r" and kv "k/<key>": GET / SET; cas: a Lua script that
compares the value and sets it (one atomic step on the primary; returns 0 when the value differed:
`precondition-failed`, definite); set: SADD "s" / SMEMBERS; append-log: RPUSH "log" (the new
length - 1 is the offset) / LRANGE; counter: INCRBY "c" / GET. Reads go to the primary Sentinel
names (Redis has no read that is safe under a failover: the old primary answers from its own
state). The final phase's per-node reads (append-log, counter) read that node's own server.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from typing import Any

from ..harness.workloads import NODE_DOWN
from .base import (Database, DbClient, DbMissing, Indefinite, NotSent, deadline_left, error,
                   ok)

MASTER_NAME = "splitbrain"
SENTINEL_QUERY_MAX_S = 0.3      # a Sentinel's answer is one hash lookup: longer means paused/cut
REPL_TIMEOUT_S = 5              # replica <-> primary link declared dead after this (default 60)
PROBE_KEY = "splitbrain:ready"
# Error prefixes of answers that prove the command was refused before it changed anything.
DEFINITE_PREFIXES = frozenset({"READONLY", "NOREPLICAS", "MASTERDOWN", "LOADING", "BUSY", "OOM",
                               "MISCONF", "NOSCRIPT", "WRONGTYPE", "EXECABORT", "NOAUTH",
                               "NOPERM"})
# CAS as one atomic step: compare the JSON text and set it; 1 done, 0 the value differed.
CAS_SCRIPT = ("if redis.call('GET', KEYS[1]) == ARGV[1] then "
              "redis.call('SET', KEYS[1], ARGV[2]) return 1 else return 0 end")

# bash starts both servers; when either exits, `kill 0` ends the whole group (the other server
# and bash itself), so a node is never half up. $1 = setpriv prefix or empty.
WRAPPER = ('$1 redis-sentinel "$2" & $1 redis-server "$3" & wait -n; '
           'echo "splitbrain: a redis process of this node exited; stopping the node" >&2; kill 0')


class RedisAnswerError(Exception):
    """An error answer of a Redis server (its first word is the error code)."""

    @property
    def code(self) -> str:
        return (str(self).split(" ", 1)[0] or "ERR").upper()


class Redis(Database):
    name = "redis"
    description = ("Redis 7 (asynchronous primary-backup) with Sentinel failover, through "
                   "redis-py; clients follow Sentinel to the primary")
    PACKAGES = ("redis-server", "redis-sentinel")
    BINARIES = ("redis-server", "redis-sentinel")
    PORTS = {"client": 6379, "sentinel": 26379}
    WORKLOADS = ("register", "cas-register", "kv", "set", "append-log", "counter")
    OPTIONS = {
        "wait": ("WAIT N after every write: fewer than N replicas acknowledging makes the write "
                 "indefinite (info), never undone; 0: no WAIT", 0, None),
        "min-replicas-to-write": ("the primary refuses writes (NOREPLICAS, definite) unless this "
                                  "many replicas acknowledged within min-replicas-max-lag", 0,
                                  None),
        "min-replicas-max-lag": ("seconds: a replica counts for min-replicas-to-write when its "
                                 "last acknowledgement is this recent", 10, None),
        "down-after-milliseconds": ("Sentinel: an instance unreachable this long is down (a "
                                    "majority agreeing on the primary starts a failover)", 1000,
                                    None),
        "failover-timeout": ("Sentinel: ms before a failover is retried (a Sentinel votes again "
                             "for the same primary after twice this)", 3000, None),
        "appendonly": ("yes: the append-only file with appendfsync everysec; no: no persistence "
                       "at all (a restarted node is empty)", "yes", ("yes", "no")),
    }
    KNOWN_BAD = {
        "wait=0 (the default)": "asynchronous replication: a partition that isolates the "
                                "primary while its clients write, then a Sentinel failover, "
                                "loses acknowledged writes: INVALID (set: lost; append-log: "
                                "lost-append; counter: out-of-bounds-read)",
        "wait=N": "WAIT is not a commit: a write WAIT could not confirm is indefinite, stays on "
                  "the isolated primary and may be read there, then be discarded by the failover",
    }
    REFUSED_FAULTS = {
        "clock": "Sentinel's timers run on the monotonic clock, which libfaketime does not "
                 "shift; no clock fault is offered",
        "lost-writes": "Redis writes its append-only file itself; cutting files to the last "
                       "fsync is for the in-house runtime's records file",
        "latency": "no netem in this kernel, and Redis's replication bypasses the harness",
        "duplicate": "no netem in this kernel, and Redis's replication bypasses the harness",
        "crash-point": "crash points need the local router to see protocol messages",
    }
    # Quiet seconds after the heal before the final reads: Sentinel turns a returning old
    # primary into a replica only after it reported the wrong role for 4 hello periods (8 s,
    # compiled into Sentinel), and the final per-node reads must see that, not the old data.
    RECOVERY_S = 12.0

    # ---- configuration ------------------------------------------------------------------------

    @property
    def primary0(self):
        return next(iter(self.nodes.values()))

    def sentinel_id(self, node: str) -> str:
        return hashlib.sha1(f"splitbrain-{self.run_id}-{node}".encode()).hexdigest()

    def setup_node(self, node: str) -> None:
        super().setup_node(node)
        n = self.nodes[node]
        o = self.options
        p0 = self.primary0
        redis_conf = [
            f"bind {n.host}", f"port {self.port('client')}", "protected-mode no",
            "daemonize no", 'logfile ""', f"dir {n.data}", 'save ""',
            f"appendonly {o['appendonly']}", "appendfsync everysec",
            f"bind-source-addr {n.host}", f"replica-announce-ip {n.host}",
            # a full sync starts at once (default: wait 5 s for more replicas)
            "repl-diskless-sync-delay 0", f"repl-timeout {REPL_TIMEOUT_S}",
            "repl-ping-replica-period 1",
            f"min-replicas-to-write {o['min-replicas-to-write']}",
            f"min-replicas-max-lag {o['min-replicas-max-lag']}"]
        if n is not p0:
            redis_conf.append(f"replicaof {p0.host} {self.port('client')}")
        (n.dir / "redis.conf").write_text("\n".join(redis_conf) + "\n")
        quorum = len(self.nodes) // 2 + 1
        m = MASTER_NAME
        sentinel_conf = [
            f"bind {n.host}", f"port {self.port('sentinel')}", "protected-mode no",
            "daemonize no", 'logfile ""', f"dir {n.data}",
            f"bind-source-addr {n.host}", f"sentinel announce-ip {n.host}",
            f"sentinel myid {self.sentinel_id(node)}",
            f"sentinel monitor {m} {p0.host} {self.port('client')} {quorum}",
            f"sentinel down-after-milliseconds {m} {o['down-after-milliseconds']}",
            f"sentinel failover-timeout {m} {o['failover-timeout']}",
            f"sentinel parallel-syncs {m} 1"]
        for other in self.nodes.values():
            if other is not p0:
                sentinel_conf.append(f"sentinel known-replica {m} {other.host} "
                                     f"{self.port('client')}")
            if other is not n:
                sentinel_conf.append(f"sentinel known-sentinel {m} {other.host} "
                                     f"{self.port('sentinel')} {self.sentinel_id(other.name)}")
        (n.dir / "sentinel.conf").write_text("\n".join(sentinel_conf) + "\n")

    def command(self, node: str) -> list[str]:
        from ..harness.ownership import pdeathsig_launch
        n = self.nodes[node]
        # Each server dies with the wrapper: the same `setpriv --pdeathsig KILL --` prefix the
        # harness uses for its own children (empty where there is none, or when disabled).
        prefix, _ = pdeathsig_launch([])
        return ["bash", "-c", WRAPPER, "splitbrain-redis-node", " ".join(prefix),
                str(n.dir / "sentinel.conf"), str(n.dir / "redis.conf")]

    @classmethod
    def require_installed(cls) -> None:
        super().require_installed()
        try:
            import redis  # noqa: F401
        except ImportError:
            raise DbMissing("redis's client library is not installed: pip install redis "
                            "(a dependency of splitbrain)") from None

    @classmethod
    def parse_options(cls, options: dict) -> dict:
        out = super().parse_options(options)
        for k in ("wait", "min-replicas-to-write", "min-replicas-max-lag"):
            if out[k] < 0:
                raise ValueError(f"redis option {k} must be >= 0, got {out[k]}")
        for k in ("down-after-milliseconds", "failover-timeout"):
            if out[k] < 1:
                raise ValueError(f"redis option {k} must be >= 1, got {out[k]}")
        return out

    # ---- probes -------------------------------------------------------------------------------

    def probe(self, node: str, timeout_s: float = 1.0) -> bool:
        """Both servers of the node answer PING (a node cut off by a partition still does: the
        harness reaches it)."""
        n = self.nodes[node]
        try:
            for port in (self.port("client"), self.port("sentinel")):
                _call(n.host, port, ("PING",), time.monotonic() + timeout_s)
            return True
        except (NotSent, Indefinite, RedisAnswerError):
            return False

    def cluster_ready(self, timeout_s: float = 1.0) -> bool:
        """The first primary acknowledged a write, every replica is connected to it, and every
        Sentinel names it as the primary."""
        deadline = time.monotonic() + timeout_s
        p0 = self.primary0
        port = self.port("client")
        try:
            _call(p0.host, port, ("SET", PROBE_KEY, "1"), deadline)
            info = _call(p0.host, port, ("INFO", "replication"), deadline)
            if _info(info).get("connected_slaves") != str(len(self.nodes) - 1):
                return False
            for n in self.nodes.values():
                addr = _call(n.host, self.port("sentinel"),
                             ("SENTINEL", "get-master-addr-by-name", MASTER_NAME), deadline)
                if not addr or _text(addr[0]) != p0.host:
                    return False
            return True
        except (NotSent, Indefinite, RedisAnswerError):
            return False

    def leader(self) -> str | None:
        """The node a majority of the reachable Sentinels name as the primary."""
        by_host = {n.host: n.name for n in self.nodes.values()}
        votes: Counter = Counter()
        for n in self.nodes.values():
            try:
                addr = _call(n.host, self.port("sentinel"),
                             ("SENTINEL", "get-master-addr-by-name", MASTER_NAME),
                             time.monotonic() + SENTINEL_QUERY_MAX_S)
            except (NotSent, Indefinite, RedisAnswerError):
                continue
            if addr and _text(addr[0]) in by_host:
                votes[by_host[_text(addr[0])]] += 1
        if not votes:
            return None
        node, count = votes.most_common(1)[0]
        return node if count > len(self.nodes) // 2 else None

    def client(self) -> "RedisClient":
        return RedisClient(self)


# ---- one command on one fresh connection --------------------------------------------------------


def _connection(host: str, port: int, deadline: float):
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry
    left = deadline_left(deadline)
    return redis.Connection(host=host, port=port, socket_timeout=left,
                            socket_connect_timeout=left, retry=Retry(NoBackoff(), 0),
                            driver_info=None, protocol=2)   # no CLIENT SETINFO, no HELLO


def _connect(conn) -> None:
    """NotSent when no connection could be made (nothing was sent)."""
    import redis
    try:
        conn.connect()
    except redis.exceptions.RedisError as e:
        raise NotSent(f"connect to {conn.host}:{conn.port}: {e}") from None
    except OSError as e:
        raise NotSent(f"connect to {conn.host}:{conn.port}: {e.strerror or e}") from None


def _roundtrip(conn, args: tuple, deadline: float) -> Any:
    """Send one command on a connected `conn` and read its answer. RedisAnswerError for an error
    answer; Indefinite for anything else that went wrong after sending."""
    import redis
    try:
        # The rest of this request's deadline (redis-py sets a connection's timeout once).
        conn._sock.settimeout(deadline_left(deadline))
        conn.send_command(*args)
        return conn.read_response()
    except redis.exceptions.RedisError as e:
        # An error answer of the server: redis-py strips a known code (READONLY, LOADING, ...)
        # off the message into `status_code`, and maps some answers to ConnectionError
        # subclasses (LOADING, max clients), so the code, not the class, tells an answer.
        code = getattr(e, "status_code", None)
        if code is None and isinstance(e, redis.exceptions.ResponseError):
            code = "ERR"
        if code is not None:
            text = str(e)
            raise RedisAnswerError(text if text.startswith(code) else f"{code} {text}") \
                from None
        if isinstance(e, redis.exceptions.TimeoutError):
            raise Indefinite("timed-out") from None
        raise Indefinite(f"connection-lost: {type(e).__name__}: {e}") from None
    except OSError as e:
        raise Indefinite(f"connection-lost: {type(e).__name__}: {e}") from None


def _call(host: str, port: int, args: tuple, deadline: float) -> Any:
    conn = _connection(host, port, deadline)
    try:
        _connect(conn)
        return _roundtrip(conn, args, deadline)
    finally:
        conn.disconnect()


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _info(raw: Any) -> dict[str, str]:
    """INFO's answer (text, or redis-py's parsed dict) as a dict of strings."""
    if isinstance(raw, dict):
        return {k: str(v) for k, v in raw.items()}
    out = {}
    for line in _text(raw).splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


# ---- the client ---------------------------------------------------------------------------------


class RedisClient(DbClient):
    """Workload operations through Sentinel (see the module docstring). Stateless: every request
    opens its own connections, so it is thread-safe."""

    db: Redis

    def primary_of(self, node: str, deadline: float) -> tuple[str, int]:
        """The primary's address as `node`'s Sentinel names it. NotSent (definite) when the
        Sentinel cannot be reached, does not answer in time or names none."""
        host = self.db.nodes[node].host
        d = min(deadline, time.monotonic() + SENTINEL_QUERY_MAX_S)
        try:
            addr = _call(host, self.db.port("sentinel"),
                         ("SENTINEL", "get-master-addr-by-name", MASTER_NAME), d)
        except NotSent as e:
            raise _Refused(NODE_DOWN, f"sentinel: {e}") from None
        except Indefinite as e:
            raise _Refused("sentinel-timed-out" if str(e) == "timed-out"
                           else "sentinel-unavailable", f"sentinel of {node}: {e}") from None
        except RedisAnswerError as e:
            raise _Refused("sentinel-error", f"sentinel of {node}: {e}") from None
        if not addr:
            raise _Refused("no-primary", f"the sentinel of {node} names no primary")
        return _text(addr[0]), int(addr[1])

    def invoke(self, node: str, body: dict, timeout_s: float, client: str = "") -> dict:
        deadline = time.monotonic() + timeout_s
        local = body.get("type") == "splitbrain_local_read"
        if local:
            body = body["op"]
        f = body["type"]
        read = f == "read"
        try:
            if local:
                addr = self.db.client_addr(node)
            else:
                addr = self.primary_of(node, deadline)
            return self._perform(addr, body, deadline)
        except _Refused as e:
            return error(e.name, True, e.text)
        except NotSent as e:
            return error(NODE_DOWN, True, str(e))
        except Indefinite as e:
            name = "timed-out" if str(e) == "timed-out" else "connection-lost"
            return error(name, read, str(e))
        except _Unconfirmed as e:
            return error(e.name, False, e.text)
        except RedisAnswerError as e:
            definite = read or e.code in DEFINITE_PREFIXES
            return error(e.code.lower(), definite, str(e))

    # ---- operations ---------------------------------------------------------------------------

    def _perform(self, addr: tuple[str, int], body: dict, deadline: float) -> dict:
        f = body["type"]
        wl = self.db.workload
        conn = _connection(addr[0], addr[1], deadline)
        try:
            _connect(conn)
            if f == "read":
                return ok("read", value=self._read(conn, body, deadline))
            if f == "write":
                _roundtrip(conn, ("SET", self._key(body), json.dumps(body["value"])), deadline)
                self._wait(conn, deadline)
                return ok("write")
            if f == "cas":
                done = _roundtrip(conn, ("EVAL", CAS_SCRIPT, 1, self._key(body),
                                         json.dumps(body["from"]), json.dumps(body["to"])),
                                  deadline)
                if int(done) != 1:
                    return error("precondition-failed", True, f"value is not {body['from']!r}")
                self._wait(conn, deadline)
                return ok("cas")
            if f == "add" and wl == "counter":
                _roundtrip(conn, ("INCRBY", "c", int(body["delta"])), deadline)
                self._wait(conn, deadline)
                return ok("add")
            if f == "add":
                _roundtrip(conn, ("SADD", "s", json.dumps(body["value"])), deadline)
                self._wait(conn, deadline)
                return ok("add")
            if f == "append":
                length = _roundtrip(conn, ("RPUSH", "log", json.dumps(body["value"])), deadline)
                self._wait(conn, deadline)
                return ok("append", offset=int(length) - 1)
        finally:
            conn.disconnect()
        return error("not-supported", True, f"redis: no operation {f!r}")

    def _wait(self, conn, deadline: float) -> None:
        """WAIT n after a write that happened: fewer replicas, or no answer, is indefinite."""
        n = int(self.db.options["wait"])
        if n <= 0:
            return
        # WAIT's own timeout ends before the request's deadline, so its count comes back;
        # 0 would mean "forever".
        ms = max(1, int((deadline_left(deadline) - 0.05) * 1000))
        try:
            acked = int(_roundtrip(conn, ("WAIT", n, ms), deadline))
        except (Indefinite, RedisAnswerError) as e:
            raise _Unconfirmed("wait-failed", f"the write happened on the primary; WAIT: {e}") \
                from None
        if acked < n:
            raise _Unconfirmed("wait-short", f"the write happened on the primary; WAIT {n} "
                                             f"reached {acked} replica(s) in {ms} ms")

    def _key(self, body: dict) -> str:
        return "r" if body.get("key") is None else f"k/{json.dumps(body['key'])}"

    def _read(self, conn, body: dict, deadline: float) -> Any:
        wl = self.db.workload
        if wl == "set":
            members = _roundtrip(conn, ("SMEMBERS", "s"), deadline)
            return sorted(json.loads(_text(m)) for m in members)
        if wl == "append-log":
            return [json.loads(_text(v)) for v in _roundtrip(conn, ("LRANGE", "log", 0, -1),
                                                               deadline)]
        if wl == "counter":
            v = _roundtrip(conn, ("GET", "c"), deadline)
            return 0 if v is None else int(v)
        v = _roundtrip(conn, ("GET", self._key(body)), deadline)
        return None if v is None else json.loads(_text(v))


class _Refused(Exception):
    """Nothing was sent to a primary: a definite error `name`."""

    def __init__(self, name: str, text: str):
        super().__init__(text)
        self.name, self.text = name, text


class _Unconfirmed(Exception):
    """The write happened on the primary, but WAIT did not confirm it: indefinite `name`."""

    def __init__(self, name: str, text: str):
        super().__init__(text)
        self.name, self.text = name, text
