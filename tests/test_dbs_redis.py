"""Redis 7 with Sentinel (splitbrain/dbs/redis.py): issue 17's Redis part.

Fast tier (CI): option checks, the client's definite/indefinite classification against fake RESP
servers (a Sentinel and a primary that answer what each test needs), a healthy run (VALID), and
Jepsen's scenario once: the primary isolated by a partition while its clients keep writing, a
Sentinel failover, the heal: acknowledged writes lost (INVALID, `lost-append` named). Slow tier:
the same scenario over 10 seeds for each of set / append-log (the fraction found is printed and
must be a majority), the counter, `wait=2` (no acknowledged write lost; what WAIT could not
confirm may be read and then lost), `min-replicas-to-write` (definite refusals, writes still
lost), append-log and counter on loopback under kill and pause, and the scenario in containers.
Every run checks that nothing of it is left: the node wrappers and both Redis processes of every
node (their pids from node.log), the namespaces, the data directories.
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
from test_dbs import assert_network_left_nothing

ENV = {**os.environ, "PYTHONPATH": str(REPO)}
RUN_TIMEOUT_S = 600

# Jepsen's scenario: partition-leader isolates the node the Sentinels name as primary, every 5 s
# (5 s cut off, 5 s healed): a failover happens within ~2-3 s of each cut (down-after 1000 ms).
FAILOVER_ARGS = ("--nemesis", "partition-leader", "--nemesis-interval", "5")


def _need(netns: bool = True) -> None:
    from splitbrain.dbs.base import DbMissing
    from splitbrain.dbs.redis import Redis
    try:
        Redis.require_installed()
        have = True
    except DbMissing:
        have = False
    require(have, "redis (apt-get install redis-server redis-sentinel)")
    try:
        import redis  # noqa: F401
    except ImportError:
        require(False, "redis-py (pip install redis)")
    if netns:
        require(os.geteuid() == 0 and shutil.which("ip") is not None
                and shutil.which("iptables") is not None, "root with iproute2 and iptables")


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "splitbrain", *args], capture_output=True,
                          text=True, env=ENV, timeout=timeout, stdin=subprocess.DEVNULL)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] != "Z"
    except OSError:
        return False


def run_redis(tmp_path: Path, *args: str) -> dict:
    """Run `splitbrain test --db redis ... --json`; the summary, after checking that the run left
    nothing behind: no wrapper (pids in the log), no redis-server or redis-sentinel (their pids
    from each node.log), no process with its working directory in the run, no namespace or
    bridge of the run, no container or network of the run (docker), every data directory
    archived."""
    p = cli("test", "--db", "redis", *args, "--store", str(tmp_path / "store"),
            "--opt", "harness.reports=false", "--json", timeout=RUN_TIMEOUT_S)
    assert p.returncode in (0, 1), p.stderr[-3000:]
    summary = json.loads(p.stdout)
    run_dir = Path(summary["run_dir"])
    log = (run_dir / "splitbrain.log").read_text()
    assert "teardown:" in log
    in_docker = "docker: network" in log    # pids in node.log are the containers' own then
    wrappers = [int(x) for x in re.findall(r"started,? pid (\d+)", log)]
    assert wrappers or in_docker, log
    servers = []
    for node in sorted((run_dir / "nodes").iterdir()):
        node_log = (node / "node.log").read_text(errors="replace")
        roles = set(re.findall(r"^\d+:([XSMC]) ", node_log, re.M))
        assert "X" in roles and roles & {"S", "M"}, f"{node}: no sentinel or no server started"
        if not in_docker:
            servers += [int(x) for x in set(re.findall(r"^(\d+):[XSMC] ", node_log, re.M))]
        assert not (node / "data").exists(), f"{node}/data was not archived"
        assert (node / "data.tar.gz").is_file()
    left = [pid for pid in wrappers + servers if _alive(pid)]
    assert not left, f"processes {left} outlived the run"
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cwd = os.readlink(f"/proc/{entry}/cwd")
            except OSError:
                continue
            assert not cwd.startswith(str(run_dir)), f"pid {entry} still runs in {cwd}"
    assert_network_left_nothing(log)
    return summary


def _checker(summary: dict, name: str) -> dict:
    return summary["results"]["children"][name]


# ---- options (no cluster) --------------------------------------------------------------------


@pytest.mark.parametrize("args,needle", [
    (["--opt", "wait=-1"], "wait must be >= 0"),
    (["--opt", "wait=two"], "wait must be an integer"),
    (["--opt", "appendonly=maybe"], "choose from yes, no"),
    (["--opt", "down-after-milliseconds=0"], "must be >= 1"),
    (["--opt", "replicas=2"], "redis has no option 'replicas'"),
    (["--workload", "mutex"], "serves the workloads"),
    (["--nemesis", "clock"], "monotonic clock"),
])
def test_bad_redis_options_are_one_line_usage_errors(args, needle):
    p = cli("test", "--db", "redis", *args)
    assert p.returncode == 2, p.stderr
    assert needle in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_dbs_lists_redis_with_its_options_and_known_bad_default():
    p = cli("dbs", "--json")
    assert p.returncode == 0, p.stderr
    r = {d["name"]: d for d in json.loads(p.stdout)}["redis"]
    assert r["packages"] == ["redis-server", "redis-sentinel"]
    assert set(r["workloads"]) >= {"register", "set", "append-log", "counter"}
    assert {"wait", "min-replicas-to-write", "down-after-milliseconds",
            "failover-timeout"} <= set(r["options"])
    assert any("lost" in v for v in r["known_bad"].values())


def test_configs_name_primary_replicas_and_sentinels(tmp_path):
    from splitbrain.dbs.base import DbNode
    from splitbrain.dbs.redis import Redis
    nodes = [DbNode(f"n{k}", k, f"10.0.0.{k}", tmp_path / f"n{k}") for k in (1, 2, 3)]
    db = Redis(nodes, {"min-replicas-to-write": 1, "down-after-milliseconds": 700}, run_id="ab")
    for n in ("n1", "n2", "n3"):
        db.setup_node(n)
    r1 = (tmp_path / "n1" / "redis.conf").read_text()
    r2 = (tmp_path / "n2" / "redis.conf").read_text()
    assert "replicaof" not in r1 and "replicaof 10.0.0.1 6379" in r2
    assert "min-replicas-to-write 1" in r2 and "bind 10.0.0.2" in r2
    s3 = (tmp_path / "n3" / "sentinel.conf").read_text()
    assert "sentinel monitor splitbrain 10.0.0.1 6379 2" in s3
    assert "sentinel down-after-milliseconds splitbrain 700" in s3
    assert s3.count("known-sentinel") == 2 and s3.count("known-replica") == 2
    assert f"sentinel myid {db.sentinel_id('n3')}" in s3
    assert len({db.sentinel_id(n) for n in ("n1", "n2", "n3")}) == 3
    argv = db.command("n2")
    assert argv[:2] == ["bash", "-c"] and argv[-2:] == [str(tmp_path / "n2" / "sentinel.conf"),
                                                        str(tmp_path / "n2" / "redis.conf")]


# ---- the client's classification, against fake RESP servers -----------------------------------


def _bulk(s: str) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(s), s.encode())


class FakeResp:
    """A TCP server on 127.0.0.1 answering each command by `answer(argv) -> bytes or None`
    (None: never answer). Records the commands it got."""

    def __init__(self, answer):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        self.got: list[list[str]] = []
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)
            threading.Thread(target=self._conn, args=(c,), daemon=True).start()

    def _conn(self, c: socket.socket) -> None:
        f = c.makefile("rb")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                n = int(line[1:])
                argv = []
                for _ in range(n):
                    size = int(f.readline()[1:])
                    argv.append(f.read(size + 2)[:-2].decode())
                self.got.append(argv)
                out = self.answer(argv)
                if out is not None:
                    c.sendall(out)
        except (OSError, ValueError):
            return

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


def _client(primary_port: int, sentinel_port: int, workload: str = "register", **opts):
    from splitbrain.dbs.base import DbNode
    from splitbrain.dbs.redis import Redis
    db = Redis([DbNode("n1", 1, "127.0.0.1", Path("/nonexistent"))], opts, workload=workload)
    db.PORTS = {"client": primary_port, "sentinel": sentinel_port}
    return db.client()


def _sentinel_naming(port: int) -> FakeResp:
    return FakeResp(lambda argv: b"*2\r\n" + _bulk("127.0.0.1") + _bulk(str(port)))


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_sentinel_or_primary_is_a_definite_node_down():
    dead = _free_port()
    c = _client(dead, dead)
    for body in ({"type": "write", "value": 1}, {"type": "read"}):
        r = c.invoke("n1", body, 1.0)
        assert r["type"] == "error" and r["definite"] is True and r["error"] == "node-down", r
    sentinel = _sentinel_naming(dead)               # the primary it names refuses connections
    try:
        r = _client(dead, sentinel.port).invoke("n1", {"type": "write", "value": 1}, 1.0)
        assert r["error"] == "node-down" and r["definite"] is True
    finally:
        sentinel.close()


def test_silent_sentinel_and_sentinel_without_primary_are_definite():
    silent = FakeResp(lambda argv: None)
    empty = FakeResp(lambda argv: b"*-1\r\n")
    try:
        t0 = time.monotonic()
        r = _client(_free_port(), silent.port).invoke("n1", {"type": "write", "value": 1}, 2.0)
        assert time.monotonic() - t0 < 1.0          # a Sentinel gets SENTINEL_QUERY_MAX_S
        assert r["error"] == "sentinel-timed-out" and r["definite"] is True
        r = _client(_free_port(), empty.port).invoke("n1", {"type": "write", "value": 1}, 1.0)
        assert r["error"] == "no-primary" and r["definite"] is True
    finally:
        silent.close()
        empty.close()


def test_primary_silent_after_the_write_is_indefinite_for_writes_only():
    primary = FakeResp(lambda argv: None)
    sentinel = _sentinel_naming(primary.port)
    try:
        c = _client(primary.port, sentinel.port)
        t0 = time.monotonic()
        w = c.invoke("n1", {"type": "write", "value": 1}, 0.5)
        assert time.monotonic() - t0 < 1.5          # the deadline holds
        assert w["error"] == "timed-out" and w["definite"] is False
        r = c.invoke("n1", {"type": "read"}, 0.5)
        assert r["error"] == "timed-out" and r["definite"] is True
        assert ["SET", "r", "1"] in primary.got
    finally:
        primary.close()
        sentinel.close()


@pytest.mark.parametrize("answer,definite", [
    ("READONLY You can't write against a read only replica.", True),
    ("NOREPLICAS Not enough good replicas to write.", True),
    ("LOADING Redis is loading the dataset in memory", True),
    ("ERR something unexpected", False),
])
def test_error_answers_are_definite_only_when_they_prove_nothing_happened(answer, definite):
    primary = FakeResp(lambda argv: b"-" + answer.encode() + b"\r\n")
    sentinel = _sentinel_naming(primary.port)
    try:
        w = _client(primary.port, sentinel.port).invoke("n1", {"type": "write", "value": 1}, 1.0)
        assert w["type"] == "error" and w["definite"] is definite, w
        assert w["error"] == answer.split()[0].lower()
    finally:
        primary.close()
        sentinel.close()


def test_wait_reaching_fewer_replicas_is_indefinite_and_the_write_is_not_undone():
    def answer(argv):
        if argv[0] == "WAIT":
            return b":1\r\n"                        # one replica of the two asked for
        if argv[0] == "EVAL":
            return b":1\r\n"                        # the compare matched, the value was set
        return b"+OK\r\n"
    primary = FakeResp(answer)
    sentinel = _sentinel_naming(primary.port)
    try:
        c = _client(primary.port, sentinel.port, wait=2)
        w = c.invoke("n1", {"type": "write", "value": 3}, 1.0)
        assert w["error"] == "wait-short" and w["definite"] is False, w
        cas = c.invoke("n1", {"type": "cas", "from": 3, "to": 4}, 1.0)
        assert cas["error"] == "wait-short" and cas["definite"] is False, cas
        waits = [a for a in primary.got if a[0] == "WAIT"]
        assert len(waits) == 2 and waits[0][1] == "2" and 1 <= int(waits[0][2]) < 1000
        assert not any(a[0] in ("DEL", "UNLINK") for a in primary.got)    # nothing undone
    finally:
        primary.close()
        sentinel.close()
    primary = FakeResp(lambda argv: b":2\r\n" if argv[0] == "WAIT" else b"+OK\r\n")
    sentinel = _sentinel_naming(primary.port)
    try:
        w = _client(primary.port, sentinel.port, wait=2).invoke(
            "n1", {"type": "write", "value": 3}, 1.0)
        assert w["type"] == "write_ok", w
    finally:
        primary.close()
        sentinel.close()


def test_failed_compare_is_a_definite_precondition_failure_without_wait():
    primary = FakeResp(lambda argv: b":0\r\n")
    sentinel = _sentinel_naming(primary.port)
    try:
        r = _client(primary.port, sentinel.port, wait=1).invoke(
            "n1", {"type": "cas", "from": 1, "to": 2}, 1.0)
        assert r["error"] == "precondition-failed" and r["definite"] is True
        assert not any(a[0] == "WAIT" for a in primary.got)
    finally:
        primary.close()
        sentinel.close()


# ---- real clusters ----------------------------------------------------------------------------


def test_healthy_redis_cluster_is_valid(tmp_path):
    _need()
    s = run_redis(tmp_path, "--workload", "append-log", "--time-limit", "5")
    assert s["valid"] is True, json.dumps(s["results"])[:3000]
    assert s["history_ops"] > 500


def test_sentinel_failover_under_partition_of_the_primary_loses_acknowledged_writes(tmp_path):
    """Jepsen's Redis finding: the isolated primary keeps acknowledging its clients' writes,
    the majority's Sentinels promote a replica, and at the heal the old primary becomes a
    replica of the new one and discards what it acknowledged meanwhile."""
    _need()
    s = run_redis(tmp_path, "--workload", "append-log", "--time-limit", "11", *FAILOVER_ARGS,
                  "--seed", "1")
    assert s["valid"] is False
    log = _checker(s, "log")
    assert "lost-append" in log["anomaly_names"], log["anomaly_names"]
    run_dir = Path(s["run_dir"])
    node_logs = "".join((n / "node.log").read_text(errors="replace")
                        for n in (run_dir / "nodes").iterdir())
    assert "+switch-master" in node_logs and "+promoted-slave" in node_logs   # a real failover


# ---- slow: the fraction of seeds, the other options and workloads -----------------------------


@pytest.mark.slow
@pytest.mark.parametrize("workload,anomaly,checker", [("set", "lost", "set"),
                                                      ("append-log", "lost-append", "log")])
def test_lost_writes_are_found_in_most_seeds(tmp_path, workload, anomaly, checker):
    _need()
    found = []
    for seed in range(1, 11):
        s = run_redis(tmp_path / str(seed), "--workload", workload, "--time-limit", "11",
                      *FAILOVER_ARGS, "--seed", str(seed))
        if s["valid"] is False and anomaly in _checker(s, checker)["anomaly_names"]:
            found.append(seed)
    print(f"redis {workload}: {anomaly} in {len(found)}/10 seeds ({found})")
    assert len(found) >= 6, found


@pytest.mark.slow
def test_counter_increments_are_lost_by_the_failover(tmp_path):
    _need()
    s = run_redis(tmp_path, "--workload", "counter", "--time-limit", "11", *FAILOVER_ARGS,
                  "--seed", "2")
    assert s["valid"] is False
    assert "out-of-bounds-read" in _checker(s, "pn-counter")["anomaly_names"]


@pytest.mark.slow
def test_wait_for_every_replica_loses_no_acknowledged_write(tmp_path):
    """wait=2 (both replicas): every `ok` add survives the failover; what is lost, if anything,
    are adds WAIT could not confirm (`info`) that a read had seen: WAIT is not a commit."""
    _need()
    s = run_redis(tmp_path, "--workload", "set", "--time-limit", "11", *FAILOVER_ARGS,
                  "--seed", "5", "--opt", "wait=2")
    hist = [json.loads(line) for line in
            (Path(s["run_dir"]) / "history.jsonl").read_text().splitlines()]
    acked = {o["value"] for o in hist if o["f"] == "add" and o["type"] == "ok"}
    lost = [a["details"]["element"] for a in _checker(s, "set").get("anomalies", [])
            if a["name"] == "lost"]
    assert acked and not set(lost) & acked, sorted(set(lost) & acked)[:10]
    assert any(o["type"] == "info" and o.get("error") in ("wait-short", "wait-failed")
               for o in hist if o["f"] == "add")


@pytest.mark.slow
def test_min_replicas_to_write_refuses_writes_definitely_but_does_not_close_the_window(tmp_path):
    """min-replicas-to-write=1 with a 1 s lag: the isolated primary refuses writes (NOREPLICAS,
    a definite `fail`) once its replicas are silent for over a second, but it acknowledged
    writes until then, and the failover discards those."""
    _need()
    s = run_redis(tmp_path, "--workload", "set", "--time-limit", "11", *FAILOVER_ARGS,
                  "--seed", "5", "--opt", "min-replicas-to-write=1",
                  "--opt", "min-replicas-max-lag=1")
    hist = [json.loads(line) for line in
            (Path(s["run_dir"]) / "history.jsonl").read_text().splitlines()]
    refused = [o for o in hist if o["f"] == "add" and o["type"] == "fail"
               and o.get("error") == "noreplicas"]
    assert refused
    set_result = _checker(s, "set")
    print(f"redis set min-replicas-to-write=1: {len(refused)} adds refused, "
          f"{set_result['stats']['lost']} lost, valid={s['valid']}")


@pytest.mark.slow
@pytest.mark.parametrize("workload", ["append-log", "counter"])
def test_killed_and_paused_nodes_rejoin_on_loopback(tmp_path, workload):
    """Kills and pauses of whole nodes (both servers at once) on the loopback variant: the
    nemesis really killed nodes, each killed node restarted from its data (its servers started
    again), and at the end every node's own server answered its final read. A kill or pause of
    the primary past down-after-milliseconds is a failover too, which may lose writes, so the
    verdict is reported, not asserted."""
    _need(netns=False)
    s = run_redis(tmp_path, "--backend", "local", "--workload", workload, "--time-limit", "15",
                  "--nemesis", "kill,pause", "--seed", "3")
    run_dir = Path(s["run_dir"])
    hist = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    kills = [o for o in hist if o["process"] == "nemesis" and o["f"] == "kill"
             and o["type"] == "info"]
    assert kills, "no node was killed"
    starts = sum((n / "node.log").read_text(errors="replace").count("Redis is starting")
                 for n in (run_dir / "nodes").iterdir())
    assert starts > 6, starts                 # 2 servers x 3 nodes, plus the restarts
    final = []                                # completions of the reads pinned to a node
    for i, o in enumerate(hist):
        if o["type"] == "invoke" and o.get("node"):
            final.append(next(c for c in hist[i + 1:] if c["process"] == o["process"]))
    assert len(final) == 3 and all(o["type"] == "ok" for o in final), final
    print(f"redis {workload} kill+pause on loopback: valid={s['valid']}")


@pytest.mark.slow
@pytest.mark.docker
def test_failover_in_containers_loses_acknowledged_writes(tmp_path):
    """The same scenario with every node a container of the splitbrain-db-redis image (the
    offline base image plus redis-server and redis-sentinel), iptables inside it."""
    from conftest import docker_available
    _need(netns=False)
    require(docker_available(), "a Docker engine")
    require(os.geteuid() == 0 and shutil.which("debootstrap") is not None,
            "root and debootstrap (to build the base image)")
    s = run_redis(tmp_path, "--backend", "docker", "--workload", "set", "--time-limit", "11",
                  *FAILOVER_ARGS, "--seed", "1")
    assert s["valid"] is False
    assert "lost" in _checker(s, "set")["anomaly_names"]
