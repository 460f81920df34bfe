"""The `docker` backend: each node is a container on a private Docker network made for the test,
with its own address; partitions and loss are iptables rules inside each container (it runs with
NET_ADMIN), so the kernel drops the packets (tcp_cluster.py). Kill is `docker kill` (SIGKILL) and
restart `docker start` of the same container, whose data directory is a bind mount of the store's
nodes/<node>/data, so a restarted node recovers from its disk; pause is `docker pause` (the
freezer cgroup).

Everything is labelled io.splitbrain.run=<ID>, so `splitbrain cleanup` can remove what a crashed
harness left; teardown removes the containers and the network in `finally`, after copying each
container's log into nodes/<node>/node.log.

The image is the offline-built splitbrain-node (docker_image.py): no registry is needed.
A `--bin` node runs inside the container through the TCP shim; only the program file is mounted,
read-only, at /opt/node/<name> (with each file its command line names, at /opt/node/args/<k>/),
never its folder: it must be runnable in the image on its own (a python3 or shell script, or a
static binary). Every container runs with a memory limit (`memory`, default DOCKER_MEMORY) and a
pid limit (`pids_max`, default DOCKER_PIDS_MAX), so a runaway node cannot take the host down;
`--opt harness.docker_memory=1g` / `harness.docker_pids_max=N` change them. Containers and the
network also carry the owner label (ownership.OWNER_LABEL): `cleanup` removes only a dead
harness's.
"""

from __future__ import annotations

import ipaddress
import os
import random
from pathlib import Path
from typing import Callable, Sequence

from ..ownership import OWNER_LABEL
from .tcp_cluster import NODE_PORT, TcpClusterBackend

LABEL = "io.splitbrain.run"
DOCKER_MEMORY = "512m"           # each container's memory limit (Docker's syntax: 512m, 1g)
DOCKER_PIDS_MAX = 256            # each container's limit on processes and threads
STOP_TIMEOUT_S = 10
DATA_IN_CONTAINER = "/data"
BIN_IN_CONTAINER = "/opt/node"


class DockerBackendError(RuntimeError):
    """The Docker engine refused something; the message says what."""


def _client():
    import docker
    try:
        client = docker.from_env()
        client.ping()
    except Exception as e:  # noqa: BLE001
        raise DockerBackendError(f"cannot reach the Docker engine: {e}") from None
    return client


def cleanup_docker(log: Callable[[str], None] = print, *, all_: bool = True,
                   dry_run: bool = False, left: list[str] | None = None) -> int:
    """Remove containers and networks labelled by splitbrain. Returns how many (or, dry, would).

    Without `all_` only those whose owner label (ownership.OWNER_LABEL) names a harness that is
    gone; a live run's, and ones with no owner recorded, are left with the reason in `left`."""
    from ..ownership import OWNER_LABEL, owner_state, parse_owner_id
    left = left if left is not None else []
    try:
        client = _client()
    except DockerBackendError:
        return 0
    removed = 0
    verb = "would remove" if dry_run else "removed"
    for kind, items in (("container", client.containers.list(all=True,
                                                             filters={"label": LABEL})),
                        ("network", client.networks.list(filters={"label": LABEL}))):
        for item in items:
            labels = (item.attrs.get("Config") or {}).get("Labels") if kind == "container" \
                else item.attrs.get("Labels")
            if not all_:
                owner_text = (labels or {}).get(OWNER_LABEL)
                status, why = owner_state(parse_owner_id(owner_text) if owner_text else None)
                if status != "dead":
                    left.append(f"{kind} {item.name}: {why}"
                                + (" (--all removes it)" if not owner_text else ""))
                    continue
            if not dry_run:
                item.remove(**({"force": True} if kind == "container" else {}))
            log(f"{verb} {kind} {item.name}")
            removed += 1
    return removed


