#!/usr/bin/env python3
"""Benchmark the linearizability checker on Porcupine's corpus; prints figures (no assertions).

Part 1 (in process): every file of the corpus, read and checked, with the time taken per file
(wall and CPU), the verdict and whether it matches expectations.tsv; totals for the 102 etcd
histories and for each kv log, and the per-key search times of the kv logs.
Part 2 (whole commands, what a user waits for): `python -m splitbrain check` over all non-empty
etcd histories in ONE command, and over kv/c50-ok.txt and kv/c50-bad.txt; the best of --repeat
runs, wall and CPU (user + system of the child).

Porcupine's own figures (Go, README of the corpus) are printed beside ours. The machine's load
average is printed too: on a shared machine, wall times mean little and CPU times are the
figures to compare.

    python benchmarks/bench_linearizability.py [--corpus DIR] [--repeat N] [--no-commands]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from splitbrain.checkers.linearizability import check_linearizable, get_model  # noqa: E402
from splitbrain.checkers.linearizability.prepare import partition_history  # noqa: E402
from splitbrain.checkers.linearizability.search import search  # noqa: E402
from splitbrain.history.porcupine import read_etcd_log, read_kv_log  # noqa: E402

PORCUPINE_S = {"etcd (all 102)": 0.38, "kv c50-ok": 0.11, "kv c50-bad": 0.017,
               "etcd_002": 0.13, "kv c10-ok": 0.0004}


def expectations(corpus: Path) -> list[tuple[str, str]]:
    rows = []
    with open(corpus / "expectations.tsv", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            name, want = line.rstrip("\n").split("\t")
            rows.append((name, want))
    return rows


def timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def part1(corpus: Path) -> None:
    print("== Part 1: in process (read + check), per file ==")
    print(f"{'file':<24} {'verdict':<8} {'expected':<9} {'read ms':>8} {'check ms':>9} "
          f"{'cpu ms':>8} {'steps':>8}")
    totals: dict[str, list[float]] = {}
    mismatches = 0
    for name, want in expectations(corpus):
        path = str(corpus / name)
        kv = name.startswith("kv/")
        ops, rw, rc = timed(lambda: (read_kv_log if kv else read_etcd_log)(path))
        r, cw, cc = timed(lambda: check_linearizable(ops, "kv" if kv else "cas-register"))
        verdict = str(r.valid).lower()
        ok = want.startswith("skipped") or verdict == want
        mismatches += not ok
        group = "etcd (all 102)" if not kv else "kv " + Path(name).stem
        if not want.startswith("skipped"):
            t = totals.setdefault(group, [0.0, 0.0, 0.0])
            t[0] += rw + cw
            t[1] += cw
            t[2] += rc + cc
        print(f"{name:<24} {verdict:<8} {want:<9} {rw * 1e3:8.1f} {cw * 1e3:9.1f} "
              f"{(rc + cc) * 1e3:8.1f} {r.stats.get('steps', 0):>8}"
              + ("" if ok else "   MISMATCH"))
    print()
    print(f"{'total':<16} {'read+check s':>12} {'check s':>9} {'cpu s':>7} {'Porcupine s':>12}")
    for group, (both, check, cpu) in totals.items():
        ref = PORCUPINE_S.get(group)
        print(f"{group:<16} {both:12.3f} {check:9.3f} {cpu:7.3f} "
              f"{'' if ref is None else f'{ref:12.4f}'}")
    print(f"verdict mismatches: {mismatches}")
    print()
    print("== per key search (kv logs; Porcupine: c50-ok 0.11 s, c50-bad 0.017 s, c10-ok 0.4 ms)")
    model = get_model("kv")
    for stem in ("c10-ok", "c10-bad", "c50-ok", "c50-bad"):
        parts = partition_history(read_kv_log(str(corpus / "kv" / f"{stem}.txt")), model)
        cpu_total = 0.0
        cells = []
        for key, part in parts.items():
            o, w, c = timed(lambda: _search_bounded(model, part))
            cpu_total += c
            cells.append(f"{key}:{'?' if o is None else 'ok' if o.valid else 'BAD'}"
                         f"/{c * 1e3:.0f}ms")
        print(f"  {stem:<8} keys={len(parts):<3} cpu {cpu_total:6.3f} s   " + " ".join(cells))
    print("  (a key marked ? was stopped after 3 s: the checker leaves such keys undecided once"
          " another key is invalid)")
    print()
    print("== growth guards (the kv model's pruning hint) on and off, kv/c50-ok, per-key search")
    parts = partition_history(read_kv_log(str(corpus / "kv" / "c50-ok.txt")), model)
    for prune in (True, False):
        (outs, w, c) = timed(lambda: [search(model, p, prune=prune) for p in parts.values()])
        print(f"  guards {'on ' if prune else 'off'}  cpu {c:6.3f} s  expansions "
              f"{sum(o.stats['steps'] for o in outs):>8}  all valid {all(o.valid for o in outs)}")


def versus_porcupine(corpus: Path, repeat: int) -> None:
    """The check alone (what Porcupine's figures time: histories already parsed), best of
    `repeat` CPU times, against Porcupine's recorded figures, with the ratio (goal: <= 0.5)."""
    print()
    print(f"== check only (histories in memory), best of {repeat} CPU times, vs Porcupine ==")
    etcd = [read_etcd_log(str(p)) for p in sorted((corpus / "jepsen").glob("*.log"))]
    etcd = [ops for ops in etcd if ops]
    c50ok = read_kv_log(str(corpus / "kv" / "c50-ok.txt"))
    c50bad = read_kv_log(str(corpus / "kv" / "c50-bad.txt"))
    rows = [
        ("etcd (all 102)", "etcd (all 102)",
         lambda: [check_linearizable(ops, "cas-register") for ops in etcd]),
        ("kv c50-ok", "kv c50-ok", lambda: check_linearizable(c50ok, "kv")),
        ("kv c50-bad --first-invalid", "kv c50-bad",
         lambda: check_linearizable(c50bad, "kv", first_invalid=True)),
        # (one worker: the CPU of forked workers would not show in this process' time)
        ("kv c50-bad (every invalid key)", "kv c50-bad",
         lambda: check_linearizable(c50bad, "kv", workers=1)),
    ]
    print(f"{'history':<32} {'cpu s':>8} {'Porcupine s':>12} {'ratio':>7}")
    for label, ref_key, fn in rows:
        best = min(timed(fn)[2] for _ in range(repeat))
        ref = PORCUPINE_S[ref_key]
        print(f"{label:<32} {best:8.4f} {ref:12.4f} {best / ref:7.2f}")
    print("  (Porcupine stops at the first invalid key; --first-invalid is the same work. By "
          "default splitbrain also looks for the other invalid keys, for at most 10x the time "
          "the verdict took, 1-10 s.)")


def _search_bounded(model, part):
    from splitbrain.checkers.linearizability.search import TimeLimitReached
    try:
        return search(model, part, time.monotonic() + 3.0)
    except TimeLimitReached:
        return None


def run_command(args: list[str], repeat: int, cwd: Path) -> tuple[float, float, int]:
    """Best wall and best CPU (user+sys of the child) over `repeat` runs, and the exit code."""
    best_wall = best_cpu = float("inf")
    code = -1
    env = dict(os.environ, PYTHONPATH=str(REPO))
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        w0 = time.perf_counter()
        proc = subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
        wall = time.perf_counter() - w0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        best_wall, best_cpu, code = min(best_wall, wall), min(best_cpu, cpu), proc.returncode
        if proc.returncode not in (0, 1):
            print(f"   ! exit {proc.returncode}: {proc.stderr.strip()[:200]}")
    return best_wall, best_cpu, code


def part2(corpus: Path, repeat: int) -> None:
    print()
    print(f"== Part 2: whole commands, best of {repeat} ==")
    etcd = sorted(str(p.relative_to(corpus)) for p in (corpus / "jepsen").glob("*.log")
                  if p.stat().st_size > 0)
    py = sys.executable
    rows = [
        ("python startup (python -c pass)", [py, "-c", "pass"], None),
        ("python -m splitbrain --version", [py, "-m", "splitbrain", "--version"], None),
        (f"check {len(etcd)} etcd histories (one command)",
         [py, "-m", "splitbrain", "check", *etcd], "etcd (all 102)"),
        ("check kv/c50-ok.txt", [py, "-m", "splitbrain", "check", "kv/c50-ok.txt"],
         "kv c50-ok"),
        ("check kv/c50-bad.txt", [py, "-m", "splitbrain", "check", "kv/c50-bad.txt"],
         "kv c50-bad"),
        ("check --first-invalid kv/c50-bad.txt",
         [py, "-m", "splitbrain", "check", "--first-invalid", "kv/c50-bad.txt"], "kv c50-bad"),
    ]
    print(f"{'command':<44} {'exit':>4} {'wall s':>8} {'cpu s':>7} {'Porcupine s':>12} "
          f"{'cpu/Porcupine':>14}")
    for label, args, ref_key in rows:
        wall, cpu, code = run_command(args, repeat, corpus)
        ref = PORCUPINE_S.get(ref_key) if ref_key else None
        ratio = f"{cpu / ref:14.1f}" if ref else ""
        print(f"{label:<44} {code:>4} {wall:8.3f} {cpu:7.3f} "
              f"{'' if ref is None else f'{ref:12.3f}'} {ratio}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=REPO / "tests" / "data" / "porcupine")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-commands", action="store_true", help="skip part 2")
    a = ap.parse_args()
    if not (a.corpus / "expectations.tsv").is_file():
        sys.exit(f"bench_linearizability: no Porcupine corpus at {a.corpus} (use --corpus)")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
          + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    part1(a.corpus)
    versus_porcupine(a.corpus, max(a.repeat, 5))
    if not a.no_commands:
        part2(a.corpus, a.repeat)


if __name__ == "__main__":
    main()
