"""Workloads: what the clients of a test do, and how the result is checked.

One object per workload. Every backend (the simulator, the local process backend, ...) uses the
same objects, so a history means the same thing whatever ran it. A workload answers:

  machine                 the state machine an in-house system runs (machines.py name), or None
                          for a workload that only third-party Maelstrom nodes serve
  next_invocation(rng)    the next client operation (f, value, key) from a seeded rng; values that
                          must be unique in the test (append-log, set) come from a counter held by
                          the workload object, so ONE workload object serves ONE test
  request(inv)            the Maelstrom request body for an invocation (without msg_id)
  completion(inv, reply)  a reply body decoded into a Completion (type ok/fail/info, value, error)
  timeout(inv)            the Completion of a request that got no reply in time (info, timed-out)
  setup_requests(nodes)   requests sent once, after init and before the generator starts:
                          (node, body) pairs, each answered `<type>_ok` (broadcast's topology);
                          not operations of the history (Maelstrom's client setup!)
  final_invocations(nodes) the final phase, after the cluster healed: FinalOp(node, inv) items;
                          `node` set means "this node's own state" (append-log's per-node read and
                          every node's status), None means "any node, through the protocol"
  checkers(test)          the checkers to run (splitbrain.checkers.registry.make_checker):
                          checker_names() plus `availability` when that goal is set
  prepare(process, inv)   the invocation a process actually performs, from its own client state
                          (identity for stateless workloads; kafka's consumers fill in the offsets
                          they poll from); called before the invoke is recorded, so the history
                          holds what was sent
  observe(process, inv, c) the completion `c` of `inv` by `process` updates that process's client
                          state (a no-op for stateless workloads). After an `info` the process is
                          never used again (Jepsen: a crashed client is replaced), so its state
                          can be dropped
  bind_clients(workers, nodes) the run's number of client workers and nodes, told once by the
                          runner before the first op (worker w performs as processes w, w+workers,
                          w+2*workers, ...); the independent-key workloads (register, cas-register,
                          kv) group workers per key with it; the others ignore it

Completion rules (Jepsen's, with Maelstrom's codes): a reply `<type>_ok` is `ok`; an error with a
definite code (machines.DEFINITE_ERRORS) is `fail` (it certainly did not happen); an indefinite
code, an unknown code or no reply is `info`. Exception: a lin-kv read of a missing key (code 20) is
`ok` with value null (the read happened and saw nothing). `error` holds the code's kebab-case name.

Values on completions: `ok` carries the result (read: what was read; write/add/mul/enqueue: the
argument; cas: [from, to]; append: {"value": v, "offset": i} when the node reported an offset);
`fail` and `info` carry the invocation's value (Jepsen keeps the argument so checkers know what
might have happened).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Any, ClassVar, Iterable

from ..systems import machines as m
from .keyspace import KeyRotation

# Maelstrom's codes by kebab-case name (doc/protocol.md).
ERROR_NAMES: dict[int, str] = {
    m.ERR_TIMEOUT: "timeout",
    m.ERR_NODE_NOT_FOUND: "node-not-found",
    m.ERR_NOT_SUPPORTED: "not-supported",
    m.ERR_TEMPORARILY_UNAVAILABLE: "temporarily-unavailable",
    m.ERR_MALFORMED_REQUEST: "malformed-request",
    m.ERR_CRASH: "crash",
    m.ERR_ABORT: "abort",
    m.ERR_KEY_DOES_NOT_EXIST: "key-does-not-exist",
    m.ERR_KEY_ALREADY_EXISTS: "key-already-exists",
    m.ERR_PRECONDITION_FAILED: "precondition-failed",
    m.ERR_TXN_CONFLICT: "txn-conflict",
}

OK, FAIL, INFO = "ok", "fail", "info"
TIMED_OUT = "timed-out"   # harness reason: no reply within the client timeout
NODE_DOWN = "node-down"   # harness reason: the request could not be delivered at all


def error_name(code: Any) -> str:
    """Maelstrom's kebab-case name for an error code ("error-1234" for custom codes)."""
    if isinstance(code, int) and code in ERROR_NAMES:
        return ERROR_NAMES[code]
    return f"error-{code}"


