"""Every in-house system on the local backend (real processes): no bug must pass, every bug switch
must be found. Prints one line per run: system, bug, seed, verdict, the failing checkers and
anomaly names, and the store path.

    python benchmarks/local_bug_matrix.py [--time-limit 10] [--seeds 3] [--systems raft,zab]
    python benchmarks/local_bug_matrix.py --recipe-rate raft/commit-old-term,vr/commit-on-f

`--recipe-rate` runs every seed of the named recipes (`ci` for the CI ones), each once more
without the bug, and prints how many of the seeds found the bug: the figures in the recipes.

A bug is tried first with its recipe (splitbrain/harness/recipes.py: the short run that exposes
it, seeds 1..recipe.seeds), then with the storm below, seeds 1..N and each workload in
BUG_WORKLOADS, until a run is invalid.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from splitbrain.harness import recipes  # noqa: E402
from splitbrain.harness.runner import run_test  # noqa: E402
from splitbrain.systems.registry import available_systems  # noqa: E402

# A storm: every process fault, a new one every INTERVAL_S, and more workers than nodes so that
# several clients stay bound to every node (a deposed leader keeps its clients).
NEMESIS = list(recipes.STORM_FAULTS)
INTERVAL_S = 0.7
OVERLAP = True       # one schedule per fault family, overlapping
BUG_WORKLOADS = ("append-log", "kv")


def recipe_run(system, bug, seed, store):
    """One run of the bug's recipe (splitbrain/harness/recipes.py); prints like `one`."""
    t0 = time.monotonic()
    try:
        s = run_test(recipes.run_config(system, bug, seed, store), progress=False)
    except Exception as e:  # noqa: BLE001 - one broken run must not end the matrix
        print(f"{system:15} {bug:24} recipe     seed {seed}: ERROR {type(e).__name__}: {e}",
              flush=True)
        return None
    _report(system, [bug], "recipe", seed, s, t0)
    return s.valid


def one(system, bugs, workload, seed, tl, store, nemesis=None, interval=None, opts=None,
        nodes=5):
    t = {"backend": "local", "system": system, "workload": workload,
         "nemesis": list(nemesis or NEMESIS), "time_limit": tl, "nodes": nodes, "concurrency": 20,
         "rate": 200, "seed": seed, "bugs": list(bugs), "store": store, "opts": dict(opts or {}),
         "harness_opts": {"recovery_s": 1.0, "nemesis_interval_s": interval or INTERVAL_S,
                          "client_timeout_s": 0.5, "reports": False,
                          "nemesis_overlap": OVERLAP}}
    t0 = time.monotonic()
    try:
        s = run_test(t, progress=False)
    except Exception as e:  # noqa: BLE001 - one broken run must not end the matrix
        print(f"{system:15} {','.join(bugs) or '(no bug)':24} {workload:10} seed {seed}: "
              f"ERROR {type(e).__name__}: {e}", flush=True)
        return None
    _report(system, bugs, workload, seed, s, t0)
    return s.valid


def _report(system, bugs, workload, seed, s, t0) -> None:
    bad = {k: sorted({a["name"] for a in v.get("anomalies", [])}) or v.get("error")
           for k, v in s.results["children"].items() if v["valid"] is not True}
    print(f"{system:15} {','.join(bugs) or '(no bug)':24} {workload:10} seed {seed}: "
          f"{ {True: 'valid', False: 'INVALID'}.get(s.valid, 'unknown'):8} {s.history_ops:6} events "
          f"{time.monotonic() - t0:5.1f}s {bad} {s.run_dir}", flush=True)


def recipe_rate(spec: str, store: str) -> int:
    """Every seed of each chosen recipe, and seed 1 without the bug; prints the hit rate."""
    if spec == "ci":
        chosen = [k for k, r in recipes.RECIPES.items() if r.ci]
    else:
        chosen = [tuple(item.split("/", 1)) for item in spec.split(",")]
    rows = []
    for system, bug in chosen:
        r = recipes.recipe(system, bug)
        hits = [seed for seed in range(1, r.seeds + 1)
                if recipe_run(system, bug, seed, store) is False]
        t0 = time.monotonic()
        clean = run_test(recipes.run_config(system, bug, 1, store, bugs=[]), progress=False)
        _report(system, [], "recipe", 1, clean, t0)
        rows.append(f"{system}/{bug}: invalid in {len(hits)} of {r.seeds} seeds {hits}; "
                    f"without the bug: {clean.valid}")
    print("\n".join(rows))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--time-limit", type=float, default=10)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--systems", default="")
    ap.add_argument("--store", default=None)
    ap.add_argument("--bugs-only", action="store_true")
    ap.add_argument("--interval", type=float, default=INTERVAL_S, help="nemesis interval, s")
    ap.add_argument("--one-at-a-time", action="store_true", help="no overlapping faults")
    ap.add_argument("--recipe-rate", default="",
                    help="SYSTEM/BUG,...: every seed of these recipes ('ci': the CI ones)")
    args = ap.parse_args()
    if args.recipe_rate:
        return recipe_rate(args.recipe_rate, args.store or tempfile.mkdtemp(prefix="recipes-"))
    globals()["INTERVAL_S"] = args.interval
    globals()["OVERLAP"] = not args.one_at_a_time
    store = args.store or tempfile.mkdtemp(prefix="local-matrix-")
    systems = available_systems()
    chosen = args.systems.split(",") if args.systems else list(systems)
    missed = []
    for name in chosen:
        cls = systems[name]
        if not args.bugs_only:
            one(name, [], "append-log", 1, args.time_limit, store)
        for bug in cls.BUGS:
            found = False
            if (name, bug) in recipes.RECIPES:
                for seed in range(1, recipes.recipe(name, bug).seeds + 1):
                    if recipe_run(name, bug, seed, store) is False:
                        found = True
                        break
            for seed in range(1, args.seeds + 1):
                if found:
                    break
                for wl in BUG_WORKLOADS:
                    if one(name, [bug], wl, seed, args.time_limit, store) is False:
                        found = True
                        break
                if found:
                    break
            if not found:
                missed.append(f"{name}/{bug}")
    print("not found:", ", ".join(missed) or "none")
    return 0


if __name__ == "__main__":
    sys.exit(main())
