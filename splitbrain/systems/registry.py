"""The in-house systems by name, imported lazily so that one broken system cannot break the CLI."""

from __future__ import annotations

import importlib

from .core import Core

SYSTEM_PATHS: dict[str, str] = {
    "raft": "splitbrain.systems.raft:RaftCore",
    "multi-paxos": "splitbrain.systems.multipaxos:MultiPaxosCore",
    "zab": "splitbrain.systems.zab:ZabCore",
    "vr": "splitbrain.systems.vr:VrCore",
    "primary-backup": "splitbrain.systems.primary_backup:PrimaryBackupCore",
    "active-active": "splitbrain.systems.active_active:ActiveActiveCore",
}


def system_names() -> list[str]:
    return list(SYSTEM_PATHS)


def get_system(name: str) -> type[Core]:
    """The Core class of a system; ValueError naming the choices for an unknown name."""
    if name not in SYSTEM_PATHS:
        raise ValueError(f"unknown system {name!r} (choose from {', '.join(SYSTEM_PATHS)})")
    module, _, cls = SYSTEM_PATHS[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def available_systems() -> dict[str, type[Core]]:
    """Every system whose module imports; missing ones are left out."""
    out = {}
    for name in SYSTEM_PATHS:
        try:
            out[name] = get_system(name)
        except (ImportError, AttributeError):
            continue
    return out


# ---- option names (issue 18): one spelling shown, both accepted ------------------------------
# The systems were written with `election-timeout-ms` (Raft) and `election_timeout_ms` (the
# others). Users see every option in the kebab-case of the command line (`splitbrain systems`,
# error messages, replay commands) and may type either spelling; the core gets its own key.

def option_label(key: str) -> str:
    """The spelling shown to users: kebab-case."""
    return key.replace("_", "-")


def option_key(options, name: str) -> str | None:
    """The key of `options` (a system's OPTIONS) that `name` spells, with `-` and `_` alike;
    None when it names none."""
    if name in options:
        return name
    want = option_label(name)
    for k in options:
        if option_label(k) == want:
            return k
    return None