def is_definite(code: Any) -> bool:
    """A definite error means the operation certainly did not take effect."""
    return isinstance(code, int) and code in m.DEFINITE_ERRORS


@dataclass(frozen=True, slots=True)
class Invocation:
    """One client operation to perform: history fields `f`, `value` and optional `key`."""

    f: str
    value: Any = None
    key: Any = None


@dataclass(frozen=True, slots=True)
class Completion:
    """How an operation ended: `type` ok/fail/info, the history value, and the error name."""

    type: str
    value: Any = None
    error: str | None = None

    def __post_init__(self) -> None:
        assert self.type in (OK, FAIL, INFO), self.type


@dataclass(frozen=True, slots=True)
class FinalOp:
    """An operation of the final phase. `node` set: served by that node from its own state."""

    node: str | None
    inv: Invocation


class Workload:
    """Base class: see the module docstring for the contract."""

    name: ClassVar[str]
    machine: ClassVar[str | None]
    description: ClassVar[str]
    # The operations this workload issues (for `splitbrain workloads`).
    ops: ClassVar[tuple[str, ...]]
    # Option name -> (meaning, default), settable with --opt workload.NAME=VALUE.
    OPTIONS: ClassVar[dict[str, tuple[str, Any]]] = {}
    # Quiet seconds after the heal before the final phase, when this workload needs its own
    # (None: the runner's default). Eventually consistent workloads wait Maelstrom's 10 s.
    recovery_s: ClassVar[float | None] = None
    # Options every workload takes (Maelstrom's --availability: see checkers/availability.py).
    COMMON_OPTIONS: ClassVar[dict[str, tuple[str, Any]]] = {
        "availability": ("'total' (every op must succeed) or a fraction f (ok ops / all ops "
                         ">= f); checked by the availability checker", None)}

    def __init__(self, options: dict[str, Any] | None = None):
        from ..checkers.availability import parse_goal  # lazy: checkers import late
        opts = {k: d for k, (_, d) in self.OPTIONS.items()}
        options = dict(options or {})
        try:
            self.availability = parse_goal(options.pop("availability", None))
        except ValueError as e:
            raise ValueError(f"workload {self.name}: {e}") from None
        for k, v in options.items():
            if k not in self.OPTIONS:
                known = [*self.OPTIONS, *self.COMMON_OPTIONS]
                raise ValueError(f"workload {self.name}: unknown option {k!r} "
                                 f"(known: {', '.join(known)})")
            default = opts[k]
            if isinstance(default, int) and not isinstance(v, int):
                try:
                    v = int(v)
                except (TypeError, ValueError):
                    raise ValueError(f"workload {self.name}: option {k} must be an integer, "
                                     f"got {v!r}") from None
            opts[k] = v
        self.options = opts
        self._unique = itertools.count(1)  # next() is atomic under the GIL: safe for threads

    # ---- generation -----------------------------------------------------------------------

    def next_invocation(self, rng: random.Random) -> Invocation:
        raise NotImplementedError

    def unique_value(self) -> int:
        return next(self._unique)

    def keys(self) -> list[Any]:
        """The keys this workload's ops use ([None] for a single-object workload)."""
        return [None]

    # ---- per-process client state (Jepsen's stateful clients) --------------------------------

    def prepare(self, process: int, inv: Invocation) -> Invocation:
        """What `process` performs for the generated `inv`; stateless workloads: `inv` itself."""
        return inv

    def observe(self, process: int, inv: Invocation, c: Completion) -> None:
        """`process`'s op `inv` ended as `c`; stateless workloads keep nothing."""

    def bind_clients(self, workers: int, nodes: int) -> None:
        """The run's client workers and nodes (see the module docstring); default: ignored."""

    # ---- encoding ---------------------------------------------------------------------------

    def request(self, inv: Invocation) -> dict:
        body: dict[str, Any] = {"type": inv.f}
        if inv.key is not None:
            body["key"] = inv.key
        if inv.value is not None:
            body["value"] = inv.value
        return body

    def completion(self, inv: Invocation, reply: dict) -> Completion:
        """Decode a reply body (see the module docstring for the rules)."""
        t = reply.get("type")
        if t == "error":
            code = reply.get("code")
            name = error_name(code)
            if is_definite(code):
                return Completion(FAIL, inv.value, name)
            return Completion(INFO, inv.value, name)
        if t != f"{inv.f}_ok":
            return Completion(INFO, inv.value, f"unexpected-reply-{t}")
        return Completion(OK, self.ok_value(inv, reply))

    def ok_value(self, inv: Invocation, reply: dict) -> Any:
        if inv.f == "read":
            return reply.get("value")
        if inv.f == "status":
            return {"applied_index": reply.get("applied_index"),
                    "state_digest": reply.get("state_digest")}
        return inv.value

    def timeout(self, inv: Invocation, reason: str = TIMED_OUT) -> Completion:
        return Completion(INFO, inv.value, reason)

    # ---- setup, the final phase and checking -----------------------------------------------

    def setup_requests(self, nodes: Iterable[str]) -> list[tuple[str, dict]]:
        """(node, request body) pairs sent once before the run; default none."""
        return []

    def final_invocations(self, nodes: Iterable[str]) -> list[FinalOp]:
        """Default: one read per key through any node (after the cluster converged).

        Only append-log adds `status` ops: the linearizability models do not describe `status`.
        """
        return [FinalOp(None, Invocation("read", None, k)) for k in self.keys()]

    def checker_names(self) -> list[tuple[str, dict]]:
        """(registry name, options) of the checkers for this workload; `stats` always."""
        return [("stats", {})]

    def checker_plan(self, test: dict | None = None) -> list[tuple[str, dict]]:
        """checker_names() plus the availability checker when a goal is set (this workload's
        `availability` option, else the test's `availability`)."""
        from ..checkers.availability import goal_from_test, parse_goal
        plan = list(self.checker_names())
        goal = self.availability
        if goal is None:
            try:
                goal = parse_goal(goal_from_test(test))
            except ValueError:
                goal = None       # the test's own option was validated where it was given
        if goal is not None and not any(n == "availability" for n, _ in plan):
            plan.append(("availability", {"availability": goal}))
        return plan

    def checkers(self, test: dict | None = None) -> list:
        """Checker objects for this workload. `test` may give `out_dir` (the run directory)."""
        from ..checkers.registry import make_checker  # lazy: checkers import late
        test = test or {}
        out = []
        for name, opts in self.checker_plan(test):
            o = dict(opts)
            if test.get("out_dir"):
                o.setdefault("out_dir", test["out_dir"])
            if self.machine is not None:
                o.setdefault("machine", self.machine)
            out.append(make_checker(name, o))
        return out

    def describe(self) -> dict:
        return {"name": self.name, "machine": self.machine, "ops": list(self.ops),
                "description": self.description,
                "checkers": [n for n, _ in self.checker_plan()],
                "options": {k: {"meaning": mn, "default": d}
                            for k, (mn, d) in {**self.OPTIONS, **self.COMMON_OPTIONS}.items()}}


