"""Maelstrom's services, inside the harness: `lin-kv`, `seq-kv`, `lww-kv` and `lin-tso`.

A node uses a service by sending it an RPC, exactly as in Maelstrom: an envelope whose `dest` is
the service's name. The harness answers from the service's name, with `in_reply_to` set to the
request's `msg_id`, to the envelope's `src` (as the node wrote it). Requests and replies are
ordinary messages: they appear in messages.jsonl and are counted in the network statistics as
server traffic (Maelstrom counts them so).

API (Maelstrom's lin-kv workload API):
  {"type": "read", "key": K}                      -> {"type": "read_ok", "value": V}
  {"type": "write", "key": K, "value": V}         -> {"type": "write_ok"}
  {"type": "cas", "key": K, "from": A, "to": B,   -> {"type": "cas_ok"}
   "create_if_not_exists": bool (optional)}
  {"type": "ts"} (lin-tso only)                   -> {"type": "ts_ok", "ts": N}  (0, 1, 2, ...)
Errors: 20 key-does-not-exist (read or cas of a missing key; a cas with create_if_not_exists
creates the key with `to`), 22 precondition-failed (cas whose `from` is not the current value),
10 not-supported (an unknown request type), 12 malformed-request (a missing field, a body that is
not an object). Keys and values are compared as JSON values (history.values: `true` is not `1`).

Consistency, as Maelstrom implements it (maelstrom/service.clj, read for its semantics):
- lin-kv, lin-tso: one state, every request applied atomically in arrival order: linearizable.
- seq-kv: sequentially consistent. The service keeps the last SEQ_WINDOW states. A request that
  does not change the state (a read, a failed cas) is evaluated on a random state between the
  last one this client (the request's `src`) observed and the newest; a request that changes
  the state is applied to the newest. So a client may read stale values but never goes back in
  its own order, and every change is totally ordered.
- lww-kv: eventually consistent, last-write-wins. LWW_REPLICAS replicas, each with a Lamport
  clock; each request first merges one random replica into another (per key, the higher
  timestamp wins, ties broken by a fixed order of the values), then is applied to a random
  replica. Concurrent writes may be lost, reads may be stale and go back in time.

Services and faults (a decision, as in Maelstrom): services are not nodes of the test, so the
nemesis never partitions, pauses or kills them and packet loss does not touch their traffic;
the network's latency (`--latency`) applies to node<->service messages like any other message
between servers, since Maelstrom's services sit on the same simulated network.

Randomness comes from the run's seed, so a run's service behaviour replays with it.
"""

from __future__ import annotations

import bisect
import random
from typing import Any, Callable

from ..history.values import json_equal, json_key

SERVICE_NAMES = ("lin-kv", "seq-kv", "lww-kv", "lin-tso")
SEQ_WINDOW = 32               # states a seq-kv read may look back over (Maelstrom's buffer)
LWW_REPLICAS = 5              # replicas of lww-kv (Maelstrom's)

KEY_DOES_NOT_EXIST = 20
PRECONDITION_FAILED = 22
NOT_SUPPORTED = 10
MALFORMED_REQUEST = 12


def _error(code: int, text: str) -> dict:
    return {"type": "error", "code": code, "text": text}


def _missing(body: dict, *fields: str) -> dict | None:
    for f in fields:
        if f not in body:
            return _error(MALFORMED_REQUEST, f"{body.get('type')} needs the field {f!r}")
    return None


def _kv_apply(get: Callable[[Any], tuple[bool, Any]], body: dict
              ) -> tuple[dict, tuple[Any, Any] | None]:
    """Evaluate a kv request against a state read through `get(key) -> (present, value)`.
    Returns (reply, change) where change is (key, new value) or None."""
    typ = body.get("type")
    if typ == "read":
        bad = _missing(body, "key")
        if bad:
            return bad, None
        present, v = get(body["key"])
        if not present:
            return _error(KEY_DOES_NOT_EXIST, "key does not exist"), None
        return {"type": "read_ok", "value": v}, None
    if typ == "write":
        bad = _missing(body, "key", "value")
        if bad:
            return bad, None
        return {"type": "write_ok"}, (body["key"], body["value"])
    if typ == "cas":
        bad = _missing(body, "key", "from", "to")
        if bad:
            return bad, None
        present, v = get(body["key"])
        if not present:
            if body.get("create_if_not_exists") is True:
                return {"type": "cas_ok"}, (body["key"], body["to"])
            return _error(KEY_DOES_NOT_EXIST, "key does not exist"), None
        if not json_equal(v, body["from"]):
            return _error(PRECONDITION_FAILED, f"current value {_short(v)} is not "
                                               f"{_short(body['from'])}"), None
        return {"type": "cas_ok"}, (body["key"], body["to"])
    return _error(NOT_SUPPORTED, f"{_short(typ)} is not supported by this service"), None


def _short(v: Any, n: int = 80) -> str:
    s = repr(v)
    return s if len(s) <= n else s[:n] + "..."


