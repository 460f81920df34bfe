"""Regenerate the example histories that splitbrain ships (deterministic: fixed seeds).

    python -m splitbrain.examples.generate [DIR]      # default: this directory

Each history is produced by running a sequential model under a random concurrent schedule: every
operation takes effect at a random instant between its invocation and its completion, so the
result is linearizable by construction. Some operations crash (`info`, taking effect or not, and
the worker continues under a fresh process id); some cas operations fail their precondition;
a nemesis starts and stops a partition now and then. The invalid example takes the valid schedule
and turns one read into a stale read (a value overwritten before the read began, with unique
written values, so no linearization can explain it).

Files:
  cas-register-valid.jsonl    one cas register, valid
  cas-register-invalid.jsonl  one cas register with one stale read, not linearizable
  kv-valid.jsonl              five keys, read/write/cas, valid
  append-log-valid.jsonl      an append-only log with client reads, final reads and status of
                              each node; append-log-valid.test.json selects its checkers
                              (linearizable, log, convergence)
  jepsen-cas-register.edn     Jepsen EDN with `[k v]` independent tuples, valid
"""

from __future__ import annotations

import json
import os
import random
import sys
from dataclasses import dataclass, field
from typing import Any

from splitbrain.history.edn import write_edn
from splitbrain.history.jsonl import write_jsonl
from splitbrain.history.op import Op
from splitbrain.systems.machines import chain_digest

MS = 1_000_000  # nanoseconds per millisecond
NODES = ("n1", "n2", "n3")


@dataclass
class _Planned:
    worker: int
    invoke_ns: int
    lin_ns: int
    complete_ns: int
    f: str = ""
    value: Any = None
    key: Any = None
    crashed: bool = False
    applied: bool = True
    process: int = 0
    result_type: str = "ok"
    result: Any = None
    error: str | None = None
    node: str | None = None


@dataclass
class _Register:
    """The cas-register workload's calls and sequential semantics, per key."""
    keys: tuple = (None,)
    values: dict = field(default_factory=dict)
    counter: int = 0
    recent: list = field(default_factory=list)

    def call(self, rng: random.Random) -> tuple[str, Any, Any]:
        key = rng.choice(self.keys)
        r = rng.random()
        if r < 0.4:
            return "read", None, key
        self.counter += 1
        if r < 0.7 or not self.recent:
            self.recent.append((key, self.counter))
            return "write", self.counter, key
        frm = rng.choice([v for k, v in self.recent[-6:] if k == key] or [self.counter - 1])
        self.recent.append((key, self.counter))
        return "cas", [frm, self.counter], key

    def step(self, p: _Planned) -> None:
        cur = self.values.get(p.key)
        if p.f == "read":
            p.result = cur
        elif p.f == "write":
            if p.applied:
                self.values[p.key] = p.value
            p.result = p.value
        elif p.f == "cas":
            frm, to = p.value
            p.result = p.value
            if cur != frm:
                p.applied = False
                if not p.crashed:
                    p.result_type = "fail"
                    p.error = "key-does-not-exist" if cur is None else "precondition-failed"
            elif p.applied:
                self.values[p.key] = to


@dataclass
class _Log:
    """The append-log workload: append unique values, read the whole log."""
    entries: list = field(default_factory=list)
    counter: int = 0

    def call(self, rng: random.Random) -> tuple[str, Any, Any]:
        if rng.random() < 0.3:
            return "read", None, None
        self.counter += 1
        return "append", self.counter, None

    def step(self, p: _Planned) -> None:
        if p.f == "read":
            p.result = list(self.entries)
        elif p.applied:
            p.result = {"value": p.value, "offset": len(self.entries)}
            self.entries.append(p.value)
        else:
            p.result = p.value