def _weighted(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    total = sum(w for _, w in table)
    x = rng.randrange(total)
    for f, w in table:
        if x < w:
            return f
        x -= w
    raise AssertionError("unreachable")


class _AutoKey:
    """The key of a template invocation: `prepare` picks the key (and the value)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "AUTO_KEY"

    def __reduce__(self):
        return (_AutoKey, ())


AUTO_KEY = _AutoKey()


@dataclass(frozen=True, slots=True)
class Draws:
    """The random draws of a template invocation (floats in [0, 1)), spent by `prepare`: which
    of the group's keys, the limit of a fresh key, which recent value a cas expects (and, with
    value_max set, the value written / the cas's new value)."""

    slot: float
    limit: float
    pick: float
    pick2: float


# Keys read in the final phase (the most recent ones): a bound on the final phase's length.
FINAL_KEYS_MAX = 400


class RegisterWorkload(Workload):
    """Read/write registers on independent keys (Jepsen's `independent` register test).

    A group of `workers_per_key` workers shares one key and moves to a fresh key after about
    `ops_per_key` operations (harness/keyspace.py has the rules); written values are unique per
    key (1, 2, 3, ...), so every read names the one write it saw. Keys are the integers 0, 1, 2,
    ... in the order groups take them. The history op is the kv workload's: `f` read/write (and
    cas in cas-register and kv), `key` the key, `value` the value (Maelstrom's lin-kv bodies
    `{"type": "write", "key": k, "value": v}` on the wire). Checked per key against the
    cas-register model (a read/write history checks exactly as against `register`; a stored
    single-register history of an older version, key null, with cas, still checks).

    Defaults and why: ops_per_key 128 and workers_per_key 2 x nodes are Jepsen's
    linearizable-register test's (:per-key-limit 128, scaled by a draw in [0.9, 1.0] so that
    groups change keys at different times; (* 2 n) threads per key), which Maelstrom's lin-kv
    inherits. The campaign in benchmarks/decided_campaign.py checks that every default in-house
    run under all faults is decided with them. Larger groups put more of the cluster's nodes
    under one key (a deposed leader's stale read and the new leader's write meet on the same
    register); fewer operations per key shorten the histories the search must decide.

    `value_max=N` (> 0) draws values from 0..N-1 instead, as older versions of this workload
    did (one register, Knossos' `rand-int 5`): keys still rotate, but reads no longer name their
    write; kept for stored runs that set it and for benchmarking the general search.

    `next_invocation(rng)` gives a TEMPLATE (key AUTO_KEY, value the Draws); `prepare(process,
    inv)`, which both runners call before recording the invoke, fills in the key of the
    process's group and the value. Invocations with a real key (the final reads) pass through.
    """

    name = "register"
    machine = "kv"
    ops = ("read", "write")
    description = ("read/write registers on independent keys: a group of workers per key, a "
                   "fresh key after ops_per_key ops, unique values per key; linearizable per key")
    OPTIONS = {"ops_per_key": ("operations on a key before its group takes a fresh one "
                               "(Jepsen's per-key-limit)", 128),
               "workers_per_key": ("workers sharing one key (0: twice the node count, "
                                   "Jepsen's)", 0),
               "value_max": ("0: values unique per key; N: values drawn from 0..N-1, as older "
                             "versions did (histories the search may not decide)", 0)}
    MIX = (("read", 1), ("write", 1))
    KEYS_PER_GROUP_OPTION: ClassVar[str | None] = None   # kv: key_count keys per group

    def __init__(self, options: dict[str, Any] | None = None):
        # Maelstrom/Jepsen spell options with "-": ops-per-key is ops_per_key.
        super().__init__({str(k).replace("-", "_"): v for k, v in (options or {}).items()})
        per_group = self.KEYS_PER_GROUP_OPTION
        if self.options["value_max"] < 0:
            raise ValueError(f"workload {self.name}: value_max must be >= 0 (0: unique values), "
                             f"got {self.options['value_max']}")
        try:
            self._keyspace = KeyRotation(
                self.options["ops_per_key"], self.options["workers_per_key"],
                self.options[per_group] if per_group else 1)
        except ValueError as e:
            raise ValueError(f"workload {self.name}: {e}") from None

    def bind_clients(self, workers: int, nodes: int) -> None:
        self._keyspace.bind(workers, nodes)

    def next_invocation(self, rng: random.Random) -> Invocation:
        f = _weighted(rng, self.MIX)
        return Invocation(f, Draws(rng.random(), rng.random(), rng.random(), rng.random()),
                          AUTO_KEY)

    def prepare(self, process: int, inv: Invocation) -> Invocation:
        if inv.key is not AUTO_KEY:
            return inv
        d = inv.value
        ks = self._keyspace
        key = ks.assign(process, d.slot, d.limit)
        if inv.f == "read":
            return Invocation("read", None, key)
        vmax = self.options["value_max"]
        if vmax > 0:    # values from a small range (not unique): older versions' histories
            if inv.f == "cas":
                return Invocation("cas", [int(d.pick * vmax), int(d.pick2 * vmax)], key)
            return Invocation("write", int(d.pick2 * vmax), key)
        if inv.f == "cas":
            frm = ks.recent_value(key, d.pick)
            if frm is not None:
                return Invocation("cas", [frm, ks.next_value(key)], key)
            # Nothing written to this key yet: a cas could only fail; write instead.
        return Invocation("write", ks.next_value(key), key)

    def keys(self) -> list[Any]:
        return self._keyspace.keys()

    def final_invocations(self, nodes: Iterable[str]) -> list[FinalOp]:
        """One read per key through any node, the most recent FINAL_KEYS_MAX keys."""
        return [FinalOp(None, Invocation("read", None, k))
                for k in self.keys()[-FINAL_KEYS_MAX:]]

    def request(self, inv: Invocation) -> dict:
        body: dict[str, Any] = {"type": inv.f}
        if inv.key is not None:
            body["key"] = inv.key
        if inv.f == "write":
            body["value"] = inv.value
        elif inv.f == "cas":
            body["from"], body["to"] = inv.value
        return body

    def checker_names(self) -> list[tuple[str, dict]]:
        return [("linearizable", {"model": "cas-register"}), ("stats", {})]


class CasRegisterWorkload(RegisterWorkload):
    """Compare-and-set registers on independent keys: read, write v, cas [from, to].

    As `register` (groups of workers per key, a fresh key after ops_per_key ops, unique values
    per key), plus cas: `from` is one of the last CAS_FROM_RECENT values written to the key (so
    a fair share succeed) and `to` a fresh unique value, so every value the register can hold
    was put there by exactly one write or cas. A cas on a key nothing was written to yet is a
    write instead (it could only fail). Mix: half reads, a quarter writes, a quarter cas.
    """

    name = "cas-register"
    ops = ("read", "write", "cas")
    description = ("compare-and-set registers on independent keys: read / write v / cas [from, "
                   "to]; a group of workers per key, a fresh key after ops_per_key ops, unique "
                   "values per key; linearizable per key")
    MIX = (("read", 2), ("write", 1), ("cas", 1))


class KvWorkload(CasRegisterWorkload):
    """cas-registers by key, `key_count` keys per group of workers at a time; each key moves on
    after ops_per_key ops (Maelstrom's lin-kv shape; linearizable per key)."""

    name = "kv"
    description = ("cas-registers by key: each group of workers uses key_count keys at a time, "
                   "each replaced by a fresh key after ops_per_key ops; unique values per key; "
                   "linearizable per key (P-compositionality)")
    OPTIONS = {**CasRegisterWorkload.OPTIONS,
               "key_count": ("keys in use at a time by each group of workers", 3)}
    KEYS_PER_GROUP_OPTION = "key_count"


class LinKvWorkload(KvWorkload):
    """Maelstrom's lin-kv workload for third-party nodes: a read of a missing key is ok null."""

    name = "lin-kv"
    machine = None
    description = ("Maelstrom's lin-kv for any Maelstrom node: read / write / cas by key; "
                   "linearizable per key")

    def completion(self, inv: Invocation, reply: dict) -> Completion:
        if (inv.f == "read" and reply.get("type") == "error"
                and reply.get("code") == m.ERR_KEY_DOES_NOT_EXIST):
            return Completion(OK, None)
        return super().completion(inv, reply)


class ArithWorkload(Workload):
    """The seed's example: `add n`, `mul n` and `read` on one integer; order changes the result."""

    name = "arith"
    machine = "arith"
    ops = ("add", "mul", "read")
    description = ("one integer starting at 0: add n / mul n / read; linearizable (order "
                   "matters); workload.key_count=K spreads ops over K independent integers")
    OPTIONS = {"key_count": ("independent integers (1: the seed's single number, no key)", 1)}
    MIX = (("read", 2), ("add", 2), ("mul", 1))

    def keys(self) -> list[Any]:
        k = self.options["key_count"]
        return [None] if k <= 1 else list(range(k))

    def next_invocation(self, rng: random.Random) -> Invocation:
        f = _weighted(rng, self.MIX)
        k = self.options["key_count"]
        key = None if k <= 1 else rng.randrange(k)
        if f == "read":
            return Invocation("read", None, key)
        if f == "add":
            return Invocation("add", rng.randrange(1, 10), key)
        # Multipliers stay small so values do not explode; -1 and 2 make order visible.
        return Invocation("mul", rng.choice((-1, 2, 3)), key)

    def checker_names(self) -> list[tuple[str, dict]]:
        return [("linearizable", {"model": "arith"}), ("stats", {})]


class SetWorkload(Workload):
    """A grow-only set: add unique values, read the whole set (Jepsen's set-full)."""

    name = "set"
    machine = "set"
    ops = ("add", "read")
    description = "a grow-only set: add v (unique) / read; lost, stale and unexpected elements"
    MIX = (("add", 4), ("read", 1))

    def next_invocation(self, rng: random.Random) -> Invocation:
        if _weighted(rng, self.MIX) == "read":
            return Invocation("read")
        return Invocation("add", self.unique_value())

    def checker_names(self) -> list[tuple[str, dict]]:
        return [("set", {}), ("stats", {})]


class AppendLogWorkload(Workload):
    """The replicated log itself: append unique values, read the committed log, status."""

    name = "append-log"
    machine = "append-log"
    ops = ("append", "read", "status")
    description = ("append v (unique) / read the committed log; final read and status of every "
                   "node; log agreement, total order, durability and convergence")
    MIX = (("append", 8), ("read", 1))

    def next_invocation(self, rng: random.Random) -> Invocation:
        if _weighted(rng, self.MIX) == "read":
            return Invocation("read")
        return Invocation("append", self.unique_value())

    def ok_value(self, inv: Invocation, reply: dict) -> Any:
        if inv.f == "append" and "offset" in reply:
            return {"value": inv.value, "offset": reply["offset"]}
        return super().ok_value(inv, reply)

    def final_invocations(self, nodes: Iterable[str]) -> list[FinalOp]:
        nodes = list(nodes)
        return ([FinalOp(n, Invocation("read")) for n in nodes]
                + [FinalOp(n, Invocation("status")) for n in nodes])

    def checker_names(self) -> list[tuple[str, dict]]:
        return [("log", {}), ("convergence", {}), ("stats", {})]


class KafkaWorkload(Workload):
    """Maelstrom's kafka workload: append-only logs by string key, consumers with offsets.

    Operations (history `f`, the Maelstrom request it sends, and the history values):
      send    {"type": "send", "key": k, "msg": m}; invoke value m (unique), key k;
              ok value [offset, m]
      poll    {"type": "poll", "offsets": {k: o}}; invoke value the offsets polled from;
              ok value the reply's msgs {k: [[offset, m], ...]}
      assign  {"type": "list_committed_offsets", "keys": [k...]}; invoke value the keys;
              ok value the committed offsets {k: o}
      commit  {"type": "commit_offsets", "offsets": {k: o}}; invoke and ok value the offsets

    Each process is a consumer, as a Maelstrom client is (Jepsen's kafka client with `assign`):
    it polls the keys it was assigned from the next offset it has not seen, and commits the
    highest offset it polled. An assign starts each newly assigned key at its committed offset
    + 1 (a commit means "processed up to and including"), or 0 when none is committed; a key it
    already consumed keeps its own position. A process that has no assignment yet (every fresh
    process, so also every process that replaced a crashed one) assigns all keys before its
    first poll or commit; a commit with nothing polled yet is a poll instead.

    The final phase polls every key from offset 0 on every node. The `kafka` checker judges the
    history (splitbrain/checkers/kafka.py); third-party nodes only (no in-house machine).
    """

    name = "kafka"
    machine = None
    ops = ("send", "poll", "assign", "commit")
    description = ("Maelstrom's kafka for any Maelstrom node: send / poll / commit offsets / "
                   "list committed offsets on logs by key; lost writes, skips, nonmonotonic "
                   "offsets, inconsistent offsets, duplicates")
    OPTIONS = {"key_count": ("number of logs (keys k0, k1, ...)", 3)}
    MIX = (("send", 6), ("poll", 4), ("commit", 1), ("assign", 1))
    REPLY_TYPES = {"send": "send_ok", "poll": "poll_ok", "assign": "list_committed_offsets_ok",
                   "commit": "commit_offsets_ok"}

    def __init__(self, options: dict[str, Any] | None = None):
        super().__init__(options)
        # process -> {key: next offset to poll}; a process absent here has no assignment.
        self._next: dict[int, dict[str, int]] = {}
        # process -> {key: highest offset it polled} (what it may commit).
        self._polled: dict[int, dict[str, int]] = {}

    def keys(self) -> list[Any]:
        return [f"k{i}" for i in range(self.options["key_count"])]

    def next_invocation(self, rng: random.Random) -> Invocation:
        f = _weighted(rng, self.MIX)
        keys = self.keys()
        if f == "send":
            return Invocation("send", self.unique_value(), rng.choice(keys))
        if f == "assign":
            return Invocation("assign", sorted(rng.sample(keys, rng.randint(1, len(keys)))))
        return Invocation(f)   # poll / commit: the offsets come from the process (prepare)

    def prepare(self, process: int, inv: Invocation) -> Invocation:
        if inv.f == "send" or inv.value is not None:
            return inv              # a send, an assign, or a poll with given offsets (final)
        offsets = self._next.get(process)
        if offsets is None:
            return Invocation("assign", self.keys())
        if inv.f == "commit":
            polled = {k: o for k, o in self._polled.get(process, {}).items() if k in offsets}
            if polled:
                return Invocation("commit", polled)
        return Invocation("poll", dict(offsets))

    def observe(self, process: int, inv: Invocation, c: Completion) -> None:
        if c.type == INFO:
            self._next.pop(process, None)
            self._polled.pop(process, None)
            return
        if c.type != OK:
            return
        if inv.f == "assign":
            old = self._next.get(process, {})
            committed = c.value or {}
            self._next[process] = {
                k: old[k] if k in old else
                (committed[k] + 1 if isinstance(committed.get(k), int) else 0)
                for k in inv.value}
        elif inv.f == "poll":
            nxt = self._next.get(process)
            polled = self._polled.setdefault(process, {})
            for k, pairs in c.value.items():
                if not pairs:
                    continue
                top = max(o for o, _ in pairs)
                polled[k] = max(polled.get(k, -1), top)
                if nxt is not None and k in nxt:
                    nxt[k] = max(nxt[k], top + 1)

    def request(self, inv: Invocation) -> dict:
        if inv.f == "send":
            return {"type": "send", "key": inv.key, "msg": inv.value}
        if inv.f == "poll":
            return {"type": "poll", "offsets": inv.value}
        if inv.f == "assign":
            return {"type": "list_committed_offsets", "keys": inv.value}
        if inv.f == "commit":
            return {"type": "commit_offsets", "offsets": inv.value}
        raise ValueError(f"kafka: no request for {inv.f!r}")

    def completion(self, inv: Invocation, reply: dict) -> Completion:
        t = reply.get("type")
        if t == "error":
            return super().completion(inv, reply)
        if t != self.REPLY_TYPES.get(inv.f):
            return Completion(INFO, inv.value, f"unexpected-reply-{t}")
        value = self._reply_value(inv, reply)
        if value is None:
            # The node answered with a reply we cannot read: it may have done the op.
            return Completion(INFO, inv.value, "malformed-reply")
        return Completion(OK, value)

    @staticmethod
    def _reply_value(inv: Invocation, reply: dict) -> Any:
        """The history value of a well-formed `_ok` reply; None when its shape is wrong."""
        from ..checkers.kafka import is_offset as offset, offset_pairs  # lazy: checkers late
        if inv.f == "send":
            o = reply.get("offset")
            return [o, inv.value] if offset(o) else None
        if inv.f == "poll":
            msgs = reply.get("msgs", {})
            if not isinstance(msgs, dict):
                return None
            out = {}
            for k, pairs in msgs.items():
                if not offset_pairs(pairs):
                    return None
                out[k] = [list(p) for p in pairs]
            return out
        if inv.f == "assign":
            offs = reply.get("offsets", {})
            if not isinstance(offs, dict) or not all(offset(o) for o in offs.values()):
                return None
            return dict(offs)
        return inv.value   # commit

    def final_invocations(self, nodes: Iterable[str]) -> list[FinalOp]:
        # Every node's view of every log from the start: the checker's durability evidence.
        return [FinalOp(n, Invocation("poll", {k: 0 for k in self.keys()})) for n in nodes]

    def checker_names(self) -> list[tuple[str, dict]]:
        return [("kafka", {}), ("stats", {})]


WORKLOADS: dict[str, type[Workload]] = {
    w.name: w for w in (RegisterWorkload, CasRegisterWorkload, KvWorkload, ArithWorkload,
                        SetWorkload, AppendLogWorkload, LinKvWorkload, KafkaWorkload)
}
# Other names for the same workloads.
ALIASES: dict[str, str] = {}


def workload_names() -> list[str]:
    return list(WORKLOADS)


def make_workload(name: str, options: dict[str, Any] | None = None) -> Workload:
    """A fresh workload object for one test; ValueError naming the choices for an unknown name."""
    cls = WORKLOADS.get(ALIASES.get(name, name))
    if cls is None:
        raise ValueError(f"unknown workload {name!r} (choose from {', '.join(WORKLOADS)})")
    return cls(options)


def check_history(workload: Workload, history: list, test: dict,
                  extra: Iterable[Any] = ()) -> Any:
    """Run the workload's checkers (each through safe_check) plus `extra` Results; compose them.

    Returns a Result named "compose" whose children are keyed by checker name; validity merges
    False > "unknown" > True. A checker that cannot be built (its module has not landed, a bad
    option) gives an "unknown" child, never a pass.
    """
    from ..checkers.registry import make_checker
    from ..checkers.result import UNKNOWN, Result, merge_validity, safe_check
    children: dict[str, Any] = {}
    plan = workload.checker_plan(test)
    # The checkers are recorded in test.json at run time (issue 18), and a stored run is
    # re-checked with exactly those: `splitbrain check RUN_DIR` reads them, `analyze` comes
    # through here with them.
    recorded = test.get("checkers") if isinstance(test, dict) else None
    if isinstance(recorded, list) and all(isinstance(n, str) for n in recorded):
        planned = [n for n, _ in plan]
        plan = [(n, o) for n, o in plan if n in recorded] + \
               [(n, {}) for n in recorded if n not in planned]
    elif isinstance(test, dict):
        test["checkers"] = [name for name, _ in plan]
    for name, opts in plan:
        o = dict(opts)
        if test.get("out_dir"):
            o.setdefault("out_dir", test["out_dir"])
        if workload.machine is not None:
            o.setdefault("machine", workload.machine)
        # test["checker_options"] = {checker name: {option: value}} (e.g. a time limit)
        for k, v in ((test.get("checker_options") or {}).get(name) or {}).items():
            o.setdefault(k, v)
        try:
            checker = make_checker(name, o)
        except Exception as e:  # noqa: BLE001 - a missing checker is undecided, not valid
            children[name] = Result(valid=UNKNOWN, checker=name,
                                    error=f"cannot build checker: {type(e).__name__}: {e}")
            continue
        children[name] = safe_check(checker, history, test)
    for r in extra:
        children[r.checker] = r
    result = Result(valid=merge_validity([r.valid for r in children.values()]),
                    checker="compose", children=children)
    # Each anomaly says where it happened: its operation's node and the faults then in force
    # (details["where"], report/context.py), for the summary, results.json and the web UI.
    from .report.context import annotate_anomalies
    annotate_anomalies(result, history)
    return result


# Maelstrom's own workloads subclass Workload in their own module, which adds them to WORKLOADS
# when it is imported (here, last: whichever of the two modules is imported first, both end up
# complete).
# Modules of more workloads add themselves to WORKLOADS when imported (they import this one).
from . import maelstrom_workloads, txn_workloads  # noqa: E402,F401
