"""How fast the checkers of Maelstrom's eventually consistent workloads judge big histories.

    python benchmarks/bench_maelstrom_checkers.py [--broadcasts 5000] [--nodes 25]

Builds a synthetic broadcast history the shape of Maelstrom's challenge (25 nodes, half
broadcasts, half reads; each read holds every message acknowledged more than 300 ms before it
and a random part of the newer ones: gossip lag), with a final read on every node, then times the
`broadcast` checker (Jepsen's set-full plus the per-node final rule) and the `pn-counter` checker
on a counter history of the same length. Prints ops, seconds and ops/s for each.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from splitbrain.checkers.registry import make_checker  # noqa: E402
from splitbrain.history.op import Op  # noqa: E402

MS = 1_000_000
LAG_MS = 300


def broadcast_history(n: int, nodes: int, rng: random.Random) -> list[Op]:
    ops: list[Op] = []
    acked: list[tuple[int, int]] = []      # (time ms, message)
    t = 0

    def add(p, type_, f, value, node=None):
        ops.append(Op(len(ops), t * MS, p, type_, f, value, None, node, None))
    for i in range(2 * n):
        t += 5
        p = i % 50
        if i % 2 == 0:
            add(p, "invoke", "broadcast", i)
            t += 1
            add(p, "ok", "broadcast", i, f"n{p % nodes}")
            acked.append((t, i))
        else:
            add(p, "invoke", "read", None)
            seen = [m for tm, m in acked if tm < t - LAG_MS or rng.random() < 0.5]
            t += 1
            add(p, "ok", "read", seen, f"n{p % nodes}")
    t += 10_000
    for k in range(nodes):
        add(100 + k, "invoke", "read", None, f"n{k}")
        add(100 + k, "ok", "read", [m for _, m in acked], f"n{k}")
    return ops


def counter_history(n: int, nodes: int, rng: random.Random) -> list[Op]:
    ops: list[Op] = []
    total = 0
    for i in range(n):
        p = i % 50
        d = rng.randrange(-5, 5)
        ops.append(Op(len(ops), len(ops) * MS, p, "invoke", "add", d))
        kind = "info" if rng.random() < 0.01 else "ok"
        ops.append(Op(len(ops), len(ops) * MS, p + 50 * (i // 50 + 1) if kind == "info" else p,
                      kind, "add", d))
        total += d if kind == "ok" else 0
    for k in range(nodes):
        ops.append(Op(len(ops), len(ops) * MS, 10_000 + k, "invoke", "read", None, None, f"n{k}"))
        ops.append(Op(len(ops), len(ops) * MS, 10_000 + k, "ok", "read", total, None, f"n{k}"))
    return ops


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--broadcasts", type=int, default=5000)
    ap.add_argument("--nodes", type=int, default=25)
    args = ap.parse_args()
    rng = random.Random(1)
    for name, hist in (("broadcast", broadcast_history(args.broadcasts, args.nodes, rng)),
                       ("pn-counter", counter_history(args.broadcasts, args.nodes, rng))):
        t0 = time.perf_counter()
        r = make_checker(name, {}).check(hist, {})
        dt = time.perf_counter() - t0
        print(f"{name:10s} {len(hist):7d} ops  {dt:6.2f} s  {len(hist) / dt:9.0f} ops/s  "
              f"valid={r.valid}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
