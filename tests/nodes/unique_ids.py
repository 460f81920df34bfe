#!/usr/bin/env python3
"""Maelstrom unique-ids node: ids "<node>-<n>". Argument `local`: a per-node counter only, so
two nodes hand out the same ids."""
import sys

from mnode import Node

node = Node()
BUG = sys.argv[1:] == ["local"]
count = 0


@node.handler("generate")
def generate(msg):
    global count
    count += 1
    node.reply(msg, {"type": "generate_ok", "id": count if BUG else f"{node.node_id}-{count}"})


node.run()
