"""The router's cost per message: Maelstrom's broadcast challenge setting through the local backend.

    python benchmarks/bench_router.py [--nodes 25] [--seconds 10] [--rate 100] [--latency 100]
                                      [--topology grid|line|total] [--clients 10]

25 gossip nodes (tests/nodes/gossip.py: flood each new message to the topology's neighbours)
run behind the harness's router; clients broadcast unique values at `--rate` (and read now and
then), every message goes through the router (with `--latency` ms added to each node->node
message) and into messages.jsonl, as in `splitbrain test --bin ... -w broadcast --node-count 25
--time-limit 20 --rate 100 --latency 100`.

Prints the messages routed per second, and the harness's CPU per message and per operation,
measured on the router's own thread (the event loop: routing, the message log, the clients) and
for the whole harness process. The router is the bottleneck only if its thread nears 100% of a
core; it is printed as a share of one core.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from splitbrain.harness.backends.local import LocalBackend, bin_command  # noqa: E402
from splitbrain.harness.client import ClientPool  # noqa: E402
from splitbrain.harness.generators import Fn, GenOp, rate, time_limit  # noqa: E402
from splitbrain.harness.msglog import MessageLog  # noqa: E402
from splitbrain.harness.store import Recorder  # noqa: E402
from splitbrain.harness.workloads import Completion, Invocation, Workload  # noqa: E402
from splitbrain.history import HistoryWriter  # noqa: E402

GOSSIP = REPO / "tests" / "nodes" / "gossip.py"


class Broadcast(Workload):
    """Just enough of Maelstrom's broadcast for the benchmark (no checker is run)."""

    name = "broadcast-bench"

    def __init__(self):
        super().__init__({})
        self._values = itertools.count()

    def next_invocation(self, rng):
        if rng.random() < 0.1:
            return Invocation("read", None)
        return Invocation("broadcast", next(self._values))

    def request(self, inv):
        if inv.f == "read":
            return {"type": "read"}
        return {"type": "broadcast", "message": inv.value}

    def completion(self, inv, reply):
        if reply.get("type") == f"{inv.f}_ok":
            return Completion("ok", reply.get("messages", inv.value))
        return Completion("info", inv.value, "unexpected-reply")


def topology(nodes: list[str], kind: str) -> dict[str, list[str]]:
    """Maelstrom-like topologies: a square-ish grid, a line, or everyone to everyone."""
    n = len(nodes)
    if kind == "total":
        return {a: [b for b in nodes if b != a] for a in nodes}
    if kind == "line":
        return {a: [nodes[j] for j in (i - 1, i + 1) if 0 <= j < n] for i, a in enumerate(nodes)}
    w = max(1, int(n ** 0.5))
    out = {}
    for i, a in enumerate(nodes):
        r, c = divmod(i, w)
        nb = []
        for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
            j = rr * w + cc
            if 0 <= cc < w and 0 <= j < n and rr >= 0:
                nb.append(nodes[j])
        out[a] = nb
    return out


def thread_cpu_s(thread: threading.Thread) -> float:
    return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=25)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=100.0)
    ap.add_argument("--latency", type=float, default=100.0, help="ms per node->node message")
    ap.add_argument("--topology", default="grid", choices=("grid", "line", "total"))
    ap.add_argument("--clients", type=int, default=10)
    args = ap.parse_args()
    workload = Broadcast()
    with tempfile.TemporaryDirectory(prefix="bench-router-") as d:
        nodes = [f"n{i}" for i in range(1, args.nodes + 1)]
        backend = LocalBackend(nodes, bin_command(sys.executable, [str(GOSSIP)]), d,
                               in_house=False, latency_ms=args.latency)
        msglog = MessageLog(Path(d) / "messages.jsonl")
        backend.attach_message_log(msglog)
        rec = Recorder(HistoryWriter(str(Path(d) / "history.jsonl")))
        try:
            t_start = time.monotonic()
            backend.start()
            up_s = time.monotonic() - t_start
            topo = topology(nodes, args.topology)
            for n in nodes:
                backend.control(n, {"type": "topology", "topology": topo}, timeout_s=10)
            t0 = time.monotonic_ns()
            msglog.set_t0(t0)
            pool = ClientPool(backend, workload, rec, args.clients, t0_ns=t0, timeout_s=5.0)

            def next_op(rng):
                inv = workload.next_invocation(rng)
                return GenOp(inv.f, inv.value, inv.key)
            loop_thread = backend.loop._thread
            before = dict(msglog.counts["servers"]), dict(msglog.counts["clients"])
            cpu0, loop0, wall0 = time.process_time(), thread_cpu_s(loop_thread), time.monotonic()
            done = pool.run(time_limit(args.seconds, rate(args.rate, Fn(next_op, seed=1), seed=2)))
            time.sleep(args.latency / 1000 * 4 + 0.5)     # let the gossip settle
            wall = time.monotonic() - wall0
            loop_cpu = thread_cpu_s(loop_thread) - loop0
            cpu = time.process_time() - cpu0
            servers = msglog.counts["servers"]["msg-count"] - before[0]["msg-count"]
            clients = msglog.counts["clients"]["msg-count"] - before[1]["msg-count"]
        finally:
            backend.teardown()
            msglog.close()
            rec.close()
        msgs = servers + clients
        ok = sum(1 for o in rec.ops if o.type == "ok")
        print(f"{args.nodes} gossip nodes ({args.topology}), {args.clients} clients, rate "
              f"{args.rate:g}/s, latency {args.latency:g} ms, {wall:.1f} s measured "
              f"(cluster up in {up_s:.1f} s)")
        print(f"operations: {done} completed, {ok} ok")
        print(f"messages routed: {msgs:,} ({servers:,} between servers, {clients:,} with clients)"
              f" = {msgs / wall:,.0f} msgs/s, {servers / max(1, done):.1f} server msgs per op")
        print(f"router thread CPU: {loop_cpu:.2f} s = {loop_cpu / max(1, msgs) * 1e6:.0f} us per "
              f"message, {loop_cpu / max(1, done) * 1e3:.2f} ms per op "
              f"({loop_cpu / wall * 100:.0f}% of one core)")
        print(f"harness process CPU: {cpu:.2f} s = {cpu / max(1, msgs) * 1e6:.0f} us per message "
              f"({cpu / wall * 100:.0f}% of one core)")
        print(f"messages.jsonl: {(Path(d) / 'messages.jsonl').stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
