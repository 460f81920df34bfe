"""The netns and docker backends on real networks: the kernel drops a partition's packets (the
nodes' peer connections time out), kill/restart recovers from disk, user-space latency applies,
and teardown leaves no namespace, link, container, network or iptables rule.

These need root (netns) and a Docker engine (docker): they skip outside CI when absent and FAIL
in CI (CI=true), which must provide both.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from conftest import require_node_image, docker_available, require
from splitbrain.harness.backends.local import in_house_command
from splitbrain.harness.grudges import complete_grudge

NODES = ["n1", "n2", "n3"]


def _leftovers(run_id: str) -> str:
    """What this run (backend id) left: namespaces, links, host rules, containers, networks."""
    out = subprocess.run(
        f"ip netns list 2>/dev/null | grep '^sb-{run_id}-';"
        f"ip -o link show 2>/dev/null | grep -oE 'sb[rv]-{run_id}[^:@ ]*';"
        f"iptables -S FORWARD 2>/dev/null | grep splitbrain-{run_id};"
        f"docker ps -aq --filter label=io.splitbrain.run={run_id} 2>/dev/null;"
        f"docker network ls -q --filter label=io.splitbrain.run={run_id} 2>/dev/null",
        shell=True, capture_output=True, text=True).stdout
    return out.strip()


def make_backend(kind: str, run_dir):
    if kind == "netns":
        require(os.geteuid() == 0 and shutil.which("ip") and shutil.which("iptables"),
                "root with iproute2 and iptables")
        from splitbrain.harness.backends.netns import NetnsBackend
        return NetnsBackend(NODES, in_house_command("raft", "kv"), run_dir)
    require_node_image()
    from splitbrain.harness.backends.docker import DockerBackend
    return DockerBackend(NODES, lambda n: ["--system", "raft", "--machine", "kv"], run_dir)


def _wait(pred, timeout_s: float, step_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(step_s)
    return pred()


def _write(b, node: str, value: int, replies: dict, timeout_s: float = 5.0) -> float:
    """A write through the harness connection, following "not the leader" hints; returns the
    latency of the attempt that succeeded, in seconds."""
    for attempt in range(20):
        mid = 1000 * (attempt + 1) + value
        t0 = time.monotonic()
        if b.loop.call(lambda: b.send_client("c1", node, {"type": "write", "key": 1,
                                                           "value": value, "msg_id": mid})):
            if _wait(lambda: mid in replies, timeout_s, step_s=0.005):
                if replies[mid]["type"] == "write_ok":
                    return replies[mid]["_at"] - t0
                assert replies[mid].get("code") == 11, replies[mid]
        time.sleep(0.3)
        node = (replies.get(mid) or {}).get("leader") or b.leader() or node
    raise AssertionError(f"write {value} never succeeded")


@pytest.mark.parametrize("kind", ["netns", "docker"])
def test_kernel_partition_kill_restart_latency_and_clean_teardown(kind, tmp_path):
    b = make_backend(kind, tmp_path)
    replies: dict = {}
    b.on_client_message = lambda node, client, body: replies.__setitem__(
        body.get("in_reply_to"), {**body, "_at": time.monotonic()})
    try:
        b.start()
        leader = _wait(b.leader, 15)
        assert leader, "no leader elected"
        fast = _write(b, leader, 1, replies)

        # Partition the leader away: the kernel drops the packets, the connections time out.
        others = [n for n in NODES if n != leader]
        b.partition(complete_grudge([[leader], others]))
        new_leader = _wait(lambda: (lambda l: l if l in others else None)(b.leader()), 20)
        assert new_leader in others
        time.sleep(1)
        drops = b.drop_counters()
        assert drops[leader] > 0 and all(drops[n] > 0 for n in others), drops
        log = (tmp_path / "nodes" / leader / "node.log")

        def timed_out() -> bool:
            b.collect_logs()     # docker: copies the container's log; netns: already there
            return "timed out" in log.read_text(errors="replace")
        assert _wait(timed_out, 10), \
            "the isolated node's peer connections never timed out"
        b.heal()
        assert b.drop_counters() == {n: 0 for n in NODES}   # the chains are flushed

        # Kill a follower, write, restart it: it recovers its records from disk and catches up.
        leader = _wait(b.leader, 15)
        victim = next(n for n in NODES if n != leader)
        b.kill(victim)
        _write(b, leader, 2, replies)
        b.restart(victim)
        st = _wait(lambda: (lambda s: s if s and s["applied_index"] >= 2 else None)(
            b.status(victim)), 15)
        assert st, f"{victim} did not catch up after restart"
        assert "recovered" in (tmp_path / "nodes" / victim / "node.log").read_text() or kind == "docker"

        # User-space latency on peer traffic slows a replicated write down.
        b.set_network(latency_ms=(80, 90))
        slow = _write(b, leader, 3, replies, timeout_s=10)
        b.set_network()
        assert slow >= 0.16 and fast < 0.08, (fast, slow)   # two delayed hops: out and back
    finally:
        b.teardown()
    assert _leftovers(b.id) == "", f"left behind: {_leftovers(b.id)}"
