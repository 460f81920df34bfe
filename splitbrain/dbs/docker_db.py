"""Database nodes as containers (`splitbrain test --db NAME --backend docker`).

Each node is a container of the database's image (image.py: the offline base image plus the
database's Debian packages) on a private Docker network made for the test, with NET_ADMIN so that
partitions and loss are iptables rules inside it (harness/backends/docker.py does the network,
the labels with the owner (cleanup), the memory and pids limits, kill = `docker kill`, restart = `docker start` of the same container, pause =
`docker pause`, and teardown). The node's directory nodes/<n>/ is bind-mounted at the SAME path
inside the container, so the config files, ids and data directory the adapter writes are where
its command line says they are, and a restarted container recovers from its kept data. The
container's output becomes nodes/<n>/node.log at teardown.
"""

from __future__ import annotations

from ..harness.backends.docker import DockerBackend, DockerBackendError
from .cluster import DbCluster


class DockerDb(DbCluster, DockerBackend):
    name = "docker"

    def __init__(self, nodes, run_dir, db_cls, options, workload: str, *, logger=None):
        from .image import ensure_db_image
        # in_house=True only makes DockerBackend accept a node without a --bin path (we build
        # our own containers in _create); the cluster is not in-house.
        DockerBackend.__init__(self, nodes, lambda n: [], run_dir, in_house=True, logger=logger)
        self.in_house = False
        hosts = {n: a[0] for n, a in self.addr.items()}
        self._db_init(db_cls, hosts, options, workload, self.id)
        self.image = ensure_db_image(db_cls, log=self._log)

    def _create(self, n: str) -> None:
        import docker
        argv = self.db.command(n)
        node_dir = str(self.node_dir(n).resolve())
        endpoint = self.client.api.create_endpoint_config(ipv4_address=self.addr[n][0])
        networking = self.client.api.create_networking_config({self.network.name: endpoint})
        host_config = self.client.api.create_host_config(
            binds={node_dir: {"bind": node_dir, "mode": "rw"}}, cap_add=["NET_ADMIN"],
            mem_limit=self.memory, memswap_limit=self.memory, pids_limit=self.pids_max)
        try:
            resp = self.client.api.create_container(
                self.image, command=argv[1:], entrypoint=[argv[0]], working_dir=node_dir,
                name=f"splitbrain-{self.id}-{n}", hostname=n, labels=dict(self.labels),
                host_config=host_config, networking_config=networking, detach=True)
        except docker.errors.APIError as e:
            raise DockerBackendError(f"cannot create the container of {n}: {e}") from None
        self.containers[n] = self.client.containers.get(resp["Id"])


def make_docker_db(nodes, run_dir, db_cls, options, workload: str, *, logger=None):
    from ..harness.backends.docker_image import ImageBuildError
    try:
        return DockerDb(nodes, run_dir, db_cls, options, workload, logger=logger)
    except (DockerBackendError, ImageBuildError) as e:
        raise RuntimeError(str(e)) from None
