#!/usr/bin/env python3
"""Maelstrom's broadcast, the simplest correct way: flood each new message to the neighbours the
topology gives (except the one it came from). No acknowledgements or retries: correct without
faults only (benchmarks/bench_router.py drives 25 of these)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from strictnode import Node  # noqa: E402

node = Node()
seen = set()
neighbours = []


def topology(n, msg):
    neighbours[:] = msg["body"]["topology"].get(n.id, [])
    n.reply(msg, {"type": "topology_ok"})


def spread(n, m, came_from):
    if m in seen:
        return
    seen.add(m)
    for peer in neighbours:
        if peer != came_from:
            n.send(peer, {"type": "gossip", "message": m})


def broadcast(n, msg):
    spread(n, msg["body"]["message"], None)
    n.reply(msg, {"type": "broadcast_ok"})


node.on("topology", topology)
node.on("broadcast", broadcast)
node.on("gossip", lambda n, msg: spread(n, msg["body"]["message"], msg["src"]))
node.on("read", lambda n, msg: n.reply(msg, {"type": "read_ok", "messages": sorted(seen)}))
node.run()
