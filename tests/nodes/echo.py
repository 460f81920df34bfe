#!/usr/bin/env python3
"""Maelstrom echo node. Argument `wrong`: forgets to copy the payload (echo_ok without echo);
`flaky`: answers every third echo with error 11 (temporarily unavailable)."""
import sys

from mnode import Node

node = Node()
BUG = sys.argv[1:] == ["wrong"]
FLAKY = sys.argv[1:] == ["flaky"]
count = 0


@node.handler("echo")
def echo(msg):
    global count
    count += 1
    if FLAKY and count % 3 == 0:
        node.reply(msg, {"type": "error", "code": 11, "text": "not now"})
    elif BUG:
        node.reply(msg, {"type": "echo_ok"})
    else:
        node.reply(msg, {"type": "echo_ok", "echo": msg["body"]["echo"]})


node.run()
