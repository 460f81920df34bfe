"""Benchmark of the transactional checker (list-append): transactions per second and memory.

Builds a valid strict-serializable list-append history in memory (splitbrain/checkers/
transactions/synth.py: 4 micro-ops per transaction, 10 keys active at a time, a key retired after
32 appends, 10 client processes), then checks it once under strict-serializable (every edge
kind, the real-time order included) and prints, per size:

  txns, micro-ops, check wall time and CPU time, transactions/s (by CPU and by wall time),
  the checker's peak of traced memory (tracemalloc: what the check allocated on top of the
  history), that peak per micro-op, and the process's peak RSS (history included).

    python benchmarks/bench_txn.py [--sizes 100000,1000000] [--seed 1] [--no-tracemalloc]

What is timed: `TxnChecker.check` on the history already in memory (a list of Op, as `splitbrain
check` holds it after reading the file): pairing invocations with completions, the inference,
the strongly connected components and the verdict; not generating or reading the history, and
not the one-time imports. tracemalloc slows Python down by about 2x, so the time is measured in
a run without it and the memory in a second run with it (skip that run with --no-tracemalloc). On a shared machine the
CPU time is the fairer figure: wall time includes waiting for other processes' turn; the
reference loop printed first says how much slower than an idle core this machine runs now.
For scale: Elle reports 100,000-160,000 transactions per second on a large machine.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from splitbrain.checkers.transactions import TxnChecker  # noqa: E402
from splitbrain.checkers.transactions.synth import simulate  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-tracemalloc", action="store_true")
    args = ap.parse_args()
    # How fast this machine runs Python right now (shared machines vary several-fold): a plain
    # loop of 10 million additions, about 0.35 s of CPU on an idle 3 GHz core.
    c0 = time.process_time()
    x = 0
    for i in range(10_000_000):
        x += i
    print(f"reference loop (10M additions): {time.process_time() - c0:.2f} s CPU; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'txns':>9} {'mops':>9} {'wall s':>8} {'cpu s':>7} {'txn/s cpu':>10} "
          f"{'txn/s wall':>10} {'peak MiB':>9} {'B/mop':>6} {'RSS MiB':>8}  verdict")
    for n in (int(x) for x in args.sizes.split(",")):
        ops = simulate(n, seed=args.seed, mops=4, active_keys=10, writes_per_key=32,
                       concurrency=10)
        mops = sum(len(o.value) for o in ops if o.type == "ok")
        checker = TxnChecker("list-append")
        # One-time imports outside the timing: networkx (a small check) and scipy's graph
        # module, which a check imports only for a graph of more than 20,000 nodes (about
        # 0.2-0.3 s of CPU, paid once per process; earlier figures included it in the 100k row).
        checker.check(ops[:2000])
        import scipy.sparse.csgraph  # noqa: F401
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        result = checker.check(ops)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        peak = None
        if not args.no_tracemalloc:
            gc.collect()
            tracemalloc.start()
            checker.check(ops)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        peak_s = f"{peak / 2**20:9.1f} {peak / mops:6.0f}" if peak else f"{'-':>9} {'-':>6}"
        print(f"{n:>9} {mops:>9} {wall:8.2f} {cpu:7.2f} {n / cpu:10.0f} {n / wall:10.0f} "
              f"{peak_s} {rss:8.0f}  {result.valid}", flush=True)
        del ops, result
        gc.collect()


if __name__ == "__main__":
    main()
