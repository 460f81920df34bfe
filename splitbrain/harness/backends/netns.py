"""The `netns` backend: each node is a process in its own Linux network namespace with its own
address, the namespaces joined by a bridge; partitions and loss are iptables rules inside each
namespace (tcp_cluster.py), so the kernel drops the packets.

Layout of one run (ID is 4 hex digits, unique per run; names fit IFNAMSIZ):
  bridge  sbr-ID           with 10.R.S.1/24 (a /24 free on this machine, picked per run)
  netns   sb-ID-nK         one per node, eth0 = 10.R.S.(10+K), lo up
  veth    sbv-ID-K <-> eth0 in the namespace; host end enslaved to the bridge
  a FORWARD accept rule for the bridge in the host's filter table, tagged with the comment
  "splitbrain-ID" (Docker's FORWARD policy DROP would otherwise cut bridged traffic).

Teardown always happens: nodes killed, namespaces deleted (their rules and veths go with them),
the bridge and the host rule removed. A harness that was killed outright cannot run its teardown;
the state file /run/splitbrain/netns-ID.json (ownership.registry_dir()) names what it made and
its owner (pid and start time), and the next netns run, or `splitbrain cleanup`, removes every
run whose owner is gone. Node processes are recorded in the run's pids.jsonl as well.

Needs root, iproute2 and iptables.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Callable, Sequence

from .process_group import ProcessGroupNodes
from .tcp_cluster import NODE_PORT, TcpClusterBackend

PREFIX_NS = "sb-"
PREFIX_BRIDGE = "sbr-"
PREFIX_VETH = "sbv-"
COMMENT_PREFIX = "splitbrain-"
CMD_TIMEOUT_S = 30.0


class NetnsError(RuntimeError):
    """A namespace, link or rule could not be made (the message names the command)."""


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=CMD_TIMEOUT_S)
    except FileNotFoundError:
        raise NetnsError(f"{argv[0]} is not installed") from None
    if check and proc.returncode != 0:
        raise NetnsError(f"`{' '.join(argv)}` failed: {(proc.stderr or proc.stdout).strip()}")
    return proc


def require_netns() -> None:
    """Raise NetnsError saying what is missing to run this backend."""
    if os.geteuid() != 0:
        raise NetnsError("the netns backend needs root (network namespaces and iptables)")
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            raise NetnsError(f"the netns backend needs {tool} (apt-get install iproute2 iptables)")


def _used_subnets() -> list[ipaddress.IPv4Network]:
    out = _run(["ip", "-o", "-4", "addr", "show"], check=False).stdout
    nets = []
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            nets.append(ipaddress.ip_interface(parts[parts.index("inet") + 1]).network)
    routes = _run(["ip", "-4", "route", "show"], check=False).stdout
    for line in routes.splitlines():
        first = line.split()[0] if line.split() else ""
        if "/" in first:
            try:
                nets.append(ipaddress.ip_network(first, strict=False))
            except ValueError:
                pass
    return nets


def pick_subnet(rng: random.Random) -> ipaddress.IPv4Network:
    """A /24 in 10.200.0.0/13 that no interface or route on this machine overlaps."""
    used = _used_subnets()
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{rng.randrange(200, 208)}.{rng.randrange(0, 256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise NetnsError("no free /24 subnet found in 10.200.0.0/13")


def cleanup_netns(only_dead_owners: bool = False, log: Callable[[str], None] = print, *,
                  dry_run: bool = False, left: list[str] | None = None) -> int:
    """Remove what netns runs made. Returns the items removed (or, dry, that would be).

    With `only_dead_owners` (what `splitbrain cleanup` does by default): only the runs named by a
    state file whose owner is gone (ownership.owner_state: pid AND start time); a live run's
    things, and namespaces, links and host rules that no state file names (splitbrain did not
    make them, or cannot prove it), are left, each with the reason appended to `left`. Without
    it (`--all`), also everything with our name prefixes."""
    from ..ownership import owner_state
    removed = 0
    left = left if left is not None else []
    known_ns: set[str] = set()
    known_links: set[str] = set()
    known_ids: set[str] = set()
    state_dir = _state_dir()
    if state_dir.is_dir():
        for state_file in sorted(state_dir.glob("netns-*.json")):
            try:
                state = json.loads(state_file.read_text())
            except (OSError, ValueError):
                state = {}
            owner = state.get("owner") or ({"pid": state["pid"]} if isinstance(state.get("pid"),
                                                                            int) else None)
            known_ns.update(state.get("namespaces", []))
            known_links.update(state.get("links", []))
            if state.get("id"):
                known_ids.add(str(state["id"]))
            status, why = owner_state(owner)
            if only_dead_owners and status != "dead":
                left.append(f"netns run {state.get('id')} ({', '.join(state.get('namespaces', []))}"
                            f"): {why}")
                continue
            removed += _remove_run(state, log, dry_run)
            if not dry_run:
                state_file.unlink(missing_ok=True)
    # Anything with our prefixes that no state file named (a state file lost with /run, or
    # something splitbrain did not make).
    for ns in _run(["ip", "netns", "list"], check=False).stdout.split("\n"):
        name = ns.split(" ")[0]
        if not name.startswith(PREFIX_NS) or name in known_ns:
            continue
        if only_dead_owners:
            left.append(f"namespace {name}: no splitbrain run recorded it (--all removes it)")
            continue
        if not dry_run:
            _kill_ns_pids(name)
            _run(["ip", "netns", "del", name], check=False)
        log(f"{'would remove' if dry_run else 'removed'} namespace {name}")
        removed += 1
    for line in _run(["ip", "-o", "link", "show"], check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if not name.startswith((PREFIX_BRIDGE, PREFIX_VETH, "sbp-")) or name in known_links:
            continue
        if only_dead_owners:
            left.append(f"link {name}: no splitbrain run recorded it (--all removes it)")
            continue
        if not dry_run:
            _run(["ip", "link", "del", name], check=False)
        log(f"{'would remove' if dry_run else 'removed'} link {name}")
        removed += 1
    if only_dead_owners:
        for line in _host_rules():
            if not any(f"{COMMENT_PREFIX}{i}" in line.split() or
                       f'"{COMMENT_PREFIX}{i}"' in line.split() for i in known_ids):
                left.append(f"host rule `{line}`: no splitbrain run recorded it (--all removes it)")
    else:
        removed += _remove_host_rules(None, log, dry_run)
    return removed


def _state_dir() -> Path:
    """Where state files live (ownership.registry_dir(): /run/splitbrain as root)."""
    from ..ownership import registry_dir
    return registry_dir()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def _kill_ns_pids(ns: str) -> None:
    pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def _host_rules() -> list[str]:
    """The host's FORWARD rules tagged with a splitbrain comment (`iptables -S` lines)."""
    out = _run(["iptables", "-S", "FORWARD"], check=False).stdout
    return [line for line in out.splitlines()
            if f'--comment {COMMENT_PREFIX}' in line or f'--comment "{COMMENT_PREFIX}' in line]


