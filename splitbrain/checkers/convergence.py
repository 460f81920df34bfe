"""The convergence checker: equal log offsets mean equal replica state.

The seed's claim: replicas that apply the same ordered log end in the same state, so "I have
applied the log up to offset N and my state hashes to D" (a `status` op: ok value
{"applied_index": N, "state_digest": D}, `node` set) must give one D for each N. Two checks:

1. Across nodes: two `status` results with the same `applied_index` and different
   `state_digest` are a `state-divergence` (kind "nodes"). Reported once per distinct
   (applied_index, digest) beyond the first digest seen at that index.
2. Replay: the committed log is run through the reference state machine and its digest after
   the first N entries must equal every digest reported for applied_index N; a difference is a
   `state-divergence` (kind "replay"). The committed log of a node is its final log (its last ok
   `read` with `node` set, for ops without a key); a node without one is compared with the
   longest final log. A status whose applied_index exceeds that log's length cannot be replayed
   and is counted in stats["unreplayable"].

The reference machine is `append-log` by default (AppendLogMachine: applied_index == len(log),
its digest is a hash chain), any name in splitbrain.systems.machines.MACHINES, or a user class
given as "package.module:Class" (a StateMachine, or anything with `apply(op: dict)` and
`digest() -> str`): the `machine` option, else the `machine` of the test's metadata
(test.json), else append-log. A log entry that is an object with a "type" field is applied as that
Maelstrom op body; any other entry v is applied as {"type": "append", "value": v}.

3. A node's own word: a status value may carry `violations`, the protocol invariants the core saw
   broken (in-house cores record them instead of asserting when a bug switch is on, e.g. Raft's
   "two leaders in term 7"); a non-empty list is an `invariant-violation` anomaly, once per node.
   The simulator's replicas checker reports the same anomaly from the cores it holds.

No ok `status` op at all gives "unknown": there is nothing to compare, and silence is no pass.
"""

from __future__ import annotations

import importlib
from typing import Any, Iterable

from ..history.errors import HistoryError
from ..history.op import INVOKE, OK
from ..history.values import canon, is_plain_list
from ..systems.machines import MACHINES, make_machine
from .result import UNKNOWN, Anomaly, Result

NAME = "convergence"
DEFAULT_MACHINE = "append-log"
ANOMALIES_MAX = 1000   # listed anomalies; the count in stats stays exact


def load_machine_factory(spec: str):
    """A zero-argument factory of state machines: a MACHINES name or "module:Class".

    Raises ValueError (one line, naming the spec) when it cannot be loaded.
    """
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"machine must be a name or 'module:Class', got {spec!r}")
    if spec in MACHINES:
        return lambda: make_machine(spec)
    module, sep, cls_name = spec.partition(":")
    if not sep or not module or not cls_name:
        raise ValueError(f"unknown state machine {spec!r} (choose from {', '.join(MACHINES)}, "
                         "or give 'module:Class')")
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ValueError(f"machine {spec!r}: cannot import {module!r}: {e}") from None
    cls = getattr(mod, cls_name, None)
    if cls is None:
        raise ValueError(f"machine {spec!r}: module {module!r} has no {cls_name!r}")
    probe = cls()
    if not callable(getattr(probe, "apply", None)) or not callable(getattr(probe, "digest", None)):
        raise ValueError(f"machine {spec!r}: needs apply(op) and digest() methods")
    return cls


def entry_op(entry: Any) -> dict:
    """The op body that applies one log entry to the reference machine."""
    if isinstance(entry, dict) and isinstance(entry.get("type"), str):
        return entry
    return {"type": "append", "value": entry}


def replay_digests(factory, log: list, indices: Iterable[int]) -> dict[int, str]:
    """Digest of a fresh machine after applying the first n entries of `log`, for each n given.

    Indices beyond len(log) are left out. Cost: one apply per entry up to the largest index.
    """
    wanted = sorted({n for n in indices if 0 <= n <= len(log)})
    out: dict[int, str] = {}
    if not wanted:
        return out
    m = factory()
    j = 0
    for n in range(wanted[-1] + 1):
        while j < len(wanted) and wanted[j] == n:
            out[n] = m.digest()
            j += 1
        if n < len(log):
            m.apply(entry_op(log[n]))
    return out


