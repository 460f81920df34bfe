"""Real databases: start-up, throughput with 10 clients, and the harness's share of the CPU.

    python benchmarks/bench_dbs.py [--db etcd,zookeeper] [--backend netns] [--seconds 20]
                                   [--starts 3] [--workload register]
    python benchmarks/bench_dbs.py --db redis        # Redis 7 + Sentinel (3 nodes)

For each database (3 nodes):
- start: cluster start (first process launched) to the first write the cluster acknowledged,
  the median of `--starts` bare start-ups (DbCluster.ready_s), and the teardown time (nodes,
  namespaces, data archived); for Redis the write must also have reached every replica's link
  and every Sentinel must name the primary (Redis.cluster_ready);
- ops/s: one `splitbrain test` run of `--seconds` with 10 clients, no faults, rate 5000/s (so
  the clients, not the generator, are the limit): ok operations recorded per second;
- harness CPU share: this process's CPU time (harness: generator, client threads, history,
  checkers) over the CPU time of this process and its children (the database processes, reaped
  at teardown) during that run;
- wall time of the run minus its time limit (the issue's target: a 20 s test ends within 10 s
  of its time limit), with the reports (plots) written and without.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from splitbrain.commands.test import build_test  # noqa: E402
from splitbrain.dbs.cluster import make_db_backend  # noqa: E402
from splitbrain.harness.runner import run_test  # noqa: E402


def _cpu() -> tuple[float, float]:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, kids.ru_utime + kids.ru_stime


def bare_start(db: str, backend: str, tmp: Path) -> tuple[float, float]:
    b = make_db_backend(backend, db, ["n1", "n2", "n3"], tmp, options={}, workload="register")
    try:
        b.start()
        ready = b.ready_s
    finally:
        t0 = time.monotonic()
        b.teardown()
    return ready, time.monotonic() - t0


def one_run(db: str, backend: str, workload: str, seconds: float, store: Path,
            reports: bool) -> dict:
    opts = () if reports else ("harness.reports=false",)
    test = build_test(db=db, system=None, bin_path=None, workload=workload, nemesis="",
                      time_limit=seconds, nodes=3, concurrency=10, rate=5000.0, seed=1,
                      bugs=(), opts=opts, backend=backend, store=str(store), name=None,
                      schedule=None)
    cpu0 = _cpu()
    t0 = time.monotonic()
    s = run_test(test, progress=False)
    wall = time.monotonic() - t0
    cpu1 = _cpu()
    me, kids = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    stats = s.results["children"]["stats"]["stats"]
    return {"valid": s.valid, "ok_per_s": stats["ok"] / seconds, "ops": stats["count"],
            "harness_cpu_s": me, "db_cpu_s": kids, "share": me / max(1e-9, me + kids),
            "over_s": wall - seconds}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", default="etcd,zookeeper")
    ap.add_argument("--backend", default="netns")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--workload", default="register")
    args = ap.parse_args()
    for db in args.db.split(","):
        with tempfile.TemporaryDirectory(prefix="splitbrain-bench-dbs-") as tmp:
            tmp = Path(tmp)
            starts = [bare_start(db, args.backend, tmp / f"start{i}") for i in range(args.starts)]
            ready = statistics.median(r for r, _ in starts)
            down = statistics.median(d for _, d in starts)
            print(f"{db} ({args.backend}, 3 nodes): start to first acknowledged write "
                  f"{ready:.2f} s (median of {args.starts}: "
                  f"{', '.join(f'{r:.2f}' for r, _ in starts)}); teardown {down:.2f} s")
            r = one_run(db, args.backend, args.workload, args.seconds, tmp / "store", False)
            print(f"{db} {args.workload}: {r['ok_per_s']:.0f} ok ops/s with 10 clients "
                  f"({r['ops']} ops, valid={r['valid']}); harness CPU {r['harness_cpu_s']:.1f} s,"
                  f" database CPU {r['db_cpu_s']:.1f} s: harness share {100 * r['share']:.0f}%;"
                  f" run ended {r['over_s']:.1f} s after its {args.seconds:.0f} s time limit "
                  f"(no reports)")
            r2 = one_run(db, args.backend, args.workload, args.seconds, tmp / "store2", True)
            print(f"{db} {args.workload}: with reports written, the run ended "
                  f"{r2['over_s']:.1f} s after its time limit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
