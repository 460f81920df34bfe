"""Real databases (splitbrain/dbs): etcd and ZooKeeper as test targets.

Fast tier (CI): option checks, the etcd client's definite/indefinite classification against
fake servers, the data archive, and one short run per row of the README's table (each ~15-25 s:
3 nodes, 10-12 s of faults) on the netns backend, plus a loopback run. Slow tier: the other
workloads under every fault. Every run checks that it left no process and no namespace behind.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import REPO, require

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
RUN_TIMEOUT_S = 600      # docker: container start-ups under load take tens of seconds


def _have(db: str) -> bool:
    from splitbrain.dbs import get_db
    from splitbrain.dbs.base import DbMissing
    try:
        get_db(db).require_installed()
        return True
    except DbMissing:
        return False


def _need(db: str, backend: str = "netns") -> None:
    require(_have(db), f"{db} (apt-get install etcd-server etcd-client zookeeper)")
    if db == "zookeeper":
        try:
            import kazoo  # noqa: F401
        except ImportError:
            require(False, "kazoo (pip)")
    if backend == "netns":
        require(os.geteuid() == 0 and shutil.which("ip") is not None
                and shutil.which("iptables") is not None, "root with iproute2 and iptables")


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "splitbrain", *args], capture_output=True,
                          text=True, env=ENV, timeout=timeout, stdin=subprocess.DEVNULL)


def run_db(tmp_path: Path, *args: str) -> dict:
    """Run `splitbrain test --db ... --json`; return the summary, after checking that the run
    left nothing behind (its processes, its namespaces and bridge, its data directories)."""
    p = cli("test", *args, "--store", str(tmp_path / "store"), "--opt", "harness.reports=false",
            "--json", timeout=RUN_TIMEOUT_S)
    assert p.returncode in (0, 1), p.stderr[-3000:]
    summary = json.loads(p.stdout)
    run_dir = Path(summary["run_dir"])
    log = (run_dir / "splitbrain.log").read_text()
    pids = [int(x) for x in re.findall(r"started,? pid (\d+)", log)]
    assert pids or "container" in log, log
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid), f"pid {pid} outlived the run"
    assert_network_left_nothing(log)
    for node in (run_dir / "nodes").iterdir():
        assert not (node / "data").exists(), f"{node}/data was not archived"
        assert (node / "data.tar.gz").is_file() and (node / "node.log").is_file()
    assert "teardown:" in log
    assert "never probed for their leader" not in log    # the nemesis asks the database
    return summary


def assert_network_left_nothing(log: str) -> None:
    """The run whose splitbrain.log is `log` left no namespace or bridge (netns) and no
    container or network (docker) of its own; other runs' are none of its business."""
    m = re.search(r"bridge (sbr-[0-9a-f]+)", log)
    if m:
        run_id = m.group(1)[4:]
        ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert f"sb-{run_id}-" not in ns
        links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
        assert m.group(1) not in links
    m = re.search(r"docker: network splitbrain-([0-9a-f]+)", log)
    if m:
        import docker
        client = docker.from_env()
        label = f"io.splitbrain.run={m.group(1)}"
        assert not client.containers.list(all=True, filters={"label": label})
        assert not client.networks.list(filters={"label": label})


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return True


# The known-bad runs: four partitions of 2.5 s that each cut off one node (a stale read needs a
# cut-off follower while the majority writes: an isolated ZooKeeper leader is replaced only after
# syncLimit x tickTime = 2.5 s, so a partition of the leader rarely shows one), and 20 register
# values, so that a stale read rarely returns the current value by chance.
STALE_READ_OPTS = ("--opt", "harness.partition_shapes=one,halves",
                   "--opt", "harness.nemesis_interval_s=2.5", "--opt", "workload.value_max=20")


def _culprit(summary: dict) -> dict:
    lin = summary["results"]["children"]["linearizable"]
    assert lin["valid"] is False
    return lin["anomalies"][0]["details"]["op"]


# ---- options (no cluster) --------------------------------------------------------------------


