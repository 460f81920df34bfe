"""The deterministic state machines that every replication system replicates.

The seed's principle: two deterministic machines that start in the same state and apply the same
inputs in the same order end in the same state. These machines are those "deterministic machines";
the protocols (systems/*.py) only decide the order.

Operations are Maelstrom request bodies without `msg_id` (`{"type": "write", "key": k, "value":
v}`); results are reply bodies without `in_reply_to` (`{"type": "write_ok"}`, or
`{"type": "error", "code": 22, "text": ...}` for a definite failure).

| machine     | ops (type: fields -> reply)                                                         |
|-------------|-------------------------------------------------------------------------------------|
| kv          | read: key -> read_ok value (null if absent); write: key, value -> write_ok;          |
|             | cas: key, from, to -> cas_ok, or error 20 (absent) / 22 (value differed)             |
| arith       | add: value n -> add_ok; mul: value n -> mul_ok; read -> read_ok value (starts at 0)  |
|             | (all take an optional key; each key is its own integer)                              |
| append-log  | append: value -> append_ok offset; read -> read_ok value (the whole log, oldest first)|
| set         | add: value -> add_ok; read -> read_ok value (sorted list)                            |
| txn         | txn: txn [[f, k, v], ...] -> txn_ok txn (Maelstrom's txn-list-append / -rw-register:   |
|             | "r" fills in the value, "append" appends v to k's list, "w" sets k to v), atomically |

Contract shared by all machines:
- `applied_index` counts the update commands applied (every op whose type is not `read`); reads
  never advance it. For append-log, applied_index == len(log), so "I have applied the log up to
  offset N" and the state are the same statement, and replaying the first N entries of the
  committed log reproduces the digest.
- `digest()` is a stable hex string: equal states give equal digests on every machine and run.
- `execute(op)` evaluates without mutating and returns (reply, change); `apply_change(change)`
  applies that delta (primary-backup logs changes, not inputs). `apply(op)` is both at once
  (state-machine replication logs inputs). `query(op)` answers a read without logging it.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any, ClassVar

# Maelstrom's error codes (https://github.com/jepsen-io/maelstrom/blob/main/doc/protocol.md):
# definite ones mean the op certainly did not happen (history `fail`); indefinite ones are `info`.
ERR_TIMEOUT = 0                  # indefinite
ERR_NODE_NOT_FOUND = 1           # definite
ERR_NOT_SUPPORTED = 10           # definite
ERR_TEMPORARILY_UNAVAILABLE = 11 # definite
ERR_MALFORMED_REQUEST = 12       # definite
ERR_CRASH = 13                   # indefinite
ERR_ABORT = 14                   # definite
ERR_KEY_DOES_NOT_EXIST = 20      # definite
ERR_KEY_ALREADY_EXISTS = 21      # definite
ERR_PRECONDITION_FAILED = 22     # definite
ERR_TXN_CONFLICT = 30            # definite
DEFINITE_ERRORS = frozenset({1, 10, 11, 12, 14, 20, 21, 22, 30})


def error_body(code: int, text: str) -> dict:
    return {"type": "error", "code": code, "text": text}


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def hash_json(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:16]


def is_read(op: dict) -> bool:
    return op.get("type") == "read"


class StateMachine(ABC):
    """A deterministic replicated state machine. See the module docstring for the contract."""

    name: ClassVar[str]
    ops: ClassVar[tuple[str, ...]]

    def __init__(self) -> None:
        self.applied_index = 0

    @abstractmethod
    def execute(self, op: dict) -> tuple[dict, dict | None]:
        """Evaluate `op` against the current state WITHOUT mutating it.

        Returns (reply, change): `change` is the deterministic state delta to hand to
        `apply_change`, or None when the op changes nothing (a read, a failed cas).
        """

    @abstractmethod
    def _apply_delta(self, change: dict) -> None:
        """Mutate the state by a delta produced by `execute`."""

    @abstractmethod
    def state(self) -> Any:
        """The whole state as a JSON value (for digests, snapshots and debugging)."""

    @abstractmethod
    def restore(self, state: Any, applied_index: int) -> None:
        """Replace the state by a snapshot taken with `state()` (state transfer, recovery)."""

    def apply_change(self, change: dict | None) -> None:
        """Apply an update command's delta (None for one that changed nothing); counts it."""
        if change is not None:
            self._apply_delta(change)
        self.applied_index += 1

    def apply(self, op: dict) -> dict:
        """Execute an input and apply its effect: state-machine replication's step."""
        reply, change = self.execute(op)
        if not is_read(op):
            self.apply_change(change)
        return reply

    def query(self, op: dict) -> dict:
        """Answer a read-only op from the current state."""
        assert is_read(op), f"query() takes reads only, got {op.get('type')!r}"
        reply, change = self.execute(op)
        assert change is None
        return reply

    def digest(self) -> str:
        return hash_json(self.state())

    def _unsupported(self, op: dict) -> tuple[dict, None]:
        return error_body(ERR_NOT_SUPPORTED, f"{self.name} does not support {op.get('type')!r}"), None


