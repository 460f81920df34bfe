"""The sans-I/O protocol core API that every in-house system implements.

A core is one node's protocol as a deterministic object (etcd's raft, h11). It has no sockets,
threads, wall clock or global randomness: a runtime (the process runtime, the simulator) feeds it
inputs and carries out the effects it returns.

Inputs (each returns a Ready):
  core = SomeCore(node_id, node_ids, machine, rng, bugs=..., options=...)
  core.recover(records, now_ms)   exactly once, first: every record this node persisted before,
                                  in order (empty on a first start). A restart after a crash is a
                                  NEW core object recovered from disk: memory is gone.
  core.step(src, body, now_ms)    a message: from a peer if `src in node_ids`, else from a client
                                  (Maelstrom bodies; clients are "c1", "c2", ...)
  core.tick(now_ms)               time passed; called every few milliseconds by the runtime

`now_ms` is this node's local clock in milliseconds: it may run ahead or behind other nodes' and
may jump (the clock nemesis), so a core must never assume clocks agree across nodes.

Effects (Ready):
  persist   records (JSON-serializable dicts) to append to this node's durable storage, in order
  messages  Envelope(dest, body) to send to peers, and replies to clients
  sync      whether the records must be fsynced before the messages leave (True by default)

THE DURABILITY ORDER: the runtime appends every record in `persist` (and fsyncs when `sync`)
BEFORE any message of the same Ready leaves. A core relies on this: e.g. Raft emits its vote
record and the vote-granted message in one Ready. A crash between two steps loses nothing that was
persisted; the simulator's crash throws away everything else (and, with the lost-unsynced-writes
fault, records of a Ready whose `sync` was False).

Client protocol (Maelstrom): a request body has `type` and `msg_id`; the reply has
`in_reply_to` and either `<type>_ok` or `{"type": "error", "code": c, "text": ...}` with
Maelstrom's codes (machines.py): a definite code means the op did not happen. A node that is not
the leader answers code 11 (temporarily unavailable, definite) with `"leader": id` when it knows
one, so the client can retry there. Every core also answers `{"type": "status"}` with
`{"type": "status_ok", "applied_index": n, "state_digest": d, ...}` from its local state.

A system class declares NAME, MODEL ("consensus", "primary-backup" or "active-active"), LOGS
("inputs" or "state changes"), BUGS (switch name -> what goes wrong), OPTIONS (name ->
meaning, default) and CRASH_POINTS (message type, or "type.field" for messages whose body field
is true -> why a crash right after or before sending it tests the server's durability; the local
backend's crash-point nemesis aims there), which
`splitbrain systems` lists.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .machines import ERR_MALFORMED_REQUEST, StateMachine, error_body


@dataclass(frozen=True, slots=True)
class Envelope:
    """A message to send: to a peer node id or to a client id."""

    dest: str
    body: dict


@dataclass(slots=True)
class Ready:
    """The effects of one input. See the module docstring for the durability order."""

    persist: list[dict] = field(default_factory=list)
    messages: list[Envelope] = field(default_factory=list)
    sync: bool = True

    def send(self, dest: str, body: dict) -> None:
        self.messages.append(Envelope(dest, body))

    def reply(self, client: str, request: dict, body: dict) -> None:
        """Reply to a client request: copies `msg_id` into `in_reply_to`."""
        out = dict(body)
        if "msg_id" in request:
            out["in_reply_to"] = request["msg_id"]
        self.messages.append(Envelope(client, out))

    def error(self, client: str, request: dict, code: int, text: str, **extra: Any) -> None:
        self.reply(client, request, {**error_body(code, text), **extra})

    def save(self, record: dict) -> None:
        self.persist.append(record)

    def extend(self, other: "Ready") -> "Ready":
        """Append another Ready's effects after this one's (keeps the durability order)."""
        self.persist.extend(other.persist)
        self.messages.extend(other.messages)
        self.sync = self.sync and other.sync
        return self

    def __bool__(self) -> bool:
        return bool(self.persist or self.messages)


class ProtocolError(AssertionError):
    """An invariant of a protocol core was broken (an impossible transition)."""


class Core(ABC):
    """Base class for protocol cores. Subclasses implement on_recover, on_peer, on_client, on_tick."""

    NAME: ClassVar[str]
    MODEL: ClassVar[str]
    LOGS: ClassVar[str]
    DESCRIPTION: ClassVar[str] = ""
    BUGS: ClassVar[dict[str, str]] = {}
    OPTIONS: ClassVar[dict[str, tuple[str, Any]]] = {}
    CRASH_POINTS: ClassVar[dict[str, str]] = {}

    @staticmethod
    def crash_point_names(body: dict) -> tuple[str, ...]:
        """Crash-point names of an outgoing peer message beyond its type and "type.field" (the
        router matches those itself): a system names protocol points that a field cannot
        express, e.g. Raft's "ae.own" (entries of the leader's own term). Default: none."""
        return ()

    def __init__(self, node_id: str, node_ids: list[str], machine: StateMachine,
                 rng: random.Random, bugs: frozenset[str] | set[str] = frozenset(),
                 options: dict[str, Any] | None = None):
        unknown = set(bugs) - set(self.BUGS)
        if unknown:
            raise ValueError(f"{self.NAME}: unknown bug switch(es) {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(self.BUGS) or 'none'})")
        opts = {name: default for name, (_, default) in self.OPTIONS.items()}
        from .registry import option_key, option_label   # either spelling: - or _
        for k, v in (options or {}).items():
            key = option_key(self.OPTIONS, k)
            if key is None:
                raise ValueError(f"{self.NAME}: unknown option {k!r} (known: "
                                 f"{', '.join(map(option_label, self.OPTIONS)) or 'none'})")
            opts[key] = v
        assert node_id in node_ids, f"{node_id} is not one of {node_ids}"
        self.node_id = node_id
        self.node_ids = list(node_ids)
        self.peers = [n for n in node_ids if n != node_id]
        self.machine = machine
        self.rng = rng
        self.bugs = frozenset(bugs)
        self.options = opts
        self._recovered = False

    # ---- the public inputs ------------------------------------------------------------------

    def recover(self, records: list[dict], now_ms: int) -> Ready:
        if self._recovered:
            raise ProtocolError(f"{self.node_id}: recover() called twice")
        self._recovered = True
        return self.on_recover(records, now_ms)

    def step(self, src: str, body: dict, now_ms: int) -> Ready:
        if not self._recovered:
            raise ProtocolError(f"{self.node_id}: step() before recover()")
        if src in self.node_ids:
            return self.on_peer(src, body, now_ms)
        if body.get("type") == "status":
            ready = Ready()
            ready.reply(src, body, {"type": "status_ok", **self.status()})
            return ready
        if not isinstance(body.get("type"), str):
            ready = Ready()
            ready.error(src, body, ERR_MALFORMED_REQUEST, "request has no type")
            return ready
        return self.on_client(src, body, now_ms)

    def tick(self, now_ms: int) -> Ready:
        if not self._recovered:
            raise ProtocolError(f"{self.node_id}: tick() before recover()")
        return self.on_tick(now_ms)

    def status(self) -> dict:
        """`applied_index` and `state_digest` of the local machine, plus protocol details."""
        return {"applied_index": self.machine.applied_index,
                "state_digest": self.machine.digest(), **self.describe()}

    # ---- what a system implements -----------------------------------------------------------

    @abstractmethod
    def on_recover(self, records: list[dict], now_ms: int) -> Ready: ...

    @abstractmethod
    def on_peer(self, src: str, body: dict, now_ms: int) -> Ready: ...

    @abstractmethod
    def on_client(self, src: str, body: dict, now_ms: int) -> Ready: ...

    @abstractmethod
    def on_tick(self, now_ms: int) -> Ready: ...

    def describe(self) -> dict:
        """Protocol state for status replies and logs (role, term/view/epoch, leader, commit)."""
        return {}

    def is_leader(self) -> bool:
        """Whether this node currently believes it leads (for the leader-isolating nemesis)."""
        return False

    @property
    def quorum(self) -> int:
        return len(self.node_ids) // 2 + 1

    @staticmethod
    def request_op(body: dict) -> dict:
        """The state-machine op of a client request: the body without message bookkeeping."""
        return {k: v for k, v in body.items() if k not in ("msg_id", "in_reply_to")}
