#!/usr/bin/env python3
"""A correct grow-only counter on Maelstrom's seq-kv service (Gossip Glomers challenge #4 style).

The total lives in one seq-kv key, "counter". An `add` reads it and moves it with
compare-and-set, retrying on a precondition failure (code 22); seq-kv may serve a stale value, so
before retrying, and before every client `read`, the node writes a key of its own, which moves its
view of the store to the newest state (a process's order in a sequentially consistent store).
A cas whose reply never comes may have applied: the client gets the indefinite error 0 (timeout),
never a definite one.
"""

import itertools

from maelstrom import Node, RPCError, RPCTimeout

KV = "seq-kv"
KEY = "counter"
CAS_ATTEMPTS_MAX = 50
ERR_TIMEOUT, ERR_TEMPORARILY_UNAVAILABLE = 0, 11
ERR_KEY_DOES_NOT_EXIST, ERR_PRECONDITION_FAILED = 20, 22

node = Node()
sync_ids = itertools.count()


def sync() -> None:
    """Write a key of this node's own so its seq-kv view catches up with the newest writes."""
    node.sync_rpc(KV, {"type": "write", "key": f"sync-{node.node_id}", "value": next(sync_ids)})


def read_counter() -> int:
    try:
        return node.sync_rpc(KV, {"type": "read", "key": KEY})["value"]
    except RPCError as e:
        if e.code == ERR_KEY_DOES_NOT_EXIST:
            return 0
        raise


@node.handler("add")
def add(msg):
    delta = msg["body"]["delta"]
    try:
        for attempt in range(CAS_ATTEMPTS_MAX):
            if attempt:
                sync()
            cur = read_counter()
            try:
                node.sync_rpc(KV, {"type": "cas", "key": KEY, "from": cur, "to": cur + delta,
                                   "create_if_not_exists": True})
            except RPCError as e:
                if e.code in (ERR_PRECONDITION_FAILED, ERR_KEY_DOES_NOT_EXIST):
                    continue          # somebody else moved it (or our view was stale): retry
                raise
            node.reply(msg, {"type": "add_ok"})
            return
        # Every cas was refused: nothing was added, a definite failure.
        node.reply(msg, {"type": "error", "code": ERR_TEMPORARILY_UNAVAILABLE,
                         "text": "too much contention on the counter"})
    except RPCTimeout:
        node.reply(msg, {"type": "error", "code": ERR_TIMEOUT, "text": "seq-kv did not answer"})


@node.handler("read")
def read(msg):
    try:
        sync()
        node.reply(msg, {"type": "read_ok", "value": read_counter()})
    except RPCTimeout:
        node.reply(msg, {"type": "error", "code": ERR_TIMEOUT, "text": "seq-kv did not answer"})


node.run()
