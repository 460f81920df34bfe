#!/usr/bin/env python3
"""Maelstrom txn node (txn-list-append and txn-rw-register): each node keeps its own in-memory
store and applies a transaction atomically under a lock. One node is strict serializable; two
or more do not replicate anything, so clients that reach different nodes see different
histories of a key (the transactional checker must say so)."""
from mnode import Node

node = Node()
data = {}


@node.handler("txn")
def txn(msg):
    out = []
    for f, k, v in msg["body"]["txn"]:
        key = str(k)
        if f == "r":
            cur = data.get(key)
            out.append([f, k, list(cur) if isinstance(cur, list) else cur])
        elif f == "append":
            data[key] = list(data.get(key) or []) + [v]
            out.append([f, k, v])
        else:
            data[key] = v
            out.append([f, k, v])
    node.reply(msg, {"type": "txn_ok", "txn": out})


node.run()
