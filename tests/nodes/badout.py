#!/usr/bin/env python3
"""A correct single-leader lin-kv node (as forwarder.py) that also writes bad output, chosen by
the first argument (several: comma-separated); the harness must count and log it and go on
(issue 12, item 6):

  irt-list    an extra reply whose in_reply_to is a list
  dest-list   an extra envelope whose dest is a list
  deep        an extra reply nested 100,000 deep
  garbage     random bytes (invalid UTF-8, stray newlines, NULs) between messages
  wrong-ids   extra replies with unknown, negative, string and boolean in_reply_to, and an
              envelope to a destination that does not exist
  huge-line   one 3 MiB line at the first request
  no-newline  after init, every message without its newline (nothing it says arrives)
  endless     after init, output without end and without newlines (nothing arrives either)
"""

import json
import os
import random
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from strictnode import Node, kv_apply  # noqa: E402

MODES = sys.argv[1].split(",")     # several modes at once: comma-separated
MODE = MODES[0]
node = Node()
kv = {}
rng = random.Random(7)
out = sys.stdout


def raw(text):
    out.write(text)
    out.flush()


def send_without_newline(dest, body, src=None):
    raw(json.dumps({"src": src or node.id, "dest": dest, "body": body}))


def junk(msg):
    global MODE
    for MODE in MODES:
        junk1(msg)


def junk1(msg):
    irt = msg["body"].get("msg_id")
    c = msg["src"]
    if MODE == "irt-list":
        raw(json.dumps({"src": node.id, "dest": c, "body": {"type": "read_ok", "in_reply_to": [irt],
                                                            "value": 1}}) + "\n")
    elif MODE == "dest-list":
        raw(json.dumps({"src": node.id, "dest": [c], "body": {"type": "x"}}) + "\n")
    elif MODE == "deep":
        raw('{"src":"%s","dest":"%s","body":{"type":"read_ok","in_reply_to":%d,"value":%s%s}}\n'
            % (node.id, c, irt, "[" * 100_000, "]" * 100_000))
    elif MODE == "garbage":
        out.buffer.write(bytes(rng.randrange(256) for _ in range(300)) + b"\n\xff\xfe\x00{\n")
        out.buffer.flush()
    elif MODE == "wrong-ids":
        for bad in (irt + 100_000, -1, str(irt), True, None, 1.5):
            raw(json.dumps({"src": node.id, "dest": c, "body": {"type": "read_ok",
                                                                "in_reply_to": bad}}) + "\n")
        raw(json.dumps({"src": "n99", "dest": "nowhere", "body": {"type": "gossip"}}) + "\n")
    elif MODE == "huge-line" and not getattr(junk1, "done", False):
        junk1.done = True
        raw('{"src":"n1","dest":"c1","body":{"type":"x","pad":"' + "x" * (3 << 20) + '"}}\n')


def handle(n, msg):
    if n.id == n.ids[0]:
        junk(msg)
        n.reply(msg, kv_apply(kv, msg["body"]))
    else:
        n.send(n.ids[0], msg["body"], src=msg["src"])


def endless():
    chunk = "x" * 65536
    while True:
        raw(chunk)


for t in ("read", "write", "cas"):
    node.on(t, handle)
orig_reply = node.reply


def reply_then_misbehave(msg, body):
    orig_reply(msg, body)
    if body.get("type") == "init_ok" and MODE == "endless":
        threading.Thread(target=endless, daemon=True).start()
    if body.get("type") == "init_ok" and MODE == "no-newline":
        node.send = send_without_newline


node.reply = reply_then_misbehave
node.run()
