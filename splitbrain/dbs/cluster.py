"""Real database clusters as harness backends: the same cluster operations as every backend
(start, kill, restart, pause, resume, partition, heal, loss, teardown; harness/backends/base.py),
with database processes instead of node-protocol programs.

Four places to run them (`--backend`):
  ssh      each node on a remote host (harness/backends/ssh.py: SshDbNodes), iptables in a chain
           of the run's own on each host; the adapter's files are uploaded, its packages checked
  netns    (the default for --db) each node in its own network namespace with its own address on
           a bridge (harness/backends/netns.py makes and removes them); partitions and loss are
           iptables rules in each namespace, so they cut the database's own peer traffic
  docker   each node a container of the database's image (dbs/image.py: the offline base image
           plus the database's Debian packages, cached per database), iptables inside it
  local    the loopback variant: processes on this machine on 127.R.S.(10+K), no network faults
           (kill, pause and restart only): quick runs without root

How clients run: the harness's ClientPool sends Maelstrom-shaped request bodies on the loop thread
(`send_client`); here each is handed to a thread pool, where the database's DbClient performs it
against the node with the harness's client timeout as its deadline, and the reply body comes back
to the loop thread (`on_client_message`). A worker's thread is never blocked past that deadline.

Start-up: nodes set up (config, ids, a wiped data directory), launched, every node probed, then
`cluster_ready()` (a write acknowledged by the cluster) within START_TIMEOUT_S; the time from the
first launch to that write is `ready_s` (benchmarks/bench_dbs.py). A restart launches the same
command on the kept data directory and waits (at most RESTART_PROBE_S) for the server to answer;
a node that cannot rejoin yet (cut off by a partition) is still restarted.

Teardown (always, in `finally`): clients closed, processes killed, namespaces or containers
removed, then each node's data directory compressed into nodes/<n>/data.tar.gz and deleted (the
node log stays). Every database process is recorded in the run's pids.jsonl (and the netns and
docker backends record their namespaces and containers with the owner), so `splitbrain cleanup`
removes what a harness killed outright left (harness/ownership.py); loopback processes also die
with the harness (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from ..harness.backends.process_group import ProcessGroupNodes
from ..harness.backends.tcp_cluster import TcpClusterBackend
from ..harness.workloads import NODE_DOWN
from .base import Database, DbNode

START_TIMEOUT_S = 60.0
PROBE_INTERVAL_S = 0.05
RESTART_PROBE_S = 10.0
CLIENT_THREADS_MAX = 64
CLIENT_DEADLINE_MARGIN_S = 0.1
CLIENT_DEADLINE_MIN_S = 0.05
# Client outcomes that carry no answer of the database (nothing came back to log).
NO_ANSWER = frozenset({NODE_DOWN, "timed-out", "connection-lost", "client-crashed"})


class DbCluster:
    """The database side of a backend (mixed in before a TcpClusterBackend subclass)."""

    db: Database
    client_timeout_s: float = 1.0
    probes_leader = True        # the nemesis may ask leader() (the database's own word)

    def _db_init(self, db_cls: type[Database], hosts: dict[str, str], options: dict,
                 workload: str, run_id: str) -> None:
        nodes = [DbNode(n, k + 1, hosts[n], self.node_dir(n)) for k, n in enumerate(self.nodes)]
        self.db = db_cls(nodes, options, workload=workload, run_id=run_id, log=self._log)
        self.addr = {n: self.db.client_addr(n) for n in self.nodes}
        self.dbclient = None
        self._exec: ThreadPoolExecutor | None = None
        self.ready_s: float | None = None

    # ---- lifecycle ----------------------------------------------------------------------------

    def supports(self, ability: str) -> bool:
        return ability in ("kill", "pause", "partition", "network")

    def start(self) -> None:
        self.loop.start()
        self._started_infra = True
        self._setup_infra()
        for n in self.nodes:
            self.db.setup_node(n)
        t0 = time.monotonic()
        for n in self.nodes:
            self._launch(n)
            self._install_chain(n)
        deadline = t0 + START_TIMEOUT_S
        pending = list(self.nodes)
        while pending:
            pending = [n for n in pending if not self.db.probe(n, 0.5)]
            for n in pending:
                if not self._process_alive(n):
                    raise RuntimeError(f"{self.db.name} on {n} exited at start (see "
                                       f"{self.node_dir(n) / 'node.log'})")
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"{self.db.name} on {pending[0]} did not answer within "
                                   f"{START_TIMEOUT_S:.0f} s (see "
                                   f"{self.node_dir(pending[0]) / 'node.log'})")
            if pending:
                time.sleep(PROBE_INTERVAL_S)
        while not self.db.cluster_ready(1.0):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the {self.db.name} cluster did not acknowledge a write "
                                   f"within {START_TIMEOUT_S:.0f} s (see nodes/*/node.log)")
            time.sleep(PROBE_INTERVAL_S)
        self.ready_s = time.monotonic() - t0
        self.dbclient = self.db.client()
        self.dbclient.open()
        if hasattr(self.dbclient, "wait_connected"):
            self.dbclient.wait_connected(5.0)
        self._exec = ThreadPoolExecutor(CLIENT_THREADS_MAX, thread_name_prefix="splitbrain-db")
        self._log(f"{self.db.name}: {len(self.nodes)} nodes ready in {self.ready_s:.2f} s")

    def restart(self, node: str) -> None:
        if self._process_alive(node):
            return
        self._launch(node)
        self._install_chain(node)
        deadline = time.monotonic() + RESTART_PROBE_S
        while not self.db.probe(node, 0.5) and time.monotonic() < deadline:
            if not self._process_alive(node):
                self._log(f"{node}: {self.db.name} exited after its restart (see node.log)")
                return
            time.sleep(PROBE_INTERVAL_S)

    def kill(self, node: str, lose_unsynced: bool = False) -> dict:
        self._kill_process(node)
        self._log(f"{node}: killed")
        return {"node": node}

    def set_network(self, loss: float = 0.0, latency_ms: tuple[int, int] = (0, 0),
                    duplicate: float = 0.0) -> None:
        """Loss by iptables in each node's stack. Latency and duplication cannot be made for a
        database (no netem here; its peer traffic never passes through the harness): refused,
        never silently ignored."""
        if tuple(latency_ms) != (0, 0) or duplicate:
            raise RuntimeError(f"{self.db.name}: latency and duplication are not available")
        assert 0.0 <= loss <= 1.0
        self.loss = loss
        for n in self.nodes:
            if self._process_alive(n):
                self._apply_rules(n)

    def set_clock(self, node: str, offset_ms: int) -> None:
        raise RuntimeError(self.db.REFUSED_FAULTS.get("clock", "no clock faults"))

    def status(self, node: str, timeout_s: float = 2.0) -> dict | None:
        return None

    def leader(self) -> str | None:
        return self.db.leader()

    # ---- client operations --------------------------------------------------------------------

    def send_client(self, client: str, node: str, body: dict, op: int | None = None) -> bool:
        """LOOP THREAD: hand the request to a client thread; the reply comes back on the loop.

        Message log (messages.jsonl): the request client -> node is "lost" when it never left
        (node-down), else "delivered"; the database's answer node -> client is logged when
        there is one (not after a timeout or a lost connection)."""
        if self._exec is None or self._torn_down:
            self.stats["refused"] += 1
            return False
        self.stats["client"] += 1
        mid, sent = self.msglog.send()
        self.msglog.hold(mid, sent, client, node, body, op=op)
        # The client's own deadline ends a little before the pool's timeout, so that its answer
        # (a definite fail for a read) normally arrives before the pool records `info`.
        timeout_s = max(CLIENT_DEADLINE_MIN_S, self.client_timeout_s - CLIENT_DEADLINE_MARGIN_S)
        self._exec.submit(self._perform, client, node, body, timeout_s, mid, op)
        return True

    def _perform(self, client: str, node: str, body: dict, timeout_s: float, mid: int,
                 op: int | None) -> None:
        try:
            reply = self.dbclient.invoke(node, body, timeout_s, client)
        except Exception as e:  # noqa: BLE001 - an adapter bug: the op may have happened
            reply = {"type": "error", "error": "client-crashed", "definite": False,
                     "text": f"{type(e).__name__}: {e}"}
        reply["in_reply_to"] = body.get("msg_id")

        def deliver() -> None:
            err = reply.get("error") if reply.get("type") == "error" else None
            self.msglog.release(mid, "lost" if err == NODE_DOWN else "delivered")
            if err not in NO_ANSWER:
                rid, sent = self.msglog.send()
                self.msglog.record(rid, sent, node, client, reply, "delivered", op=op)
            if self.on_client_message is not None:
                self.on_client_message(node, client, reply)
        try:
            self.loop.call_soon(deliver)
        except OSError:
            pass     # the loop is gone (teardown): the pool's timeout already recorded it

    # ---- teardown -----------------------------------------------------------------------------

    def teardown(self) -> None:
        if self._torn_down:
            return
        self._torn_down = True
        try:
            if self._exec is not None:
                self._exec.shutdown(wait=False, cancel_futures=True)
            if self.dbclient is not None:
                self.dbclient.close()
            self.loop.stop()
        finally:
            t0 = time.monotonic()
            if self._started_infra:
                self._teardown_infra()
            t1 = time.monotonic()
            self._archive_all()
            self._log(f"teardown: nodes and network removed in {t1 - t0:.2f} s, data "
                      f"archived in {time.monotonic() - t1:.2f} s")
            self._fail_controls()

    def _archive_all(self) -> None:
        """Archive every node's data directory, in parallel (gzip releases the GIL)."""
        def one(n: str) -> None:
            try:
                self.db.archive(n)
            except OSError as e:
                self._log(f"{n}: could not archive the data directory: {e}")
        threads = [threading.Thread(target=one, args=(n,), name=f"splitbrain-archive-{n}")
                   for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
            self._fail_controls()


# ---- loopback --------------------------------------------------------------------------------


class LoopbackDb(DbCluster, ProcessGroupNodes, TcpClusterBackend):
    """Database processes on loopback addresses 127.R.S.(10+K): no partitions, no loss."""

    name = "local"

    def __init__(self, nodes: Sequence[str], run_dir, db_cls, options, workload: str, *,
                 logger=None):
        super().__init__(nodes, run_dir, in_house=False, logger=logger)
        rng = random.Random()
        self.id = f"{rng.randrange(16 ** 4):04x}"
        base = f"127.{rng.randrange(1, 255)}.{rng.randrange(0, 256)}"
        hosts = {n: f"{base}.{10 + k}" for k, n in enumerate(self.nodes)}
        self._db_init(db_cls, hosts, options, workload, self.id)
        self.procs: dict[str, subprocess.Popen] = {}

    def supports(self, ability: str) -> bool:
        return ability in ("kill", "pause")

    def _setup_infra(self) -> None:
        pass

    def _launch(self, n: str) -> None:
        """Start the node ON THE LOOP THREAD, which lives as long as the run: the process gets
        PR_SET_PDEATHSIG (it dies with that thread, so with the harness), and is recorded in
        pids.jsonl for `splitbrain cleanup` (harness/ownership.py)."""
        self.loop.call(lambda: self._spawn(n))
        self._log(f"{n}: {self.db.name} started, pid {self.procs[n].pid}")

    def _spawn(self, n: str) -> None:
        from ..harness.ownership import ProcessLedger, pdeathsig_launch
        assert n not in self.procs or self.procs[n].poll() is not None, f"{n} is running"
        argv, preexec = pdeathsig_launch(self.db.command(n))
        with open(self.node_dir(n) / "node.log", "ab") as out:
            self.procs[n] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                             stderr=out, cwd=self.node_dir(n),
                                             start_new_session=True, preexec_fn=preexec)
        ProcessLedger(self.run_dir).add(n, self.procs[n].pid)

    def _install_chain(self, node: str) -> None:
        pass

    def _apply_rules(self, node: str) -> None:
        if self.loss or self.grudge:
            raise RuntimeError("the loopback variant has no network faults (use --backend netns)")

    def partition(self, grudge) -> None:
        raise RuntimeError("the loopback variant cannot partition (use --backend netns)")

    def heal(self) -> None:
        self.grudge = {}

    def _teardown_infra(self) -> None:
        for n in self.nodes:
            self._kill_process(n)

    def alive(self) -> list[int]:
        return [p.pid for p in self.procs.values() if p.poll() is None]


