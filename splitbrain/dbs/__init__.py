"""Real databases as test targets (`splitbrain test --db NAME`, `splitbrain dbs`).

One module per database (etcd.py, zookeeper.py): a `Database` adapter and its `DbClient`
(base.py states the protocol and the client's one rule: `fail` only when the error proves the
operation did not happen). cluster.py runs them as harness backends (netns, docker, loopback),
workloads.py decodes their replies, options.py checks a test's options.
"""

from __future__ import annotations

import importlib

from .base import Database, DbClient, DbMissing

DB_MODULES = {"etcd": "etcd:Etcd", "zookeeper": "zookeeper:ZooKeeper",
              "redis": "redis:Redis",              # Redis 7 + Sentinel (issue 17)
              "mariadb": "mariadb:MariaDb"}        # MariaDB + Galera (issue 17)
DB_MODULES["postgres"] = "postgres:Postgres"   # PostgreSQL + standbys (issue 17)

__all__ = ["DB_MODULES", "Database", "DbClient", "DbMissing", "db_names", "get_db"]


def db_names() -> list[str]:
    return list(DB_MODULES)


def get_db(name: str) -> type[Database]:
    """The adapter class of database `name`; ValueError naming the choices."""
    spec = DB_MODULES.get(name)
    if spec is None:
        raise ValueError(f"unknown database {name!r} (choose from {', '.join(DB_MODULES)})")
    module, _, cls = spec.partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)
