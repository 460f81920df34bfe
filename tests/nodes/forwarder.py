#!/usr/bin/env python3
"""lin-kv, the common Raft idiom without Raft: n1 is the leader and holds the map; every other
node forwards a client's request UNCHANGED (src = the client) to n1, and n1 answers the client
directly. Correct only if the harness keeps `src` as written. Exits on unknown message types."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from strictnode import Node, kv_apply  # noqa: E402

node = Node()
kv = {}


def handle(n, msg):
    if n.id == n.ids[0]:
        n.reply(msg, kv_apply(kv, msg["body"]))
    else:
        n.send(n.ids[0], msg["body"], src=msg["src"])   # forwarded as is


for t in ("read", "write", "cas"):
    node.on(t, handle)
node.run()
