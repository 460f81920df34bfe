"""PostgreSQL with streaming standbys and our failover controller (splitbrain/dbs/postgres.py).

Fast tier (CI): option errors; the client's definite/indefinite rule against a real loopback
cluster (a refused connection, a serialization failure, a timeout before and after COMMIT); and
the README's known outcomes: an asynchronous standby promoted after the primary was cut off loses
acknowledged writes (set: `lost`), a remote_apply synchronous standby does not (VALID under the
same faults); read committed shows lost updates and G-single / G2 (txn-list-append), serializable
does not. Slow tier: several seeds of the asynchronous case (the fraction of seeds that lose
writes), kills and pauses, the read-modify-write counter and txn-rw-register at each level.

Every cluster run checks that nothing outlived it: run_db (tests/test_dbs.py) checks the node
processes, namespaces and data directories; here also no process whose working directory or
command line is in the run directory (PostgreSQL's backends leave the node's process group).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from conftest import require
from test_dbs import cli, run_db

ASYNC_LOSS = ("--workload", "set", "--time-limit", "12", "--nemesis", "partition-leader",
              "--rate", "300", "--opt", "harness.nemesis_interval_s=4")
SYNC = ("--opt", "synchronous_commit=remote_apply", "--opt", "sync_standbys=1")


def _need(backend: str = "netns") -> None:
    from splitbrain.dbs.base import DbMissing
    from splitbrain.dbs.postgres import Postgres
    try:
        Postgres.require_installed()
        have = True
    except DbMissing:
        have = False
    require(have, "PostgreSQL 15 (apt-get install postgresql-15)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        require(False, "psycopg (pip install psycopg)")
    require(os.geteuid() == 0, "root (the run directories are root's; postgres runs in a "
                               "user namespace)")
    if backend == "netns":
        require(shutil.which("ip") is not None and shutil.which("iptables") is not None,
                "iproute2 and iptables")


def _processes_in(run_dir: Path) -> list[int]:
    """Live processes whose working directory or command line is inside `run_dir`."""
    out = []
    needle = str(run_dir.resolve())
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cwd = os.readlink(p / "cwd")
            cmd = (p / "cmdline").read_bytes().decode(errors="replace")
            state = (p / "stat").read_text().split(")")[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd.startswith(needle) or needle in cmd):
            out.append(int(p.name))
    return out


def _assert_nothing_left(run_dir: Path) -> None:
    deadline = time.monotonic() + 10       # backends exit when they notice the postmaster died
    while _processes_in(run_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = _processes_in(run_dir)
    for pid in left:
        try:
            os.kill(pid, 9)
        except OSError:
            pass
    assert not left, f"processes {left} outlived the run in {run_dir}"


def run_pg(tmp_path: Path, *args: str) -> dict:
    s = run_db(tmp_path, "--db", "postgres", *args)
    _assert_nothing_left(Path(s["run_dir"]))
    return s


def _log(s: dict) -> str:
    return (Path(s["run_dir"]) / "splitbrain.log").read_text()


# ---- options (no cluster) --------------------------------------------------------------------


@pytest.mark.parametrize("args,needle", [
    (["--opt", "isolation=snapshot"], "choose from read-committed, repeatable-read"),
    (["--opt", "sync_standbys=3"], "sync_standbys=3: choose 0..2 with 3 nodes"),
    (["--opt", "synchronous_commit=always"], "choose from off, local, on"),
    (["--nemesis", "clock"], "not for postgres"),
    (["--workload", "append-log"], "serves the workloads"),
    (["--backend", "docker"], "not for postgres"),
])
def test_bad_postgres_options_are_one_line_usage_errors(args, needle):
    p = cli("test", "--db", "postgres", *args)
    assert p.returncode == 2, p.stderr
    assert needle in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_postgres_is_listed_with_its_known_bad_modes():
    p = cli("dbs", "--json")
    assert p.returncode == 0, p.stderr
    pg = {d["name"]: d for d in json.loads(p.stdout)}["postgres"]
    assert {"counter", "txn-list-append", "txn-rw-register"} <= set(pg["workloads"])
    assert "sync_standbys=0" in pg["known_bad"] and "isolation=read-committed" in pg["known_bad"]


def test_refused_connection_is_node_down_and_definite(tmp_path):
    import socket
    from splitbrain.dbs.base import DbNode
    from splitbrain.dbs.postgres import Postgres
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()           # nothing listens
    db = Postgres([DbNode("n1", 1, "127.0.0.1", tmp_path / "n1")], {}, workload="set")
    db.PORTS = {"client": port}
    c = db.client()
    for body in ({"type": "add", "value": 1}, {"type": "read"}):
        r = c.invoke("n1", body, 1.0, "c1")
        assert r["type"] == "error" and r["error"] == "node-down" and r["definite"] is True


# ---- THE rule, against a real cluster ------------------------------------------------------------


def test_client_rule_serialization_failure_and_timeouts_on_a_real_cluster(tmp_path):
    """A serialization failure before COMMIT is a definite fail; a timeout while a statement
    of an open transaction waits is definite too (the dropped session rolls it back); a timeout
    of an autocommit write is indefinite (it may commit); a timed-out read is definite."""
    _need("local")
    from splitbrain.dbs.cluster import make_db_backend
    from splitbrain.dbs.postgres import PgConn
    b = make_db_backend("local", "postgres", ["n1", "n2", "n3"], tmp_path,
                        options={"isolation": "serializable", "counter": "read-modify-write"},
                        workload="counter")
    try:
        b.start()
        c = b.dbclient
        assert c.invoke("n2", {"type": "add", "delta": 3}, 2.0, "c1")["type"] == "add_ok"
        assert c.invoke("n3", {"type": "read"}, 2.0, "c1") == {"type": "read_ok", "value": 3}
        # another session holds the counter's row
        x = PgConn(*b.db.client_addr("n1"), time.monotonic() + 2)
        x.query("BEGIN ISOLATION LEVEL SERIALIZABLE", time.monotonic() + 2)
        x.query("UPDATE counter SET v = v + 10 WHERE k = 0", time.monotonic() + 2)
        # read-modify-write while the row is locked: its UPDATE waits, the deadline passes
        # before COMMIT was sent: nothing can commit (definite)
        r = c.invoke("n1", {"type": "add", "delta": 1}, 0.5, "c2")
        assert r["type"] == "error" and r["error"] == "timed-out" and r["definite"] is True, r
        # an atomic add is its own commit: once sent, a timeout is indefinite
        c.rmw = False
        r = c.invoke("n1", {"type": "add", "delta": 1}, 0.5, "c3")
        assert r["type"] == "error" and r["error"] == "timed-out" and r["definite"] is False, r
        c.rmw = True
        # a read-modify-write whose UPDATE meets the other session's commit: 40001, definite
        out: dict = {}
        t = threading.Thread(target=lambda: out.update(
            c.invoke("n1", {"type": "add", "delta": 100}, 5.0, "c4")))
        t.start()
        time.sleep(0.5)
        x.query("COMMIT", time.monotonic() + 2)
        t.join(10)
        x.close()
        assert out.get("error") == "serialization-failure" and out["definite"] is True, out
        final = c.invoke("n1", {"type": "read"}, 2.0, "c1")
        # 3 + 10 (the other session), + 1 if the indefinite atomic add committed; never the
        # definite fails' 1 and 100
        assert final["value"] in (13, 14), final
    finally:
        b.teardown()
    assert not b.alive()
    _assert_nothing_left(tmp_path)


# ---- the known outcomes (README table) -----------------------------------------------------------


def test_async_standby_promoted_after_the_primary_is_cut_off_loses_acknowledged_writes(tmp_path):
    _need()
    s = run_pg(tmp_path, *ASYNC_LOSS)
    st = s["results"]["children"]["set"]
    assert s["valid"] is False and st["valid"] is False, json.dumps(st)[:2000]
    assert "lost" in st["anomaly_names"] and st["stats"]["lost"] > 0
    assert "postgres failover:" in _log(s) and "promoted" in _log(s)


def test_remote_apply_synchronous_standby_is_valid_under_the_same_faults(tmp_path):
    _need()
    s = run_pg(tmp_path, *ASYNC_LOSS, *SYNC)
    assert s["valid"] is True, json.dumps(s["results"])[:3000]
    assert "promoted" in _log(s)         # the same fault caused a failover
    assert s["results"]["children"]["set"]["stats"]["lost"] == 0


def test_read_committed_list_append_shows_read_skew_and_write_anomalies(tmp_path):
    """Read committed: G-single (read skew) every time, and a lost update or a write-skew cycle
    (lost-update in 4 of 5 runs of 5 s here; one CI run under load had G2-item and
    G-nonadjacent but no lost-update, so the test asks for one of them)."""
    _need("local")
    s = run_pg(tmp_path, "--backend", "local", "--workload", "txn-list-append",
               "--time-limit", "5", "--rate", "300", "--opt", "isolation=read-committed")
    la = s["results"]["children"]["list-append"]
    assert la["valid"] is False
    names = set(la["anomaly_names"])
    assert "G-single" in names, names
    assert names & {"lost-update", "G2-item", "G-nonadjacent"}, names


def test_serializable_list_append_is_valid(tmp_path):
    _need("local")
    s = run_pg(tmp_path, "--backend", "local", "--workload", "txn-list-append",
               "--time-limit", "5", "--rate", "300", "--opt", "isolation=serializable")
    assert s["valid"] is True, json.dumps(s["results"])[:3000]
    assert s["results"]["children"]["list-append"]["stats"]["committed"] > 100


# ---- slow --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_async_loss_over_seeds(tmp_path):
    """The fraction of seeds in which an asynchronous standby's promotion loses acknowledged
    writes under partition-leader, kill and pause (the README gives the measured figure)."""
    _need()
    lost = []
    for seed in range(1, 6):
        s = run_pg(tmp_path / str(seed), "--workload", "set", "--time-limit", "20", "--nemesis",
                   "partition-leader,kill,pause", "--rate", "300", "--seed", str(seed))
        lost.append(s["results"]["children"]["set"]["stats"]["lost"])
    print(f"lost acknowledged adds per seed: {lost}")
    assert sum(1 for n in lost if n) >= 3, lost


@pytest.mark.slow
@pytest.mark.parametrize("workload", ["set", "register", "counter", "txn-list-append"])
def test_remote_apply_under_partition_kill_pause_is_valid(tmp_path, workload):
    _need()
    s = run_pg(tmp_path, "--workload", workload, "--time-limit", "20", "--nemesis",
               "partition-leader,kill,pause", "--rate", "200", *SYNC)
    assert s["valid"] is True, json.dumps(s["results"])[:3000]


@pytest.mark.slow
@pytest.mark.parametrize("isolation,valid", [("read-committed", False), ("serializable", True)])
def test_read_modify_write_counter(tmp_path, isolation, valid):
    _need("local")
    s = run_pg(tmp_path, "--backend", "local", "--workload", "counter", "--time-limit", "8",
               "--rate", "500", "--opt", f"isolation={isolation}",
               "--opt", "counter=read-modify-write")
    assert s["valid"] is valid, json.dumps(s["results"])[:3000]
    if not valid:
        assert "out-of-bounds-read" in s["results"]["children"]["pn-counter"]["anomaly_names"]


@pytest.mark.slow
@pytest.mark.parametrize("isolation,valid", [("read-committed", False),
                                             ("repeatable-read", None), ("serializable", True)])
def test_rw_register_at_each_isolation_level(tmp_path, isolation, valid):
    _need("local")
    s = run_pg(tmp_path, "--backend", "local", "--workload", "txn-rw-register",
               "--time-limit", "8", "--rate", "500", "--opt", f"isolation={isolation}")
    rw = s["results"]["children"]["rw-register"]
    print(isolation, rw["valid"], rw["anomaly_names"])
    if valid is not None:
        assert s["valid"] is valid, json.dumps(s["results"])[:3000]
    else:       # snapshot isolation: only write skew (G2-item, and its per-process variant)
        assert all(a.startswith("G2-item") for a in rw["anomaly_names"]), rw["anomaly_names"]
