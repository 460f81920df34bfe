"""Simulation campaign: every system with no bug over many random schedules, and every bug switch
until the simulator finds it (then Hypothesis shrinks it).

    python benchmarks/sim_campaign.py --schedules 1000 --bug-budget 300
    python benchmarks/sim_campaign.py --systems raft --schedules 50 --no-shrink

Part 1 prints, per system, how many of N random schedules (seed i: settings, fault kinds and
faults from the seed, workloads in rotation) passed, and the replay
command of every failure. Part 2 prints, per bug switch, how many seeded schedules it took to
find a violation, the checker and anomaly names, and then the Hypothesis-shrunk schedule with the
command that replays it. The last lines are the known-failing seeds, in the form that
tests/test_fault_search.py records.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from splitbrain.commands.test import replay_command  # noqa: E402
from splitbrain.harness.fault_search import (CHECKER_OPTIONS, WORKLOAD_OPTIONS, nemesis_for,
                                             search, violations)  # noqa: E402
from splitbrain.harness.sim import SimConfig, check_run, simulate  # noqa: E402
from splitbrain.harness.sim.schedule import KINDS  # noqa: E402
from splitbrain.systems.registry import available_systems  # noqa: E402

WORKLOADS = ("register", "append-log", "kv", "arith", "set")


def seeded_case(system: str, seed: int, bugs: tuple[str, ...], time_limit: float,
                workloads: tuple[str, ...]) -> tuple[SimConfig, dict]:
    wl = workloads[seed % len(workloads)]
    nemesis = nemesis_for(seed)
    cfg = SimConfig(system=system, workload=wl, seed=seed, time_limit_s=time_limit,
                    nemesis=nemesis, bugs=bugs, workload_options=WORKLOAD_OPTIONS.get(wl, {}))
    test = {"backend": "sim", "system": system, "workload": wl, "nemesis": list(nemesis),
            "time_limit": time_limit, "nodes": cfg.nodes, "concurrency": cfg.concurrency,
            "rate": cfg.rate, "seed": seed, "bugs": list(bugs),
            "workload_opts": WORKLOAD_OPTIONS.get(wl, {})}
    return cfg, test


def run_seed(system, seed, bugs, time_limit, workloads):
    cfg, test = seeded_case(system, seed, bugs, time_limit, workloads)
    run = simulate(cfg)
    result = check_run(run, {"checker_options": CHECKER_OPTIONS})
    return run, result, test


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", default=",".join(available_systems()))
    ap.add_argument("--schedules", type=int, default=100, help="no-bug schedules per system")
    ap.add_argument("--bug-budget", type=int, default=300, help="schedules per bug at most")
    ap.add_argument("--time-limit", type=float, default=5.0, help="virtual s of faults per run")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--no-shrink", action="store_true", help="skip the Hypothesis search")
    ap.add_argument("--skip-clean", action="store_true", help="only hunt bugs")
    ap.add_argument("--skip-bugs", action="store_true", help="only the no-bug schedules")
    args = ap.parse_args()
    systems = [s for s in args.systems.split(",") if s]
    workloads = tuple(w for w in args.workloads.split(",") if w)
    avail = available_systems()
    known: list[dict] = []
    broken = 0
    for system in systems:
        cls = avail.get(system)
        if cls is None:
            print(f"{system}: not available, skipped", flush=True)
            continue
        if not args.skip_clean:
            t0 = time.perf_counter()
            bad, ops, unknown = [], 0, 0
            for seed in range(args.schedules):
                run, result, test = run_seed(system, seed, (), args.time_limit, workloads)
                ops += run.stats["invocations"]
                if result.valid is False:
                    bad.append((seed, violations(result), replay_command(test)))
                elif result.valid is not True:
                    unknown += 1
                    why = [f"{c}: {ch.error or 'unknown'}" for c, ch in result.children.items()
                           if ch.valid not in (True, False)]
                    print(f"  unknown seed {seed}: {'; '.join(why)}", flush=True)
            dt = time.perf_counter() - t0
            print(f"{system}: no bug: {args.schedules - len(bad)}/{args.schedules} schedules "
                  f"pass ({unknown} with an unknown verdict), {ops} client ops, {dt:.1f}s, "
                  f"{args.schedules / dt * 60:.0f} schedules/min", flush=True)
            for seed, found, cmd in bad[:10]:
                broken += 1
                print(f"  FAIL seed {seed}: {found}\n    replay: {cmd}", flush=True)
        if args.skip_bugs:
            continue
        for bug in cls.BUGS:
            t0 = time.perf_counter()
            hit = None
            for seed in range(args.bug_budget):
                run, result, test = run_seed(system, seed, (bug,), args.time_limit, workloads)
                if result.valid is False:
                    hit = (seed, violations(result), test)
                    break
            dt = time.perf_counter() - t0
            if hit is None:
                print(f"{system} --bug {bug}: NOT found in {args.bug_budget} schedules "
                      f"({dt:.1f}s)", flush=True)
                continue
            seed, found, test = hit
            print(f"{system} --bug {bug}: found after {seed + 1} schedule(s) ({dt:.1f}s): "
                  + ", ".join(f"{c}/{a}" for c, a in found), flush=True)
            print(f"  replay: {replay_command(test)}", flush=True)
            known.append({"system": system, "bug": bug, "seed": seed,
                          "workload": test["workload"], "nemesis": test["nemesis"],
                          "time_limit": args.time_limit,
                          "found": [list(x) for x in found]})
            if not args.no_shrink:
                t0 = time.perf_counter()
                finding = search(system, bugs=(bug,), max_examples=args.bug_budget,
                                 time_limit_s=min(args.time_limit, 3.0),
                                 workloads=(test["workload"],))
                dt = time.perf_counter() - t0
                if finding is None:
                    print(f"  hypothesis: no violation in {args.bug_budget} generated "
                          f"schedules ({dt:.1f}s)", flush=True)
                else:
                    print("  hypothesis (shrunk, %.1fs): " % dt
                          + finding.report().replace("\n", "\n  "), flush=True)
    print("known failing seeds:")
    for k in known:
        print("  " + json.dumps(k))
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