# ---- network namespaces ----------------------------------------------------------------------


def _netns_class():
    from ..harness.backends.netns import NetnsBackend

    class NetnsDb(DbCluster, NetnsBackend):
        """Database processes in network namespaces (harness/backends/netns.py)."""

        def __init__(self, nodes, run_dir, db_cls, options, workload: str, *, logger=None):
            NetnsBackend.__init__(self, nodes, lambda n, d, data: [], run_dir, in_house=False,
                                  logger=logger)
            hosts = {n: a[0] for n, a in self.addr.items()}
            self._db_init(db_cls, hosts, options, workload, self.id)

        def _argv(self, n: str) -> list[str]:
            return self.db.command(n)

        def _teardown_infra(self) -> None:
            NetnsBackend._teardown_infra(self)

    return NetnsDb


# ---- SSH hosts ---------------------------------------------------------------------------------


def _ssh_class():
    from ..harness.backends.ssh import SshDbNodes
    from ..harness.backends.tcp_cluster import TcpClusterBackend

    class SshDb(DbCluster, SshDbNodes, TcpClusterBackend):
        """Database processes on SSH hosts (harness/backends/ssh.py): the adapter unchanged,
        its files uploaded and its paths rewritten to the host's copies."""

        name = "ssh"

        def __init__(self, nodes, run_dir, db_cls, options, workload: str, *, hosts,
                     logger=None):
            from ..harness.backends.ssh_hosts import HostSpec
            TcpClusterBackend.__init__(self, nodes, run_dir, in_house=False, logger=logger)
            specs = {n: h if isinstance(h, HostSpec) else HostSpec.from_json(h)
                     for n, h in hosts.items()}
            missing = [n for n in self.nodes if n not in specs]
            if missing:
                raise RuntimeError(f"no host for node {missing[0]}")
            self._ssh_init(specs)
            self._db_init(db_cls, {n: s.address for n, s in specs.items()}, options, workload,
                          self.id)

    return SshDb


