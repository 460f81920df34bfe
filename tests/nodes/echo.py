#!/usr/bin/env python3
"""Maelstrom echo node. Argument `wrong`: forgets to copy the payload (echo_ok without echo)."""
import sys

from mnode import Node

node = Node()
BUG = sys.argv[1:] == ["wrong"]


@node.handler("echo")
def echo(msg):
    if BUG:
        node.reply(msg, {"type": "echo_ok"})
    else:
        node.reply(msg, {"type": "echo_ok", "echo": msg["body"]["echo"]})


node.run()
