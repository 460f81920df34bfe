"""What every process backend does with an envelope a node wrote that is not for another node:
the harness's side of Maelstrom's network, shared by the local router and the TCP backends.

  dest is a service ("lin-kv", ...)  -> the service (harness/services.py) answers from its name
                                        to the envelope's `src` (after the network's latency)
  dest is the control client "c0"    -> the harness's own request's reply (init_ok, ...)
  dest is a client "c<N>"            -> the client pool (a reply may come from any node: a
                                        follower may forward a request unchanged, src kept, and
                                        the leader answers the client directly)
  anything else                      -> "unknown-dest": logged (the first UNKNOWN_LOG_MAX in
                                        splitbrain.log, every one in messages.jsonl) and counted
                                        in stats["unknown_dest"]; never silently dropped

`src` is always kept exactly as the node wrote it (Maelstrom does not rewrite it either).
Malformed lines (wire.parse_envelope) are counted per node in stats["malformed"] and the first
wire.BAD_LOG_MAX per node are described in the log.

A backend mixing this in calls `_init_routing(seed)`, implements
`_deliver_node(dest, data, mid, sent, src, body) -> None` (deliver a harness-made envelope to a
node, recording its fate in the message log) and `_later(delay_s, fn)` (run fn on the loop
thread after delay_s), and routes every non-node envelope through `_to_harness(node, env)`.
"""

from __future__ import annotations

import json
from typing import Callable

from ..msglog import MessageLog, is_client
from ..services import SERVICE_NAMES, Services
from .base import CONTROL_CLIENT
from .wire import BAD_LOG_MAX, preview

UNKNOWN_LOG_MAX = 20
CRASH_LOG_LINES = 10             # last lines of node.log kept with a node-crashed anomaly
CRASH_LOG_TAIL_BYTES = 64 << 10


def log_tail(path, k: int = CRASH_LOG_LINES) -> list[str]:
    """The last k lines of a node's log (its stderr), each cut to 300 characters."""
    import os
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - CRASH_LOG_TAIL_BYTES))
            tail = fh.read()
    except OSError:
        return ["(no log)"]
    lines = tail.decode("utf-8", "replace").splitlines()
    return [line[:300] for line in lines[-k:]]


class Routing:
    nodes: list[str]
    stats: dict
    in_house: bool
    on_client_message: Callable[[str, str, dict], int | None] | None
    _log: Callable[[str], None]

    def _init_routing(self, seed: int) -> None:
        self.services = Services(seed)
        self._service_names = frozenset(SERVICE_NAMES)
        self.msglog = MessageLog(None)
        self.service_latency_ms = 0.0
        self._bad_by_node: dict[str, int] = {}
        for k in ("malformed", "unknown_dest", "service"):
            self.stats.setdefault(k, 0)

    def _readers(self) -> list:
        """Every LineReader reading a node's output (the backend's)."""
        return []

    def output_stats(self) -> dict:
        """What the nodes wrote, in total: bytes, lines, lines discarded as over-long
        (wire.LINE_BYTES_MAX) and malformed lines."""
        rs = self._readers()
        return {"bytes": sum(r.bytes for r in rs), "lines": sum(r.lines for r in rs),
                "discarded": sum(r.discarded for r in rs),
                "malformed": self.stats.get("malformed", 0)}

    def attach_message_log(self, log: MessageLog) -> None:
        """Write messages.jsonl through `log` from now on (the runner's, on the history clock)."""
        self.msglog = log

    # ---- hooks -------------------------------------------------------------------------------

    def _deliver_node(self, dest: str, data: bytes, mid: int, sent: int, src: str,
                      body: dict) -> None:
        raise NotImplementedError

    def _later(self, delay_s: float, fn: Callable[[], None]) -> None:
        raise NotImplementedError

    def _service_delay_s(self) -> float:
        """One-way delay of node<->service messages (the network's base latency)."""
        return 0.0

    # ---- input from a node -------------------------------------------------------------------

    def _bad_line(self, node: str, line: bytes, why: str) -> None:
        self.stats["malformed"] += 1
        k = self._bad_by_node.get(node, 0) + 1
        self._bad_by_node[node] = k
        if k <= BAD_LOG_MAX:
            self._log(f"{node}: ignoring a malformed line ({why}): {preview(line)}"
                      + (f" (further malformed lines of {node} are only counted)"
                         if k == BAD_LOG_MAX else ""))

    def _to_harness(self, node: str, env: dict) -> None:
        """An envelope from `node` whose dest is not a node (LOOP THREAD)."""
        dest, src, body = env["dest"], env["src"], env["body"]
        log = self.msglog
        if dest in self._service_names:
            mid, sent = log.send()
            delay = self._service_delay_s()
            if delay > 0:
                log.hold(mid, sent, src, dest, body)
                self._later(delay, lambda: self._serve(mid, dest, src, body, delayed=True))
            else:
                self._serve(mid, dest, src, body, sent=sent)
            return
        if dest == CONTROL_CLIENT:
            mid, sent = log.send()
            log.record(mid, sent, src, dest, body, "delivered", control=self.in_house)
            self._control_reply(body)
            return
        if is_client(dest):
            mid, sent = log.send()
            op = self.on_client_message(node, dest, body) if self.on_client_message else None
            log.record(mid, sent, src, dest, body, "delivered", op=op)
            return
        mid, sent = log.send()
        log.record(mid, sent, src, dest, body, "unknown-dest")
        self.stats["unknown_dest"] += 1
        if self.stats["unknown_dest"] <= UNKNOWN_LOG_MAX:
            self._log(f"{node}: message to an unknown destination {dest!r} (no such node, client "
                      f"or service): {preview(json.dumps(body).encode())}"
                      + (" (further ones are only counted)"
                         if self.stats["unknown_dest"] == UNKNOWN_LOG_MAX else ""))

    def _serve(self, mid: int, name: str, src: str, body: dict, *, sent: int | None = None,
               delayed: bool = False) -> None:
        """A service request arrives at the service: answer it."""
        log = self.msglog
        if delayed:
            log.release(mid, "delivered")
        else:
            log.record(mid, sent, src, name, body, "delivered")
        self.stats["service"] += 1
        reply = self.services.handle(name, src, body)
        data = json.dumps({"src": name, "dest": src, "body": reply},
                          separators=(",", ":")).encode() + b"\n"
        rid, rsent = log.send()
        delay = self._service_delay_s()
        if delay > 0:
            self._later(delay, lambda: self._reply_from_service(rid, rsent, name, src, reply, data))
        else:
            self._reply_from_service(rid, rsent, name, src, reply, data)

    def _reply_from_service(self, mid: int, sent: int, name: str, dest: str, body: dict,
                            data: bytes) -> None:
        if dest in self.nodes:
            self._deliver_node(dest, data, mid, sent, name, body)
        elif is_client(dest):
            op = self.on_client_message(name, dest, body) if self.on_client_message else None
            self.msglog.record(mid, sent, name, dest, body, "delivered", op=op)
        else:
            self.msglog.record(mid, sent, name, dest, body, "unknown-dest")
            self.stats["unknown_dest"] += 1

    def _control_reply(self, body: dict) -> None:
        raise NotImplementedError
