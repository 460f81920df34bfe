#!/usr/bin/env python3
"""A single-leader lin-kv node (as forwarder.py) whose n2 exits with code 3 after its 20th
client request, with a last word on stderr: the harness must report node-crashed. With the
argument `all`, every node exits so (the cluster dies mid-run)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from strictnode import Node, kv_apply  # noqa: E402

node = Node()
kv = {}
seen = [0]


def handle(n, msg):
    seen[0] += 1
    if (n.id == "n2" or sys.argv[1:] == ["all"]) and seen[0] >= 20:
        n.log("assertion failed: term went backwards (crashing on purpose)")
        sys.exit(3)
    if n.id == n.ids[0]:
        n.reply(msg, kv_apply(kv, msg["body"]))
    else:
        n.send(n.ids[0], msg["body"], src=msg["src"])


for t in ("read", "write", "cas"):
    node.on(t, handle)
node.run()