def make_db_backend(backend: str, db: str, nodes: Sequence[str], run_dir, *, options: dict,
                    workload: str, logger: Callable[[str], None] | None = None,
                    hosts: dict | None = None):
    """The backend running database `db` on `backend` (netns, docker, local = loopback, ssh =
    remote hosts: `hosts` node -> HostSpec or its JSON). RuntimeError with a one-line reason
    when it cannot run here."""
    from . import get_db
    db_cls = get_db(db)
    if backend == "ssh":          # the packages are checked on each host at start
        if not hosts:
            raise RuntimeError("the ssh backend needs hosts: --hosts hosts.toml")
        return _ssh_class()(nodes, run_dir, db_cls, options, workload, hosts=hosts,
                            logger=logger)
    db_cls.require_installed()
    if backend == "local":
        return LoopbackDb(nodes, run_dir, db_cls, options, workload, logger=logger)
    if backend == "netns":
        from ..harness.backends.netns import NetnsError
        try:
            return _netns_class()(nodes, run_dir, db_cls, options, workload, logger=logger)
        except NetnsError as e:
            raise RuntimeError(str(e)) from None
    if backend == "docker":
        from .docker_db import make_docker_db
        return make_docker_db(nodes, run_dir, db_cls, options, workload, logger=logger)
    raise RuntimeError(f"--backend {backend}: a database runs on netns, docker or local")
