"""PostgreSQL 15 (Debian's postgresql-15): a primary, streaming standbys and a failover
controller of our own; the adapter and its client.

Server. Node 1 starts as the primary (initdb at setup); every other node starts as a standby
made by `pg_basebackup` from the current primary when it first starts (its data directory is
empty). Replication is physical WAL streaming without replication slots: a slot pins WAL on the
primary for a standby that may never come back (a killed node is rebuilt, see below), while
`wal_keep_size` keeps enough WAL for a standby that was down briefly. Synchronous or not is the
options' choice: `sync_standbys` = k > 0 sets `synchronous_standby_names = 'ANY k (n1, n2,
n3)'` (or `FIRST k (...)`, option `sync_method`; the node names, never `*`, which would count
pg_basebackup's WAL stream as a synchronous standby), and `synchronous_commit` (off / local / on / remote_write /
remote_apply) what a commit waits for. The same settings are on every node (a promoted standby
must behave as the primary did).

PostgreSQL refuses to run as root, and the harness runs as root with run directories that only
root may enter: every PostgreSQL program runs in a user namespace (`unshare --user
--map-user=UID`), where it is an ordinary user that owns root's files; nothing changes owner.

Each node's command is nodes/<n>/start.sh, a small supervisor: it (re)builds the data directory
by `pg_basebackup` when it has none or when the marker file nodes/<n>/rebuild exists (written by
the failover controller), retrying until the current primary (nodes/<n>/upstream) answers; then
runs `postgres` in the foreground; when postgres exits and a rebuild is asked for (the controller
fenced the node), it rebuilds and starts again, else it exits with postgres's status. The
harness's kill and pause act on the whole process group (supervisor and postgres), and postgres
and pg_basebackup run under `setpriv --pdeathsig KILL`, so they die with the supervisor however
it ends (the loopback variant's supervisor dies by its own PR_SET_PDEATHSIG with the harness).

Failover: by hand, in the adapter (FailoverController), not Patroni. Why: Patroni needs a
distributed store it would share with the test (our etcd adapter runs its own cluster per test,
and a second cluster per PostgreSQL test doubles the processes on a 2-core machine), its loop
acts on a 10 s TTL with 30 s defaults (a short test would see few failovers), and its decisions
happen in its own processes where the harness cannot record them. The controller is what Patroni
does in miniature, run by the harness (it starts with the client and stops with it), and logs
every decision in splitbrain.log:
- every 0.2 s it asks every node `pg_is_in_recovery()`, its WAL positions and whether its WAL
  receiver streams (from the harness's own network namespace: partitions between nodes do not
  cut it off, like a store on another machine);
- the primary is lost when it has not answered, or when none of the standbys that followed it
  streams from it any more (a partition cut it off: `wal_receiver_timeout` = 2 s), for
  `failover_after_ms`; then the controller promotes the follower with the
  highest WAL position (received or replayed) among those that answer, if enough of them answer:
  any one when replication is asynchronous, and with k synchronous standbys out of s at least
  s - k + 1 (so that one of them surely holds every acknowledged commit: otherwise it waits,
  unavailable rather than wrong). Before it promotes, it fences the old primary (STONITH:
  SIGKILL to its postmaster, from data/postmaster.pid, and to the postmaster's children; it
  acknowledges nothing more and streams no more WAL), asks the followers' WAL positions again,
  promotes the most advanced, repoints every other standby that answers (primary_conninfo in
  nodes/<n>/primary.conf, `pg_reload_conf()`), and fences every other node, marked for a
  rebuild from the new primary;
- a node other than the primary that says it is a primary, or a standby whose WAL receiver has
  not streamed for STUCK_S while the primary is up (it cannot follow the new timeline), is fenced
  and rebuilt the same way.
Option `failover=off` turns promotion off (the controller only observes). With the controller
runs a ProcessMirror: the harness pauses and kills a node's process group, which PostgreSQL's
backends and WAL senders leave (setsid); the mirror extends a pause or a kill to them.

Client: every operation goes to the current primary (the controller's; clients follow it), on a
connection per history client kept open, through libpq itself (psycopg's `pq` layer, non-blocking,
waited on with the operation's deadline). Why not psycopg's blocking calls: they have no deadline
of their own, and stopping one means a cancel request, and PostgreSQL treats a cancelled wait for
synchronous replication as "committed locally" (its documentation's warning): the commit becomes
visible on the primary without being on any standby. Here a timed-out connection is just
dropped; PostgreSQL's walsender still waits for the standby.
THE rule (base.py): a connection that cannot be made is node-down (definite); a statement error
before COMMIT was sent leaves nothing (the transaction is rolled back: definite fail, e.g.
40001 serialization failure or 40P01 deadlock); an error answer to COMMIT (or to an autocommit
write) of class 40, 22 or 23 is definite (rolled back); a lost connection or a timeout after a
COMMIT or an autocommit write was sent is indefinite; a read-only operation always fails
definitely. `splitbrain_local_read` (the final phase's per-node read) reads that node, standby
or primary, from its own state.

Tables (created by the first acknowledged write, cluster_ready): register/kv `reg (k, v)`,
counter `counter (k, v)` with one row, set `elements (v)`, txn-list-append `lists (k, v bigint[])`
with `INSERT ... ON CONFLICT DO UPDATE SET v = lists.v || EXCLUDED.v`, txn-rw-register
`regs (k, v)`. Transactions run at option `isolation` (read-committed / repeatable-read /
serializable), one statement per micro-op, one round trip each (as a JDBC client would); the
counter's `add` is one `UPDATE ... SET v = v + d` (`counter=atomic`) or a read then a write of
read + d in one transaction (`counter=read-modify-write`, the lost-update probe).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

from ..harness.workloads import NODE_DOWN
from .base import Database, DbClient, Indefinite, NotSent, deadline_left, error, ok

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_USER = "postgres"             # the database superuser (initdb -U): trust auth, no password
NS_UID = 1000                    # the uid PostgreSQL sees itself as, inside its user namespace
POLL_S = 0.2                     # the controller's round
PROBE_TIMEOUT_S = 0.5            # the controller's query deadline per node
STUCK_S = 5.0                    # a standby not streaming this long (primary up) is rebuilt
PROMOTE_WAIT_S = 5               # pg_promote(wait_seconds)
MIRROR_S = 0.02                  # ProcessMirror's round
ISOLATION = {"read-committed": "READ COMMITTED", "repeatable-read": "REPEATABLE READ",
             "serializable": "SERIALIZABLE"}
DEFINITE_CLASSES = ("40", "22", "23", "25", "42")   # rolled back / refused before doing anything
READ_ONLY_STATES = {"25006"}                        # a standby refusing a write

SCHEMA = {
    "register": "CREATE TABLE IF NOT EXISTS reg (k bigint PRIMARY KEY, v bigint)",
    "cas-register": "CREATE TABLE IF NOT EXISTS reg (k bigint PRIMARY KEY, v bigint)",
    "kv": "CREATE TABLE IF NOT EXISTS reg (k bigint PRIMARY KEY, v bigint)",
    "counter": "CREATE TABLE IF NOT EXISTS counter (k int PRIMARY KEY, v bigint NOT NULL); "
               "INSERT INTO counter VALUES (0, 0) ON CONFLICT DO NOTHING",
    "set": "CREATE TABLE IF NOT EXISTS elements (v bigint PRIMARY KEY)",
    "txn-list-append": "CREATE TABLE IF NOT EXISTS lists (k bigint PRIMARY KEY, "
                       "v bigint[] NOT NULL)",
    "txn-rw-register": "CREATE TABLE IF NOT EXISTS regs (k bigint PRIMARY KEY, v bigint)",
}
# initdb: 1 MB WAL segments (the data directory archived at teardown stays small), trust auth.
INITDB_ARGS = ("-U", PG_USER, "-A", "trust", "--no-sync", "-E", "UTF8", "--locale", "C",
               "--wal-segsize=1")
INITDB_FORMAT = 1                # bump when INITDB_ARGS change (the cached template's name)
REGISTER_KEY = 0                 # the register workload's one key (its key is None)


# ---- one libpq connection with deadlines ---------------------------------------------------------


class SqlError(Exception):
    """An error answer of the server: its SQLSTATE and message."""

    def __init__(self, state: str, message: str):
        super().__init__(f"{state}: {message}")
        self.state = state


def _wait(fd: int, write: bool, deadline: float) -> None:
    """Wait until `fd` is readable (writable); TimeoutError past the deadline. poll, not
    select: a busy harness has more than 1024 descriptors."""
    p = select.poll()
    p.register(fd, select.POLLOUT if write else select.POLLIN)
    if not p.poll(deadline_left(deadline) * 1000) and time.monotonic() >= deadline:
        raise TimeoutError


class PgConn:
    """libpq (psycopg.pq) driven non-blocking, every wait bounded by the caller's deadline.

    connect: NotSent when no session could be made by the deadline (nothing was sent).
    query: the results of one simple-protocol query string; Indefinite("timed-out") or
    Indefinite("connection-lost: ...") after it was sent, SqlError for an error answer. After
    an Indefinite the connection is unusable (closed)."""

    def __init__(self, host: str, port: int, deadline: float, app: str = "splitbrain"):
        from psycopg import pq
        self.pq = pq
        self.host = host
        info = (f"host={host} port={port} user={PG_USER} dbname=postgres "
                f"application_name={app} connect_timeout=10")
        self.pg = pq.PGconn.connect_start(info.encode())
        try:
            while True:
                st = self.pg.connect_poll()
                if st == pq.PollingStatus.OK:
                    break
                if st == pq.PollingStatus.FAILED:
                    raise NotSent(self.pg.get_error_message().decode(errors="replace").strip())
                _wait(self.pg.socket, st == pq.PollingStatus.WRITING, deadline)
            self.pg.nonblocking = 1
        except TimeoutError:
            self.close()
            raise NotSent(f"connect to {host}: timed out") from None
        except NotSent:
            self.close()
            raise
        except Exception as e:   # noqa: BLE001 - psycopg.OperationalError: nothing was sent
            self.close()
            raise NotSent(f"connect to {host}: {e}") from None

    def query(self, sql: str, deadline: float) -> list:
        pq = self.pq
        results = []
        try:
            self.pg.send_query(sql.encode())
            while self.pg.flush() == 1:
                _wait(self.pg.socket, True, deadline)
            while True:
                while self.pg.is_busy():
                    _wait(self.pg.socket, False, deadline)
                    self.pg.consume_input()
                r = self.pg.get_result()
                if r is None:
                    break
                results.append(r)
        except TimeoutError:
            self.close()
            raise Indefinite("timed-out") from None
        except Exception as e:   # noqa: BLE001 - psycopg.OperationalError: the connection broke
            self.close()
            raise Indefinite(f"connection-lost: {e}") from None
        for r in results:
            if r.status == pq.ExecStatus.FATAL_ERROR:
                state = (r.error_field(pq.DiagnosticField.SQLSTATE) or b"").decode()
                msg = (r.error_field(pq.DiagnosticField.MESSAGE_PRIMARY) or b"").decode(
                    errors="replace")
                if not state or self.pg.status != pq.ConnStatus.OK:
                    self.close()     # the server ended the session (FATAL): nothing more here
                    raise Indefinite(f"connection-lost: {state} {msg}")
                raise SqlError(state, msg)
        return results

    def rows(self, sql: str, deadline: float) -> list[list[str | None]]:
        """The rows of the last result of `sql`, as text."""
        res = self.query(sql, deadline)
        if not res:
            return []
        r = res[-1]
        return [[None if r.get_value(i, j) is None else r.get_value(i, j).decode()
                 for j in range(r.nfields)] for i in range(r.ntuples)]

    @property
    def ok(self) -> bool:
        return self.pg is not None and self.pg.status == self.pq.ConnStatus.OK

    def close(self) -> None:
        if self.pg is not None:
            try:
                self.pg.finish()
            except Exception:   # noqa: BLE001
                pass
            self.pg = None


def _lsn(text: str | None) -> int:
    if not text:
        return -1
    hi, _, lo = text.partition("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def _int_array(text: str | None) -> list[int] | None:
    """A bigint[] in PostgreSQL's text form ('{1,2,3}') as a list."""
    if text is None:
        return None
    inner = text.strip("{}")
    return [int(x) for x in inner.split(",")] if inner else []


