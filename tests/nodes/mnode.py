"""A tiny Maelstrom node library for the test nodes in this directory (standard library only).

    node = Node()
    @node.handler("echo")
    def echo(msg): node.reply(msg, {"type": "echo_ok", "echo": msg["body"]["echo"]})
    node.every(0.1, gossip)      # a periodic task (runs under the same lock as handlers)
    node.run()

JSON lines on stdin/stdout, logs on stderr. `init` is answered by the library. A message type
with no handler gets error 10 (not-supported), as Maelstrom's JavaScript and Python libraries do.
"""

import json
import sys
import threading
import time


class Node:
    def __init__(self):
        self.node_id = None
        self.node_ids = []
        self.handlers = {}
        self.lock = threading.RLock()
        self._out = threading.Lock()
        self._next_id = 0
        self._tasks = []

    def handler(self, t):
        def deco(fn):
            self.handlers[t] = fn
            return fn
        return deco

    def every(self, interval_s, fn):
        self._tasks.append((interval_s, fn))

    def log(self, text):
        print(text, file=sys.stderr, flush=True)

    def send(self, dest, body):
        line = json.dumps({"src": self.node_id, "dest": dest, "body": body})
        with self._out:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def reply(self, msg, body):
        self.send(msg["src"], {**body, "in_reply_to": msg["body"].get("msg_id")})

    def new_msg_id(self):
        self._next_id += 1
        return self._next_id

    def _loop(self, interval_s, fn):
        while True:
            time.sleep(interval_s)
            with self.lock:
                if self.node_id is not None:
                    fn()

    def run(self):
        for interval_s, fn in self._tasks:
            threading.Thread(target=self._loop, args=(interval_s, fn), daemon=True).start()
        for line in sys.stdin:
            if not line.strip():
                continue
            msg = json.loads(line)
            body = msg["body"]
            t = body.get("type")
            with self.lock:
                if t == "init":
                    self.node_id, self.node_ids = body["node_id"], list(body["node_ids"])
                    self.log(f"{sys.argv[0]} {self.node_id} up")
                    self.reply(msg, {"type": "init_ok"})
                elif t in self.handlers:
                    self.handlers[t](msg)
                elif "in_reply_to" in body:
                    pass       # a reply nobody waits for
                else:
                    self.reply(msg, {"type": "error", "code": 10, "text": f"no handler for {t}"})
