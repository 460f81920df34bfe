"""How many operations per second the harness drives and records against a trivial node.

    python benchmarks/bench_harness.py [--clients 50] [--seconds 10] [--nodes 1]

The node is tests/nodes/linkv.js (JavaScript, one process per node: it answers each request
immediately on n1), so the figure is the harness's own limit: the event loop, the generator,
request encoding, the router, reply decoding and the history written to disk (flushed per op).
Prints ops/s (completed client operations), history events/s, and the harness's CPU time per
operation (process CPU of this Python process divided by operations: its overhead per op).
Every message is written to messages.jsonl as in a real run (--no-message-log: counted only).
Checkers are not run (they are measured by their own benchmarks).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from splitbrain.harness.backends.local import LocalBackend, bin_command  # noqa: E402
from splitbrain.harness.client import ClientPool  # noqa: E402
from splitbrain.harness.generators import Fn, GenOp, time_limit  # noqa: E402
from splitbrain.harness.msglog import MessageLog  # noqa: E402
from splitbrain.harness.store import Recorder  # noqa: E402
from splitbrain.harness.workloads import make_workload  # noqa: E402
from splitbrain.history import HistoryWriter  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--no-message-log", action="store_true",
                    help="do not write messages.jsonl (the statistics are still counted)")
    args = ap.parse_args()
    if shutil.which("node") is None:
        print("needs node (JavaScript) for the trivial node", file=sys.stderr)
        return 2
    workload = make_workload("lin-kv")
    with tempfile.TemporaryDirectory(prefix="bench-harness-") as d:
        nodes = [f"n{i}" for i in range(1, args.nodes + 1)]
        backend = LocalBackend(nodes, bin_command(str(REPO / "tests" / "nodes" / "linkv.js")), d,
                               in_house=False)
        rec = Recorder(HistoryWriter(str(Path(d) / "history.jsonl")))
        msglog = MessageLog(None if args.no_message_log else Path(d) / "messages.jsonl")
        backend.attach_message_log(msglog)
        try:
            backend.start()

            def next_op(rng):
                inv = workload.next_invocation(rng)
                return GenOp(inv.f, inv.value, inv.key)
            t0 = time.monotonic_ns()
            pool = ClientPool(backend, workload, rec, args.clients, t0_ns=t0, timeout_s=5.0)
            cpu0 = time.process_time()
            wall0 = time.monotonic()
            done = pool.run(time_limit(args.seconds, Fn(next_op, seed=1)))
            wall = time.monotonic() - wall0
            cpu = time.process_time() - cpu0
        finally:
            backend.teardown()
            msglog.close()
            rec.close()
        events = len(rec.ops)
        ok = sum(1 for o in rec.ops if o.type == "ok")
        print(f"clients {args.clients}, nodes {args.nodes}, {wall:.1f} s wall")
        print(f"operations completed: {done} ({ok / max(1, events // 2) * 100:.0f}% ok)")
        print(f"throughput: {done / wall:,.0f} ops/s, {events / wall:,.0f} history events/s")
        print(f"harness CPU: {cpu:.2f} s = {cpu / max(1, done) * 1e6:.0f} us per op "
              f"({cpu / wall * 100:.0f}% of one core)")
        print(f"history size: {(Path(d) / 'history.jsonl').stat().st_size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
