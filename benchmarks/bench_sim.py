"""Simulator speed: simulated client ops per wall second and schedules per minute, 5-node Raft
with faults (partition, kill, pause, clock, loss).

    python benchmarks/bench_sim.py [--system raft] [--seeds 10] [--time-limit 10] [--rate 2000]

Prints, over `--seeds` runs: client ops (invocations) per wall second of simulation alone, the
same including checking, events per second, and schedules per minute (simulate + check) at the
campaign's default size (5 virtual seconds, rate 500).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from splitbrain.harness.fault_search import CHECKER_OPTIONS  # noqa: E402
from splitbrain.harness.sim import SimConfig, check_run, simulate  # noqa: E402
from splitbrain.harness.sim.schedule import KINDS  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--system", default="raft")
    ap.add_argument("--workload", default="append-log")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--time-limit", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=2000.0)
    ap.add_argument("--concurrency", type=int, default=20)
    args = ap.parse_args()

    sim_s = check_s = sim_cpu = 0.0
    ops = events = oks = 0
    for seed in range(args.seeds):
        cfg = SimConfig(system=args.system, workload=args.workload, seed=seed, nodes=5,
                        concurrency=args.concurrency, rate=args.rate,
                        time_limit_s=args.time_limit, nemesis=KINDS)
        t0 = time.perf_counter()
        c0 = time.process_time()
        run = simulate(cfg)
        t1 = time.perf_counter()
        sim_cpu += time.process_time() - c0
        check_run(run, {"checker_options": CHECKER_OPTIONS})
        t2 = time.perf_counter()
        sim_s += t1 - t0
        check_s += t2 - t1
        ops += run.stats["invocations"]
        events += run.stats["events"]
        oks += sum(1 for o in run.history if o.type == "ok" and o.process != "nemesis")
    print(f"{args.system} x5 nodes, {args.workload}, faults {','.join(KINDS)}, "
          f"{args.seeds} seeds x {args.time_limit:g} virtual s, rate {args.rate:g}/s, "
          f"concurrency {args.concurrency}")
    print(f"  client ops: {ops} ({oks} ok), events: {events}")
    print(f"  simulation only:   {ops / sim_s:,.0f} client ops per wall second, "
          f"{events / sim_s:,.0f} events/s, {sim_s / args.seeds:.2f} s per run")
    print(f"  simulation, per CPU second (what one uncontended core does): "
          f"{ops / sim_cpu:,.0f} client ops/s, {events / sim_cpu:,.0f} events/s")
    print(f"  with checking:     {ops / (sim_s + check_s):,.0f} client ops per wall second "
          f"(checking {check_s / args.seeds:.2f} s per run)")

    # Schedules per minute at the campaign's size.
    n = max(3, args.seeds)
    t0 = time.perf_counter()
    c0 = time.process_time()
    for seed in range(n):
        run = simulate(SimConfig(system=args.system, workload=("register", "append-log")[seed % 2],
                                 seed=seed, time_limit_s=5.0, nemesis=KINDS))
        check_run(run, {"checker_options": CHECKER_OPTIONS})
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    print(f"  schedules per minute (5 virtual s, rate 500, simulate + check): {n / dt * 60:,.0f} "
          f"wall, {n / cpu * 60:,.0f} per CPU minute")
    load = os.getloadavg()[0]
    print(f"  (load average {load:.1f} on {os.cpu_count()} cores while measuring)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