@pytest.mark.parametrize("args,needle", [
    (["--db", "mysql"], "unknown database 'mysql'"),
    (["--db", "etcd", "--nemesis", "clock"], "libfaketime"),
    (["--db", "zookeeper", "--nemesis", "latency"], "no netem"),
    (["--db", "etcd", "--backend", "local", "--nemesis", "partition"], "no network faults"),
    (["--db", "etcd", "--opt", "reads=stale"], "choose from linearizable, serializable"),
    (["--db", "zookeeper", "--workload", "lin-kv"], "serves the workloads"),
    (["--db", "etcd", "--system", "raft"], "replaces --system"),
    (["--db", "etcd", "--backend", "sim"], "--db runs on netns, docker, local"),
    (["--db", "etcd", "--bug", "x"], "no bug switches"),
])
def test_bad_db_options_are_one_line_usage_errors(args, needle):
    p = cli("test", *args)
    assert p.returncode == 2, p.stderr
    assert needle in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_dbs_command_lists_workloads_options_and_known_bad_modes():
    p = cli("dbs", "--json")
    assert p.returncode == 0, p.stderr
    dbs = {d["name"]: d for d in json.loads(p.stdout)}
    assert set(dbs) >= {"etcd", "zookeeper"}
    assert "reads=serializable" in dbs["etcd"]["known_bad"]
    assert "reads=plain" in dbs["zookeeper"]["known_bad"]
    assert "append-log" in dbs["zookeeper"]["workloads"]
    assert "clock" in dbs["etcd"]["refused_faults"]
    text = cli("dbs")
    assert text.returncode == 0 and "etcd" in text.stdout and "reads=plain" in text.stdout


def test_missing_packages_name_the_apt_line(monkeypatch):
    from splitbrain.dbs.base import DbMissing
    from splitbrain.dbs.etcd import Etcd
    monkeypatch.setattr(Etcd, "BINARIES", ("no-such-etcd-binary",))
    with pytest.raises(DbMissing, match="apt-get install etcd-server etcd-client"):
        Etcd.require_installed()


# ---- the etcd client's classification, against fake servers -----------------------------------


class FakeServer:
    """A TCP server on 127.0.0.1 that reads a request and then does `behaviour`."""

    def __init__(self, behaviour: str):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.behaviour = behaviour
        self.conns: list[socket.socket] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            c.recv(65536)
            if self.behaviour == "reset":
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                c.close()
            elif self.behaviour.startswith("answer:"):
                body = self.behaviour[len("answer:"):].encode()
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                          b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                c.close()
            # "silent": never answer

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


def _etcd_client(port: int, workload: str = "register", **opts):
    from splitbrain.dbs.base import DbNode
    from splitbrain.dbs.etcd import Etcd
    db = Etcd([DbNode("n1", 1, "127.0.0.1", Path("/nonexistent"))], opts, workload=workload)
    db.PORTS = {"client": port, "peer": 0}
    return db.client()


def test_etcd_client_refused_connection_is_a_definite_fail():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()     # nothing listens: connection refused
    c = _etcd_client(port)
    for body in ({"type": "write", "value": 1}, {"type": "read"}):
        r = c.invoke("n1", body, 1.0)
        assert r["type"] == "error" and r["definite"] is True and r["error"] == "node-down"


@pytest.mark.parametrize("behaviour,name", [("silent", "timed-out"), ("reset", "connection-lost")])
def test_etcd_client_failure_after_sending_is_indefinite_for_writes_only(behaviour, name):
    srv = FakeServer(behaviour)
    try:
        c = _etcd_client(srv.port)
        t0 = time.monotonic()
        w = c.invoke("n1", {"type": "write", "value": 1}, 0.5)
        assert time.monotonic() - t0 < 2.0          # the deadline holds
        assert w["type"] == "error" and w["definite"] is False and w["error"] == name
        cas = c.invoke("n1", {"type": "cas", "from": 1, "to": 2}, 0.5)
        assert cas["definite"] is False
        r = c.invoke("n1", {"type": "read"}, 0.5)
        assert r["type"] == "error" and r["definite"] is True    # a failed read changed nothing
    finally:
        srv.close()