def _remove_host_rules(run_id: str | None, log: Callable[[str], None],
                       dry_run: bool = False) -> int:
    """Delete host FORWARD rules tagged splitbrain-<run_id> (any run when run_id is None)."""
    removed = 0
    for line in _host_rules():
        words = [w.strip('"') for w in line.split()]
        if run_id is not None and f"{COMMENT_PREFIX}{run_id}" not in words:
            continue
        if not dry_run:
            _run(["iptables", "-D", *words[1:]], check=False)   # drop "-A"
        log(f"{'would remove' if dry_run else 'removed'} host rule: {line}")
        removed += 1
    return removed


def _remove_run(state: dict, log: Callable[[str], None], dry_run: bool = False) -> int:
    removed = 0
    present = set(_run(["ip", "netns", "list"], check=False).stdout.split()) if dry_run else set()
    for ns in state.get("namespaces", []):
        if dry_run:
            if ns in present:
                log(f"would remove namespace {ns}")
                removed += 1
            continue
        _kill_ns_pids(ns)
        if _run(["ip", "netns", "del", ns], check=False).returncode == 0:
            removed += 1
            log(f"removed namespace {ns}")
    for link in state.get("links", []):
        if dry_run:
            if _run(["ip", "link", "show", link], check=False).returncode == 0:
                log(f"would remove link {link}")
                removed += 1
            continue
        if _run(["ip", "link", "del", link], check=False).returncode == 0:
            removed += 1
            log(f"removed link {link}")
    if state.get("id"):
        removed += _remove_host_rules(state["id"], log, dry_run)
    return removed


