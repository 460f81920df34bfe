"""Checkers by name, for `splitbrain check --checker NAME` and for workloads.

Each entry is "module:factory"; a factory is called as `factory(options)` with a dict of the
command's options (keys that may be present: `model`, `time_limit`, `out_dir`, `workers`,
`machine`) and returns an object with `name` and `check(history, test) -> Result`.
Modules are imported lazily so that a checker with a heavy import costs nothing until used.
"""

from __future__ import annotations

import importlib
from typing import Any

CHECKER_PATHS: dict[str, str] = {
    "linearizable": "splitbrain.checkers.linearizability:make_checker",
    "log": "splitbrain.checkers.log:make_checker",
    "convergence": "splitbrain.checkers.convergence:make_checker",
    "set": "splitbrain.checkers.set_full:make_checker",
    "counter": "splitbrain.checkers.counter:make_checker",
    "stats": "splitbrain.checkers.stats:make_checker",
    "unique-ids": "splitbrain.checkers.unique_ids:make_checker",
    "kafka": "splitbrain.checkers.kafka:make_checker",
    "echo": "splitbrain.checkers.echo:make_checker",
    "broadcast": "splitbrain.checkers.eventual_set:make_broadcast_checker",
    "g-set": "splitbrain.checkers.eventual_set:make_gset_checker",
    "pn-counter": "splitbrain.checkers.pn_counter:make_checker",
    "g-counter": "splitbrain.checkers.pn_counter:make_g_counter_checker",
    "availability": "splitbrain.checkers.availability:make_checker",
    "list-append": "splitbrain.checkers.transactions:make_list_append_checker",
    "rw-register": "splitbrain.checkers.transactions:make_rw_register_checker",
}


def checker_names() -> list[str]:
    return list(CHECKER_PATHS)


def make_checker(name: str, options: dict[str, Any] | None = None):
    """Build a checker by name; ValueError naming the choices for an unknown one."""
    if name not in CHECKER_PATHS:
        raise ValueError(f"unknown checker {name!r} (choose from {', '.join(CHECKER_PATHS)})")
    module, _, factory = CHECKER_PATHS[name].partition(":")
    return getattr(importlib.import_module(module), factory)(dict(options or {}))
