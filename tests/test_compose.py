"""docker/compose.yaml brings up a 5-node Raft cluster by hand that elects one leader."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time

from conftest import require_node_image, REPO, docker_available, require

COMPOSE = REPO / "docker" / "compose.yaml"
PROJECT = "splitbrain-compose-test"


def _compose(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    cmd = [exe] if exe else ["docker", "compose"]
    return subprocess.run([*cmd, "-f", str(COMPOSE), "-p", PROJECT, *args], capture_output=True,
                          text=True, timeout=300)


def _status(ip: str) -> dict | None:
    try:
        with socket.create_connection((ip, 7000), timeout=2) as s:
            s.sendall(json.dumps({"src": "c1", "dest": "n", "body": {"type": "status",
                                                                   "msg_id": 1}}).encode() + b"\n")
            s.settimeout(2)
            return json.loads(s.recv(65536).split(b"\n")[0])["body"]
    except (OSError, ValueError):
        return None


def test_compose_brings_up_a_five_node_raft_cluster():
    require(docker_available(), "a Docker engine")
    require(shutil.which("docker-compose") is not None or
            subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0,
            "docker compose")
    require_node_image()
    from splitbrain.harness.backends.docker_image import ensure_image
    ensure_image(log=lambda m: None)
    up = _compose("up", "-d")
    try:
        assert up.returncode == 0, up.stderr
        net = subprocess.run(["docker", "network", "inspect", f"{PROJECT}_raft"],
                             capture_output=True, text=True)
        assert net.returncode == 0, "the compose network was not created"
        ips = [f"10.219.77.{10 + i}" for i in range(5)]
        deadline = time.monotonic() + 30
        leaders: set = set()
        while time.monotonic() < deadline:
            statuses = [_status(ip) for ip in ips]
            leaders = {s["leader"] for s in statuses if s and s.get("leader")}
            if all(statuses) and len(leaders) == 1 and all(s["leader"] for s in statuses):
                break
            time.sleep(0.5)
        assert len(leaders) == 1, f"no single leader: {leaders}"
    finally:
        down = _compose("down", "-v")
    assert down.returncode == 0, down.stderr
    left = subprocess.run(["docker", "ps", "-aq", "--filter", f"name={PROJECT}"],
                          capture_output=True, text=True).stdout.strip()
    assert left == ""
