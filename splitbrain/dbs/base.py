"""The database adapter protocol: what splitbrain needs to know to test one real database.

In the spirit of Jepsen's `DB` and `Client` protocols, a database is one small module holding a
`Database` subclass (the server side) and a `DbClient` subclass (the client side). The harness
owns everything else (the cluster's places, faults, the history, the checkers): see cluster.py.

Database (one object per test run, built from the db options of the test):
  PACKAGES          the Debian packages it needs; `require_installed()` raises DbMissing naming
                    the `apt-get install` line when a binary is absent
  PORTS             name -> port on the node's own address ("client" is the one clients use)
  WORKLOADS         the workload names it serves (dbs/workloads.py builds them)
  OPTIONS           name -> (meaning, default, allowed values or None); `--opt NAME=VALUE`
  KNOWN_BAD         option setting -> what a correct harness must find (`splitbrain dbs`)
  REFUSED_FAULTS    nemesis name -> why it does not apply to this database
  RECOVERY_S        quiet seconds after the heal before the final reads when the runner's default
                    is too short for this database to settle (None: the runner's default)
  setup_node(n)     write config files and ids into nodes/<n>/, wipe nodes/<n>/data (a fresh run)
  command(n)        the node's argv: runs in the foreground, logs on stdout/stderr (the cluster
                    sends both to nodes/<n>/node.log); the same argv restarts it from its data
  probe(n)          True when the node's server process listens (its client port accepts a
                    connection; a node cut off by a partition still counts)
  cluster_ready()   True once the cluster acknowledged a write (the end of start-up)
  leader()          the node that says it leads, or None
  archive(n)        after the nodes stopped: keep what a person debugging needs (the logs stay;
                    the data directory becomes data.tar.gz) and delete the rest
  client()          a DbClient for this cluster

DbClient (one per test, shared by every worker; thread-safe):
  open()                      connect (never blocking past its own deadline)
  invoke(node, body, timeout_s, client) -> reply body   (`client`: the history process's
                              client id "c<N>", for per-client state such as a held lock)
  close()                     drop connections; never blocks without a deadline

`invoke` gets the workload's Maelstrom-shaped request body ({"type": "read", "key": ...},
`write`, `cas`, `add`, `append`, and {"type": "splitbrain_local_read", "op": {...}} for a read of
the node's OWN state in the final phase) and returns `ok(...)` or `error(...)` below.

A request that never left (connection refused, no session) is error "node-down" (definite): the
harness's ClientPool then backs the worker off briefly, as for a node-protocol node that is down.

THE rule of a client (Jepsen's): `error(..., definite=True)` only when the error proves the
operation did not happen (the request never left: connection refused; the database refused it
before doing anything: a failed compare, a bad version); everything that may have happened (a
reset or timeout after sending, a leader change, ZooKeeper's ConnectionLoss) is indefinite. A read
changes nothing, so every failed read is definite. Never a retry of a write behind the harness's
back, never a call without a deadline.
"""

from __future__ import annotations

import shutil
import tarfile
import time
from pathlib import Path
from typing import Any, Callable, ClassVar

ARCHIVE_NAME = "data.tar.gz"
ARCHIVE_GZIP_LEVEL = 1       # preallocated WAL files are mostly zeros: level 1 is enough and fast


ZERO_TAIL_MIN_BYTES = 1 << 20
ZERO_SCAN_CHUNK_BYTES = 1 << 20
_ZEROS = bytes(ZERO_SCAN_CHUNK_BYTES)


def _size_without_zero_tail(path: Path, size: int) -> int:
    """The file's size without its trailing zero bytes (files under ZERO_TAIL_MIN_BYTES: size)."""
    if size < ZERO_TAIL_MIN_BYTES:
        return size
    with open(path, "rb") as fh:
        end = size
        while end > 0:
            start = max(0, end - ZERO_SCAN_CHUNK_BYTES)
            fh.seek(start)
            chunk = fh.read(end - start)
            if chunk != _ZEROS[:len(chunk)]:         # a memcmp; rstrip is bytewise and slow
                return start + len(chunk.rstrip(b"\0"))
            end = start
    return 0


class DbMissing(RuntimeError):
    """The database's packages are not installed (the message names the apt-get line)."""


class NotSent(Exception):
    """The request never left the harness (connection refused, not connected): definite."""


class Indefinite(Exception):
    """The request may have reached the database; its outcome is unknown."""


def ok(f: str, **fields: Any) -> dict:
    """A reply body for a successful operation `f` (`read_ok`, `write_ok`, ...)."""
    return {"type": f"{f}_ok", **fields}


def error(name: str, definite: bool, text: str = "") -> dict:
    """A reply body for a failed operation: `name` is the history's error (kebab-case)."""
    return {"type": "error", "error": name, "definite": bool(definite), "text": text[:300]}


class DbNode:
    """Where one node runs: its name, 1-based index, address and its files."""

    def __init__(self, name: str, index: int, host: str, node_dir: Path):
        self.name = name
        self.index = index
        self.host = host
        self.dir = node_dir
        self.data = node_dir / "data"


