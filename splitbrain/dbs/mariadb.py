"""MariaDB 10.11 with Galera (Debian's mariadb-server and galera-4): the adapter and its client.

Galera is multi-primary "virtually synchronous" replication: a transaction runs on the node the
client talks to, and at COMMIT its write set is broadcast in one total order and certified on every
node (first committer wins); the commit is acknowledged once the write set is ordered, and the
other nodes APPLY it later. Reads on another node may therefore miss an acknowledged write unless
`wsrep_sync_wait` makes the read wait for everything ordered before it (Galera's "causal reads";
MariaDB's default is 0: off). Jepsen's analyses of Galera found stale reads and lost updates; which
of these this version shows is what the harness answers (README, "MariaDB with Galera").

Server: `mariadbd` in the foreground, one cluster member per node, a config file of the run's own
(nodes/<n>/my.cnf: bind address = the node's address, galera ports 4567 (group), 4568 (IST) and
4444 (SST) on it, the data directory nodes/<n>/data, `skip-grant-tables`: a test cluster with no
accounts). Start-up: node 1's data directory is made by `mariadb-install-db` and node 1 starts
with `--wsrep-new-cluster` (the bootstrap) on its FIRST launch only; the others start with empty
data directories and join by a state snapshot transfer (SST) with rsync from a member. Every later
launch (the nemesis's restarts) joins the existing cluster, and after a crash of every member,
Galera's own `pc.recovery` re-forms the primary component once the members of the last one are back
(no operator bootstrap that could pick a less advanced node).

Why an rsync wrapper: the SST's receiving side is an rsync daemon started by mariadbd; started by
root it drops to `nobody` and could not write a data directory in a store that only root may
enter (pytest's temporary directories are 0700). The server runs as root (`user=root`) and its
`basedir` is nodes/<n>/base, whose bin/ holds a two-line `rsync` that keeps the daemon root
(`--dparam=uid=root`): mariadbd puts basedir/bin first on the PATH of its SST scripts.

Client: PyMySQL (pure Python), one fresh connection per operation, with the operation's deadline
on the connect and on every socket read and write. A connection that cannot be made is `NotSent`
(definite). After that: an error that proves nothing happened is definite (deadlock / certification
conflict 1213, lock wait timeout 1205 (the statement or transaction rolled back), "WSREP has not
yet prepared node for application use" 1047 on a node outside the primary component, a failed
compare); a lost connection or a timeout after a write statement or a COMMIT was sent is
indefinite; every failed read is definite.

Data: JSON text in tables made at start-up through node 1 (DDL is replicated in total order):
  registers(k, v)   the register (k "r") and kv keys (k = the key as JSON); cas is one UPDATE ...
                    WHERE v = old (rows matched, not changed, counted: CLIENT.FOUND_ROWS)
  elements(v)       the set: one row per element
  lists(k, v)       txn-list-append: v a JSON array, appended with JSON_ARRAY_APPEND
  txn_registers(k, v)  txn-rw-register
Transactions run at the `isolation` option's level (MariaDB's default: repeatable read).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

from ..harness.workloads import NODE_DOWN
from .base import Database, DbClient, Indefinite, NotSent, deadline_left, error, ok

GALERA_PROVIDER = "/usr/lib/galera/libgalera_smm.so"
CLUSTER_NAME = "splitbrain"
RSYNC_WRAPPER = """#!/bin/sh
# Galera's SST starts an rsync daemon; started by root it would drop to 'nobody' and could not
# write this node's data directory (see splitbrain/dbs/mariadb.py). Keep it root.
case " $* " in *" --daemon "*) exec /usr/bin/rsync --dparam=uid=root --dparam=gid=root "$@";; esac
exec /usr/bin/rsync "$@"
"""

WRITES = ("INSERT", "UPDATE", "REPLACE", "DELETE")
ISOLATION_SQL = {"read-uncommitted": "READ UNCOMMITTED", "read-committed": "READ COMMITTED",
                 "repeatable-read": "REPEATABLE READ", "serializable": "SERIALIZABLE"}

SCHEMA = (
    "CREATE DATABASE IF NOT EXISTS splitbrain",
    "CREATE TABLE IF NOT EXISTS splitbrain.registers (k VARCHAR(191) PRIMARY KEY, v TEXT) "
    "ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS splitbrain.elements (v VARCHAR(191) PRIMARY KEY) ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS splitbrain.lists (k VARCHAR(191) PRIMARY KEY, v LONGTEXT) "
    "ENGINE=InnoDB",
    "CREATE TABLE IF NOT EXISTS splitbrain.txn_registers (k VARCHAR(191) PRIMARY KEY, v TEXT) "
    "ENGINE=InnoDB",
)

# MySQL error codes (https://mariadb.com/kb/en/mariadb-error-codes/)
ER_LOCK_WAIT_TIMEOUT = 1205
ER_LOCK_DEADLOCK = 1213          # also Galera's certification failure / brute-force abort
ER_UNKNOWN_COM_ERROR = 1047      # "WSREP has not yet prepared node for application use"
ER_QUERY_INTERRUPTED = 1317
CR_CONN_HOST_ERROR = 2003        # client: cannot connect
DEFINITE_SERVER_ERRORS = {ER_LOCK_WAIT_TIMEOUT: "lock-wait-timeout",
                          ER_LOCK_DEADLOCK: "conflict",
                          ER_UNKNOWN_COM_ERROR: "not-primary"}


class MariaDb(Database):
    name = "mariadb"
    description = ("MariaDB 10.11 Galera cluster (galera-4): multi-primary, certification-based "
                   "replication; clients on every node")
    PACKAGES = ("mariadb-server", "galera-4", "rsync")
    BINARIES = ("mariadbd", "mariadb-install-db", GALERA_PROVIDER, "/usr/bin/rsync")
    PORTS = {"client": 3306, "group": 4567, "ist": 4568, "sst": 4444}
    WORKLOADS = ("register", "cas-register", "kv", "set", "txn-list-append", "txn-rw-register")
    OPTIONS = {
        "isolation": ("transaction isolation level (MariaDB's default: repeatable-read)",
                      "repeatable-read", tuple(ISOLATION_SQL)),
        "sync_wait": ("wsrep_sync_wait: 0 = reads do not wait for writes ordered before them "
                      "(MariaDB's default), 1 = reads wait (causal reads), up to 15", 0,
                      tuple(range(16))),
        "flush_at_commit": ("innodb_flush_log_at_trx_commit (1 = fsync at every commit; Galera "
                            "setups often use 0 or 2, relying on the other members)", 1,
                            (0, 1, 2)),
    }
    KNOWN_BAD = {
        "sync_wait=0": "MariaDB's default: a read on one member may miss a write another member "
                       "already acknowledged (applied there later): INVALID (stale read) on "
                       "register, even without faults",
        "isolation=repeatable-read": "MariaDB's default: InnoDB reads from a snapshot but writes "
                                     "the latest version: txn-list-append checked as snapshot "
                                     "isolation is INVALID (lost-update, G-single, internal)",
        "isolation=serializable": "read locks are not replicated: write skew (G2-item) between "
                                  "members on txn-list-append checked as serializable",
    }
    REFUSED_FAULTS = {
        "clock": "the harness has no per-process clock for a database process (libfaketime is "
                 "not wired for --db)",
        "lost-writes": "InnoDB fsyncs its own files; cutting files to the last fsync is for the "
                       "in-house runtime's records file",
        "latency": "no netem in this kernel, and Galera's group traffic bypasses the harness",
        "duplicate": "no netem in this kernel, and Galera's group traffic bypasses the harness",
        "crash-point": "crash points need the local router to see protocol messages",
    }

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._launched: set[str] = set()

    # ---- server side ------------------------------------------------------------------------

    def _cnf(self, node: str) -> Path:
        return self.nodes[node].dir / "my.cnf"

    def setup_node(self, node: str) -> None:
        super().setup_node(node)
        n = self.nodes[node]
        base_bin = n.dir / "base" / "bin"
        base_bin.mkdir(parents=True, exist_ok=True)
        wrapper = base_bin / "rsync"
        wrapper.write_text(RSYNC_WRAPPER)
        wrapper.chmod(0o755)
        members = ",".join(f"{m.host}:{self.port('group')}" for m in self.nodes.values())
        o = self.options
        self._cnf(node).write_text(f"""# written by splitbrain for run {self.run_id}
