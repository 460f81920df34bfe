"""Benchmark of the log checker: prints checking time and operations per second.

Builds an append-log history of N appends (default 1,000,000, each an invoke and an ok), R client
reads (default 100,000) and the final logs of 5 replicas, then checks it once in memory.

Shape of the history: the appends go to K independent logs (`key`, default 10,000 keys), the way
Jepsen's list-append workloads spread appends over many keys. With a single log, each of 100,000
reads would return the whole log so far (on average 500,000 entries) and the history itself would
hold 5*10^10 entries; with K keys a read returns one key's log. Every replica's final read of
every key is the whole log of that key, except one lagging replica that misses the last entry
of some keys. Use --keys 1 --reads 1000 for the single-log shape at a smaller read count.

    python benchmarks/bench_log_checker.py [--appends N] [--reads R] [--keys K] [--replicas 5]
                                           [--seed S] [--jsonl]   # also time reading a JSONL file

For scale: Elle reports 100,000-160,000 transactions per second.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from splitbrain.checkers.log import LogChecker  # noqa: E402
from splitbrain.history.jsonl import iter_jsonl, write_jsonl  # noqa: E402
from splitbrain.history.op import Op  # noqa: E402


def build(appends: int, reads: int, keys: int, replicas: int, seed: int,
          fault: str = "none") -> list[Op]:
    """A valid history: appends acknowledged in order, reads of committed prefixes, final logs.

    fault "swap": the last replica's final log of key 0 has two entries swapped (an order
    cycle); "lost": the last acknowledged append of key 0 is missing from every final log.
    """
    rng = random.Random(seed)
    logs: list[list[int]] = [[] for _ in range(keys)]
    ops: list[Op] = []
    add = ops.append
    t = 0
    read_every = max(1, appends // max(1, reads))
    reads_done = 0
    processes = 50
    for v in range(appends):
        k = rng.randrange(keys)
        p = v % processes
        t += 1000
        add(Op(len(ops), t, p, "invoke", "append", v, k, None))
        logs[k].append(v)
        add(Op(len(ops), t + 500, p, "ok", "append", v, k, None))
        if v % read_every == 0 and reads_done < reads:
            rk = rng.randrange(keys)
            log = logs[rk]
            rp = processes + rk % 50                # one reader per key group: monotonic reads
            node = f"n{rk % replicas + 1}"
            add(Op(len(ops), t + 600, rp, "invoke", "read", None, rk, node))
            add(Op(len(ops), t + 900, rp, "ok", "read", log[:], rk, node))
            reads_done += 1
    p0 = 1000
    for r in range(replicas):
        node = f"n{r + 1}"
        for k in range(keys):
            log = logs[k]
            if k == 0 and fault == "lost":
                log = log[:-1]
            elif k == 0 and fault == "swap" and r == replicas - 1 and len(log) >= 2:
                log = list(log)
                log[0], log[-1] = log[-1], log[0]
            elif r == replicas - 1 and k % 7 == 0 and log:
                log = log[:-1]                      # a lagging replica: a prefix, still valid
            t += 10
            add(Op(len(ops), t, p0 + r, "invoke", "read", None, k, node))
            add(Op(len(ops), t + 5, p0 + r, "ok", "read", log, k, node))
    return ops


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--appends", type=int, default=1_000_000)
    ap.add_argument("--reads", type=int, default=100_000)
    ap.add_argument("--keys", type=int, default=10_000)
    ap.add_argument("--replicas", type=int, default=5)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jsonl", action="store_true", help="also time checking straight from JSONL")
    ap.add_argument("--fault", choices=("none", "swap", "lost"), default="none",
                    help="inject one fault into key 0 (the check must then find it)")
    a = ap.parse_args()
    t0 = time.perf_counter()
    ops = build(a.appends, a.reads, a.keys, a.replicas, a.seed, a.fault)
    t1 = time.perf_counter()
    entries = sum(len(op.value) for op in ops if op.f == "read" and op.type == "ok")
    print(f"built {len(ops):,} ops ({a.appends:,} appends, {a.reads:,} client reads, "
          f"{a.replicas} replicas x {a.keys:,} keys final logs, {entries:,} log entries in reads) "
          f"in {t1 - t0:.1f} s; seed {a.seed}")
    t2, c2 = time.perf_counter(), time.process_time()
    result = LogChecker().check(ops, {})
    t3, c3 = time.perf_counter(), time.process_time()
    dt = t3 - t2
    print(f"checked in {dt:.2f} s wall, {c3 - c2:.2f} s CPU (the machine may be shared: the "
          f"CPU figure is the fairer one): valid={result.valid}, "
          f"anomalies={len(result.anomalies)}")
    for label, secs in (("wall", dt), ("CPU", c3 - c2)):
        print(f"  {label}: {len(ops) / secs:,.0f} history events/s; "
              f"{(len(ops) / 2) / secs:,.0f} operations/s (invoke+completion pairs); "
              f"{entries / secs:,.0f} log entries/s")
    print(f"  peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    if a.fault == "none":
        assert result.valid is True, result.to_json()["anomalies"][:3]
    else:
        found = sorted({x.name for x in result.anomalies})
        print(f"  injected {a.fault}: found {found}")
        assert result.valid is False
    if a.jsonl:
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "history.jsonl")
            write_jsonl(path, ops)
            n = len(ops)
            del ops
            t4 = time.perf_counter()
            result = LogChecker().check(iter_jsonl(path), {})
            t5 = time.perf_counter()
            print(f"streamed from JSONL (parse + check) in {t5 - t4:.2f} s: "
                  f"{n / (t5 - t4):,.0f} events/s, valid={result.valid}")


if __name__ == "__main__":
    main()