def test_etcd_leader_changed_is_indefinite_and_a_failed_compare_definite():
    srv = FakeServer('answer:{"error":"etcdserver: leader changed","code":14,'
                     '"message":"etcdserver: leader changed"}')
    try:
        w = _etcd_client(srv.port).invoke("n1", {"type": "write", "value": 1}, 1.0)
        assert w["error"] == "leader-changed" and w["definite"] is False
    finally:
        srv.close()
    srv = FakeServer('answer:{"header":{"revision":"3"}}')      # succeeded: false is omitted
    try:
        c = _etcd_client(srv.port).invoke("n1", {"type": "cas", "from": 1, "to": 2}, 1.0)
        assert c["error"] == "precondition-failed" and c["definite"] is True
    finally:
        srv.close()


def test_archive_keeps_data_and_drops_preallocated_zero_tails(tmp_path):
    import tarfile
    from splitbrain.dbs.base import Database, DbNode
    node = DbNode("n1", 1, "127.0.0.1", tmp_path / "n1")
    db = Database([node])
    db.setup_node("n1")
    (node.data / "wal").mkdir()
    (node.data / "wal" / "seg.wal").write_bytes(b"records" + bytes(3 << 20))
    (node.data / "wal" / "0.tmp").write_bytes(bytes(2 << 20))
    (node.data / "small").write_bytes(b"x\0\0")
    out = db.archive("n1")
    assert not node.data.exists() and out == node.dir / "data.tar.gz"
    with tarfile.open(out) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert tar.extractfile(members["data/wal/seg.wal"]).read() == b"records"
        assert members["data/wal/seg.wal"].pax_headers["splitbrain.size"] == str(7 + (3 << 20))
        assert members["data/wal/0.tmp"].size == 0
        assert tar.extractfile(members["data/small"]).read() == b"x\0\0"


# ---- real clusters: the README's table -------------------------------------------------------


def test_etcd_register_under_partition_kill_pause_is_valid(tmp_path):
    _need("etcd")
    s = run_db(tmp_path, "--db", "etcd", "--workload", "register", "--time-limit", "12",
               "--nemesis", "partition,kill,pause,partition-leader", "--rate", "150")
    assert s["valid"] is True, json.dumps(s["results"])[:3000]
    stats = s["results"]["children"]["stats"]["stats"]
    assert s["history_ops"] > 600, stats
    faults = [n for n in s["notes"] if "nemesis" in n]
    assert faults


def test_etcd_serializable_reads_under_partitions_are_caught(tmp_path):
    _need("etcd")
    s = run_db(tmp_path, "--db", "etcd", "--workload", "register", "--time-limit", "20",
               "--nemesis", "partition", "--opt", "reads=serializable", *STALE_READ_OPTS)
    assert s["valid"] is False
    assert _culprit(s)["f"] == "read"       # the stale read is the op named


def test_zookeeper_register_with_sync_reads_under_kill_partition_is_valid(tmp_path):
    _need("zookeeper")
    s = run_db(tmp_path, "--db", "zookeeper", "--workload", "register", "--time-limit", "12",
               "--nemesis", "partition,kill", "--rate", "150")
    assert s["valid"] is True, json.dumps(s["results"])[:3000]
    assert s["history_ops"] > 600


def test_zookeeper_plain_reads_under_partitions_are_caught(tmp_path):
    _need("zookeeper")
    s = run_db(tmp_path, "--db", "zookeeper", "--workload", "register", "--time-limit", "20",
               "--nemesis", "partition", "--opt", "reads=plain", *STALE_READ_OPTS)
    assert s["valid"] is False
    assert _culprit(s)["f"] == "read"


def test_etcd_loopback_kv_with_kills_is_valid(tmp_path):
    _need("etcd", backend="local")
    s = run_db(tmp_path, "--db", "etcd", "--backend", "local", "--workload", "kv",
               "--time-limit", "6", "--nemesis", "kill,pause")
    assert s["valid"] is True, json.dumps(s["results"])[:3000]
    test = json.loads((Path(s["run_dir"]) / "test.json").read_text())
    assert test["backend"] == "local" and test["db"] == "etcd" and test["nodes"] == 3


