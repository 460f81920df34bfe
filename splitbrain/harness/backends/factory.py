"""Backends by name, built the same way for every real-process runner: `make_backend(...)`.

| name   | nodes are                                   | network faults through            |
|--------|---------------------------------------------|-----------------------------------|
| local  | processes here, stdio to the harness router | the router (user space)           |
| netns  | processes in network namespaces on a bridge | iptables in each namespace        |
| docker | containers on a private Docker network      | iptables in each container        |
| ssh    | processes on remote hosts, one per host     | iptables on each host (own chain) |
(`sim`, the deterministic simulator, is not a process backend: splitbrain.harness.sim.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

REAL_BACKENDS = ("local", "netns", "docker", "ssh")


def in_house_args(system: str, machine: str, *, bugs: Sequence[str] = (),
                  options: dict | None = None, seed: int = 0) -> list[str]:
    """The arguments of `python -m splitbrain.systems.node` for an in-house node (no --data)."""
    argv = ["--system", system, "--machine", machine, "--seed", str(seed)]
    for b in bugs:
        argv += ["--bug", b]
    for k, v in (options or {}).items():
        argv += ["--opt", f"{k}={v if isinstance(v, str) else json.dumps(v)}"]
    return argv


def _resolve(program: str) -> str:
    from .local import resolve_program
    try:
        return resolve_program(program)
    except ValueError as e:
        raise RuntimeError(f"--bin {e}") from None


def _bin(program: str, args: Sequence[str]):
    from .local import bin_command
    _resolve(program)
    return bin_command(program, args)


def make_backend(name: str, nodes: Sequence[str], run_dir: str | Path, *, system: str | None,
                 machine: str | None, bin_path: str | None, bugs: Sequence[str] = (),
                 options: dict | None = None, seed: int = 0,
                 logger: Callable[[str], None] | None = None, bin_args: Sequence[str] = (),
                 log_stderr: bool = False, latency_ms: float = 0.0, limits: dict | None = None,
                 hosts: dict | None = None):
    """Build a backend for in-house `system` (with `machine`) or a Maelstrom program `bin_path`
    (a path, or a name looked up on PATH) with its arguments `bin_args`.

    log_stderr: copy the nodes' stderr to the terminal (local backend; the TCP backends write it
    to node.log only). latency_ms: the network's base latency (Maelstrom's --latency).
    Raises RuntimeError with a one-line reason when the backend cannot run here (no root, no
    Docker engine, ...) or the program cannot be found. `limits` (docker): {"memory": "512m",
    "pids_max": 256} (None: the defaults). `hosts` (ssh): node -> HostSpec or its JSON
    (ssh_hosts.py).
    """
    from .local import bin_command, in_house_command
    in_house = system is not None
    if name == "local":
        from .local import LocalBackend
        command = (in_house_command(system, machine, bugs=bugs, options=options, seed=seed)
                   if in_house else _bin(bin_path, bin_args))
        return LocalBackend(nodes, command, run_dir, seed=seed, in_house=in_house, logger=logger,
                            log_stderr=log_stderr, latency_ms=latency_ms)
    if name == "netns":
        from .netns import NetnsBackend, NetnsError
        command = (in_house_command(system, machine, bugs=bugs, options=options, seed=seed)
                   if in_house else _bin(bin_path, bin_args))
        try:
            b = NetnsBackend(nodes, command, run_dir, seed=seed, in_house=in_house,
                             logger=logger)
            b.base_latency_ms = float(latency_ms)
            return b
        except NetnsError as e:
            raise RuntimeError(str(e)) from None
    if name == "docker":
        from .docker import DockerBackend, DockerBackendError
        args = (in_house_args(system, machine, bugs=bugs, options=options, seed=seed) if in_house
                else list(bin_args))
        if not in_house:
            resolved = _resolve(bin_path)
            # A name looked up on PATH (an interpreter: `--bin python3 node.py`) runs the image's
            # own program of that name; a path is mounted into the container.
            bin_path = bin_path if "/" not in bin_path else resolved
        try:
            b = DockerBackend(nodes, lambda n: list(args), run_dir, in_house=in_house,
                              bin_path=bin_path, logger=logger,
                              memory=(limits or {}).get("memory"),
                              pids_max=(limits or {}).get("pids_max"))
            b.base_latency_ms = float(latency_ms)
            return b
        except DockerBackendError as e:
            raise RuntimeError(str(e)) from None
    if name == "ssh":
        from .ssh import SshBackend
        from .ssh_hosts import HostSpec
        if not hosts:
            raise RuntimeError("the ssh backend needs hosts: --hosts hosts.toml or "
                               "--host n1=USER@ADDRESS ...")
        specs = {n: h if isinstance(h, HostSpec) else HostSpec.from_json(h)
                 for n, h in hosts.items()}
        args = (in_house_args(system, machine, bugs=bugs, options=options, seed=seed) if in_house
                else [])
        if not in_house:
            resolved = _resolve(bin_path)
            bin_path = bin_path if "/" not in bin_path else resolved
        b = SshBackend(nodes, specs, run_dir, node_args=args, in_house=in_house,
                       bin_path=bin_path, bin_args=bin_args, seed=seed, logger=logger)
        b.base_latency_ms = float(latency_ms)
        return b
    raise ValueError(f"unknown backend {name!r} (choose from {', '.join(REAL_BACKENDS)})")