[mysqld]
user=root
basedir={n.dir / 'base'}
plugin-dir=/usr/lib/mysql/plugin
lc-messages-dir=/usr/share/mysql
datadir={n.data}
socket=@splitbrain-{self.run_id}-{node}.sock
pid-file={n.dir / 'mysqld.pid'}
tmpdir={n.dir}
bind-address={n.host}
port={self.port('client')}
skip-name-resolve
skip-grant-tables
performance_schema=OFF
innodb_buffer_pool_size=32M
innodb_log_file_size=16M
innodb_flush_log_at_trx_commit={o['flush_at_commit']}
innodb_lock_wait_timeout=1
transaction_isolation={ISOLATION_SQL[o['isolation']].replace(' ', '-')}
binlog_format=ROW
default_storage_engine=InnoDB
innodb_autoinc_lock_mode=2
wsrep_on=ON
wsrep_provider={GALERA_PROVIDER}
wsrep_cluster_name={CLUSTER_NAME}-{self.run_id}
wsrep_cluster_address=gcomm://{members}
wsrep_node_address={n.host}
wsrep_node_name={node}
wsrep_sst_method=rsync
wsrep_sst_receive_address={n.host}:{self.port('sst')}
wsrep_provider_options="gmcast.listen_addr=tcp://{n.host}:{self.port('group')};ist.recv_addr={n.host}:{self.port('ist')};evs.suspect_timeout=PT3S;evs.inactive_timeout=PT6S;pc.wait_prim_timeout=PT60S"
wsrep_sync_wait={o['sync_wait']}
""")
        if n.index == 1:
            import subprocess
            p = subprocess.run(["mariadb-install-db", f"--defaults-file={self._cnf(node)}",
                                "--basedir=/usr", "--skip-test-db"],
                               capture_output=True, text=True, timeout=120)
            if p.returncode != 0:
                tail = (p.stderr or p.stdout).strip().splitlines()[-1:]
                raise RuntimeError(f"mariadb-install-db for {node} failed: {' '.join(tail)}")

    def command(self, node: str) -> list[str]:
        """The bootstrap flag only on node 1's first launch: a restarted member joins the
        cluster (a second bootstrap would make a second cluster)."""
        # No log-error in my.cnf: the error log (and the SST scripts' output) goes to stderr,
        # which the cluster keeps as nodes/<n>/node.log.
        argv = ["mariadbd", f"--defaults-file={self._cnf(node)}"]
        if self.nodes[node].index == 1 and node not in self._launched:
            argv.append("--wsrep-new-cluster")
        self._launched.add(node)
        return argv

    def _connect(self, node: str, deadline: float):
        import pymysql
        from pymysql.constants import CLIENT
        host, port = self.client_addr(node)
        left = deadline_left(deadline)
        try:
            return pymysql.connect(host=host, port=port, user="root", password="",
                                   connect_timeout=left, read_timeout=left, write_timeout=left,
                                   autocommit=True, client_flag=CLIENT.FOUND_ROWS)
        except pymysql.err.OperationalError as e:
            raise NotSent(f"connect to {node}: {e.args[-1] if e.args else e}") from None

    def _status(self, node: str, deadline: float) -> dict[str, str]:
        """A few wsrep status variables of `node` (lower-case names)."""
        conn = self._connect(node, deadline)
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW STATUS WHERE variable_name IN ('wsrep_cluster_size', "
                            "'wsrep_local_state_comment', 'wsrep_cluster_status', "
                            "'wsrep_ready')")
                return {str(k).lower(): str(v) for k, v in cur.fetchall()}
        finally:
            conn.close()

    def cluster_ready(self, timeout_s: float = 1.0) -> bool:
        """The schema made through node 1, and every member synced in one primary component."""
        import pymysql
        deadline = time.monotonic() + max(timeout_s, 2.0)
        try:
            for n in self.nodes:
                st = self._status(n, deadline)
                if (st.get("wsrep_local_state_comment") != "Synced"
                        or st.get("wsrep_cluster_status") != "Primary"
                        or int(st.get("wsrep_cluster_size", 0)) != len(self.nodes)):
                    return False
            first = next(iter(self.nodes))
            conn = self._connect(first, deadline)
            try:
                with conn.cursor() as cur:
                    for stmt in SCHEMA:
                        cur.execute(stmt)
                    cur.execute("REPLACE INTO splitbrain.registers (k, v) VALUES "
                                "('splitbrain/ready', '1')")
            finally:
                conn.close()
            return True
        except (NotSent, pymysql.err.Error, OSError):
            return False

    def client(self) -> "MariaDbClient":
        return MariaDbClient(self)


class MariaDbClient(DbClient):
    """Workload operations over PyMySQL (see the module docstring)."""

    def __init__(self, db: MariaDb):
        super().__init__(db)
        self.isolation = ISOLATION_SQL[db.options["isolation"]]
        self._conns: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._closed = False

    def invoke(self, node: str, body: dict, timeout_s: float, client: str = "") -> dict:
        import pymysql
        deadline = time.monotonic() + timeout_s
        if body.get("type") == "splitbrain_local_read":
            body = body["op"]
        f = body["type"]
        read_only = f == "read" or (f == "txn" and all(m[0] == "r" for m in body["txn"]))
        try:
            conn = self._connection(client, node, deadline)
        except NotSent as e:
            return error(NODE_DOWN, True, str(e))
        # `sent`: a statement that may change something has left. Inside a transaction only
        # COMMIT does: a connection lost before it rolls the transaction back on the server.
        sent = False
        in_txn = False
        keep = False
        try:
            with conn.cursor() as cur:
                def execute(sql: str, args: Any = None) -> int:
                    nonlocal sent, in_txn
                    # The deadline covers the whole operation, not each socket call (PyMySQL
                    # sets its read/write timeouts once, at connect).
                    conn._sock.settimeout(deadline_left(deadline))
                    if sql == "START TRANSACTION":
                        in_txn = True
                    elif sql == "COMMIT" or (not in_txn and sql.startswith(WRITES)):
                        sent = True
                    return cur.execute(sql, args)
                reply = self._perform(f, body, execute, cur)
                keep = not in_txn or sent       # a transaction left open is not reused
                return reply
        except pymysql.err.MySQLError as e:
            code = e.args[0] if e.args and isinstance(e.args[0], int) else -1
            text = str(e.args[-1] if e.args else e)
            if code in DEFINITE_SERVER_ERRORS:
                return error(DEFINITE_SERVER_ERRORS[code], True, text)
            if isinstance(e, pymysql.err.OperationalError) and code >= 2000:
                # client-side: lost connection, timeout, server gone away
                name = "timed-out" if "timed out" in text else "connection-lost"
                return error(name, read_only or not sent, text)
            return error(f"mariadb-error-{code}", read_only or not sent, text)
        except (socket.timeout, TimeoutError):
            return error("timed-out", read_only or not sent, "timed out")
        except (OSError, Indefinite) as e:
            return error("connection-lost", read_only or not sent, str(e))
        finally:
            if not keep:
                self._drop(client, node)

    def _connection(self, client: str, node: str, deadline: float):
        """The connection of history client `client` to `node` (Jepsen's: one per client,
        reopened after any error). A connect costs ~70-100 ms on a loaded 2-core machine, more
        than a whole operation, so connections are kept between operations."""
        with self._lock:
            conn = self._conns.get((client, node))
        if conn is None:
            conn = self.db._connect(node, deadline)
            with self._lock:
                if self._closed:
                    conn.close()
                    raise NotSent("the client is closed")
                self._conns[(client, node)] = conn
        return conn

    def _drop(self, client: str, node: str) -> None:
        with self._lock:
            conn = self._conns.pop((client, node), None)
        if conn is not None:
            _close_quietly(conn)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._conns = list(self._conns.values()), {}
        for conn in conns:
            _close_quietly(conn)

    # ---- operations -------------------------------------------------------------------------

    def _perform(self, f: str, body: dict, execute, cur) -> dict:
        wl = self.db.workload
        if f == "read" and wl == "set":
            execute("SELECT v FROM splitbrain.elements")
            return ok("read", value=sorted(json.loads(v) for (v,) in cur.fetchall()))
        if f == "read":
            execute("SELECT v FROM splitbrain.registers WHERE k = %s", (self._key(body),))
            row = cur.fetchone()
            return ok("read", value=None if row is None else json.loads(row[0]))
        if f == "write":
            execute("INSERT INTO splitbrain.registers (k, v) VALUES (%s, %s) "
                    "ON DUPLICATE KEY UPDATE v = VALUES(v)",
                    (self._key(body), json.dumps(body["value"])))
            return ok("write")
        if f == "cas":
            n = execute("UPDATE splitbrain.registers SET v = %s WHERE k = %s AND v = %s",
                        (json.dumps(body["to"]), self._key(body), json.dumps(body["from"])))
            if n == 1:
                return ok("cas")
            return error("precondition-failed", True, f"value is not {body['from']!r}")
        if f == "add":
            execute("INSERT IGNORE INTO splitbrain.elements (v) VALUES (%s)",
                    (json.dumps(body["value"]),))
            return ok("add")
        if f == "txn":
            return self._txn(body["txn"], execute, cur)
        return error("not-supported", True, f"mariadb: no operation {f!r}")

    def _txn(self, txn: list, execute, cur) -> dict:
        """One transaction at the isolation level; a conflict at any point (1213) rolls it back:
        definite. The reads' values come from inside the transaction."""
        lists = self.db.workload == "txn-list-append"
        table = "splitbrain.lists" if lists else "splitbrain.txn_registers"
        for f, _, v in txn:
            if f != "r" and (not isinstance(v, int) or isinstance(v, bool)):
                return error("not-supported", True, "mariadb: written txn values are integers")
        execute(f"SET SESSION TRANSACTION ISOLATION LEVEL {self.isolation}")
        execute("START TRANSACTION")
        out = []
        for f, k, v in txn:
            key = json.dumps(k)
            if f == "r":
                execute(f"SELECT v FROM {table} WHERE k = %s", (key,))
                row = cur.fetchone()
                out.append([f, k, None if row is None else json.loads(row[0])])
            elif f == "append" and lists:
                execute(f"INSERT INTO {table} (k, v) VALUES (%s, JSON_ARRAY(%s)) "
                        f"ON DUPLICATE KEY UPDATE v = JSON_ARRAY_APPEND(v, '$', %s)",
                        (key, v, v))
                out.append([f, k, v])
            elif f == "w" and not lists:
                execute(f"INSERT INTO {table} (k, v) VALUES (%s, %s) "
                        f"ON DUPLICATE KEY UPDATE v = VALUES(v)", (key, json.dumps(v)))
                out.append([f, k, v])
            else:
                execute("ROLLBACK")
                return error("not-supported", True, f"micro-op {f!r} in {self.db.workload}")
        execute("COMMIT")
        return {"type": "txn_ok", "txn": out}

    @staticmethod
    def _key(body: dict) -> str:
        return "r" if body.get("key") is None else json.dumps(body["key"])


def _close_quietly(conn) -> None:
    """Close a PyMySQL connection without waiting on a peer that may be gone (no COM_QUIT
    round trip when the socket is already broken)."""
    try:
        conn._sock.settimeout(0.2)
        conn.close()
    except Exception:  # noqa: BLE001 - closing a broken connection
        pass
