"""A minimal Maelstrom node library for the harness's own test nodes (standard library only).

Like Maelstrom's Ruby and Go libraries, a node built on it EXITS on a message type it has no
handler for ("No handler for ..."): the harness must never send a --bin node anything Maelstrom
would not. Handlers get (node, msg) and may reply with node.reply(msg, body)."""

import json
import sys


class Node:
    def __init__(self):
        self.id = None
        self.ids = []
        self.handlers = {}
        self.next_id = 0
        self.callbacks = {}      # our msg_id -> fn(msg) for replies to our own requests

    def on(self, typ, fn):
        self.handlers[typ] = fn

    def log(self, text):
        print(text, file=sys.stderr, flush=True)

    def send(self, dest, body, src=None):
        sys.stdout.write(json.dumps({"src": src or self.id, "dest": dest, "body": body}) + "\n")
        sys.stdout.flush()

    def reply(self, msg, body):
        self.send(msg["src"], {**body, "in_reply_to": msg["body"].get("msg_id")})

    def rpc(self, dest, body, fn):
        self.next_id += 1
        self.callbacks[self.next_id] = fn
        self.send(dest, {**body, "msg_id": self.next_id})

    def run(self):
        for line in sys.stdin:
            msg = json.loads(line)
            body = msg["body"]
            typ = body.get("type")
            if typ == "init":
                self.id, self.ids = body["node_id"], body["node_ids"]
                self.log(f"init {self.id}")
                self.reply(msg, {"type": "init_ok"})
                continue
            irt = body.get("in_reply_to")
            if irt is not None and irt in self.callbacks:
                self.callbacks.pop(irt)(msg)
                continue
            fn = self.handlers.get(typ)
            if fn is None:
                self.log(f"No handler for {json.dumps(msg)}")
                sys.exit(1)
            fn(self, msg)


def kv_apply(kv, body):
    """The lin-kv state machine (Maelstrom's lin-kv workload API) on a dict."""
    key = json.dumps(body.get("key"))
    typ = body["type"]
    if typ == "read":
        if key not in kv:
            return {"type": "error", "code": 20, "text": "not found"}
        return {"type": "read_ok", "value": kv[key]}
    if typ == "write":
        kv[key] = body["value"]
        return {"type": "write_ok"}
    if typ == "cas":
        if key not in kv:
            return {"type": "error", "code": 20, "text": "not found"}
        if kv[key] != body["from"]:
            return {"type": "error", "code": 22, "text": "mismatch"}
        kv[key] = body["to"]
        return {"type": "cas_ok"}
    return {"type": "error", "code": 10, "text": "unsupported"}