class LinKV:
    """One map, requests applied in arrival order."""

    def __init__(self, rng: random.Random):
        self.m: dict[Any, Any] = {}

    def handle(self, src: str, body: dict) -> dict:
        reply, change = _kv_apply(lambda k: self._get(k), body)
        if change is not None:
            self.m[json_key(change[0])] = change[1]
        return reply

    def _get(self, k: Any) -> tuple[bool, Any]:
        kk = json_key(k)
        return (kk in self.m), self.m.get(kk)


class SeqKV:
    """Sequential consistency from a window of past states (see the module docstring).

    State index i is the state after the i-th change. Each key keeps its versions as parallel
    lists of (index, value) with index ascending; versions that no client may observe any more
    (older than the window, except the newest of those) are pruned as the key changes."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.last = 0                                   # index of the newest state
        self.seen: dict[str, int] = {}                  # client -> last index it observed
        self.idx: dict[Any, list[int]] = {}             # key -> indexes of its versions
        self.val: dict[Any, list[Any]] = {}             # key -> values of its versions

    def _get_at(self, index: int) -> Callable[[Any], tuple[bool, Any]]:
        def get(k: Any) -> tuple[bool, Any]:
            kk = json_key(k)
            ids = self.idx.get(kk)
            if not ids:
                return False, None
            i = bisect.bisect_right(ids, index) - 1
            return (True, self.val[kk][i]) if i >= 0 else (False, None)
        return get

    def handle(self, src: str, body: dict) -> dict:
        lo = max(self.seen.get(src, 0), self.last - SEQ_WINDOW + 1, 0)
        index = self.rng.randint(lo, self.last)
        reply, change = _kv_apply(self._get_at(index), body)
        if change is None:
            self.seen[src] = index
            return reply
        # A change: apply it to the newest state (the total order of changes).
        reply, change = _kv_apply(self._get_at(self.last), body)
        if change is None:
            self.seen[src] = self.last
            return reply
        self.last += 1
        kk = json_key(change[0])
        ids = self.idx.setdefault(kk, [])
        vals = self.val.setdefault(kk, [])
        ids.append(self.last)
        vals.append(change[1])
        # Keep the newest version at or before the window's start, and everything after it.
        cut = bisect.bisect_right(ids, self.last - SEQ_WINDOW) - 1
        if cut > 0:
            del ids[:cut]
            del vals[:cut]
        self.seen[src] = self.last
        return reply


class LwwKV:
    """Last-write-wins replicas with Lamport clocks, merged at random (see module docstring)."""

    def __init__(self, rng: random.Random, replicas: int = LWW_REPLICAS):
        self.rng = rng
        self.clock = [0] * replicas
        self.reps: list[dict[Any, tuple[int, str, Any]]] = [{} for _ in range(replicas)]

    def _merge(self, src: int, dst: int) -> None:
        if src == dst:
            return
        a, b = self.reps[src], self.reps[dst]
        for k, v in a.items():
            w = b.get(k)
            # Higher timestamp wins; a tie goes to the larger value by a fixed order (its
            # canonical repr), so that every merge order ends in the same state.
            if w is None or (v[0], v[1]) > (w[0], w[1]):
                b[k] = v
        self.clock[dst] = max(self.clock[dst], self.clock[src])

    def handle(self, src: str, body: dict) -> dict:
        n = len(self.reps)
        self._merge(self.rng.randrange(n), self.rng.randrange(n))
        i = self.rng.randrange(n)
        rep = self.reps[i]

        def get(k: Any) -> tuple[bool, Any]:
            v = rep.get(json_key(k))
            return (False, None) if v is None else (True, v[2])
        reply, change = _kv_apply(get, body)
        if change is not None:
            ts = self.clock[i]
            self.clock[i] = ts + 1
            rep[json_key(change[0])] = (ts, repr(json_key(change[1])), change[1])
        return reply


class LinTSO:
    """Timestamps 0, 1, 2, ... in arrival order."""

    def __init__(self, rng: random.Random):
        self.ts = 0

    def handle(self, src: str, body: dict) -> dict:
        if body.get("type") != "ts":
            return _error(NOT_SUPPORTED, f"{_short(body.get('type'))} is not supported by lin-tso "
                                         f"(only ts)")
        ts, self.ts = self.ts, self.ts + 1
        return {"type": "ts_ok", "ts": ts}


KINDS = {"lin-kv": LinKV, "seq-kv": SeqKV, "lww-kv": LwwKV, "lin-tso": LinTSO}


class Services:
    """The four services of one run. `handle(name, src, body)` returns the reply body (with
    `in_reply_to`), for the harness to send back from `name` to `src`. Single-threaded: the
    backend calls it on its loop thread."""

    def __init__(self, seed: int = 0):
        self.by_name = {name: cls(random.Random(f"service/{name}/{seed}"))
                        for name, cls in KINDS.items()}
        self.requests = dict.fromkeys(KINDS, 0)

    def __contains__(self, name: object) -> bool:
        return name in self.by_name

    def handle(self, name: str, src: str, body: dict) -> dict:
        self.requests[name] += 1
        try:
            reply = self.by_name[name].handle(src, body)
        except TypeError as e:        # an unhashable or odd key the JSON layer let through
            reply = _error(MALFORMED_REQUEST, f"bad request: {e}")
        reply["in_reply_to"] = body.get("msg_id")
        return reply
