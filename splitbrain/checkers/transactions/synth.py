"""Synthetic transactional histories from an in-memory strict-serializable database.

For the benchmark and the property tests: `simulate` runs `n` transactions of `mops` micro-ops
from `concurrency` processes against one dict, applying each transaction atomically at the
moment it completes (between its invocation and its completion, so the history is strict
serializable). Keys rotate the way Elle's and Maelstrom's generators do: `active_keys` keys are
in use at a time and a key that has received `writes_per_key` writes is retired for a fresh one.
Appended / written values are unique per key (1, 2, 3, ... per key).
"""

from __future__ import annotations

import random
from typing import Any

from ...history.op import Op


def simulate(n: int, *, kind: str = "list-append", mops: int = 4, active_keys: int = 10,
             writes_per_key: int = 32, concurrency: int = 10, read_p: float = 0.5,
             seed: int = 0, fail_p: float = 0.0) -> list[Op]:
    """A valid history of `n` transactions (see the module docstring). `fail_p`: the chance
    that a transaction aborts (completes `fail`, with no effect)."""
    assert kind in ("list-append", "rw-register"), kind
    rng = random.Random(seed)
    rand = rng.random
    write_f = "append" if kind == "list-append" else "w"
    db: dict[int, Any] = {}
    writes: dict[int, int] = {}
    active = list(range(active_keys))
    next_key = active_keys
    ops: list[Op] = []
    open_: list[tuple[int, list]] = []      # (process, invocation mops), oldest first
    idle = list(range(concurrency))
    started = 0
    time_ns = 0
    while started < n or open_:
        time_ns += 1000
        if started < n and idle and (not open_ or rand() < 0.5):
            p = idle.pop(rng.randrange(len(idle)))
            txn = []
            for _ in range(mops):
                k = active[rng.randrange(len(active))]
                if rand() < read_p:
                    txn.append(["r", k, None])
                else:
                    w = writes.get(k, 0) + 1
                    writes[k] = w
                    txn.append([write_f, k, w])
                    if w >= writes_per_key:
                        active[active.index(k)] = next_key
                        next_key += 1
            ops.append(Op(len(ops), time_ns, p, "invoke", "txn", txn))
            open_.append((p, txn))
            started += 1
            continue
        p, txn = open_.pop(0)
        if fail_p and rand() < fail_p:
            ops.append(Op(len(ops), time_ns, p, "fail", "txn", txn))
        else:
            done = []
            for f, k, v in txn:
                if f == "r":
                    cur = db.get(k)
                    done.append(["r", k, list(cur) if kind == "list-append" and cur is not None
                                 else ([] if kind == "list-append" else cur)])
                elif kind == "list-append":
                    db.setdefault(k, []).append(v)
                    done.append([f, k, v])
                else:
                    db[k] = v
                    done.append([f, k, v])
            ops.append(Op(len(ops), time_ns, p, "ok", "txn", done))
        idle.append(p)
    return ops
