"""Backends by name, built the same way for every real-process runner: `make_backend(...)`.

| name   | nodes are                                   | network faults through            |
|--------|---------------------------------------------|-----------------------------------|
| local  | processes here, stdio to the harness router | the router (user space)           |
| netns  | processes in network namespaces on a bridge | iptables in each namespace        |
| docker | containers on a private Docker network      | iptables in each container        |
(`sim`, the deterministic simulator, is not a process backend: splitbrain.harness.sim.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

REAL_BACKENDS = ("local", "netns", "docker")


def in_house_args(system: str, machine: str, *, bugs: Sequence[str] = (),
                  options: dict | None = None, seed: int = 0) -> list[str]:
    """The arguments of `python -m splitbrain.systems.node` for an in-house node (no --data)."""
    argv = ["--system", system, "--machine", machine, "--seed", str(seed)]
    for b in bugs:
        argv += ["--bug", b]
    for k, v in (options or {}).items():
        argv += ["--opt", f"{k}={v if isinstance(v, str) else json.dumps(v)}"]
    return argv


def make_backend(name: str, nodes: Sequence[str], run_dir: str | Path, *, system: str | None,
                 machine: str | None, bin_path: str | None, bugs: Sequence[str] = (),
                 options: dict | None = None, seed: int = 0,
                 logger: Callable[[str], None] | None = None,
                 limits: dict | None = None):
    """Build a backend for in-house `system` (with `machine`) or a Maelstrom binary `bin_path`.

    Raises RuntimeError with a one-line reason when the backend cannot run here (no root, no
    Docker engine, ...). `limits` (docker): {"memory": "512m", "pids_max": 256}.
    """
    from .local import bin_command, in_house_command
    in_house = system is not None
    if name == "local":
        from .local import LocalBackend
        command = (in_house_command(system, machine, bugs=bugs, options=options, seed=seed)
                   if in_house else bin_command(bin_path))
        return LocalBackend(nodes, command, run_dir, seed=seed, in_house=in_house, logger=logger)
    if name == "netns":
        from .netns import NetnsBackend, NetnsError
        command = (in_house_command(system, machine, bugs=bugs, options=options, seed=seed)
                   if in_house else bin_command(bin_path))
        try:
            return NetnsBackend(nodes, command, run_dir, seed=seed, in_house=in_house,
                                logger=logger)
        except NetnsError as e:
            raise RuntimeError(str(e)) from None
    if name == "docker":
        from .docker import DockerBackend, DockerBackendError
        args = in_house_args(system, machine, bugs=bugs, options=options, seed=seed) if in_house else []
        try:
            return DockerBackend(nodes, lambda n: list(args), run_dir, in_house=in_house,
                                 bin_path=bin_path, logger=logger,
                                 memory=(limits or {}).get("memory"),
                                 pids_max=(limits or {}).get("pids_max"))
        except DockerBackendError as e:
            raise RuntimeError(str(e)) from None
    raise ValueError(f"unknown backend {name!r} (choose from {', '.join(REAL_BACKENDS)})")
