#!/usr/bin/env python3
"""Maelstrom g-counter / pn-counter node: a PN-counter CRDT (per-node increment and decrement
totals, merged by maximum); every 100 ms each node sends its state to every other node.
Argument `local`: never replicates (each node's final read is only its own adds: out of bounds).
"""
import sys

from mnode import Node

node = Node()
BUG = sys.argv[1:] == ["local"]
inc = {}     # node -> total of its positive deltas
dec = {}     # node -> total of its negative deltas (as a positive number)


@node.handler("add")
def on_add(msg):
    d = msg["body"]["delta"]
    me = node.node_id
    if d >= 0:
        inc[me] = inc.get(me, 0) + d
    else:
        dec[me] = dec.get(me, 0) - d
    node.reply(msg, {"type": "add_ok"})


@node.handler("read")
def on_read(msg):
    node.reply(msg, {"type": "read_ok", "value": sum(inc.values()) - sum(dec.values())})


@node.handler("replicate")
def on_replicate(msg):
    for mine, theirs in ((inc, msg["body"]["inc"]), (dec, msg["body"]["dec"])):
        for n, v in theirs.items():
            mine[n] = max(mine.get(n, 0), v)


def replicate():
    if BUG:
        return
    for p in node.node_ids:
        if p != node.node_id:
            node.send(p, {"type": "replicate", "inc": inc, "dec": dec})


node.every(0.1, replicate)
node.run()