def _pick_subnet(client, rng: random.Random) -> ipaddress.IPv4Network:
    used = []
    for net in client.networks.list():
        for cfg in (net.attrs.get("IPAM") or {}).get("Config") or []:
            if cfg.get("Subnet") and ":" not in cfg["Subnet"]:
                used.append(ipaddress.ip_network(cfg["Subnet"]))
    from .netns import _used_subnets
    used += _used_subnets()
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{rng.randrange(208, 216)}.{rng.randrange(0, 256)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise DockerBackendError("no free /24 subnet found in 10.208.0.0/13")


def bin_mounts(program: Path, args: Sequence[str]) -> tuple[list[str], dict]:
    """The argv inside the container and the read-only bind mounts of a --bin node: the program
    file alone at /opt/node/<name> (a bare program name such as `python3` is the image's own,
    not mounted), and each argument that names an existing file at
    /opt/node/args/<k>/<name> (the argument rewritten to that path). Nothing else of the host."""
    if "/" not in str(program):
        # A bare name (`--bin python3 node.py`): the image's own interpreter, found on the
        # container's PATH. Mounting the host's binary would leave its libraries behind.
        argv, mounts = [str(program)], {}
    else:
        program = Path(program).resolve()
        argv = [f"{BIN_IN_CONTAINER}/{program.name}"]
        mounts = {str(program): {"bind": argv[0], "mode": "ro"}}
    for k, a in enumerate(args):
        p = Path(a)
        if a and p.is_file():
            host = str(p.resolve())
            if host not in mounts:      # one bind per host file (Docker's binds are keyed so)
                mounts[host] = {"bind": f"{BIN_IN_CONTAINER}/args/{k}/{p.name}", "mode": "ro"}
            argv.append(mounts[host]["bind"])
        else:
            argv.append(a)
    return argv, mounts


class DockerBackend(TcpClusterBackend):
    """Containers on a private Docker network (see the module docstring)."""

    name = "docker"

    def __init__(self, nodes: Sequence[str], node_args: Callable[[str], list[str]],
                 run_dir: str | os.PathLike, *, in_house: bool = True, bin_path: str | None = None,
                 image: str | None = None, logger: Callable[[str], None] | None = None,
                 memory: str | None = None, pids_max: int | None = None):
        """`node_args(node)` are the arguments after `python3 -m splitbrain.systems.node` for an
        in-house node (without --data and network flags), or the binary's arguments for --bin.
        `memory` and `pids_max` limit each container (defaults DOCKER_MEMORY, DOCKER_PIDS_MAX)."""
        super().__init__(nodes, run_dir, in_house=in_house, logger=logger)
        self.memory = str(memory or DOCKER_MEMORY)
        self.pids_max = int(pids_max or DOCKER_PIDS_MAX)
        if self.pids_max < 1:
            raise DockerBackendError(f"docker pids limit {self.pids_max}: must be >= 1")
        from ..ownership import owner_id
        self.labels = {LABEL: "", OWNER_LABEL: owner_id()}
        self.client = _client()
        self.node_args = node_args
        # A bare name stays a name: the image's own program (see bin_mounts).
        self.bin_path = ((Path(bin_path).resolve() if "/" in str(bin_path) else bin_path)
                         if bin_path else None)
        if not in_house and self.bin_path is None:
            raise DockerBackendError("a --bin node needs the binary's path")
        self.image = image
        rng = random.Random()
        self.id = f"{rng.randrange(16 ** 6):06x}"
        self.labels[LABEL] = self.id
        self.subnet = _pick_subnet(self.client, rng)
        hosts = list(self.subnet.hosts())
        self.gateway = str(hosts[0])
        self.addr = {n: (str(hosts[9 + k]), NODE_PORT) for k, n in enumerate(self.nodes)}
        self.network = None
        self.containers: dict[str, object] = {}

    def _setup_infra(self) -> None:
        import docker
        if self.image is None:
            from .docker_image import ensure_image
            self.image = ensure_image(log=self._log)
        ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(
            subnet=str(self.subnet), gateway=self.gateway)])
        self.network = self.client.networks.create(
            f"splitbrain-{self.id}", driver="bridge", ipam=ipam, labels=dict(self.labels))
        for n in self.nodes:
            self._create(n)
        self._log(f"docker: network {self.network.name} {self.subnet}, containers "
                  f"{', '.join(f'{n}={a[0]}' for n, a in self.addr.items())}")

    def _command(self, n: str) -> tuple[list[str] | None, list[str]]:
        host, port = self.addr[n]
        net = ["--listen", f"{host}:{port}", *self.peer_args()]
        if self.in_house:
            return None, [*self.node_args(n), "--data", DATA_IN_CONTAINER, *net]
        assert self.bin_path is not None
        args, _ = bin_mounts(self.bin_path, self.node_args(n))
        return ["python3", "-m", "splitbrain.systems.tcp_shim"], [*net, "--", *args]

    def _create(self, n: str) -> None:
        import docker
        entrypoint, command = self._command(n)
        volumes = {}
        if self.in_house:
            volumes[str(self.data_dir(n).resolve())] = {"bind": DATA_IN_CONTAINER, "mode": "rw"}
        else:
            _, volumes = bin_mounts(self.bin_path, self.node_args(n))
        endpoint = self.client.api.create_endpoint_config(ipv4_address=self.addr[n][0])
        networking = self.client.api.create_networking_config({self.network.name: endpoint})
        host_config = self.client.api.create_host_config(
            binds=volumes, cap_add=["NET_ADMIN"], mem_limit=self.memory,
            memswap_limit=self.memory, pids_limit=self.pids_max)
        try:
            resp = self.client.api.create_container(
                self.image, command=command, entrypoint=entrypoint,
                name=f"splitbrain-{self.id}-{n}", hostname=n, labels=dict(self.labels),
                host_config=host_config, networking_config=networking, detach=True)
        except docker.errors.APIError as e:
            raise DockerBackendError(f"cannot create the container of {n}: {e}") from None
        self.containers[n] = self.client.containers.get(resp["Id"])

    def _launch(self, n: str) -> None:
        self.containers[n].start()
        self._log(f"{n}: container {self.containers[n].name} started")

    def _kill_process(self, n: str) -> None:
        import docker
        c = self.containers.get(n)
        if c is None:
            return
        try:
            c.reload()
            if c.status == "paused":
                c.unpause()
            if c.status in ("running", "paused"):
                c.kill()
            c.wait(timeout=STOP_TIMEOUT_S)
        except docker.errors.APIError as e:
            if "is not running" not in str(e):
                raise

    def _pause_process(self, n: str) -> None:
        self.containers[n].pause()

    def _resume_process(self, n: str) -> None:
        self.containers[n].reload()
        if self.containers[n].status == "paused":
            self.containers[n].unpause()

    def _process_alive(self, n: str) -> bool:
        c = self.containers.get(n)
        if c is None:
            return False
        c.reload()
        return c.status in ("running", "paused")

    def _iptables(self, n: str, args: list[str], check: bool = True) -> bool:
        c = self.containers[n]
        code, out = c.exec_run(["iptables", "-w", *args])
        if code != 0 and check:
            raise DockerBackendError(f"iptables {' '.join(args)} in {c.name} failed: "
                                     f"{out.decode(errors='replace').strip()}")
        return code == 0

    def _iptables_many(self, n: str, rules: list[list[str]]) -> None:
        # One exec per node instead of one per rule: a docker exec costs tens of milliseconds.
        script = " && ".join("iptables -w " + " ".join(args) for args in rules)
        c = self.containers[n]
        code, out = c.exec_run(["sh", "-c", script])
        if code != 0:
            raise DockerBackendError(f"iptables in {c.name} failed: "
                                     f"{out.decode(errors='replace').strip()}")

    def collect_logs(self) -> None:
        for n, c in self.containers.items():
            try:
                data = c.logs(stdout=True, stderr=True)
            except Exception:  # noqa: BLE001 - a missing log must not stop teardown
                continue
            (self.node_dir(n) / "node.log").write_bytes(data)

    def _teardown_infra(self) -> None:
        self.collect_logs()
        for c in self.containers.values():
            try:
                c.remove(force=True)
            except Exception as e:  # noqa: BLE001 - go on; cleanup_docker is the backstop
                self._log(f"could not remove {c.name}: {e}")
        if self.network is not None:
            try:
                self.network.remove()
            except Exception as e:  # noqa: BLE001
                self._log(f"could not remove {self.network.name}: {e}")

    def alive(self) -> list[str]:
        return [n for n in self.nodes if self._process_alive(n)]

    def drop_counters(self) -> dict[str, int]:
        out = {}
        for n, c in self.containers.items():
            code, data = c.exec_run(["iptables", "-w", "-L", "SPLITBRAIN", "-v", "-n", "-x"])
            total = 0
            for line in data.decode(errors="replace").splitlines()[2:]:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "DROP":
                    total += int(parts[0])
            out[n] = total
        return out
