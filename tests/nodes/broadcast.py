#!/usr/bin/env python3
"""Maelstrom broadcast node: gossip along the topology's edges, re-sent until acknowledged.

Every 100 ms each node sends each neighbour the messages that neighbour has not acknowledged
yet; the neighbour stores them and answers with what it took, so a message crosses a partition
once it heals. Argument `no-gossip`: keeps what it is sent to itself (a broadcast reaches one
node only: lost messages on every other node's final read).
"""
import sys

from mnode import Node

node = Node()
BUG = sys.argv[1:] == ["no-gossip"]
messages = set()
neighbours = None          # from the topology message
acked = {}                 # neighbour -> messages it has


@node.handler("topology")
def on_topology(msg):
    global neighbours
    neighbours = list(msg["body"]["topology"].get(node.node_id, []))
    node.reply(msg, {"type": "topology_ok"})


@node.handler("broadcast")
def on_broadcast(msg):
    messages.add(msg["body"]["message"])
    node.reply(msg, {"type": "broadcast_ok"})


@node.handler("read")
def on_read(msg):
    node.reply(msg, {"type": "read_ok", "messages": sorted(messages)})


@node.handler("gossip")
def on_gossip(msg):
    got = msg["body"]["messages"]
    messages.update(got)
    acked.setdefault(msg["src"], set()).update(got)   # the sender has them too
    node.reply(msg, {"type": "gossip_ok", "messages": got})


@node.handler("gossip_ok")
def on_gossip_ok(msg):
    acked.setdefault(msg["src"], set()).update(msg["body"]["messages"])


def gossip():
    if BUG:
        return
    peers = neighbours if neighbours is not None else [n for n in node.node_ids
                                                       if n != node.node_id]
    for p in peers:
        missing = messages - acked.get(p, set())
        if missing:
            node.send(p, {"type": "gossip", "msg_id": node.new_msg_id(),
                          "messages": sorted(missing)})


node.every(0.1, gossip)
node.run()
