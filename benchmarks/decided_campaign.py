"""Decided-verdict campaign: is every default in-house linearizability test decided?

    python benchmarks/decided_campaign.py --jobs 2              # 200 schedules per system
    python benchmarks/decided_campaign.py --seeds 20 --systems raft,vr --per-workload
    python benchmarks/decided_campaign.py --bugs --seeds 40     # also every bug switch
    python benchmarks/decided_campaign.py --local 10            # real processes, once each

For every in-house system (`splitbrain systems`) it simulates `--seeds` schedules (seed 0..N-1,
the workloads register, cas-register and kv in rotation: seed s runs workload s % 3; with
`--per-workload`, every seed on every workload) of the DEFAULT test, i.e. what
`splitbrain test --backend sim --system S --workload W --nemesis all --seed N` runs: 10 virtual
seconds, 5 nodes, 10 workers, 500 ops/s, every fault kind, the workload's default options, and the
linearizability checker's default time limit (60 s; one search process per run, `--check-workers`).
It prints one row per (system, workload[, bug]): runs, linearizability verdicts (valid / invalid /
unknown), the longest check, and the largest per-key history (calls, and crashed calls on one key)
that the checker had to decide. Every unknown run is listed with the command that replays it.

With `--bugs`, each bug switch of each system runs `--bug-seeds` schedules as well: the histories
of a buggy system are the hard case for the search (an invalid key is only proven invalid once
every linearization of it was tried).

With `--local SECONDS`, instead, each (system, workload) runs once on the local backend (real
node processes, `splitbrain test --nemesis all --time-limit SECONDS`, a random seed) and the table
gives each run's verdicts, its linearizability check time and its replay command.

Exit status 1 when any run's linearizability verdict was unknown (the acceptance of issue 16).
CPU time (this process and its workers), wall time and the load average are printed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from splitbrain.harness.sim import SimConfig, check_run, simulate  # noqa: E402
from splitbrain.harness.sim.schedule import KINDS  # noqa: E402
from splitbrain.systems.registry import available_systems  # noqa: E402

WORKLOADS = ("register", "cas-register", "kv")


def per_key_sizes(history) -> tuple[int, int]:
    """(most client calls on one key, most crashed calls on one key): what the search faces."""
    calls: dict = {}
    crashed: dict = {}
    pending: dict = {}
    for op in history:
        if op.process == "nemesis" or op.f not in ("read", "write", "cas"):
            continue
        if op.type == "invoke":
            pending[op.process] = op
            calls[op.key] = calls.get(op.key, 0) + 1
            continue
        inv = pending.pop(op.process, None)
        if inv is not None and op.type == "info" and inv.f != "read":
            crashed[inv.key] = crashed.get(inv.key, 0) + 1
    for inv in pending.values():
        if inv.f != "read":
            crashed[inv.key] = crashed.get(inv.key, 0) + 1
    return max(calls.values(), default=0), max(crashed.values(), default=0)


def run_one(job: tuple) -> dict:
    system, workload, bug, seed, time_limit, check_limit, check_workers = job
    cfg = SimConfig(system=system, workload=workload, seed=seed, time_limit_s=time_limit,
                    nemesis=KINDS, bugs=(bug,) if bug else ())
    run = simulate(cfg)
    opts = {"linearizable": {"time_limit": check_limit, "workers": check_workers}}
    t0 = time.perf_counter()
    result = check_run(run, {"checker_options": opts})
    wall = time.perf_counter() - t0
    lin = result.children.get("linearizable")
    calls, crashed = per_key_sizes(run.history)
    replay = (f"splitbrain test --backend sim --system {system} --workload {workload} "
              f"--nemesis all --time-limit {time_limit:g} --seed {seed}"
              + (f" --bug {bug}" if bug else ""))
    return {"system": system, "workload": workload, "bug": bug, "seed": seed,
            "lin": None if lin is None else lin.valid,
            "error": None if lin is None else lin.error,
            "check_s": (lin.stats.get("seconds") if lin is not None and lin.stats else None)
            or wall,
            "keys": (lin.stats or {}).get("keys") if lin is not None else None,
            "ops": run.stats["invocations"], "key_calls": calls, "key_crashed": crashed,
            "replay": replay}


def run_local(systems: list[str], workloads: list[str], seconds: float) -> int:
    """Each (system, workload) once on real processes, all faults; 1 if any check is unknown."""
    unknown = 0
    wall0 = time.perf_counter()
    head = (f"{'system':<15} {'workload':<13} {'verdict':<8} {'linearizable':<13} "
            f"{'check s':>8} {'keys':>5} {'ops':>6} {'crashed':>8}  replay")
    print(head)
    for s in systems:
        for w in workloads:
            with tempfile.TemporaryDirectory(prefix="sb-decided-") as store:
                p = subprocess.run([sys.executable, "-m", "splitbrain", "test", "--system", s,
                                    "--workload", w, "--nemesis", "all", "--time-limit",
                                    f"{seconds:g}", "--store", store, "--json"],
                                   capture_output=True, text=True,
                                   cwd=Path(__file__).resolve().parent.parent)
                try:
                    summary = json.loads(p.stdout)
                except ValueError:
                    print(f"{s:<15} {w:<13} exit {p.returncode}: {p.stderr.strip()[-300:]}")
                    unknown += 1
                    continue
            lin = (summary.get("results") or {}).get("children", {}).get("linearizable", {})
            st = lin.get("stats") or {}
            v = lin.get("valid")
            unknown += v not in (True, False)
            verdict = {True: "VALID", False: "INVALID"}.get(summary.get("valid"), "UNKNOWN")
            print(f"{s:<15} {w:<13} {verdict:<8} {str(v):<13} {st.get('seconds', 0):>8.2f} "
                  f"{st.get('keys', 0):>5} {st.get('calls', 0):>6} "
                  f"{st.get('crashed_calls', 0):>8}  {summary.get('replay')}", flush=True)
    print(f"{len(systems) * len(workloads)} local runs, {unknown} with an undecided "
          f"linearizability check; wall {time.perf_counter() - wall0:.0f} s, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 1 if unknown else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--systems", default=",".join(available_systems()))
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--seeds", type=int, default=200,
                    help="schedules per system (workloads in rotation)")
    ap.add_argument("--per-workload", action="store_true",
                    help="run every seed on every workload (--seeds per system and workload)")
    ap.add_argument("--bugs", action="store_true", help="also every bug switch")
    ap.add_argument("--bug-seeds", type=int, default=None,
                    help="schedules per bug switch and workload (default: --seeds)")
    ap.add_argument("--time-limit", type=float, default=10.0, help="virtual s per run")
    ap.add_argument("--check-time-limit", type=float, default=60.0,
                    help="the linearizability checker's time limit (its default: 60 s)")
    ap.add_argument("--check-workers", type=int, default=1, help="search processes per check")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel (processes)")
    ap.add_argument("--local", type=float, default=None, metavar="SECONDS",
                    help="instead: each system x workload once on real processes")
    args = ap.parse_args()
    avail = available_systems()
    systems = [s for s in args.systems.split(",") if s]
    workloads = [w for w in args.workloads.split(",") if w]
    for s in systems:
        if s not in avail:
            print(f"unknown or unavailable system {s!r} (choose from {', '.join(avail)})",
                  file=sys.stderr)
            return 2
    if args.local is not None:
        return run_local(systems, workloads, args.local)
    jobs = []
    for s in systems:
        bugs = [None] + (list(avail[s].BUGS) if args.bugs else [])
        for bug in bugs:
            n = args.seeds if bug is None else (args.bug_seeds or args.seeds)
            for w_i, w in enumerate(workloads):
                seeds = (range(n) if args.per_workload
                         else range(w_i, n, len(workloads)))
                jobs += [(s, w, bug, seed, args.time_limit, args.check_time_limit,
                          args.check_workers) for seed in seeds]
    # A row is printed as soon as its last run is in (the jobs come back in order).
    remaining: dict = {}
    for j in jobs:
        remaining[(j[0], j[1], j[2] or "-")] = remaining.get((j[0], j[1], j[2] or "-"), 0) + 1
    wall0, cpu0 = time.perf_counter(), time.process_time()
    rows: dict = {}
    unknown: list[dict] = []
    head = (f"{'system':<15} {'workload':<13} {'bug':<24} {'runs':>5} {'valid':>6} {'invalid':>8} "
            f"{'unknown':>8} {'max check s':>12} {'max calls/key':>14} {'max crashed/key':>16} "
            f"{'ops/run':>8}")
    print(head)
    print("-" * len(head), flush=True)

    def show(key, row) -> None:
        s, w, b = key
        print(f"{s:<15} {w:<13} {b:<24} {row['runs']:>5} {row[True]:>6} {row[False]:>8} "
              f"{row['unknown']:>8} {row['max_s']:>12.2f} {row['calls']:>14} "
              f"{row['crashed']:>16} {row['ops'] // max(1, row['runs']):>8}", flush=True)

    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as ex:
        for r in ex.map(run_one, jobs, chunksize=2):
            key = (r["system"], r["workload"], r["bug"] or "-")
            row = rows.setdefault(key, {"runs": 0, True: 0, False: 0, "unknown": 0,
                                        "max_s": 0.0, "calls": 0, "crashed": 0, "ops": 0})
            row["runs"] += 1
            row[r["lin"] if r["lin"] in (True, False) else "unknown"] += 1
            row["max_s"] = max(row["max_s"], r["check_s"])
            row["calls"] = max(row["calls"], r["key_calls"])
            row["crashed"] = max(row["crashed"], r["key_crashed"])
            row["ops"] += r["ops"]
            if r["lin"] not in (True, False):
                unknown.append(r)
                print(f"  UNKNOWN {r['system']} {r['workload']} bug {r['bug']} seed {r['seed']}: "
                      f"{r['error']}\n    replay: {r['replay']}", flush=True)
            remaining[key] -= 1
            if not remaining[key]:
                show(key, row)
    wall = time.perf_counter() - wall0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu0 + ru.ru_utime + ru.ru_stime
    per_system: dict = {}
    for (s, _, _), row in rows.items():
        t = per_system.setdefault(s, {"runs": 0, True: 0, False: 0, "unknown": 0, "max_s": 0.0})
        for k in ("runs", True, False, "unknown"):
            t[k] += row[k]
        t["max_s"] = max(t["max_s"], row["max_s"])
    for s, t in per_system.items():
        print(f"{s:<15} all           {'':<24} {t['runs']:>5} {t[True]:>6} {t[False]:>8} "
              f"{t['unknown']:>8} {t['max_s']:>12.2f}")
    total = sum(r["runs"] for r in rows.values())
    print(f"{total} runs, {len(unknown)} unknown; wall {wall:.0f} s, CPU {cpu:.0f} s "
          f"(with workers), load average {os.getloadavg()[0]:.2f} "
          f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    return 1 if unknown else 0


if __name__ == "__main__":
    sys.exit(main())