class Database:
    """Base class of a database adapter (see the module docstring)."""

    name: ClassVar[str]
    description: ClassVar[str]
    PACKAGES: ClassVar[tuple[str, ...]] = ()
    BINARIES: ClassVar[tuple[str, ...]] = ()     # files that prove the packages are installed
    PORTS: ClassVar[dict[str, int]] = {}
    WORKLOADS: ClassVar[tuple[str, ...]] = ()
    OPTIONS: ClassVar[dict[str, tuple[str, Any, tuple | None]]] = {}
    KNOWN_BAD: ClassVar[dict[str, str]] = {}
    REFUSED_FAULTS: ClassVar[dict[str, str]] = {}
    DEFAULT_NODES: ClassVar[int] = 3
    RECOVERY_S: ClassVar[float | None] = None

    def __init__(self, nodes: list[DbNode], options: dict | None = None, *,
                 workload: str = "register", run_id: str = "0",
                 log: Callable[[str], None] = lambda m: None):
        # The workload decides how a `read` maps to the database (a register's key, the set's
        # elements, the log), so the client is made for one workload.
        self.workload = workload
        self.nodes = {n.name: n for n in nodes}
        self.options = self.parse_options(options or {})
        self.run_id = run_id
        self.log = log

    # ---- options and packages -----------------------------------------------------------------

    @classmethod
    def parse_options(cls, options: dict) -> dict:
        """The options with defaults filled in; ValueError naming a bad one."""
        out = {k: d for k, (_, d, _) in cls.OPTIONS.items()}
        for k, v in options.items():
            if k not in cls.OPTIONS:
                raise ValueError(f"{cls.name} has no option {k!r} (known: "
                                 f"{', '.join(cls.OPTIONS) or 'none'})")
            _, default, allowed = cls.OPTIONS[k]
            if isinstance(default, int) and not isinstance(default, bool):
                try:
                    v = int(v)
                except (TypeError, ValueError):
                    raise ValueError(f"{cls.name} option {k} must be an integer, got {v!r}") \
                        from None
            if allowed is not None and v not in allowed:
                raise ValueError(f"{cls.name} option {k}={v!r}: choose from "
                                 f"{', '.join(map(str, allowed))}")
            out[k] = v
        return out

    @classmethod
    def require_installed(cls) -> None:
        missing = [b for b in cls.BINARIES if shutil.which(b) is None and not Path(b).exists()]
        if missing:
            raise DbMissing(f"{cls.name} is not installed ({missing[0]} not found): "
                            f"apt-get install {' '.join(cls.PACKAGES)}")

    @classmethod
    def describe(cls) -> dict:
        return {"name": cls.name, "description": cls.description,
                "packages": list(cls.PACKAGES), "workloads": list(cls.WORKLOADS),
                "options": {k: {"meaning": m, "default": d,
                                "choices": list(a) if a is not None else None}
                            for k, (m, d, a) in cls.OPTIONS.items()},
                "known_bad": dict(cls.KNOWN_BAD), "refused_faults": dict(cls.REFUSED_FAULTS)}

    # ---- the server side ----------------------------------------------------------------------

    def port(self, name: str) -> int:
        return self.PORTS[name]

    def client_addr(self, node: str) -> tuple[str, int]:
        return self.nodes[node].host, self.port("client")

    def setup_node(self, node: str) -> None:
        n = self.nodes[node]
        n.dir.mkdir(parents=True, exist_ok=True)
        if n.data.exists():
            shutil.rmtree(n.data)
        n.data.mkdir(parents=True)

    def command(self, node: str) -> list[str]:
        raise NotImplementedError

    def probe(self, node: str, timeout_s: float = 1.0) -> bool:
        """Default: the client port accepts a TCP connection."""
        import socket
        try:
            with socket.create_connection(self.client_addr(node), timeout=timeout_s):
                return True
        except OSError:
            return False

    def cluster_ready(self, timeout_s: float = 1.0) -> bool:
        raise NotImplementedError

    def leader(self) -> str | None:
        return None

    def archive(self, node: str) -> Path | None:
        """Compress the node's data directory into data.tar.gz beside it, and delete it.

        Files larger than ZERO_TAIL_MIN_BYTES are stored without their trailing zero bytes
        (etcd preallocates 64 MB WAL segments and a spare one, ZooKeeper 64 MB log files: the
        zero tail is space not yet written, which their readers treat as the end); the pax
        header `splitbrain.size` keeps the original size. This makes teardown fast."""
        n = self.nodes[node]
        if not n.data.is_dir():
            return None
        out = n.dir / ARCHIVE_NAME
        with tarfile.open(out, "w:gz", compresslevel=ARCHIVE_GZIP_LEVEL,
                          format=tarfile.PAX_FORMAT) as tar:
            for path in sorted(n.data.rglob("*")):
                arcname = str(Path("data") / path.relative_to(n.data))
                if path.is_symlink() or not path.is_file():
                    tar.add(path, arcname=arcname, recursive=False)
                    continue
                info = tar.gettarinfo(path, arcname=arcname)
                used = _size_without_zero_tail(path, info.size)
                if used != info.size:
                    info.pax_headers = {"splitbrain.size": str(info.size)}
                    info.size = used
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
        shutil.rmtree(n.data, ignore_errors=True)
        return out

    def client(self) -> "DbClient":
        raise NotImplementedError


class DbClient:
    """Base class of a database client (see the module docstring)."""

    def __init__(self, db: Database):
        self.db = db

    def open(self) -> None:
        pass

    def invoke(self, node: str, body: dict, timeout_s: float, client: str = "") -> dict:
        raise NotImplementedError

    def close(self) -> None:
        pass


def deadline_left(deadline: float) -> float:
    """Seconds left until `deadline` (time.monotonic), at least a millisecond."""
    return max(0.001, deadline - time.monotonic())