def _is_definite_state(state: str) -> bool:
    return state[:2] in DEFINITE_CLASSES or state in READ_ONLY_STATES


# ---- the adapter ---------------------------------------------------------------------------------


class Postgres(Database):
    name = "postgres"
    description = ("PostgreSQL 15 with WAL streaming standbys (pg_basebackup) and a failover "
                   "controller that promotes the most advanced standby")
    PACKAGES = ("postgresql-15",)
    BINARIES = (str(PG_BIN / "postgres"), str(PG_BIN / "initdb"), str(PG_BIN / "pg_basebackup"),
                "unshare", "setpriv")
    PORTS = {"client": 5432}
    WORKLOADS = ("register", "cas-register", "kv", "counter", "set", "txn-list-append", "txn-rw-register")
    OPTIONS = {
        "synchronous_commit": ("what a commit waits for (PostgreSQL's synchronous_commit)", "on",
                               ("off", "local", "on", "remote_write", "remote_apply")),
        "sync_standbys": ("synchronous standbys a commit waits for (0: asynchronous "
                          "replication, synchronous_standby_names empty)", 0, None),
        "sync_method": ("synchronous_standby_names = 'ANY k (*)' or 'FIRST k (*)'", "any",
                        ("any", "first")),
        "isolation": ("the isolation level of transactions (txn workloads, the read-modify-write "
                      "counter)", "serializable", tuple(ISOLATION)),
        "counter": ("counter add: atomic (UPDATE v = v + d) or read-modify-write (read, then "
                    "write read + d, in one transaction)", "atomic",
                    ("atomic", "read-modify-write")),
        "failover": ("on: promote the most advanced standby when the primary is unreachable; "
                     "off: never", "on", ("on", "off")),
        "failover_after_ms": ("how long the primary must be unreachable before a failover", 1000,
                              None),
    }
    KNOWN_BAD = {
        "sync_standbys=0": "asynchronous standbys (PostgreSQL's default): a standby promoted "
                           "after the primary is killed lacks commits the primary acknowledged: "
                           "INVALID (set: lost; counter: out-of-bounds-read)",
        "isolation=read-committed": "with counter=read-modify-write: lost updates (counter "
                                    "out-of-bounds-read); txn workloads: G-single / G2 cycles",
        "isolation=repeatable-read": "snapshot isolation: write skew (G2-item) in txn workloads",
    }
    REFUSED_FAULTS = {
        "clock": "PostgreSQL's timestamps do not order its commits; the harness has no per-"
                 "process clock for it (libfaketime is not installed)",
        "lost-writes": "PostgreSQL fsyncs its WAL itself; cutting files to the last fsync is for "
                       "the in-house runtime's records file",
        "latency": "no netem in this kernel, and the replication traffic bypasses the harness",
        "duplicate": "no netem in this kernel, and the replication traffic bypasses the harness",
        "crash-point": "crash points need the local router to see protocol messages",
    }

    REFUSED_BACKENDS = {
        "docker": "PostgreSQL refuses to run as root, and the user namespace it runs in here "
                  "(unshare --user) is forbidden by Docker's default seccomp profile; the "
                  "failover controller also fences a node by its host pid",
    }

    def __init__(self, nodes, options=None, **kw):
        super().__init__(nodes, options, **kw)
        for n in self.nodes.values():     # start.sh and postgresql.conf name absolute paths
            n.dir = n.dir.resolve()
            n.data = n.dir / "data"
        self.check_cluster(self.options, len(self.nodes))
        self.first = next(iter(self.nodes))
        self.controller: FailoverController | None = None
        self._schema_done = False

    @classmethod
    def check_cluster(cls, options: dict, nodes: int) -> None:
        """ValueError naming an option that cannot work with `nodes` nodes."""
        k = options["sync_standbys"]
        if not 0 <= k < nodes:
            raise ValueError(f"postgres option sync_standbys={k}: choose 0..{nodes - 1} with "
                             f"{nodes} nodes (one primary, {nodes - 1} standbys)")
        if options["failover_after_ms"] < 0:
            raise ValueError(f"postgres option failover_after_ms must be >= 0, got "
                             f"{options['failover_after_ms']}")

    # ---- files ----------------------------------------------------------------------------

    def _conf(self, node: str) -> str:
        n = self.nodes[node]
        k = int(self.options["sync_standbys"])
        # The standbys by name (their application_name), never '*': pg_basebackup's WAL
        # stream (application_name "pg_basebackup") would otherwise count as a synchronous
        # standby and acknowledge commits into a copy that may be thrown away.
        names = (f"{self.options['sync_method'].upper()} {k} ({', '.join(self.nodes)})"
                 if k else "")
        return "\n".join([
            "# splitbrain: PostgreSQL node " + node + " (splitbrain/dbs/postgres.py)",
            f"listen_addresses = '{n.host}'",
            f"port = {self.port('client')}",
            "unix_socket_directories = ''",
            f"hba_file = '{n.dir / 'pg_hba.conf'}'",
            "max_connections = 100",
            "shared_buffers = 32MB",
            "wal_level = replica",
            "max_wal_senders = 10",
            "wal_keep_size = 64MB",
            "min_wal_size = 4MB",
            "max_wal_size = 64MB",
            "recovery_init_sync_method = syncfs",
            "hot_standby = on",
            "wal_sender_timeout = 5s",
            "wal_receiver_timeout = 2s",
            "wal_receiver_status_interval = 1s",
            "wal_retrieve_retry_interval = 200ms",
            "recovery_target_timeline = 'latest'",
            f"synchronous_commit = {self.options['synchronous_commit']}",
            f"synchronous_standby_names = '{names}'",
            "deadlock_timeout = 100ms",     # a deadlock ends in 40P01 well within a client timeout
            "log_min_messages = warning",
            "log_line_prefix = '%m [%p] '",
            f"include_if_exists = '{n.dir / 'primary.conf'}'",
            ""])

    def primary_conninfo(self, primary: str, node: str) -> str:
        return (f"primary_conninfo = 'host={self.nodes[primary].host} port={self.port('client')} "
                f"user={PG_USER} application_name={node} connect_timeout=2'\n")

    def point_at(self, node: str, primary: str) -> None:
        """Write where `node` replicates from (read by start.sh and by postgres on reload)."""
        n = self.nodes[node]
        (n.dir / "primary.conf").write_text(self.primary_conninfo(primary, node))
        (n.dir / "upstream").write_text(self.nodes[primary].host + "\n")

    def _script(self, node: str) -> str:
        n = self.nodes[node]
        b = PG_BIN
        return f"""#!/bin/sh
# splitbrain: supervisor of PostgreSQL node {node} (see splitbrain/dbs/postgres.py)
DIR='{n.dir}'
DATA="$DIR/data"
DIE="setpriv --pdeathsig KILL --"     # postgres dies with this script, however it ends
while :; do
  if [ -e "$DIR/rebuild" ] || [ ! -s "$DATA/PG_VERSION" ]; then
    rm -rf "$DATA"
    up=$(cat "$DIR/upstream")
    echo "splitbrain: pg_basebackup from $up"
    if $DIE {b}/pg_basebackup -h "$up" -p {self.port('client')} -U {PG_USER} -D "$DATA" \\
         -X stream -c fast -N -w -d "connect_timeout=2"; then
      touch "$DATA/standby.signal"
      rm -f "$DIR/rebuild"
    else
      sleep 0.3
      continue
    fi
  fi
  $DIE {b}/postgres -D "$DATA" -c config_file="$DIR/postgresql.conf"
  rc=$?
  [ -e "$DIR/rebuild" ] || exit $rc
  echo "splitbrain: postgres exited ($rc); rebuilding as a standby"
done
"""

    def setup_node(self, node: str) -> None:
        super().setup_node(node)
        n = self.nodes[node]
        (n.dir / "postgresql.conf").write_text(self._conf(node))
        (n.dir / "pg_hba.conf").write_text("host all all 0.0.0.0/0 trust\n"
                                          "host replication all 0.0.0.0/0 trust\n")
        (n.dir / "start.sh").write_text(self._script(node))
        (n.dir / "rebuild").unlink(missing_ok=True)
        if node == self.first:
            (n.dir / "primary.conf").write_text("")
            (n.dir / "upstream").write_text(n.host + "\n")
            shutil.rmtree(n.data)
            shutil.copytree(self._initdb_template(), n.data, symlinks=True)
        else:
            shutil.rmtree(n.data)      # start.sh makes it by pg_basebackup
            self.point_at(node, self.first)

    @classmethod
    def _initdb_template(cls) -> Path:
        """A fresh `initdb` data directory, made once per machine and PostgreSQL version and
        copied for each run (initdb takes seconds; a copy of its 40 MB a fraction of one).
        Kept in ~/.cache/splitbrain (XDG_CACHE_HOME); made in a temporary directory and renamed,
        so that concurrent runs never see half of one."""
        import subprocess
        import tempfile
        version = (PG_BIN.parent / "bin" / "postgres").stat().st_mtime_ns
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "splitbrain"
        out = cache / f"postgres-15-initdb-{INITDB_FORMAT}-{version}"
        if (out / "PG_VERSION").is_file():
            return out
        cache.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".postgres-initdb-", dir=cache))
        try:
            p = subprocess.run([*cls._userns(), str(PG_BIN / "initdb"), "-D", str(tmp / "data"),
                                *INITDB_ARGS], capture_output=True, text=True, timeout=120)
            if p.returncode != 0:
                raise RuntimeError(f"initdb failed: {p.stderr.strip()[-300:]}")
            try:
                (tmp / "data").rename(out)
            except OSError:
                if not (out / "PG_VERSION").is_file():     # not another run's rename: an error
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return out

    @staticmethod
    def _userns() -> list[str]:
        return ["unshare", "--user", f"--map-user={NS_UID}", f"--map-group={NS_UID}"]

    def command(self, node: str) -> list[str]:
        return [*self._userns(), "/bin/sh", str(self.nodes[node].dir / "start.sh")]

    def archive(self, node: str) -> Path | None:
        """As base.py; a node that was being rebuilt at teardown (start.sh had removed its data
        directory, node.log says so) gets an archive of an empty data directory."""
        n = self.nodes[node]
        (n.dir / "rebuild").unlink(missing_ok=True)
        n.data.mkdir(exist_ok=True)
        return super().archive(node)

    # ---- the cluster ------------------------------------------------------------------------

    def primary(self) -> str:
        return self.controller.primary if self.controller is not None else self.first

    def cluster_ready(self, timeout_s: float = 1.0) -> bool:
        """The workload's tables created on the primary (an acknowledged write), and every
        standby streaming from it (so that the first failover has a standby to promote)."""
        deadline = time.monotonic() + timeout_s
        try:
            if not self._schema_done:
                c = PgConn(*self.client_addr(self.first), deadline)
                try:
                    c.query(SCHEMA[self.workload] if self.workload in SCHEMA else "SELECT 1",
                            deadline)
                finally:
                    c.close()
                self._schema_done = True
            c = PgConn(*self.client_addr(self.first), deadline)
            try:
                rows = c.rows("SELECT application_name FROM pg_stat_replication "
                              "WHERE state = 'streaming'", deadline)
            finally:
                c.close()
        except (NotSent, Indefinite, SqlError):
            return False
        return len(rows) >= len(self.nodes) - 1

    def leader(self) -> str | None:
        return self.primary()

    def client(self) -> "PgClient":
        return PgClient(self)