def _k(key: Any) -> str:
    # JSON object keys must be strings; encode the JSON key so that 1 and "1" stay distinct.
    return canonical_json(key)


class KvMachine(StateMachine):
    """Registers by key: read, write, compare-and-set."""

    name = "kv"
    ops = ("read", "write", "cas")

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, Any] = {}

    def execute(self, op: dict) -> tuple[dict, dict | None]:
        t = op.get("type")
        k = _k(op.get("key"))
        if t == "read":
            return {"type": "read_ok", "value": self.data.get(k)}, None
        if t == "write":
            return {"type": "write_ok"}, {"k": k, "value": op.get("value")}
        if t == "cas":
            if k not in self.data:
                return error_body(ERR_KEY_DOES_NOT_EXIST, "key does not exist"), None
            if self.data[k] != op.get("from"):
                return error_body(ERR_PRECONDITION_FAILED,
                                  f"expected {op.get('from')!r}, had {self.data[k]!r}"), None
            return {"type": "cas_ok"}, {"k": k, "value": op.get("to")}
        return self._unsupported(op)

    def _apply_delta(self, change: dict) -> None:
        self.data[change["k"]] = change["value"]

    def state(self) -> Any:
        return self.data

    def restore(self, state: Any, applied_index: int) -> None:
        self.data = dict(state)
        self.applied_index = applied_index


class ArithMachine(StateMachine):
    """The seed's example: one integer per key, starting at 0, changed by `add n` and `mul n`.

    Order matters: (0 + 1) * 2 = 2 but (0 * 2) + 1 = 1.
    """

    name = "arith"
    ops = ("add", "mul", "read")

    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, int] = {}

    def execute(self, op: dict) -> tuple[dict, dict | None]:
        t = op.get("type")
        k = _k(op.get("key"))
        cur = self.values.get(k, 0)
        if t == "read":
            return {"type": "read_ok", "value": cur}, None
        n = op.get("value")
        if not isinstance(n, int) or isinstance(n, bool):
            return error_body(ERR_MALFORMED_REQUEST, f"{t} needs an integer value, got {n!r}"), None
        if t == "add":
            return {"type": "add_ok"}, {"k": k, "value": cur + n}
        if t == "mul":
            return {"type": "mul_ok"}, {"k": k, "value": cur * n}
        return self._unsupported(op)

    def _apply_delta(self, change: dict) -> None:
        self.values[change["k"]] = change["value"]

    def state(self) -> Any:
        return self.values

    def restore(self, state: Any, applied_index: int) -> None:
        self.values = dict(state)
        self.applied_index = applied_index


class AppendLogMachine(StateMachine):
    """A log of values: append returns the offset; read returns the whole log.

    The digest is a hash chain over the entries, so it costs O(1) per append and two logs have
    equal digests exactly when they are equal (up to hash collisions).
    """

    name = "append-log"
    ops = ("append", "read")
    GENESIS = "0" * 16

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[Any] = []
        self._chain = self.GENESIS

    def execute(self, op: dict) -> tuple[dict, dict | None]:
        t = op.get("type")
        if t == "read":
            return {"type": "read_ok", "value": list(self.entries)}, None
        if t == "append":
            offset = len(self.entries)
            return {"type": "append_ok", "offset": offset}, {"value": op.get("value"),
                                                             "offset": offset}
        return self._unsupported(op)

    def _apply_delta(self, change: dict) -> None:
        assert change["offset"] == len(self.entries), (
            f"append-log change for offset {change['offset']} applied at {len(self.entries)}")
        self.entries.append(change["value"])
        self._chain = chain_digest(self._chain, change["value"])

    def state(self) -> Any:
        return self.entries

    def digest(self) -> str:
        return self._chain

    def restore(self, state: Any, applied_index: int) -> None:
        self.entries = list(state)
        self._chain = self.GENESIS
        for v in self.entries:
            self._chain = chain_digest(self._chain, v)
        self.applied_index = applied_index


