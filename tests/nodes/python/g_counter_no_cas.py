#!/usr/bin/env python3
"""A WRONG grow-only counter on seq-kv: read-modify-write without compare-and-set.

`add` reads "counter" and writes back the sum. Two adds that overlap (on one node's handler
threads or on two nodes) both read the same total and the second write erases the first: lost
increments, so the final reads fall below the sum of the acknowledged adds. Reads are served
from whatever (possibly stale) view seq-kv gives, which makes the lost updates more frequent.
"""

from maelstrom import Node, RPCError, RPCTimeout

KV = "seq-kv"
KEY = "counter"
ERR_TIMEOUT, ERR_KEY_DOES_NOT_EXIST = 0, 20

node = Node()


def read_counter() -> int:
    try:
        return node.sync_rpc(KV, {"type": "read", "key": KEY})["value"]
    except RPCError as e:
        if e.code == ERR_KEY_DOES_NOT_EXIST:
            return 0
        raise


@node.handler("add")
def add(msg):
    try:
        cur = read_counter()
        node.sync_rpc(KV, {"type": "write", "key": KEY, "value": cur + msg["body"]["delta"]})
        node.reply(msg, {"type": "add_ok"})
    except RPCTimeout:
        node.reply(msg, {"type": "error", "code": ERR_TIMEOUT, "text": "seq-kv did not answer"})


@node.handler("read")
def read(msg):
    try:
        node.reply(msg, {"type": "read_ok", "value": read_counter()})
    except RPCTimeout:
        node.reply(msg, {"type": "error", "code": ERR_TIMEOUT, "text": "seq-kv did not answer"})


node.run()
