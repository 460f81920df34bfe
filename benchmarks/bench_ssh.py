"""The ssh backend's cost: cluster set-up over SSH for 5 hosts, and the harness's overhead per
cluster operation compared to the netns backend.

    sudo python3 benchmarks/bench_ssh.py [--rounds 3] [--ops 10]

The fleet is tests/ssh_fleet.py's: one sshd per host in its own network namespace, reached over a
bridge (so the network adds ~0.1 ms per round trip: real fleets add their RTT to every figure
below per SSH round trip). Prints, for in-house Raft on 5 hosts: connect (5 handshakes in
parallel), upload of the node runtime, start (launch, chains, init handshake), total; for etcd on
5 hosts (when installed): the same plus `ready_s` (first launch to a write acknowledged). Then
the wall and CPU time per operation (partition, heal, kill, restart, pause, resume, liveness) on
the ssh and netns backends, the SSH connections opened (one per host) against the operations
done, and one command through the kept shell session vs through a fresh exec channel.
Wall and CPU (time.process_time of this process) times; the load average is printed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from ssh_fleet import Fleet, fleet_available  # noqa: E402

from splitbrain.harness.backends.factory import make_backend  # noqa: E402
from splitbrain.harness.backends.ssh_hosts import parse_hosts_file  # noqa: E402

NODES = [f"n{k}" for k in range(1, 6)]


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()


def timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def setup_raft(hosts, rounds: int) -> None:
    rows = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as d:
            b = make_backend("ssh", NODES, d, system="raft", machine="kv", bin_path=None,
                             hosts=hosts)
            try:
                wall, cpu = timed(b.start)
                hops = sum(h.ops for h in b.hosts.values())
                rows.append((b.timings["connect_s"], b.timings["upload_s"],
                             wall - b.timings["connect_s"] - b.timings["upload_s"], wall, cpu,
                             hops))
            finally:
                td, _ = timed(b.teardown)
            rows[-1] += (td,)
    med = [statistics.median(r[i] for r in rows) for i in range(7)]
    print(f"raft, 5 hosts, set-up (median of {rounds}): connect {med[0]:.2f} s, upload runtime "
          f"{med[1]:.2f} s, start+init {med[2]:.2f} s, total {med[3]:.2f} s wall / "
          f"{med[4]:.2f} s CPU; {med[5]:.0f} SSH operations; teardown {med[6]:.2f} s")


def setup_etcd(hosts, rounds: int) -> None:
    import shutil
    if shutil.which("etcd") is None:
        print("etcd: not installed, skipped")
        return
    from splitbrain.dbs.cluster import make_db_backend
    rows = []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as d:
            b = make_db_backend("ssh", "etcd", NODES, d, options={}, workload="register",
                                hosts=hosts)
            try:
                wall, cpu = timed(b.start)
                rows.append((b.timings["connect_s"], b.timings["upload_s"], b.ready_s, wall, cpu))
            finally:
                td, _ = timed(b.teardown)
            rows[-1] += (td,)
    med = [statistics.median(r[i] for r in rows) for i in range(6)]
    print(f"etcd, 5 hosts, set-up (median of {rounds}): connect {med[0]:.2f} s, install check "
          f"{med[1]:.2f} s, ready (launch to a write acknowledged) {med[2]:.2f} s, total "
          f"{med[3]:.2f} s wall / {med[4]:.2f} s CPU; teardown incl. log and data download "
          f"{med[5]:.2f} s")


def per_op(b, ops: int) -> dict[str, tuple[float, float]]:
    """Median wall and mean CPU ms of each cluster operation on a started backend."""
    grudge = {"n1": {"n2", "n3"}, "n2": {"n1"}, "n3": {"n1"}}
    plan = [("partition", lambda: b.partition(grudge)), ("heal", b.heal),
            ("kill", lambda: b.kill("n5")), ("restart", lambda: b.restart("n5")),
            ("pause", lambda: b.pause("n4")), ("resume", lambda: b.resume("n4")),
            ("alive", lambda: b._process_alive("n3"))]
    out: dict[str, list[tuple[float, float]]] = {k: [] for k, _ in plan}
    for _ in range(ops):
        for k, fn in plan:
            out[k].append(timed(fn))
    return {k: (statistics.median(w for w, _ in v) * 1000,
                sum(c for _, c in v) / len(v) * 1000) for k, v in out.items()}


def overhead(hosts, ops: int) -> None:
    from splitbrain.harness.backends.factory import make_backend as mk
    res = {}
    for name in ("ssh", "netns"):
        with tempfile.TemporaryDirectory() as d:
            b = mk(name, NODES, d, system="raft", machine="kv", bin_path=None,
                   hosts=hosts if name == "ssh" else None)
            try:
                b.start()
                res[name] = per_op(b, ops)
                if name == "ssh":
                    conns = len(b.hosts)
                    chans = sum(h.ops for h in b.hosts.values())
                    h = b.hosts["n1"]
                    shell = [timed(lambda: h.run("true"))[0] for _ in range(20)]
                    execs = [timed(lambda: h.run("true", stdin=b""))[0] for _ in range(20)]
            finally:
                b.teardown()
    print(f"per operation, 5 nodes (median wall ms / mean CPU ms of this process, {ops} each):")
    print(f"  {'operation':10} {'ssh':>16} {'netns':>16}")
    for k in res["ssh"]:
        s, n = res["ssh"][k], res["netns"][k]
        print(f"  {k:10} {s[0]:8.1f} / {s[1]:5.1f} {n[0]:8.1f} / {n[1]:5.1f}")
    print(f"SSH connections opened: {conns} (one per host) for {chans} remote commands")
    print(f"one command: kept shell session {statistics.median(shell) * 1000:.1f} ms, fresh exec "
          f"channel {statistics.median(execs) * 1000:.1f} ms (median of 20; the exec channel "
          f"starts the user's login shell each time)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--ops", type=int, default=10)
    args = ap.parse_args()
    ok, what = fleet_available()
    if not ok:
        sys.exit(f"bench_ssh: needs {what}")
    print(f"load average before: {loadavg()}")
    fleet = Fleet(5).start()
    try:
        hosts = parse_hosts_file(fleet.hosts_toml())
        setup_raft(hosts, args.rounds)
        setup_etcd(hosts, args.rounds)
        overhead(hosts, args.ops)
    finally:
        fleet.close()
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