# ---- slow: the other workloads ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("db,workload", [("etcd", "kv"), ("etcd", "set"),
                                         ("etcd", "append-log"), ("zookeeper", "kv"),
                                         ("zookeeper", "set"), ("zookeeper", "append-log")])
def test_workloads_under_partition_kill_pause_are_valid(tmp_path, db, workload):
    _need(db)
    s = run_db(tmp_path, "--db", db, "--workload", workload, "--time-limit", "20",
               "--nemesis", "partition,kill,pause", "--rate", "100")
    assert s["valid"] is True, json.dumps(s["results"])[:3000]
    oks = s["results"]["children"]["stats"]["stats"]
    assert s["history_ops"] > 1000, oks


# ---- etcd's lock under a process pause (Jepsen's etcd 3.4 finding) -----------------------------


def test_etcd_lock_is_not_a_mutex_when_the_holders_node_pauses(tmp_path):
    """Holder A renews its lease through n1. While n1 runs, B cannot take the lock (its acquire
    times out, indefinite); once n1 is paused for longer than the lease's TTL, the lease
    expires and etcd gives the lock to B although A never released it: what Jepsen reported
    for etcd 3.4 (locks are leases, not mutexes, under process pauses)."""
    _need("etcd", backend="local")
    from splitbrain.dbs.cluster import make_db_backend
    b = make_db_backend("local", "etcd", ["n1", "n2", "n3"], tmp_path, options={},
                        workload="mutex")
    try:
        b.start()
        c = b.dbclient
        a = c.invoke("n1", {"type": "acquire"}, 3.0, "c1")
        assert a["type"] == "acquire_ok", a
        blocked = c.invoke("n2", {"type": "acquire"}, 1.0, "c2")
        assert blocked["type"] == "error" and blocked["definite"] is False   # excluded: timed out
        b.pause("n1")
        time.sleep(2 * 2 + 1.0)             # two lease TTLs (lease_ttl_s=2) and a margin
        stolen = c.invoke("n2", {"type": "acquire"}, 3.0, "c3")
        assert stolen["type"] == "acquire_ok", stolen
        assert "c1" in c._held              # A still believes it holds the lock
        b.resume("n1")
    finally:
        b.teardown()
    assert not b.alive()


# ---- docker: the database's image (offline base + its Debian packages) -------------------------


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.parametrize("db", ["etcd", "zookeeper"])
def test_db_in_containers_under_partition_kill_pause_is_valid(tmp_path, db):
    from conftest import require_node_image
    require_node_image()
    s = run_db(tmp_path, "--db", db, "--backend", "docker", "--workload", "register",
               "--time-limit", "15", "--nemesis", "partition,kill,pause", "--rate", "100")
    assert s["valid"] is True, json.dumps(s["results"])[:3000]


def test_loopback_database_processes_die_with_a_killed_harness(tmp_path):
    """SIGKILL of the harness (no teardown runs): the etcd processes, recorded in pids.jsonl,
    die with it (PR_SET_PDEATHSIG), so nothing outlives even a harness killed outright."""
    _need("etcd", backend="local")
    proc = subprocess.Popen([sys.executable, "-m", "splitbrain", "test", "--db", "etcd",
                             "--backend", "local", "--time-limit", "30", "--store",
                             str(tmp_path / "store")],
                            # its run registration (harness/ownership.py) stays in the test's
                            # own folder: a harness killed outright never removes it
                            env={**ENV, "SPLITBRAIN_STATE_DIR": str(tmp_path / "state")},
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(pids) < 3:
            time.sleep(0.2)
            for f in (tmp_path / "store").glob("*/*/pids.jsonl"):
                pids = [json.loads(line)["pid"] for line in f.read_text().splitlines() if line]
        assert len(pids) == 3, "the run did not start its 3 nodes"
        assert all(Path(f"/proc/{p}").exists() for p in pids)
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() and not _zombie(p)
                                              for p in pids):
        time.sleep(0.1)
    alive = [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]
    for p in alive:             # never leave them behind, even when the test fails
        os.kill(p, 9)
    assert not alive, f"etcd processes {alive} outlived the killed harness"
