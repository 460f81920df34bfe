"""`splitbrain test --db NAME`: the options of a database test, checked before anything runs.

Decisions (recorded in test.json like every option):
- backend: netns unless given (partitions must cut the database's own peer traffic, which only a
  network namespace or container sees); `--backend local` is the loopback variant (no network
  faults); sim is refused (a real database cannot run in the simulator).
- ssh: the packages are checked on each host when the cluster starts, not here (the
  controller need not have them).
- nodes: 3 unless given (the smallest cluster that survives a minority failure; a 2-core machine
  runs three JVMs comfortably).
- workload: register unless given; it must be one the database serves.
- `--opt NAME=VALUE` (no prefix) are the database's options (Database.OPTIONS), e.g. the
  known-bad `reads=serializable`; `workload.` and `harness.` prefixes are the harness's.
- recovery: a database that needs a longer quiet period before its final reads than the runner's
  default says so (Database.RECOVERY_S, e.g. Redis: Sentinel demotes a returning old primary
  only after 8 s); it becomes `harness.recovery_s` (when there are faults) unless given.
- nemeses: a fault the database cannot honour is refused with its reason (REFUSED_FAULTS),
  and partition and loss are refused on the loopback variant.
"""

from __future__ import annotations

import os
from typing import Any

DB_BACKENDS = ("netns", "docker", "local", "ssh")
DEFAULT_BACKEND = "netns"
DEFAULT_WORKLOAD = "register"


def build_db_test(*, db, system, bin_path, workload, nemesis, time_limit, nodes, concurrency,
                  rate, seed, bugs, opts, backend, store, name, schedule, latency=None,
                  availability=None, topology=None, nemesis_interval=None,
                  log_stderr=False) -> dict:
    """Validate a database test's options (UserError naming the option); the test dict."""
    from ..cli import UserError
    from ..commands.test import parse_opt
    from ..harness.nemesis import FAULTS, parse_faults
    from . import get_db
    from .base import DbMissing
    from .workloads import make_db_workload
    try:
        cls = get_db(db)
    except ValueError as e:
        raise UserError(f"--db: {e}") from None
    if system or bin_path:
        raise UserError("--db replaces --system and --bin: give only one of them")
    if bugs:
        raise UserError(f"--bug {bugs[0]!r}: a real database has no bug switches (its known-bad "
                        f"modes are options: {', '.join(cls.KNOWN_BAD) or 'none'})")
    if schedule is not None:
        raise UserError("--schedule is for --backend sim")
    # Maelstrom's options that shape node programs or their network have no meaning here.
    for flag, v in (("--latency", latency), ("--availability", availability),
                    ("--topology", topology), ("--log-stderr", log_stderr or None)):
        if v is not None:
            raise UserError(f"{flag} is for Maelstrom node programs, not --db (a database's "
                            f"peer traffic never passes through the harness; its log is "
                            f"nodes/<node>/node.log)")
    backend = backend or DEFAULT_BACKEND
    if backend not in DB_BACKENDS:
        raise UserError(f"--backend {backend}: --db runs on {', '.join(DB_BACKENDS)} (local is "
                        f"the loopback variant without network faults)")
    refused = getattr(cls, "REFUSED_BACKENDS", {}).get(backend)
    if refused:
        raise UserError(f"--backend {backend}: not for {db}: {refused}")
    try:
        if backend != "ssh":     # ssh: checked on each host at start (backends/ssh.py)
            cls.require_installed()
    except DbMissing as e:
        raise UserError(f"--db {db}: {e}") from None
    workload = workload or DEFAULT_WORKLOAD
    db_opts: dict[str, Any] = {}
    wl_opts: dict[str, Any] = {}
    harness_opts: dict[str, Any] = {}
    for text in opts:
        k, v = parse_opt(text)
        if k.startswith("workload."):
            wl_opts[k[len("workload."):]] = v
        elif k.startswith("harness."):
            harness_opts[k[len("harness."):]] = v
        elif k.startswith("sim."):
            raise UserError(f"--opt {k}: sim options are for --backend sim")
        else:
            db_opts[k] = v
    try:
        make_db_workload(db, workload, wl_opts)
        parsed = cls.parse_options(db_opts)
        if hasattr(cls, "check_cluster"):      # options that depend on the node count
            cls.check_cluster(parsed, nodes if nodes is not None else cls.DEFAULT_NODES)
        items = ([nemesis] if isinstance(nemesis, str) else list(nemesis or ()))
        words = [w.strip() for i in items for w in str(i).split(",")]
        if "all" in words:      # every fault that applies to this database and backend
            faults = [f for f in FAULTS if f not in cls.REFUSED_FAULTS and
                      not (backend == "local" and FAULTS[f][2] in ("partition", "network"))]
        else:
            faults = parse_faults(words)
    except ValueError as e:
        raise UserError(f"--opt: {e}" if "option" in str(e) else str(e)) from None
    for f in faults:
        if f in cls.REFUSED_FAULTS:
            raise UserError(f"--nemesis {f}: not for {db}: {cls.REFUSED_FAULTS[f]}")
        if backend == "local" and FAULTS[f][2] in ("partition", "network"):
            raise UserError(f"--nemesis {f}: the loopback variant (--backend local) has no "
                            f"network faults; use --backend netns")
    for flag, v, lo in (("--time-limit", time_limit, 0), ("--rate", rate, 0)):
        if v is not None and v <= lo:
            raise UserError(f"{flag} must be > {lo}, got {v}")
    for flag, v in (("--nodes", nodes), ("--concurrency", concurrency)):
        if v is not None and v < 1:
            raise UserError(f"{flag} must be >= 1, got {v}")
    if nemesis_interval is not None:
        if nemesis_interval <= 0:
            raise UserError(f"--nemesis-interval must be > 0, got {nemesis_interval}")
        harness_opts["nemesis_interval_s"] = float(nemesis_interval)
    if seed is None:
        seed = int.from_bytes(os.urandom(4), "big") % 1_000_000_000
    # The database's own quiet period before the final reads (Database.RECOVERY_S), unless
    # given; without faults there is nothing to settle.
    if faults and getattr(cls, "RECOVERY_S", None) is not None:
        harness_opts.setdefault("recovery_s", cls.RECOVERY_S)
    return {"name": name or f"{db}-{workload}", "backend": backend, "db": db, "system": None,
            "bin": None, "workload": workload, "nemesis": faults, "time_limit": time_limit,
            "nodes": nodes if nodes is not None else cls.DEFAULT_NODES,
            "concurrency": concurrency, "rate": rate, "seed": seed, "bugs": [],
            "opts": db_opts, "workload_opts": wl_opts, "sim_opts": {},
            "harness_opts": harness_opts, "schedule": None, "store": store}
