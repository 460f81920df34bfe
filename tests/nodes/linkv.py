#!/usr/bin/env python3
"""A minimal Maelstrom lin-kv node in plain Python (standard library only), for backends whose
nodes run where Node.js is not installed (the docker backend's image has python3).

The same design as linkv.js: n1 (the first node id) holds the map and serializes every request;
the other nodes forward client requests to n1 and relay its replies. JSON lines on stdin/stdout,
logs on stderr.
"""

import json
import sys

node_id = None
node_ids = []
kv = {}
waiting = {}      # my msg id to n1 -> (client, client msg id)
next_id = 0


def send(dest, body):
    sys.stdout.write(json.dumps({"src": node_id, "dest": dest, "body": body}) + "\n")
    sys.stdout.flush()


def reply(req, body):
    send(req["src"], {**body, "in_reply_to": req["body"].get("msg_id")})


def apply(body):
    key = json.dumps(body.get("key"))
    t = body["type"]
    if t == "read":
        if key not in kv:
            return {"type": "error", "code": 20, "text": "not found"}
        return {"type": "read_ok", "value": kv[key]}
    if t == "write":
        kv[key] = body["value"]
        return {"type": "write_ok"}
    if t == "cas":
        if key not in kv:
            return {"type": "error", "code": 20, "text": "not found"}
        if kv[key] != body["from"]:
            return {"type": "error", "code": 22, "text": "precondition failed"}
        kv[key] = body["to"]
        return {"type": "cas_ok"}
    return {"type": "error", "code": 10, "text": f"unsupported {t}"}


for line in sys.stdin:
    if not line.strip():
        continue
    msg = json.loads(line)
    body = msg["body"]
    t = body.get("type")
    if t == "init":
        node_id, node_ids = body["node_id"], body["node_ids"]
        print(f"linkv.py {node_id} up", file=sys.stderr, flush=True)
        reply(msg, {"type": "init_ok"})
    elif t == "forward":                       # at n1: a request relayed by another node
        send(msg["src"], {"type": "forwarded", "in_reply_to": body["msg_id"],
                          "result": apply(body["request"])})
    elif t == "forwarded":                     # back at the relaying node
        client = waiting.pop(body["in_reply_to"], None)
        if client is not None:
            send(client[0], {**body["result"], "in_reply_to": client[1]})
    elif t in ("read", "write", "cas"):
        if node_id == node_ids[0]:
            reply(msg, apply(body))
        else:
            next_id += 1
            waiting[next_id] = (msg["src"], body.get("msg_id"))
            send(node_ids[0], {"type": "forward", "msg_id": next_id, "request": body})