# ---- failover ------------------------------------------------------------------------------------


class FailoverController:
    """Watches the nodes and promotes a standby when the primary is gone (module docstring)."""

    def __init__(self, db: Postgres):
        self.db = db
        self.primary = db.first
        self.generation = 0
        self.failovers: list[dict] = []
        self._last_ok = time.monotonic()
        self._stuck_since: dict[str, float] = {}
        self._followers: set[str] = set()      # standbys seen streaming from this primary
        self._receivers: dict[str, str | None] = {}    # node -> its WAL receiver's pid
        self.mirror = ProcessMirror(db)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lock = threading.Lock()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="splitbrain-pg-failover")
        self._thread.start()
        self.mirror.start()

    def stop(self) -> None:
        self._stop.set()
        self.mirror.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _probe(self, node: str) -> dict | None:
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        try:
            c = PgConn(*self.db.client_addr(node), deadline, app="splitbrain-failover")
        except NotSent:
            return None
        try:
            row = c.rows("SELECT pg_is_in_recovery(), "
                         "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END, "
                         "pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(), "
                         "(SELECT pid FROM pg_stat_wal_receiver WHERE status = 'streaming')",
                         deadline)[0]
        except (Indefinite, SqlError, IndexError):
            return None
        finally:
            c.close()
        # Streaming: the same WAL receiver streamed in the previous round too. A standby that
        # cannot follow the primary's timeline restarts its receiver every few hundred ms and
        # is caught streaming now and then: it must not count.
        receiver = row[4]
        streaming = receiver is not None and self._receivers.get(node) == receiver
        self._receivers[node] = receiver
        return {"standby": row[0] == "t",
                "lsn": max(_lsn(row[1]), _lsn(row[2]), _lsn(row[3])),
                "streaming": streaming}

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.round()
            except Exception as e:   # noqa: BLE001 - never let the controller die silently
                self.db.log(f"postgres failover: round failed: {type(e).__name__}: {e}")

    def round(self) -> None:
        now = time.monotonic()
        seen = {n: self._probe(n) for n in self.db.nodes}
        p = seen.get(self.primary)
        primary_up = p is not None and not p["standby"]
        for n, s in seen.items():
            if n == self.primary or s is None:
                continue
            if not s["standby"]:
                self.fence(n, "says it is a primary")
            elif s["streaming"]:
                self._followers.add(n)
                self._stuck_since.pop(n, None)
            elif primary_up:
                since = self._stuck_since.setdefault(n, now)
                if now - since > STUCK_S:
                    self.fence(n, f"has not streamed from {self.primary} for {STUCK_S:g} s")
        # The standbys that followed this primary: they are the candidates, and their WAL
        # receivers say whether the primary still reaches anyone (a primary cut off from every
        # standby by a partition still answers the controller, as repmgr's or Patroni's
        # primary answers a store it can reach).
        followers = {n: s for n, s in seen.items()
                     if n in self._followers and s is not None and s["standby"]}
        cut_off = bool(followers) and not any(s["streaming"] for s in followers.values())
        if primary_up and not cut_off:
            self._last_ok = now
        if self.db.options["failover"] != "on":
            return
        if now - self._last_ok < self.db.options["failover_after_ms"] / 1000:
            return
        k = int(self.db.options["sync_standbys"])
        sync = k > 0 and self.db.options["synchronous_commit"] not in ("off", "local")
        need = (len(self.db.nodes) - 1 - k + 1) if sync else 1
        if len(followers) < need:
            return
        best = max(sorted(followers), key=lambda n: followers[n]["lsn"])
        why = ("its standbys' WAL receivers stopped streaming" if primary_up
               else "it did not answer")
        self.promote(best, followers, why)

    def promote(self, new: str, standbys: dict[str, dict], why: str) -> None:
        """Fence the old primary first (STONITH: no commit can be acknowledged by it once a
        standby is promoted, and no more WAL reaches the standbys), then ask the followers'
        WAL positions again, promote the most advanced, repoint or fence the rest."""
        old = self.primary
        self.fence(old, f"was the primary ({why})", upstream=new)
        again = {n: self._probe(n) for n in standbys}
        again = {n: s for n, s in again.items() if s is not None and s["standby"]}
        if not again:
            self.db.log(f"postgres failover: no follower answered after {old} was fenced")
            return
        new = max(sorted(again), key=lambda n: again[n]["lsn"])
        deadline = time.monotonic() + PROMOTE_WAIT_S + 1
        try:
            c = PgConn(*self.db.client_addr(new), deadline, app="splitbrain-failover")
            try:
                done = c.rows(f"SELECT pg_promote(true, {PROMOTE_WAIT_S})", deadline)
            finally:
                c.close()
        except (NotSent, Indefinite, SqlError) as e:
            self.db.log(f"postgres failover: promoting {new} failed: {e}")
            return
        if not done or done[0][0] != "t":
            self.db.log(f"postgres failover: {new} did not finish its promotion")
            return
        with self.lock:
            self.primary = new
            self.generation += 1
        self._last_ok = time.monotonic()
        self._stuck_since.clear()
        self._followers = set()
        lsns = {n: s["lsn"] for n, s in again.items()}
        self.failovers.append({"from": old, "to": new, "lsns": lsns})
        self.db.log(f"postgres failover: {old}: {why}; promoted {new} (WAL positions of "
                    f"the standbys that answered: {json.dumps(lsns)})")
        for n in self.db.nodes:
            if n == new:
                continue
            self.db.point_at(n, new)
            if n == old:
                continue                 # fenced above; it rebuilds from `new`
            if n in again:
                if not self._reload(n):
                    self.fence(n, "could not be repointed")
            else:
                self.fence(n, "was not reachable at the failover")

    def _reload(self, node: str) -> bool:
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        try:
            c = PgConn(*self.db.client_addr(node), deadline, app="splitbrain-failover")
            try:
                c.query("SELECT pg_reload_conf()", deadline)
            finally:
                c.close()
            return True
        except (NotSent, Indefinite, SqlError):
            return False

    def fence(self, node: str, why: str, upstream: str | None = None) -> None:
        """Mark `node` for a rebuild from `upstream` (default: the current primary) and kill
        its postmaster and every child of it (SIGKILL works on a paused process too). Its
        supervisor (start.sh) then rebuilds it by pg_basebackup; a node that is down rebuilds
        when it is restarted."""
        n = self.db.nodes[node]
        self.db.point_at(node, upstream or self.primary)
        (n.dir / "rebuild").touch()
        self._stuck_since.pop(node, None)
        pid = _postmaster_pid(n.data)
        if pid is not None:
            _kill_tree(pid)
        self.db.log(f"postgres failover: fenced {node} ({why}); "
                    f"{'postmaster ' + str(pid) + ' and its children killed, ' if pid else ''}"
                    f"it rebuilds from {upstream or self.primary}")


