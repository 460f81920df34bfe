"""A small Maelstrom node library in plain Python (standard library only), written the way a
Gossip Glomers participant writes one: JSON lines on stdin, JSON lines on stdout, logs on stderr.

    node = Node()

    @node.handler("echo")
    def echo(msg):
        node.reply(msg, {"type": "echo_ok", "echo": msg["body"]["echo"]})

    node.run()

Handlers run on a small thread pool, so a handler may block on `node.sync_rpc(dest, body)` (a
request to another node or to a Maelstrom service such as "seq-kv") without stalling the input.
`node.every(seconds, fn)` runs `fn` periodically on its own thread. `Node(inline=True)` runs
every handler on the input thread instead, in arrival order (a protocol node such as Raft that
takes one lock and never blocks in a handler). Unlike Maelstrom's Ruby and Go
libraries, a message type with no handler is logged and ignored (the brief allows it for Python).
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

HANDLER_THREADS_MAX = 32   # concurrent handlers (each may block in sync_rpc)


class RPCError(Exception):
    """A Maelstrom error reply to an RPC: `code` and `text` as the peer sent them."""

    def __init__(self, code: int, text: str = ""):
        super().__init__(f"error {code}: {text}")
        self.code = code
        self.text = text


class RPCTimeout(Exception):
    """No reply within the deadline: the request may or may not have taken effect."""


class Node:
    def __init__(self, inline: bool = False) -> None:
        self._inline = inline
        self.node_id: str = ""
        self.node_ids: list[str] = []
        self._handlers: dict[str, Callable[[dict], None]] = {}
        self._callbacks: dict[int, Callable[[dict], None]] = {}
        self._next_msg_id = 0
        self._lock = threading.Lock()        # msg ids and callbacks
        self._out_lock = threading.Lock()    # whole lines on stdout
        self._pool = ThreadPoolExecutor(max_workers=HANDLER_THREADS_MAX)
        self._init_done = threading.Event()
        self._on_init: list[Callable[[], None]] = []

    # ---- registration -----------------------------------------------------------------------

    def handler(self, type_: str):
        def register(fn):
            self._handlers[type_] = fn
            return fn
        return register

    def on_init(self, fn: Callable[[], None]) -> Callable[[], None]:
        self._on_init.append(fn)
        return fn

    def every(self, seconds: float, fn: Callable[[], None]) -> None:
        def loop():
            self._init_done.wait()
            while True:
                time.sleep(seconds)
                try:
                    fn()
                except Exception as e:  # a periodic task must survive one bad round
                    self.log(f"periodic task failed: {e!r}")
        threading.Thread(target=loop, daemon=True).start()

    # ---- sending ----------------------------------------------------------------------------

    def log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    def send(self, dest: str, body: dict) -> None:
        line = json.dumps({"src": self.node_id, "dest": dest, "body": body})
        with self._out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def forward(self, msg: dict, dest: str) -> None:
        """Pass a message on UNCHANGED (its `src` stays the original sender, e.g. a client), so
        the node that serves it replies straight to that sender."""
        line = json.dumps({"src": msg["src"], "dest": dest, "body": msg["body"]})
        with self._out_lock:
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

    def reply(self, req: dict, body: dict) -> None:
        body = dict(body)
        body["in_reply_to"] = req["body"].get("msg_id")
        self.send(req["src"], body)

    def new_msg_id(self) -> int:
        with self._lock:
            self._next_msg_id += 1
            return self._next_msg_id

    def rpc(self, dest: str, body: dict, callback: Callable[[dict], None]) -> None:
        """Send a request; `callback(reply_msg)` runs when (if) the reply arrives."""
        msg_id = self.new_msg_id()
        with self._lock:
            self._callbacks[msg_id] = callback
        self.send(dest, dict(body, msg_id=msg_id))

    def sync_rpc(self, dest: str, body: dict, timeout_s: float = 1.0) -> dict:
        """Send a request and wait for the reply body; RPCError on an error reply, RPCTimeout
        when nothing comes back in time."""
        box: queue.Queue = queue.Queue(maxsize=1)
        msg_id = self.new_msg_id()
        with self._lock:
            self._callbacks[msg_id] = box.put
        self.send(dest, dict(body, msg_id=msg_id))
        try:
            reply = box.get(timeout=timeout_s)
        except queue.Empty:
            with self._lock:
                self._callbacks.pop(msg_id, None)
            raise RPCTimeout(f"{body.get('type')} to {dest}") from None
        rbody = reply["body"]
        if rbody.get("type") == "error":
            raise RPCError(rbody.get("code", 13), rbody.get("text", ""))
        return rbody

    # ---- the main loop ----------------------------------------------------------------------

    def _dispatch(self, msg: dict) -> None:
        body = msg["body"]
        t = body.get("type")
        irt = body.get("in_reply_to")
        if irt is not None:
            with self._lock:
                cb = self._callbacks.pop(irt, None)
            if cb is not None:
                cb(msg)
            return
        if t == "init":
            self.node_id = body["node_id"]
            self.node_ids = list(body["node_ids"])
            for fn in self._on_init:
                fn()
            self.log(f"init {self.node_id} of {self.node_ids}")
            self.reply(msg, {"type": "init_ok"})
            self._init_done.set()
            return
        fn = self._handlers.get(t)
        if fn is None:
            self.log(f"ignoring message of type {t!r}")
            return

        def run():
            try:
                fn(msg)
            except Exception as e:
                self.log(f"handler {t} failed: {e!r}")
                if "msg_id" in body:
                    # Crash code 13 is indefinite in Maelstrom: the request may have applied.
                    self.reply(msg, {"type": "error", "code": 13, "text": repr(e)})
        if self._inline:
            run()
        else:
            self._pool.submit(run)

    def run(self) -> None:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line)
            except ValueError:
                self.log(f"bad json: {line[:200]}")
                continue
            self._dispatch(msg)
