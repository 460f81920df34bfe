#!/usr/bin/env python3
"""Maelstrom g-set node: a state-based CRDT; every 100 ms each node sends its whole set to every
other node, which merges it (union). Argument `local`: never replicates (elements added on one
node are missing from the other nodes' final reads: lost)."""
import sys

from mnode import Node

node = Node()
BUG = sys.argv[1:] == ["local"]
elements = set()


@node.handler("add")
def on_add(msg):
    elements.add(msg["body"]["element"])
    node.reply(msg, {"type": "add_ok"})


@node.handler("read")
def on_read(msg):
    node.reply(msg, {"type": "read_ok", "value": sorted(elements)})


@node.handler("replicate")
def on_replicate(msg):
    elements.update(msg["body"]["value"])


def replicate():
    if BUG:
        return
    for p in node.node_ids:
        if p != node.node_id:
            node.send(p, {"type": "replicate", "value": sorted(elements)})


node.every(0.1, replicate)
node.run()
