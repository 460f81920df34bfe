#!/usr/bin/env python3
"""lin-kv served from one of Maelstrom's services: every client request is sent to the service
named by the first argument (lin-kv, seq-kv or lww-kv) and its answer relayed to the client.
Linearizable with lin-kv; seq-kv and lww-kv serve stale reads, which the checker must catch."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from strictnode import Node  # noqa: E402

SERVICE = sys.argv[1] if len(sys.argv) > 1 else "lin-kv"
node = Node()


def handle(n, msg):
    body = {k: v for k, v in msg["body"].items() if k != "msg_id"}
    n.rpc(SERVICE, body, lambda r: n.reply(msg, {k: v for k, v in r["body"].items()
                                                 if k != "in_reply_to"}))


for t in ("read", "write", "cas"):
    node.on(t, handle)
node.run()
