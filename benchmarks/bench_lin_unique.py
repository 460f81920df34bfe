#!/usr/bin/env python3
"""Benchmark the unique-values polynomial register checker against the general search.

Prints figures (no assertions). Every case runs in its own child process (so that its peak RSS is
its own): it generates the history in memory, then checks it, and reports wall and CPU seconds
of the check, the peak RSS of the child (history included) and the RSS before the check, the
verdict and the method the checker used.

Part 1: generated register histories with unique written values (a counter), of 10, 50 and 100
concurrent clients x 1k, 10k and 100k operations, without and with crashed operations (5% of
the writes end `info` or never complete, half of them having taken effect), valid ones and ones
with one stale read injected (invalid): the polynomial method (`method="auto"`) and the general
search (`method="search"`) with --search-limit seconds; where the search stops deciding is the
first size at which it ends "unknown".
Part 2: one history of --big operations (default 2M) and its halves, polynomial method only:
the goal is < 20 s and < 1 GB, time linear in the length.
Part 3 (--porcupine): Porcupine's corpus, in process, through benchmarks/bench_linearizability.py
part 1 (its histories are not unique-valued: the search runs, after the extra streaming pass).

    python benchmarks/bench_lin_unique.py [--sizes 1000,10000,100000] [--clients 10,50,100]
        [--search-limit 20] [--big 2000000] [--porcupine] [--skip-search]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def generate(n_ops: int, clients: int, crash_p: float, stale: bool, seed: int = 1):
    """A register history of `n_ops` operations by `clients` concurrent clients, written values
    unique. Each operation takes effect at a random moment of its interval (so the history is
    linearizable); with `stale`, one read in the middle returns the value before the last one
    written ahead of its invocation (a stale read: not linearizable)."""
    from splitbrain.history.op import Op
    rng = random.Random(seed)
    ops: list = []
    append = ops.append
    state = None
    counter = 0
    # per client: [process, f, value, applied result or MISSING]
    MISSING = object()
    slots = [[c, None, None, MISSING] for c in range(clients)]
    busy = [False] * clients
    fresh = clients
    started = 0
    values_before: list = []      # recent (value, previous value) for the stale read
    stale_at = n_ops // 2 if stale else -1
    t = 0
    idx = 0
    while started < n_ops or any(busy):
        c = rng.randrange(clients)
        s = slots[c]
        t += 1
        if not busy[c]:
            if started >= n_ops:
                continue
            started += 1
            if rng.random() < 0.5:
                s[1], s[2] = "read", None
            else:
                counter += 1
                s[1], s[2] = "write", counter
            s[3] = MISSING
            busy[c] = True
            append(Op(idx, t, s[0], "invoke", s[1], s[2]))
            idx += 1
            continue
        if s[3] is MISSING:
            if s[1] == "write" and crash_p and rng.random() < crash_p / 2:
                # crashed before it took effect: an info completion, or none at all
                if rng.random() < 0.5:
                    append(Op(idx, t, s[0], "info", "write", s[2], error="timeout"))
                    idx += 1
                busy[c] = False
                s[0] = fresh
                fresh += 1
                continue
            if s[1] == "write":
                values_before.append(state)
                state = s[2]
                s[3] = state
            else:
                s[3] = state
            continue
        if s[1] == "write" and crash_p and rng.random() < crash_p / 2:  # after taking effect
            if rng.random() < 0.5:
                append(Op(idx, t, s[0], "info", "write", s[2], error="timeout"))
                idx += 1
            busy[c] = False
            s[0] = fresh
            fresh += 1
            continue
        result = s[3]
        if s[1] == "read" and started >= stale_at >= 0 and len(values_before) > 4 * clients:
            # a value overwritten long before this read began (3 x clients writes ago)
            result = values_before[-3 * clients]
            stale_at = -1
        append(Op(idx, t, s[0], "ok", s[1], result))
        idx += 1
        busy[c] = False
    return ops


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def one(args) -> None:
    """Child: generate, check, print one JSON line."""
    from splitbrain.checkers.linearizability import check_linearizable
    import gc
    ops = generate(args.n, args.clients, args.crash, args.stale, args.seed)
    gc.collect()
    before = rss_mb()
    w0, c0 = time.perf_counter(), time.process_time()
    r = check_linearizable(ops, "register", time_limit=args.limit, method=args.method,
                           workers=args.workers)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"valid": r.valid, "method": r.stats.get("method"), "wall": wall,
                      "cpu": cpu, "peak_mb": peak, "before_mb": before,
                      "calls": r.stats.get("calls"), "crashed": r.stats.get("crashed_calls"),
                      "left_out": r.stats.get("crashed_calls_left_out"),
                      "error": r.error, "history_ops": len(ops)}))


def run_case(n, clients, crash, stale, method, limit, workers=None, seed=1) -> dict:
    cmd = [sys.executable, __file__, "--one", "--n", str(n), "--clients", str(clients),
           "--crash", str(crash), "--method", method, "--seed", str(seed)]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    if stale:
        cmd.append("--stale")
    if workers:
        cmd += ["--workers", str(workers)]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def fmt(r: dict) -> str:
    if "valid" not in r:
        return f"error: {r.get('error')}"
    v = {True: "valid", False: "INVALID"}.get(r["valid"], "unknown")
    return (f"{v:<8} {r['wall']:8.3f} {r['cpu']:8.3f} {r['peak_mb']:7.0f} {r['before_mb']:7.0f}"
            + (f"  ({r['error'][:60]})" if r.get("error") else ""))


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, default=1000, help=argparse.SUPPRESS)
    ap.add_argument("--crash", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--stale", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--method", default="auto", help=argparse.SUPPRESS)
    ap.add_argument("--limit", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--workers", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--clients", default="10,50,100")
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--search-limit", type=float, default=20.0)
    ap.add_argument("--big", type=int, default=2_000_000)
    ap.add_argument("--skip-search", action="store_true")
    ap.add_argument("--skip-grid", action="store_true")
    ap.add_argument("--porcupine", action="store_true")
    a = ap.parse_args()
    if a.one:
        a.clients = int(a.clients)
        one(a)
        return
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average {load()}")
    clients = [int(x) for x in a.clients.split(",")]
    sizes = [int(x) for x in a.sizes.split(",")]
    if not a.skip_grid:
        print("\n== Part 1: generated unique-value register histories ==")
        print(f"{'clients':>7} {'ops':>7} {'crashed':>7} {'kind':<7} {'method':<10} "
              f"{'verdict':<8} {'wall s':>8} {'cpu s':>8} {'peak MB':>7} {'hist MB':>7}")
        stops: dict = {}
        for crash in (0.0, 0.05):
            for stale in (False, True):
                for cl in clients:
                    for n in sizes:
                        for method in ("auto",) + (() if a.skip_search else ("search",)):
                            key = (crash, stale, cl, method)
                            if method == "search" and key in stops:
                                r = {"skipped": True}
                                line = f"(not run: unknown at {stops[key]:,} ops already)"
                            else:
                                r = run_case(n, cl, crash, stale, method, a.search_limit)
                                line = fmt(r)
                                if method == "search" and r.get("valid") not in (True, False):
                                    stops[key] = n
                            print(f"{cl:>7} {n:>7} {'5%' if crash else 'no':>7} "
                                  f"{'stale' if stale else 'valid':<7} "
                                  f"{'poly' if method == 'auto' else 'search':<10} {line}",
                                  flush=True)
        print("\nwhere the search stops deciding (first size ending unknown within "
              f"{a.search_limit:g} s):")
        for (crash, stale, cl, _), n in sorted(stops.items()):
            print(f"  {cl} clients, {'5% crashed' if crash else 'no crashes'}, "
                  f"{'stale read' if stale else 'valid'}: {n:,} ops")
    if a.big:
        print(f"\n== Part 2: one long history (polynomial method), load average {load()} ==")
        print("ops = invocations; the history has about twice as many lines (events)")
        print(f"{'ops':>9} {'crashed':>7} {'verdict':<8} {'wall s':>8} {'cpu s':>8} "
              f"{'peak MB':>7} {'hist MB':>7} {'cpu us/op':>9}")
        for n in (a.big // 8, a.big // 4, a.big // 2, a.big):
            for crash in (0.0, 0.05):
                r = run_case(n, 10, crash, False, "auto", None)
                per = f"{r['cpu'] / n * 1e6:9.2f}" if "cpu" in r else ""
                print(f"{n:>9} {'5%' if crash else 'no':>7} {fmt(r)} {per}", flush=True)
    if a.porcupine:
        corpus = REPO / "tests" / "data" / "porcupine"
        print(f"\n== Part 3: Porcupine's corpus ({corpus}), load average {load()} ==")
        subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_linearizability.py"),
                        "--repeat", "3"], env=dict(os.environ, PYTHONPATH=str(REPO)))


if __name__ == "__main__":
    main()