class ConvergenceChecker:
    name = NAME

    def __init__(self, machine: str | None = None, replay: bool = True):
        """`machine` None means: the test's `machine` (test.json), else append-log."""
        self.explicit = machine is not None
        self.machine = machine or DEFAULT_MACHINE
        self.factory = load_machine_factory(self.machine)
        self.replay = replay

    def check(self, history: Iterable, test: dict | None = None) -> Result:
        machine, factory = self.machine, self.factory
        spec = (test or {}).get("machine")
        if not self.explicit and spec and spec != machine:
            machine, factory = spec, load_machine_factory(spec)
        statuses: list[tuple[int, Any, Any, int, str]] = []  # (index, process, node, n, digest)
        broken: dict[Any, tuple[int, list]] = {}  # node -> (status op index, violations)
        final: dict[Any, tuple[int, list]] = {}   # node -> its last ok read (no key)
        pending: dict[Any, Any] = {}
        for op in history:
            if op.f not in ("status", "read"):
                continue
            if op.type == INVOKE:
                pending[op.process] = op
                continue
            inv = pending.pop(op.process, None)
            if op.type != OK:
                continue
            node = op.node if op.node is not None else (inv.node if inv is not None else None)
            if op.f == "read":
                key = op.key if op.key is not None else (inv.key if inv is not None else None)
                if node is not None and key is None and isinstance(op.value, list):
                    final[node] = (op.index, op.value)
                continue
            v = op.value
            if not isinstance(v, dict):
                raise HistoryError(f"op {op.index}: an ok status must be an object "
                                   f"{{applied_index, state_digest}}, got {v!r}", field="value")
            n, d = v.get("applied_index"), v.get("state_digest")
            if not isinstance(n, int) or isinstance(n, bool) or n < 0:
                raise HistoryError(f"op {op.index}: applied_index must be a non-negative integer, "
                                   f"got {n!r}", field="value")
            if not isinstance(d, str):
                raise HistoryError(f"op {op.index}: state_digest must be a string, got {d!r}",
                                   field="value")
            statuses.append((op.index, op.process, node, n, d))
            seen = v.get("violations")
            if isinstance(seen, list) and seen and node not in broken:
                broken[node] = (op.index, seen)
        return self._judge(statuses, final, machine, factory, broken)

    def _judge(self, statuses: list, final: dict, machine: str, factory,
               broken: dict) -> Result:
        anomalies: list[Anomaly] = []
        count = 0

        def add(a: Anomaly) -> None:
            nonlocal count
            count += 1
            if len(anomalies) < ANOMALIES_MAX:
                anomalies.append(a)

        def who(s) -> str:
            idx, proc, node = s[0], s[1], s[2]
            parts = [f"process {proc}"] + ([f"node {node}"] if node is not None else [])
            return f"op {idx} ({', '.join(parts)})"

        def op_json(s) -> dict:
            return {"index": s[0], "process": s[1], "node": s[2]}

        stats: dict[str, Any] = {"statuses": len(statuses), "nodes": len({s[2] for s in statuses}),
                                 "machine": machine}
        if not statuses:
            return Result(valid=UNKNOWN, checker=NAME, stats=stats,
                          error="no ok status operation: no state to compare")
        # 1. across nodes
        first: dict[int, tuple] = {}
        reported: set[tuple[int, str]] = set()
        for s in statuses:
            n, d = s[3], s[4]
            f = first.get(n)
            if f is None:
                first[n] = s
                continue
            if f[4] != d and (n, d) not in reported:
                reported.add((n, d))
                add(Anomaly("state-divergence",
                            f"at applied_index {n}, {who(f)} reports digest {f[4]} but {who(s)} "
                            f"reports {d}", [f[0], s[0]],
                            {"kind": "nodes", "applied_index": n, "digests": [f[4], d],
                             "statuses": [op_json(f), op_json(s)]}))
        # 2. replay through the reference machine
        replayed = unreplayable = 0
        if self.replay and final:
            longest_node = max(final, key=lambda nd: (len(final[nd][1]), -final[nd][0]))
            # each status is judged against its own node's final log, or the longest one
            use: dict[int, list] = {}                  # read op index -> statuses to judge
            for s in statuses:
                ref = final.get(s[2]) or final[longest_node]
                use.setdefault(ref[0], []).append(s)
            logs = {i: log for i, log in final.values()}
            # prefixes compare as JSON values (true is not 1): canonical forms, computed once
            keyed = {i: log if is_plain_list(log) else [canon(x) for x in log]
                     for i, log in logs.items()}
            # a log that is a prefix of a longer one shares its digests: replay the longer once
            order = sorted(use, key=lambda i: -len(logs[i]))
            refs: list[int] = []
            owner: dict[int, int] = {}
            for i in order:
                log = logs[i]
                for r in refs:
                    if keyed[r][:len(log)] == keyed[i]:
                        owner[i] = r
                        break
                else:
                    refs.append(i)
                    owner[i] = i
            wanted: dict[int, set] = {r: set() for r in refs}
            for i, ss in use.items():
                wanted[owner[i]].update(s[3] for s in ss if s[3] <= len(logs[i]))
            digests = {r: replay_digests(factory, logs[r], wanted[r]) for r in refs}
            for i, ss in use.items():
                ref_digests = digests[owner[i]]
                for s in ss:
                    if s[3] > len(logs[i]):
                        unreplayable += 1
                        continue
                    replayed += 1
                    want = ref_digests[s[3]]
                    if want != s[4]:
                        add(Anomaly("state-divergence",
                                    f"{who(s)} reports digest {s[4]} at applied_index {s[3]}, but "
                                    f"replaying the first {s[3]} entries of the log read by op {i} "
                                    f"through the {machine} machine gives {want}",
                                    sorted({s[0], i}),
                                    {"kind": "replay", "applied_index": s[3], "digest": s[4],
                                     "expected": want, "status": op_json(s), "log_op": i}))
        diverged = count
        # 3. invariants a node saw broken
        for node, (idx, seen) in broken.items():
            add(Anomaly("invariant-violation",
                        f"op {idx}: node {node} reports a broken protocol invariant: {seen[0]}"
                        + (f" (and {len(seen) - 1} more)" if len(seen) > 1 else ""), [idx],
                        {"node": node, "violations": [str(x) for x in seen[:20]]}))
        stats.update({"replayed": replayed, "unreplayable": unreplayable,
                      "final-logs": len(final), "state-divergence": diverged,
                      "invariant-violation": len(broken)})
        return Result(valid=not anomalies, checker=NAME, anomalies=anomalies, stats=stats)


def make_checker(options: dict) -> ConvergenceChecker:
    """Registry factory. Options: `machine` (a machine name or "module:Class"; default the
    test's `machine`, else append-log), `replay` (bool, default True)."""
    return ConvergenceChecker(machine=options.get("machine") or None,
                              replay=options.get("replay", True) is not False)
