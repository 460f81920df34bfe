"""MariaDB 10.11 with Galera (splitbrain/dbs/mariadb.py): a real three-member cluster from Debian's
mariadb-server and galera-4, on the netns backend.

What the harness found (README, "MariaDB with Galera"), each a test:
- register with causal reads (`sync_wait=1`) under partitions and kills: VALID (CI);
- txn-list-append at MariaDB's default REPEATABLE READ, no faults at all: INVALID with lost
  updates / read skew (G-single) / internal anomalies: InnoDB's repeatable read is not snapshot
  isolation (CI);
- txn-list-append at SERIALIZABLE with clients on every member, no faults: write skew across
  members (G2-item / G-single): Galera does not replicate read locks (slow);
- register without causal reads (MariaDB's default `sync_wait=0`): stale reads (slow).
Every run checks that it left nothing behind (test_dbs.run_db).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest

from conftest import require
from test_dbs import cli, run_db

SLOW_TIMEOUT_OPTS = ("--opt", "harness.client_timeout_s=3")


def _need_mariadb() -> None:
    from splitbrain.dbs import get_db
    from splitbrain.dbs.base import DbMissing
    try:
        get_db("mariadb").require_installed()
        import pymysql  # noqa: F401
        ok = True
    except (DbMissing, ImportError):
        ok = False
    require(ok, "MariaDB with Galera (apt-get install mariadb-server galera-4 rsync; "
                "pip install PyMySQL)")
    require(os.geteuid() == 0 and shutil.which("ip") is not None
            and shutil.which("iptables") is not None, "root with iproute2 and iptables")


def _anomalies(summary: dict, checker: str) -> set[str]:
    child = summary["results"]["children"][checker]
    return {a["name"] for a in child.get("anomalies", [])}


def test_mariadb_is_listed_with_its_options_and_bad_options_are_usage_errors():
    p = cli("dbs", "--json")
    assert p.returncode == 0, p.stderr
    assert "mariadb" in p.stdout and "sync_wait" in p.stdout
    p = cli("test", "--db", "mariadb", "--opt", "isolation=snapshot", "--time-limit", "1")
    assert p.returncode == 2, p.stderr
    assert "isolation" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    p = cli("test", "--db", "mariadb", "--workload", "append-log", "--time-limit", "1")
    assert p.returncode == 2 and "append-log" in p.stderr and "Traceback" not in p.stderr


def test_mariadb_register_with_causal_reads_under_partition_kill_is_valid(tmp_path):
    _need_mariadb()
    s = run_db(tmp_path, "--db", "mariadb", "--workload", "register", "--time-limit", "15",
               "--nemesis", "partition,kill", "--opt", "sync_wait=1", "--rate", "100",
               "--opt", "harness.client_timeout_s=2")
    assert s["valid"] is True, json.dumps(s["results"])[:3000]
    assert s["history_ops"] > 300
    assert [n for n in s["notes"] if "nemesis" in n]


def test_mariadb_repeatable_read_is_not_snapshot_isolation(tmp_path):
    """No faults: transactions that read a list and then append to it, at MariaDB's default
    isolation. InnoDB's REPEATABLE READ reads from a snapshot but writes to the latest version,
    so two transactions that read the same version both append (a lost update), and a
    transaction can read its own append on top of a version it never saw (internal)."""
    _need_mariadb()
    s = run_db(tmp_path, "--db", "mariadb", "--workload", "txn-list-append", "--time-limit", "20",
               "--nemesis", "none", "--opt", "sync_wait=1",
               "--opt", "workload.consistency_models=snapshot-isolation", *SLOW_TIMEOUT_OPTS)
    assert s["valid"] is False, json.dumps(s["results"])[:3000]
    found = _anomalies(s, "list-append")
    assert found & {"lost-update", "G-single", "internal", "G-single-process"}, found
    assert s["history_ops"] > 200


@pytest.mark.slow
def test_mariadb_serializable_across_members_shows_write_skew(tmp_path):
    """SERIALIZABLE makes InnoDB take read locks, but Galera certifies only write sets: two
    members each let a transaction read what the other writes (G2-item)."""
    _need_mariadb()
    s = run_db(tmp_path, "--db", "mariadb", "--workload", "txn-list-append", "--time-limit", "60",
               "--nemesis", "none", "--opt", "sync_wait=1", "--opt", "isolation=serializable",
               "--opt", "workload.consistency_models=serializable", *SLOW_TIMEOUT_OPTS)
    assert s["valid"] is False, json.dumps(s["results"])[:3000]
    found = _anomalies(s, "list-append")
    assert found & {"G2-item", "G-single", "lost-update"}, found


@pytest.mark.slow
def test_mariadb_register_without_causal_reads_serves_stale_reads(tmp_path):
    """MariaDB's default wsrep_sync_wait=0: a read on one member may miss a write another member
    acknowledged (applied there later): not linearizable, even with no faults."""
    _need_mariadb()
    s = run_db(tmp_path, "--db", "mariadb", "--workload", "register", "--time-limit", "30",
               "--nemesis", "none", "--opt", "sync_wait=0", *SLOW_TIMEOUT_OPTS)
    assert s["valid"] is False, json.dumps(s["results"])[:3000]
    assert not s["results"]["children"]["linearizable"]["valid"]


@pytest.mark.slow
@pytest.mark.parametrize("workload", ["kv", "set"])
def test_mariadb_workloads_with_causal_reads_under_partition_kill_are_valid(tmp_path, workload):
    _need_mariadb()
    s = run_db(tmp_path, "--db", "mariadb", "--workload", workload, "--time-limit", "30",
               "--nemesis", "partition,kill", "--opt", "sync_wait=1", *SLOW_TIMEOUT_OPTS)
    assert s["valid"] is True, json.dumps(s["results"])[:3000]


@pytest.mark.slow
@pytest.mark.docker
def test_mariadb_in_containers_with_causal_reads_under_partition_kill_is_valid(tmp_path):
    """The docker backend: the offline base image plus mariadb-server, galera-4 and rsync."""
    _need_mariadb()
    from conftest import docker_available
    require(docker_available(), "a Docker engine")
    s = run_db(tmp_path, "--db", "mariadb", "--backend", "docker", "--workload", "register",
               "--time-limit", "15", "--nemesis", "partition,kill", "--opt", "sync_wait=1",
               *SLOW_TIMEOUT_OPTS)
    assert s["valid"] is True, json.dumps(s["results"])[:3000]