def _kill_tree(pm: int) -> None:
    """SIGKILL postmaster `pm` and its children (they are sessions of their own)."""
    try:
        kids = [int(x) for x in Path(f"/proc/{pm}/task/{pm}/children").read_text().split()]
    except (OSError, ValueError):
        kids = []
    for pid in [pm, *kids]:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + 2
    while _proc_stat(pm) is not None and time.monotonic() < deadline:
        time.sleep(0.01)


class ProcessMirror:
    """Makes the harness's pause and kill of a node reach all of its PostgreSQL processes.

    The harness signals a node's process group (base.py's contract: start.sh and the
    postmaster), but every PostgreSQL backend and WAL sender calls setsid() and so leaves it:
    a paused node's backends would go on answering the connections they hold and its WAL
    senders go on streaming, and a killed node's backends live until they notice the
    postmaster's death. Every MIRROR_S this thread reads each node's postmaster (its
    data/postmaster.pid) and children from /proc: when the postmaster is stopped, it stops
    the children (and continues them when the postmaster continues); when the postmaster is
    gone, it SIGKILLs the children it saw last (those whose start time still matches). So a
    pause or a kill is one of the whole server, within MIRROR_S."""

    def __init__(self, db: Postgres):
        self.db = db
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._children: dict[str, dict[int, str]] = {}    # node -> pid -> start time
        self._stopped: dict[str, set[int]] = {}            # node -> children we stopped

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="splitbrain-pg-mirror")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        for node in list(self._stopped):       # never leave a backend stopped
            self._signal_all(node, set(self._stopped.pop(node)), signal.SIGCONT)

    def _run(self) -> None:
        while not self._stop.wait(MIRROR_S):
            for node in self.db.nodes:
                try:
                    self.mirror(node)
                except OSError:
                    pass

    def mirror(self, node: str) -> None:
        pm = _postmaster_pid(self.db.nodes[node].data)
        state = _proc_stat(pm) if pm is not None else None
        if state is None:        # no postmaster: kill what it left running
            left = self._children.pop(node, {})
            self._stopped.pop(node, None)
            for pid, started in left.items():
                st = _proc_stat(pid)
                if st is not None and st[1] == started:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
            return
        try:
            kids = [int(x) for x in
                    Path(f"/proc/{pm}/task/{pm}/children").read_text().split()]
        except (OSError, ValueError):
            kids = []
        seen = {}
        for pid in kids:
            st = _proc_stat(pid)
            if st is not None:
                seen[pid] = st[1]
        self._children[node] = seen
        stopped = self._stopped.setdefault(node, set())
        if state[0] in "Tt":
            todo = set(seen) - stopped
            self._signal_all(node, todo, signal.SIGSTOP)
            stopped |= todo
        elif stopped:
            self._signal_all(node, set(stopped), signal.SIGCONT)
            stopped.clear()

    @staticmethod
    def _signal_all(node: str, pids: set[int], sig: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of process `pid` from /proc, or None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":
        return None
    return fields[0], fields[19]


def _postmaster_pid(data: Path) -> int | None:
    """The postmaster's pid from data/postmaster.pid when that process is still this node's
    postgres (its command line names this data directory: a stale file's pid may be reused)."""
    try:
        pid = int((data / "postmaster.pid").read_text().split("\n", 1)[0])
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    return pid if str(data).encode() in cmd else None


# ---- the client ----------------------------------------------------------------------------------


class PgClient(DbClient):
    """Workload operations on the current primary (see the module docstring)."""

    def __init__(self, db: Postgres):
        super().__init__(db)
        self.isolation = ISOLATION[db.options["isolation"]]
        self.rmw = db.options["counter"] == "read-modify-write"
        self._conns: dict[tuple[str, str], PgConn] = {}
        self._lock = threading.Lock()
        self._owns_controller = False

    def open(self) -> None:
        if self.db.controller is None:
            self.db.controller = FailoverController(self.db)
            self.db.controller.start()
            self._owns_controller = True

    def close(self) -> None:
        if self._owns_controller and self.db.controller is not None:
            self.db.controller.stop()
        with self._lock:
            conns, self._conns = list(self._conns.values()), {}
        for c in conns:
            c.close()

    def _conn(self, client: str, node: str, deadline: float) -> PgConn:
        key = (client, node)
        with self._lock:
            c = self._conns.pop(key, None)
        if c is not None and c.ok:
            return c
        if c is not None:
            c.close()
        return PgConn(*self.db.client_addr(node), deadline, app=f"splitbrain-{client or 'c'}")

    def _keep(self, client: str, node: str, c: PgConn) -> None:
        if not c.ok:
            return
        with self._lock:
            old = self._conns.pop((client, node), None)
            self._conns[(client, node)] = c
        if old is not None:
            old.close()

    def invoke(self, node: str, body: dict, timeout_s: float, client: str = "") -> dict:
        deadline = time.monotonic() + timeout_s
        local = body.get("type") == "splitbrain_local_read"
        if local:
            body = body["op"]
        else:
            node = self.db.primary()        # clients follow the current primary
        f = body["type"]
        read_only = f == "read" or (f == "txn" and all(m[0] == "r" for m in body["txn"]))
        state = {"committing": False}
        try:
            c = self._conn(client, node, deadline)
        except NotSent as e:
            return error(NODE_DOWN, True, str(e))
        try:
            reply = self._perform(c, f, body, deadline, state)
        except Indefinite as e:
            c.close()
            definite = read_only or not state["committing"]
            name = "timed-out" if str(e) == "timed-out" else "connection-lost"
            return error(name, definite, str(e))
        except SqlError as e:
            self._rollback(c, deadline)
            definite = read_only or not state["committing"] or _is_definite_state(e.state)
            return error(_error_name(e.state), definite, str(e))
        self._keep(client, node, c)
        return reply

    def _rollback(self, c: PgConn, deadline: float) -> None:
        """After an error in a transaction block: end it (or drop the connection)."""
        try:
            c.query("ROLLBACK", deadline)
        except (Indefinite, SqlError):
            c.close()

    # ---- operations -------------------------------------------------------------------------

    def _perform(self, c: PgConn, f: str, body: dict, deadline: float, state: dict) -> dict:
        w = self.db.workload
        if f == "txn":
            return self._txn(c, body["txn"], deadline, state)
        if w in ("register", "cas-register", "kv"):
            k = REGISTER_KEY if body.get("key") is None else int(body["key"])
            if f == "read":
                rows = c.rows(f"SELECT v FROM reg WHERE k = {k}", deadline)
                return ok("read", value=int(rows[0][0]) if rows and rows[0][0] is not None
                          else None)
            state["committing"] = True
            if f == "write":
                c.query(f"INSERT INTO reg VALUES ({k}, {int(body['value'])}) ON CONFLICT (k) "
                        f"DO UPDATE SET v = EXCLUDED.v", deadline)
                return ok("write")
            if f == "cas":
                res = c.query(f"UPDATE reg SET v = {int(body['to'])} WHERE k = {k} AND "
                              f"v = {int(body['from'])}", deadline)
                if res and res[-1].command_tuples == 0:
                    return error("precondition-failed", True, "the register did not hold "
                                 f"{body['from']}")
                return ok("cas")
        if w == "counter":
            if f == "read":
                rows = c.rows("SELECT v FROM counter WHERE k = 0", deadline)
                return ok("read", value=int(rows[0][0]) if rows else None)
            if f == "add":
                d = int(body["delta"])
                if not self.rmw:
                    state["committing"] = True
                    c.query(f"UPDATE counter SET v = v + {d} WHERE k = 0", deadline)
                    return ok("add")
                c.query(f"BEGIN ISOLATION LEVEL {self.isolation}", deadline)
                v = int(c.rows("SELECT v FROM counter WHERE k = 0", deadline)[0][0])
                c.query(f"UPDATE counter SET v = {v + d} WHERE k = 0", deadline)
                state["committing"] = True
                c.query("COMMIT", deadline)
                return ok("add")
        if w == "set":
            if f == "read":
                rows = c.rows("SELECT v FROM elements ORDER BY v", deadline)
                return ok("read", value=[int(r[0]) for r in rows])
            if f == "add":
                state["committing"] = True
                c.query(f"INSERT INTO elements VALUES ({int(body['value'])})", deadline)
                return ok("add")
        return error("not-supported", True, f"postgres {w}: no operation {f!r}")

    def _txn(self, c: PgConn, txn: list, deadline: float, state: dict) -> dict:
        append = self.db.workload == "txn-list-append"
        table = "lists" if append else "regs"
        c.query(f"BEGIN ISOLATION LEVEL {self.isolation}", deadline)
        out = []
        for f, k, v in txn:
            k = int(k)
            if f == "r":
                rows = c.rows(f"SELECT v FROM {table} WHERE k = {k}", deadline)
                val = rows[0][0] if rows else None
                out.append(["r", k, _int_array(val) if append else
                            (int(val) if val is not None else None)])
            elif f == "append":
                c.query(f"INSERT INTO lists VALUES ({k}, ARRAY[{int(v)}]::bigint[]) ON CONFLICT "
                        f"(k) DO UPDATE SET v = lists.v || EXCLUDED.v", deadline)
                out.append([f, k, v])
            elif f == "w":
                c.query(f"INSERT INTO regs VALUES ({k}, {int(v)}) ON CONFLICT (k) DO UPDATE "
                        f"SET v = EXCLUDED.v", deadline)
                out.append([f, k, v])
            else:
                raise SqlError("42000", f"unknown micro-op {f!r}")
        state["committing"] = True
        c.query("COMMIT", deadline)
        return ok("txn", txn=out)


def _error_name(state: str) -> str:
    return {"40001": "serialization-failure", "40P01": "deadlock", "25006": "read-only",
            "57P01": "admin-shutdown", "57P03": "cannot-connect-now"}.get(state, f"sql-{state}")