class NetnsBackend(ProcessGroupNodes, TcpClusterBackend):
    """Node processes in network namespaces on a bridge (see the module docstring)."""

    name = "netns"

    def __init__(self, nodes: Sequence[str], command: Callable[[str, Path, Path | None], list[str]],
                 run_dir: str | os.PathLike, *, seed: int = 0, in_house: bool = True,
                 logger: Callable[[str], None] | None = None):
        """`command(node, node_dir, data_dir)` is the node's argv WITHOUT network flags; the
        backend adds `--listen`/`--peer` (in-house runtime) or wraps it in the TCP shim (--bin)."""
        super().__init__(nodes, run_dir, in_house=in_house, logger=logger, seed=seed)
        require_netns()
        self.command = command
        rng = random.Random()       # names must differ between runs even with the same seed
        self.id = f"{rng.randrange(16 ** 4):04x}"
        self.subnet = pick_subnet(rng)
        hosts = list(self.subnet.hosts())
        self.gateway = str(hosts[0])
        self.bridge = f"{PREFIX_BRIDGE}{self.id}"
        self.ns = {n: f"{PREFIX_NS}{self.id}-{n}" for n in self.nodes}
        self.veth = {n: f"{PREFIX_VETH}{self.id}-{k}" for k, n in enumerate(self.nodes)}
        self.addr = {n: (str(hosts[9 + k]), NODE_PORT) for k, n in enumerate(self.nodes)}
        self.procs: dict[str, subprocess.Popen] = {}
        self.state_file = _state_dir() / f"netns-{self.id}.json"

    # ---- infrastructure -----------------------------------------------------------------------

    def _save_state(self) -> None:
        from ..ownership import me
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_file.write_text(json.dumps({
            "id": self.id, "pid": os.getpid(), "owner": me(),
            "namespaces": list(self.ns.values()),
            "links": [self.bridge, *self.veth.values()], "run_dir": str(self.run_dir)}))

    def _setup_infra(self) -> None:
        cleanup_netns(only_dead_owners=True, log=self._log)
        self._save_state()   # before making anything, so a crash midway is still cleaned up
        prefix = self.subnet.prefixlen
        _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        _run(["ip", "addr", "add", f"{self.gateway}/{prefix}", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])
        _run(["iptables", "-I", "FORWARD", "-i", self.bridge, "-o", self.bridge, "-m", "comment",
              "--comment", f"{COMMENT_PREFIX}{self.id}", "-j", "ACCEPT"])
        for n in self.nodes:
            ns, veth, inner = self.ns[n], self.veth[n], f"sbp-{self.id}"
            _run(["ip", "netns", "add", ns])
            _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", inner])
            _run(["ip", "link", "set", inner, "netns", ns])
            _run(["ip", "-n", ns, "link", "set", inner, "name", "eth0"])
            _run(["ip", "-n", ns, "addr", "add", f"{self.addr[n][0]}/{prefix}", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "link", "set", veth, "master", self.bridge])
            _run(["ip", "link", "set", veth, "up"])
        self._log(f"netns: bridge {self.bridge} {self.subnet}, namespaces "
                  f"{', '.join(f'{n}={a[0]}' for n, a in self.addr.items())}")

    def _teardown_infra(self) -> None:
        for n in self.nodes:
            self._kill_process(n)
        _remove_run({"id": self.id, "namespaces": list(self.ns.values()),
                     "links": [self.bridge, *self.veth.values()]}, lambda m: None)
        self.state_file.unlink(missing_ok=True)

    # ---- processes ----------------------------------------------------------------------------

    def _argv(self, n: str) -> list[str]:
        base = self.command(n, self.node_dir(n), self.data_dir(n) if self.in_house else None)
        host, port = self.addr[n]
        net = ["--listen", f"{host}:{port}", *self.peer_args()]
        if self.in_house:
            return [*base, *net]
        return [sys.executable, "-m", "splitbrain.systems.tcp_shim", *net, "--", *base]

    def _launch(self, n: str) -> None:
        assert n not in self.procs or self.procs[n].poll() is not None, f"{n} is running"
        argv = ["ip", "netns", "exec", self.ns[n], *self._argv(n)]
        with open(self.node_dir(n) / "node.log", "ab") as errf:
            self.procs[n] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=errf,
                                             stderr=errf, cwd=self.node_dir(n),
                                             start_new_session=True)
        from ..ownership import ProcessLedger
        ProcessLedger(self.run_dir).add(n, self.procs[n].pid, netns=self.ns[n])
        self._log(f"{n}: started pid {self.procs[n].pid} in {self.ns[n]}")

    def _exit_code(self, n: str) -> int | None:
        p = self.procs.get(n)
        return p.poll() if p is not None else None

    def _iptables(self, n: str, args: list[str], check: bool = True) -> bool:
        proc = _run(["ip", "netns", "exec", self.ns[n], "iptables", "-w", *args], check=check)
        return proc.returncode == 0

    def alive(self) -> list[int]:
        return [p.pid for p in self.procs.values() if p.poll() is None]

    def drop_counters(self) -> dict[str, int]:
        """Packets each node's kernel dropped in the SPLITBRAIN chain (evidence for tests)."""
        out = {}
        for n in self.nodes:
            proc = _run(["ip", "netns", "exec", self.ns[n], "iptables", "-w", "-L", "SPLITBRAIN",
                         "-v", "-n", "-x"], check=False)
            total = 0
            for line in proc.stdout.splitlines()[2:]:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "DROP":
                    total += int(parts[0])
            out[n] = total
        return out