def chain_digest(previous: str, value: Any) -> str:
    """One step of the append-log hash chain."""
    return hashlib.sha256((previous + canonical_json(value)).encode()).hexdigest()[:16]


class SetMachine(StateMachine):
    """A grow-only set: add an element, read all of them (sorted by canonical JSON)."""

    name = "set"
    ops = ("add", "read")

    def __init__(self) -> None:
        super().__init__()
        self.members: dict[str, Any] = {}

    def execute(self, op: dict) -> tuple[dict, dict | None]:
        t = op.get("type")
        if t == "read":
            return {"type": "read_ok",
                    "value": [self.members[k] for k in sorted(self.members)]}, None
        if t == "add":
            return {"type": "add_ok"}, {"value": op.get("value")}
        return self._unsupported(op)

    def _apply_delta(self, change: dict) -> None:
        self.members[canonical_json(change["value"])] = change["value"]

    def state(self) -> Any:
        return [self.members[k] for k in sorted(self.members)]

    def restore(self, state: Any, applied_index: int) -> None:
        self.members = {canonical_json(v): v for v in state}
        self.applied_index = applied_index


class TxnMachine(StateMachine):
    """Transactions over keys (Maelstrom's txn workloads): a list of micro-ops applied at once.

    `{"type": "txn", "txn": [["append", k, v], ["r", k, null], ["w", k, v]]}` -> `{"type":
    "txn_ok", "txn": [...]}` with each read's value filled in: the key's list (list-append) or
    value (rw-register) as the transaction's own earlier micro-ops left it; null for a key never
    written. Applied through the log like every update, so a replicated TxnMachine is strict
    serializable by construction. A malformed transaction is error 12 (definite).

    `reads_at_arrival` (set only by a bug switch, raft's txn-local-reads): the values the reads
    return, computed elsewhere; the writes still apply here, in log order.
    """

    name = "txn"
    ops = ("txn",)

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, Any] = {}

    def execute(self, op: dict) -> tuple[dict, dict | None]:
        if op.get("type") != "txn":
            return self._unsupported(op)
        txn = op.get("txn")
        if not isinstance(txn, list) or not all(
                isinstance(m, list) and len(m) == 3 and m[0] in ("r", "append", "w")
                for m in txn):
            return error_body(ERR_MALFORMED_REQUEST,
                              "txn must be a list of [f, key, value], f one of r, append, w"), None
        local: dict[str, Any] = {}
        out = []
        for f, key, v in txn:
            k = _k(key)
            cur = local[k] if k in local else self.data.get(k)
            if f == "r":
                out.append(["r", key, list(cur) if isinstance(cur, list) else cur])
            elif f == "append":
                if cur is not None and not isinstance(cur, list):
                    return error_body(ERR_MALFORMED_REQUEST,
                                      f"append to key {key!r}, which holds a register"), None
                local[k] = (cur or []) + [v]
                out.append([f, key, v])
            else:
                local[k] = v
                out.append([f, key, v])
        early = op.get("reads_at_arrival")
        if isinstance(early, list) and len(early) == len(out):
            out = [e if m[0] == "r" else m for m, e in zip(out, early)]
        return {"type": "txn_ok", "txn": out}, ({"writes": local} if local else None)

    def _apply_delta(self, change: dict) -> None:
        self.data.update(change["writes"])

    def state(self) -> Any:
        return self.data

    def restore(self, state: Any, applied_index: int) -> None:
        self.data = dict(state)
        self.applied_index = applied_index


MACHINES: dict[str, type[StateMachine]] = {
    m.name: m for m in (KvMachine, ArithMachine, AppendLogMachine, SetMachine, TxnMachine)
}


def make_machine(name: str) -> StateMachine:
    """A fresh machine by name; ValueError naming the choices for an unknown one."""
    try:
        return MACHINES[name]()
    except KeyError:
        raise ValueError(f"unknown state machine {name!r} (choose from {', '.join(MACHINES)})") from None
