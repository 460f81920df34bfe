"""Simulator campaign for Multi-Paxos and Viewstamped Replication: valid with no bug, each bug found.

    python benchmarks/campaign_paxos_vr.py [--seeds 1000] [--bug-seeds 300]
        [--systems multi-paxos,vr] [--workloads append-log,kv,arith] [--nodes 5]
        [--nemesis partition,kill,pause,clock,loss] [--bugs a,b]

For each system and workload, runs `--seeds` simulated schedules (partitions, crashes, pauses,
clock faults, loss; the simulator's default nemeses) with no bug switched on and counts the runs
the checkers found valid / invalid / unknown; then, for each bug switch, runs seeds from 0 until
the first invalid run (at most `--bug-seeds`) and prints its seed and the anomalies named. Prints
wall time per run. Any invalid run with no bug is printed with its seed so it replays exactly:
`splitbrain test --backend sim --system S --workload W --seed N`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from splitbrain.harness.fault_search import CHECKER_OPTIONS, WORKLOAD_OPTIONS  # noqa: E402
from splitbrain.harness.sim import SimConfig, check_run, simulate  # noqa: E402
from splitbrain.systems.registry import get_system  # noqa: E402


NODES = 5
NEMESIS: tuple[str, ...] = ("partition", "kill", "pause", "clock", "loss")


def one(system: str, workload: str, seed: int, bugs: tuple[str, ...] = ()):
    # The fault search's options keep checking tractable (arith spread over a few keys).
    run = simulate(SimConfig(system=system, workload=workload, seed=seed, bugs=bugs,
                             nodes=NODES, nemesis=NEMESIS,
                             workload_options=dict(WORKLOAD_OPTIONS.get(workload, {}))))
    result = check_run(run, {"checker_options": CHECKER_OPTIONS})
    names = sorted({a.name for ch in result.children.values() for a in ch.anomalies
                    if ch.valid is not True})
    failed = sorted(k for k, ch in result.children.items() if ch.valid is not True)
    return result.valid, names, failed, run.stats


def main() -> int:
    global NODES, NEMESIS
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=1000)
    ap.add_argument("--bug-seeds", type=int, default=300)
    ap.add_argument("--systems", default="multi-paxos,vr")
    ap.add_argument("--workloads", default="append-log,kv,arith")
    ap.add_argument("--nodes", type=int, default=5)
    ap.add_argument("--nemesis", default=",".join(NEMESIS))
    ap.add_argument("--bugs", default="", help="only these bug switches (default: all)")
    args = ap.parse_args()
    NODES = args.nodes
    NEMESIS = tuple(args.nemesis.split(","))
    for system in args.systems.split(","):
        cls = get_system(system)
        for workload in args.workloads.split(","):
            counts: Counter = Counter()
            oks = 0
            t0 = time.perf_counter()
            for seed in range(args.seeds):
                valid, names, failed, stats = one(system, workload, seed)
                counts[str(valid)] += 1
                if valid is not True:
                    print(f"  NO-BUG {system} {workload} seed {seed}: {valid} {failed} {names}",
                          flush=True)
            dt = time.perf_counter() - t0
            print(f"{system:12s} {workload:10s} no bug: {dict(counts)} in {args.seeds} runs, "
                  f"{1000 * dt / max(1, args.seeds):.0f} ms/run", flush=True)
            for bug in (args.bugs.split(",") if args.bugs else cls.BUGS):
                t0 = time.perf_counter()
                found = None
                for seed in range(args.bug_seeds):
                    valid, names, failed, _ = one(system, workload, seed, (bug,))
                    if valid is False:
                        found = (seed, failed, names)
                        break
                dt = time.perf_counter() - t0
                if found:
                    print(f"{system:12s} {workload:10s} {bug}: found at seed {found[0]} "
                          f"({found[0] + 1} runs, {dt:.1f}s) by {found[1]}: {found[2]}",
                          flush=True)
                else:
                    print(f"{system:12s} {workload:10s} {bug}: NOT found in {args.bug_seeds} "
                          f"runs ({dt:.1f}s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