def simulate(workload, *, seed: int, workers: int, ops_max: int, crash_p: float = 0.05,
             partitions: int = 2) -> tuple[list[Op], list[_Planned]]:
    """A linearizable-by-construction history of `ops_max` client operations."""
    rng = random.Random(seed)
    plan: list[_Planned] = []
    clocks = [rng.randint(0, 5) * MS for _ in range(workers)]
    for _ in range(ops_max):
        w = min(range(workers), key=lambda i: clocks[i])
        inv = clocks[w]
        lin = inv + rng.randint(1, 30) * MS
        done = lin + rng.randint(1, 30) * MS
        plan.append(_Planned(worker=w, invoke_ns=inv, lin_ns=lin, complete_ns=done))
        clocks[w] = done + rng.randint(0, 10) * MS
    # Calls are chosen in invocation order; process ids advance after a crash.
    pids = list(range(workers))
    next_pid = workers
    for p in sorted(plan, key=lambda p: p.invoke_ns):
        p.f, p.value, p.key = workload.call(rng)
        p.process = pids[p.worker]
        p.node = rng.choice(NODES)
        if rng.random() < crash_p:
            p.crashed, p.applied = True, rng.random() < 0.5
            p.result_type, p.error = "info", "timeout"
            pids[p.worker] = next_pid
            next_pid += 1
    for p in sorted(plan, key=lambda p: p.lin_ns):
        workload.step(p)
    events: list[tuple[int, int, dict]] = []
    for p in plan:
        base = {"process": p.process, "f": p.f}
        if p.key is not None:
            base["key"] = p.key
        events.append((p.invoke_ns, 1, dict(base, type="invoke", value=p.value)))
        done = dict(base, type=p.result_type, node=p.node,
                    value=p.value if p.crashed else p.result)
        if p.error:
            done["error"] = p.error
        events.append((p.complete_ns, 0, done))
    end = max(p.complete_ns for p in plan)
    for _ in range(partitions):
        t = rng.randint(0, end)
        side = sorted(rng.sample(NODES, 1))
        grudge = {n: [m for m in NODES if (m in side) != (n in side)] for n in NODES}
        for dt, f, v in ((0, "start-partition", "one"), (1, "start-partition", grudge),
                         (40, "stop-partition", None), (41, "stop-partition", "healed")):
            events.append((t + dt * MS, 2, {"process": "nemesis", "type":
                                            "invoke" if dt % 2 == 0 else "info", "f": f,
                                            "value": v}))
    events.sort(key=lambda e: (e[0], e[1]))
    ops = [Op(index=i, time=t, process=d["process"], type=d["type"], f=d["f"],
              value=d.get("value"), key=d.get("key"), node=d.get("node"), error=d.get("error"))
           for i, (t, _, d) in enumerate(events)]
    return ops, plan


def make_stale_read(ops: list[Op], plan: list[_Planned]) -> list[Op]:
    """Turn one ok read into a read of a value overwritten before the read was invoked."""
    writes = [p for p in plan if p.f in ("write", "cas") and p.result_type == "ok"
              and not p.crashed]
    target = lambda p: p.value if p.f == "write" else p.value[1]  # noqa: E731
    for r in sorted((p for p in plan if p.f == "read" and p.result_type == "ok"),
                    key=lambda p: p.invoke_ns):
        for wu in writes:
            later = [wx for wx in writes if wx.invoke_ns > wu.complete_ns
                     and wx.complete_ns < r.invoke_ns and target(wx) != target(wu)]
            if later and r.result != target(wu):
                stale = target(wu)
                for i, op in enumerate(ops):
                    if (op.process == r.process and op.type == "ok" and op.f == "read"
                            and op.time == r.complete_ns):
                        out = list(ops)
                        out[i] = Op(op.index, op.time, op.process, op.type, op.f, stale,
                                    op.key, op.node, op.error)
                        return out
    raise AssertionError("no read to make stale: use a longer history")


def final_reads(ops: list[Op], log: list) -> list[Op]:
    """Each node's final read of the committed log and its status, appended after the test."""
    out = list(ops)
    t = ops[-1].time + 100 * MS
    pid = 1 + max(op.process for op in ops if isinstance(op.process, int))
    digest = "0" * 16
    for v in log:
        digest = chain_digest(digest, v)
    for n in NODES:
        for f, v in (("read", list(log)),
                     ("status", {"applied_index": len(log), "state_digest": digest})):
            out.append(Op(len(out), t, pid, "invoke", f, None, node=n))
            out.append(Op(len(out), t + MS, pid, "ok", f, v, node=n))
            t += 2 * MS
        pid += 1
    return out


def generate(directory: str) -> list[str]:
    """Write every example into `directory`; returns the paths written."""
    os.makedirs(directory, exist_ok=True)
    written = []

    def path(name: str) -> str:
        written.append(os.path.join(directory, name))
        return written[-1]

    ops, _ = simulate(_Register(), seed=1, workers=5, ops_max=200)
    write_jsonl(path("cas-register-valid.jsonl"), ops)
    ops, plan = simulate(_Register(), seed=2, workers=4, ops_max=60, crash_p=0.0)
    write_jsonl(path("cas-register-invalid.jsonl"), make_stale_read(ops, plan))
    ops, _ = simulate(_Register(keys=(0, 1, 2, 3, 4)), seed=3, workers=8, ops_max=300)
    write_jsonl(path("kv-valid.jsonl"), ops)
    log = _Log()
    ops, _ = simulate(log, seed=4, workers=4, ops_max=80)
    write_jsonl(path("append-log-valid.jsonl"), final_reads(ops, log.entries))
    with open(path("append-log-valid.test.json"), "w", encoding="utf-8") as fh:
        json.dump({"workload": "append-log", "model": "append-log",
                   "checkers": ["linearizable", "log", "convergence"]}, fh, indent=2)
        fh.write("\n")
    ops, _ = simulate(_Register(keys=(0, 1, 2)), seed=5, workers=5, ops_max=150)
    write_edn(path("jepsen-cas-register.edn"), ops, tuples=True, vector=True)
    return written


if __name__ == "__main__":
    for p in generate(sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(__file__)):
        print(p)
