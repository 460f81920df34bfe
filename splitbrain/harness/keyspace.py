"""Independent keys with a bounded number of operations per key (Jepsen's `independent`).

Why: the linearizability search is exponential in the operations that are concurrent at one
moment, and a crashed (`info`) operation stays concurrent with everything after it on its key. One
register written for a whole test accumulates crashed writes until no search can decide it (a
10 s simulated Raft run with 2,300 operations on one register ended "unknown"). Jepsen's register
tests therefore run a GROUP of worker threads per key, and move the group to a FRESH key after a
bounded number of operations (`independent/concurrent-generator`, `:per-key-limit`): every key's
history is short, so a crashed op haunts at most that many operations, and linearizability being
compositional (per key), the keys are checked one by one. Written values are unique per key
(1, 2, 3, ... on each key), so every read names the one write it saw.

`KeyRotation` is that bookkeeping, driven by the workloads' `prepare(process, inv)` hook (both
runners call it just before an op is recorded, with the process that performs it):

- workers are numbered 0..W-1 and a worker's process ids are w, w+W, w+2W, ... (Jepsen's rule,
  kept by the sim engine and the client pool: after an `info` the worker goes on as process+W),
  so a process belongs to worker `process % W` and to group `worker // workers_per_key`;
- each group works on `keys_per_group` keys at a time (1 for a register; kv's `key_count`); a key
  takes at most its limit of operations (`ops_per_key` scaled by a draw in [0.9, 1.0], as Jepsen
  does so that groups do not change keys in lockstep), then that slot takes the next fresh key;
- keys are the integers 0, 1, 2, ... in the order groups first need them;
- `next_value(key)` hands out 1, 2, 3, ... per key; `recent_value(key, u)` one of the last
  `CAS_FROM_RECENT` values handed out on the key (a cas `from` that has a fair chance to match).

All randomness comes in as floats drawn by the workload's `next_invocation(rng)` (so a seeded run
stays deterministic); the allocation order is the order of `assign` calls. `bind(workers, nodes)`
gives the number of workers (W) and nodes; unbound (a caller that never says), every process is
its own worker. Thread-safe (one lock): the local runner's client pool runs on one loop thread,
but nothing here relies on it.
"""

from __future__ import annotations

import math
import threading
from typing import Any

CAS_FROM_RECENT = 3         # a cas `from` is one of the last this many values written to the key
LIMIT_SPREAD = 0.1          # a key's limit is ops_per_key * [1 - spread, 1] (Jepsen's)


class KeyRotation:
    """Per-group keys with a bounded op count per key, and unique values per key."""

    def __init__(self, ops_per_key: int, workers_per_key: int, keys_per_group: int = 1):
        if ops_per_key < 1:
            raise ValueError(f"ops_per_key must be at least 1, got {ops_per_key}")
        if workers_per_key < 0:
            raise ValueError(f"workers_per_key must be >= 0 (0: twice the node count), "
                             f"got {workers_per_key}")
        if keys_per_group < 1:
            raise ValueError(f"key_count must be at least 1, got {keys_per_group}")
        self.ops_per_key = ops_per_key
        self.workers_per_key_opt = workers_per_key
        self.keys_per_group = keys_per_group
        self.workers: int | None = None
        self.nodes: int | None = None
        self._lock = threading.Lock()
        # group -> [[key, ops taken, limit], ...] (keys_per_group slots; a slot's key is None
        # until the group first uses it)
        self._slots: dict[int, list[list[Any]]] = {}
        self._next_key = 0
        self._values: dict[int, int] = {}      # key -> the last value handed out on it

    # ---- configuration ------------------------------------------------------------------------

    def bind(self, workers: int, nodes: int) -> None:
        """The run's number of client workers and nodes (before the first `assign`)."""
        assert workers >= 1 and nodes >= 1, (workers, nodes)
        self.workers, self.nodes = workers, nodes

    @property
    def workers_per_key(self) -> int:
        """Workers sharing one key: the option, or (0) twice the node count, as Jepsen's
        linearizable-register test (and so Maelstrom's lin-kv) groups them; 10 when unbound."""
        if self.workers_per_key_opt:
            return self.workers_per_key_opt
        return 2 * self.nodes if self.nodes else 10

    def group_of(self, process: int) -> int:
        worker = process % self.workers if self.workers else process
        return worker // self.workers_per_key

    # ---- allocation ---------------------------------------------------------------------------

    def assign(self, process: int, slot_u: float, limit_u: float) -> int:
        """The key of `process`'s next operation, counting the operation against that key.

        `slot_u` (in [0, 1)) picks one of the group's keys; `limit_u` scales the limit of a
        fresh key (see the module docstring)."""
        with self._lock:
            slots = self._slots.setdefault(
                self.group_of(process), [[None, 0, 0] for _ in range(self.keys_per_group)])
            slot = slots[min(int(slot_u * len(slots)), len(slots) - 1)]
            if slot[0] is None or slot[1] >= slot[2]:
                slot[0] = self._next_key
                self._next_key += 1
                slot[1] = 0
                slot[2] = max(1, math.ceil(self.ops_per_key * (1 - LIMIT_SPREAD * limit_u)))
            slot[1] += 1
            return slot[0]

    def next_value(self, key: int) -> int:
        """A value never handed out on `key` before: 1, 2, 3, ..."""
        with self._lock:
            v = self._values.get(key, 0) + 1
            self._values[key] = v
            return v

    def recent_value(self, key: int, u: float) -> int | None:
        """One of the last CAS_FROM_RECENT values handed out on `key` (None: none yet)."""
        with self._lock:
            last = self._values.get(key, 0)
        if last == 0:
            return None
        return last - min(int(u * CAS_FROM_RECENT), last - 1)

    def keys(self) -> list[int]:
        """Every key handed out so far, oldest first."""
        return list(range(self._next_key))
