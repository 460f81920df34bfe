"""Hypothesis strategies: valid histories of a replicated append-only log, and faults to inject.

`log_histories()` simulates a replicated log the way the seed describes it: one hidden total
order of committed appends (what the leader decided) that every replica applies as a prefix, each
replica lagging behind by a random amount that only shrinks. Clients are processes bound to one
node each (sticky sessions, so per-process reads are monotonic). Over a random schedule:
- an idle process invokes an `append` of a fresh value, or reads its node's committed log
  (`read` -> the node's prefix), or asks for its node's `status`;
- a pending append is committed (added to the hidden order) at any moment after its invoke;
- a pending append completes: `ok` (only if committed; sometimes with {"value", "offset"}),
  `fail` (only if not committed: it never will be), or `info` (committed or not; an uncommitted
  info append may still commit later, or never); `info` retires the process (a fresh one takes
  over its node), as Jepsen requires;
- a replica catches up part of the way; a node crashes (its pending clients get `info`; its
  durable committed prefix survives), as nemesis `kill`/`restart` events;
At the end some appends stay without completion, at least one replica is fully caught up, every
node is read once more by a fresh process (the final logs, `node` set) and reports its status
({"applied_index", "state_digest"} from the AppendLogMachine's hash chain).

The resulting history is valid for the log checker and the convergence checker by construction.
The `inject_*` helpers return a modified copy with one fault, or None when that history offers
no place for it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from hypothesis import strategies as st

from splitbrain.history.op import Op
from splitbrain.systems.machines import AppendLogMachine

NODES_MAX = 5
STEPS_MAX = 80
STEP_KINDS = ("append", "commit", "complete", "catch-up", "read", "status", "crash")


@dataclass
class LogHistory:
    """A generated history and the truth behind it."""

    ops: list[Op]
    order: list[int]                       # the hidden committed order
    acknowledged: set[int]                 # values whose append completed ok
    final_reads: dict[str, int] = field(default_factory=dict)   # node -> op index of final read
    offsets_reported: set[int] = field(default_factory=set)     # values acked with an offset


def chain_digests(log: list) -> list[str]:
    """digests[n] is the AppendLogMachine digest after the first n entries."""
    m = AppendLogMachine()
    out = [m.digest()]
    for v in log:
        m.apply({"type": "append", "value": v})
        out.append(m.digest())
    return out


class _Builder:
    def __init__(self) -> None:
        self.ops: list[Op] = []
        self.t = 0

    def add(self, process, typ, f, value=None, node=None, error=None) -> int:
        self.t += 1_000_000
        self.ops.append(Op(len(self.ops), self.t, process, typ, f, value, None, node, error))
        return len(self.ops) - 1


@st.composite
def log_histories(draw, nodes_max: int = NODES_MAX, steps_max: int = STEPS_MAX) -> LogHistory:
    n_nodes = draw(st.integers(1, nodes_max))
    nodes = [f"n{i + 1}" for i in range(n_nodes)]
    n_clients = draw(st.integers(1, 2 * n_nodes))
    n_steps = draw(st.integers(0, steps_max))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)      # every choice is a function of what Hypothesis drew
    weights = [draw(st.integers(1, 4)) for _ in STEP_KINDS]
    steps = rng.choices(STEP_KINDS, weights=weights, k=n_steps)
    b = _Builder()
    order: list[int] = []          # the hidden committed order
    committed: set[int] = set()
    applied = {n: 0 for n in nodes}            # each replica's committed prefix length
    proc_node: dict[int, str] = {p: nodes[p % n_nodes] for p in range(n_clients)}
    next_proc = n_clients
    busy: dict[int, int] = {}                  # process -> value of its pending append
    floating: set[int] = set()                 # info appends that may still commit
    acked: set[int] = set()
    with_offset: set[int] = set()
    next_value = 0
    digests_cache: list[str] = chain_digests([])

    def digest_at(n: int) -> str:
        nonlocal digests_cache
        if len(digests_cache) <= len(order):
            digests_cache = chain_digests(order)
        return digests_cache[n]

    def commit(v: int) -> None:
        order.append(v)
        committed.add(v)

    def retire(p: int) -> None:
        nonlocal next_proc
        node = proc_node.pop(p)
        proc_node[next_proc] = node
        next_proc += 1

    for kind in steps:
        idle = [p for p in proc_node if p not in busy]
        if kind == "append" and idle:                   # invoke an append
            p = rng.choice(idle)
            v = next_value
            next_value += 1
            b.add(p, "invoke", "append", v, proc_node[p])
            busy[p] = v
        elif kind == "commit":                          # commit a pending (or floating) append
            cands = sorted(v for v in list(busy.values()) + list(floating) if v not in committed)
            if cands:
                v = rng.choice(cands)
                commit(v)
                floating.discard(v)
        elif kind == "complete" and busy:               # complete a pending append
            p = rng.choice(sorted(busy))
            v = busy.pop(p)
            node = proc_node[p]
            if v not in committed and rng.random() < 0.6:
                commit(v)                               # the usual case: commit, then answer
            r = rng.random()
            if v in committed and r < 0.8:
                if rng.random() < 0.5:
                    b.add(p, "ok", "append", {"value": v, "offset": order.index(v)}, node)
                    with_offset.add(v)
                else:
                    b.add(p, "ok", "append", v, node)
                acked.add(v)
            elif v not in committed and r < 0.5:
                b.add(p, "fail", "append", v, node, "temporarily-unavailable")
            else:
                b.add(p, "info", "append", v, node, "timeout")
                if v not in committed:
                    floating.add(v)
                retire(p)
        elif kind == "catch-up":                        # a replica catches up
            n = rng.choice(nodes)
            applied[n] = rng.randint(applied[n], len(order))
        elif kind == "read" and idle:                   # a client read of its node
            p = rng.choice(idle)
            node = proc_node[p]
            b.add(p, "invoke", "read", None, node)
            b.add(p, "ok", "read", order[:applied[node]], node)
        elif kind == "status" and idle:                 # a status of a node
            p = rng.choice(idle)
            node = proc_node[p]
            n = applied[node]
            b.add(p, "invoke", "status", None, node)
            b.add(p, "ok", "status", {"applied_index": n, "state_digest": digest_at(n)}, node)
        elif kind == "crash":                           # crash and restart a node
            node = rng.choice(nodes)
            b.add("nemesis", "invoke", "kill", [node])
            for p in sorted(busy):
                if proc_node[p] == node:
                    v = busy.pop(p)
                    b.add(p, "info", "append", v, node, "node-down")
                    if v not in committed:
                        floating.add(v)
                    retire(p)
            b.add("nemesis", "info", "kill", [node])
            b.add("nemesis", "invoke", "restart", [node])
            b.add("nemesis", "info", "restart", [node])
    # the end of the test: some pending appends commit, some stay without completion
    for p in sorted(busy):
        if rng.random() < 0.5 and busy[p] not in committed:
            commit(busy[p])
    for v in sorted(floating):
        if v not in committed and rng.random() < 0.5:
            commit(v)
    leader = nodes[rng.randrange(n_nodes)]
    applied[leader] = len(order)
    for n in nodes:
        applied[n] = rng.randint(applied[n], len(order))
    final_reads = {}
    for i, n in enumerate(nodes):
        p = next_proc + i
        b.add(p, "invoke", "read", None, n)
        final_reads[n] = b.add(p, "ok", "read", order[:applied[n]], n)
    for i, n in enumerate(nodes):
        p = next_proc + n_nodes + i
        b.add(p, "invoke", "status", None, n)
        b.add(p, "ok", "status", {"applied_index": applied[n],
                                  "state_digest": digest_at(applied[n])}, n)
    return LogHistory(b.ops, order, acked, final_reads, with_offset)


# ------------------------------------------------------------------------------ fault injection
def _with_logs(h: LogHistory, edit) -> list[Op]:
    """A copy of the history whose ok read values are replaced by edit(op index, log)."""
    out = []
    for op in h.ops:
        if op.f == "read" and op.type == "ok":
            op = replace(op, value=edit(op.index, list(op.value)))
        out.append(op)
    return out


def inject_drop(h: LogHistory, rng: random.Random) -> tuple[list[Op], dict] | None:
    """Drop one acknowledged append from every observed log (so from every final log)."""
    if not h.acknowledged:
        return None
    v = rng.choice(sorted(h.acknowledged))
    ops = _with_logs(h, lambda i, log: [x for x in log if x != v])
    later = set(h.order[h.order.index(v):])
    return ops, {"value": v, "offsets_shifted": bool(later & h.offsets_reported)}


def inject_swap(h: LogHistory, rng: random.Random) -> tuple[list[Op], dict] | None:
    """Swap two entries in one replica's final log, where another observed log holds both."""
    lengths = sorted((len(op.value), op.index) for op in h.ops
                     if op.f == "read" and op.type == "ok")
    choices = []
    for node, idx in h.final_reads.items():
        n = len(h.ops[idx].value)
        # the longest other observed log decides which swaps are visible
        other = max((ln for ln, i in lengths if i != idx), default=0)
        if min(n, other) >= 2:
            choices.append((node, idx, min(n, other)))
    if not choices:
        return None
    node, idx, span = rng.choice(choices)
    i, j = sorted(rng.sample(range(span), 2))

    def edit(k: int, log: list) -> list:
        if k == idx:
            log[i], log[j] = log[j], log[i]
        return log

    vals = {h.order[i], h.order[j]}
    return _with_logs(h, edit), {"node": node, "positions": (i, j),
                                 "offsets_involved": bool(vals & h.offsets_reported)}


def inject_duplicate(h: LogHistory, rng: random.Random) -> tuple[list[Op], dict] | None:
    """Insert a second copy of one entry, later in one replica's final log."""
    choices = [(node, idx) for node, idx in h.final_reads.items() if h.ops[idx].value]
    if not choices:
        return None
    node, idx = rng.choice(choices)
    log = h.ops[idx].value
    i = rng.randrange(len(log))
    at = rng.randint(i + 1, len(log))

    def edit(k: int, lg: list) -> list:
        if k == idx:
            lg.insert(at, lg[i])
        return lg

    # entries from `at` on move one offset up: a reported offset in [at, len(log)] now holds
    # another value than the one reported there
    shifted = any(at <= h.order.index(v) <= len(log) for v in h.offsets_reported)
    return _with_logs(h, edit), {"node": node, "value": log[i], "at": at,
                                 "offsets_shifted": shifted}
