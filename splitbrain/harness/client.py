"""Client workers and the generator interpreter, with Jepsen's client semantics.

The interpreter runs ENTIRELY on the backend's loop thread: a worker is not an OS thread but a
small state record, so the harness spends microseconds per operation (one loop drives hundreds of
workers; see benchmarks/bench_harness.py). For each free worker it asks the generator for an op
(generators.py), waits until the op's time, records the `invoke`, sends the Maelstrom request to
the worker's node, and records the completion when the reply (or the timeout) comes:

- a reply `<f>_ok` -> `ok`; a definite error -> `fail`; an indefinite error or no reply within
  `timeout_s` -> `info` (workloads.py decodes). After an `info` the worker goes on under a fresh
  process id (process + number of workers), as Jepsen's do: the old process may still be running.
- a request that cannot be delivered (node down) is `fail` with error "node-down": it certainly
  did not happen. The worker backs off `backoff_s` before its next op.
- error 11 (temporarily unavailable, definite) with a `leader` hint: the request is re-sent to that
  leader, at most `redirects_max` times within the same operation (one invoke, one completion in
  the history). The next op starts at the worker's home node again (Jepsen's clients are bound to
  nodes): so when a leader is cut off, the workers homed on it keep talking to it while the others
  find the new leader - which is what exposes a deposed leader serving stale reads.
  Ops pinned to a node (GenOp.node, the final phase's per-node reads) are never redirected.

Workers are numbered 0..n-1; worker w's first process is w, its home node nodes[w % len(nodes)].
Client ids on the wire are "c<process+1>" (c0 is the harness's control client).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from .generators import PENDING, Ctx, GenOp
from .store import Recorder
from .workloads import NODE_DOWN, Completion, Invocation, Workload

REDIRECTS_MAX = 3
FINAL_TIMEOUT_MIN_S = 0.05   # a request sent just before the final deadline still gets this long
ASK_INTERVAL_S = 0.01      # pending workers are re-asked at least this often


@dataclass
class Worker:
    index: int
    process: int
    home: str
    node: str
    busy: bool = False              # an op is scheduled or outstanding
    op: GenOp | None = None
    inv: Invocation | None = None
    msg_id: int = 0
    target: str = ""
    redirects: int = 0
    sent_at_ns: int = 0
    attempt: int = 0
    op_index: int | None = None     # history index of the current op's invoke


class ClientPool:
    """Drives a generator with `n` workers against a backend (all on the backend's loop thread).

    `run(gen)` (call from any thread except the loop) blocks until the generator is exhausted and
    every outstanding op completed, or `stop()` is called; it returns how many ops completed.
    """

    def __init__(self, backend, workload: Workload, recorder: Recorder, n: int, *,
                 t0_ns: int, timeout_s: float = 1.0, backoff_s: float = 0.25,
                 on_op: Callable[[Any], None] | None = None, local_reads: bool = False):
        assert n >= 1, "at least one worker"
        self.backend = backend
        self.workload = workload
        self.recorder = recorder
        self.n = n
        self.t0_ns = t0_ns
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.on_op = on_op
        self.local_reads = local_reads
        self.retries_max = 0         # re-invocations of an unpinned op that did not end ok
        self.retry_delay_s = 0.1
        # The final phase's overall deadline (ns on the history clock, None: none): no retry
        # starts after it and no request waits past it (see `run_final`).
        self.deadline_ns: int | None = None
        self.malformed_replies = 0
        nodes = backend.nodes
        self._node_list = list(nodes)
        self.workers = [Worker(i, i, nodes[i % len(nodes)], nodes[i % len(nodes)]) for i in range(n)]
        # Worker w performs as processes w, w+n, ...: the workload may group workers (per key).
        workload.bind_clients(n, len(nodes))
        self.threads = tuple(range(n))
        self._nodes = frozenset(nodes)
        self._by_msg: dict[tuple[str, int], Worker] = {}
        self._msg_id = 0
        self._gen = None
        self._exhausted = True
        self._pending: set[int] = set()
        self._done = threading.Event()
        self._stopping = False
        self.completed = 0
        self._setup_waiting: dict[tuple[str, int], tuple[str, dict]] = {}
        self._setup_replies: dict[tuple[str, int], dict] = {}
        self._setup_done = threading.Event()
        backend.on_client_message = self._on_message

    # ---- the public side (any thread but the loop) -------------------------------------------

    def run(self, gen, stop_event: threading.Event | None = None) -> int:
        """Run `gen` to exhaustion (or until stop_event is set). Returns ops completed."""
        before = self.completed
        self._done.clear()
        self._stopping = False
        self.backend.loop.call(lambda: self._start(gen))
        while not self._done.wait(0.1):
            if stop_event is not None and stop_event.is_set():
                self.backend.loop.call(self._stop_asking)
            err = getattr(self.backend.loop, "error", None)
            if err is not None:
                raise RuntimeError(f"the event loop failed: {type(err).__name__}: {err}") from err
        return self.completed - before

    def setup(self, requests: list[tuple[str, dict]], timeout_s: float) -> list[str]:
        """Send the workload's setup requests (Workload.setup_requests: broadcast's topology)
        and wait up to `timeout_s` for their replies. They are not operations: nothing goes
        into the history. Request i is sent from client c<i % n + 1> (Maelstrom sends each from
        the client bound to that node). Returns one line per request that did not get its
        `<type>_ok` (no reply, an error, the node down); [] when all were answered."""
        problems: list[str] = []
        if not requests:
            return problems
        self._setup_done.clear()

        def send_all() -> None:
            for i, (node, body) in enumerate(requests):
                self._msg_id += 1
                client = f"c{i % self.n + 1}"
                key = (client, self._msg_id)
                self._setup_waiting[key] = (node, body)
                if not self.backend.send_client(client, node, {**body, "msg_id": self._msg_id}):
                    del self._setup_waiting[key]
                    problems.append(f"{body.get('type')} to {node}: the node is down")
            if not self._setup_waiting:
                self._setup_done.set()
        self.backend.loop.call(send_all)
        self._setup_done.wait(timeout_s)

        def collect() -> None:
            for (client, _), (node, body) in self._setup_waiting.items():
                problems.append(f"{body.get('type')} to {node}: no reply within {timeout_s:g} s")
            self._setup_waiting.clear()
            for (node, body), reply in self._setup_replies.values():
                if reply.get("type") != f"{body.get('type')}_ok":
                    problems.append(f"{body.get('type')} to {node}: answered "
                                    f"{str(reply)[:200]}")
            self._setup_replies.clear()
        self.backend.loop.call(collect)
        return problems

    def stop(self) -> None:
        """Ask no more ops; outstanding ones still complete (or time out)."""
        self.backend.loop.call_soon(self._stop_asking)

    # ---- the loop side ------------------------------------------------------------------------

    def now_ns(self) -> int:
        return time.monotonic_ns() - self.t0_ns

    def _start(self, gen) -> None:
        self._gen = gen
        self._exhausted = False
        self._pending = set()
        for w in self.workers:
            if not w.busy:
                self._ask(w)
        self._tick()

    def _stop_asking(self) -> None:
        self._exhausted = True
        self._stopping = True
        self._pending.clear()
        self._check_done()

    def _tick(self) -> None:
        if self._exhausted:
            return
        self._reask()
        self.backend.loop.call_later(ASK_INTERVAL_S, self._tick)

    def _check_done(self) -> None:
        if self._exhausted and not any(w.busy for w in self.workers):
            self._done.set()

    def _free(self) -> frozenset:
        return frozenset(w.index for w in self.workers if not w.busy)

    def _ask(self, w: Worker) -> None:
        if self._exhausted or w.busy:
            self._check_done()
            return
        ctx = Ctx(self.now_ns(), w.index, self.threads, self._free())
        r = self._gen.op(ctx)
        if r is None:
            self._exhausted = True
            self._pending.clear()
            self._check_done()
            return
        o, self._gen = r
        if o is PENDING:
            self._pending.add(w.index)
            return
        self._pending.discard(w.index)
        w.busy = True
        if o.f == "sleep":
            self.backend.loop.call_later(o.value / 1e9, lambda: self._unbusy_and_ask(w))
            return
        delay = (o.time_ns - ctx.time_ns) / 1e9
        if delay > 0:
            self.backend.loop.call_later(delay, lambda: self._invoke(w, o))
        else:
            self._invoke(w, o)

    def _unbusy_and_ask(self, w: Worker) -> None:
        w.busy = False
        self._ask(w)
        self._check_done()

    def _reask(self) -> None:
        for i in list(self._pending):
            if self._exhausted:
                break
            self._ask(self.workers[i])

    def _invoke(self, w: Worker, o: GenOp, attempt: int = 0) -> None:
        w.attempt = attempt
        w.op = o
        # The process's own client state may shape the op (kafka's consumer offsets).
        w.inv = inv = self.workload.prepare(w.process, Invocation(o.f, o.value, o.key))
        w.redirects = 0
        target = o.node or w.node
        op = self.recorder.invoke(w.process, inv.f, inv.value, time_ns=self.now_ns(), key=inv.key,
                                  node=o.node)
        w.op_index = op.index
        if self.on_op:
            self.on_op(op)
        self._send(w, target)

    def _send(self, w: Worker, target: str) -> None:
        self._msg_id += 1
        w.msg_id = self._msg_id
        w.target = target
        client = f"c{w.process + 1}"
        body = self.workload.request(w.inv)
        if self.local_reads and w.op.node is not None and w.inv.f == "read":
            # The node's own committed state, from its machine (the runtime's local read).
            body = {"type": "splitbrain_local_read", "op": body}
        body["msg_id"] = w.msg_id
        if not self.backend.send_client(client, target, body, op=w.op_index):
            self._complete(w, Completion("fail", w.inv.value, NODE_DOWN), target)
            return
        key = (client, w.msg_id)
        self._by_msg[key] = w
        msg_id = w.msg_id
        timeout_s = self.timeout_s
        if self.deadline_ns is not None:
            timeout_s = max(FINAL_TIMEOUT_MIN_S,
                            min(timeout_s, (self.deadline_ns - self.now_ns()) / 1e9))
        self.backend.loop.call_later(timeout_s, lambda: self._timeout(w, key, msg_id))

    def _timeout(self, w: Worker, key: tuple[str, int], msg_id: int) -> None:
        if self._by_msg.get(key) is not w or w.msg_id != msg_id:
            return   # answered already
        del self._by_msg[key]
        self._complete(w, self.workload.timeout(w.inv), w.target)

    def _on_message(self, node: str, client: str, body: dict) -> int | None:
        """A message to a client (LOOP THREAD): the reply to one of our requests, matched by
        (client, in_reply_to), from whichever node sent it. Returns the history index of the
        answered op's invoke (for the message log), None when it answers nothing outstanding
        (late, duplicated, a setup reply, or an `in_reply_to` that is not an integer: ignored,
        as Jepsen does). A reply the workload cannot decode completes the op as `info` (what
        happened is unknown), counted in `malformed_replies`."""
        irt = body.get("in_reply_to")
        if type(irt) is not int:
            return None
        key = (client, irt)
        if key in self._setup_waiting:
            self._setup_replies[key] = (self._setup_waiting.pop(key), body)
            if not self._setup_waiting:
                self._setup_done.set()
            return None
        w = self._by_msg.pop(key, None)
        if w is None:
            return None   # a late reply to an op that already timed out: ignored, as Jepsen does
        index = w.op_index
        if (body.get("type") == "error" and body.get("code") == 11 and w.op.node is None
                and w.redirects < REDIRECTS_MAX):
            leader = body.get("leader")
            if isinstance(leader, str) and leader in self._nodes and leader != node:
                w.redirects += 1
                self._send(w, leader)
                return index
        try:
            c = self.workload.completion(w.inv, body)
        except Exception:  # noqa: BLE001 - a node's reply is untrusted input
            self.malformed_replies += 1
            c = Completion("info", w.inv.value, "malformed-reply")
        self._complete(w, c, node if isinstance(node, str) else w.target)
        return index

    def _complete(self, w: Worker, c: Completion, node: str) -> None:
        op = self.recorder.complete(w.process, c.type, c.value, time_ns=self.now_ns(),
                                    error=c.error, node=node)
        if self.on_op:
            self.on_op(op)
        self.completed += 1
        self.workload.observe(w.process, w.inv, c)
        if c.type == "info":
            w.process += self.n
            w.node = w.home
        elif c.type == "fail" and c.error == NODE_DOWN:
            w.node = w.home
        o, attempt = w.op, w.attempt
        w.op = w.inv = None
        if (c.type != "ok" and o.node is None and attempt < self.retries_max
                and (self.deadline_ns is None or self.now_ns() < self.deadline_ns)):
            # The final phase: a read that failed is tried again (a new invoke) until it works
            # or the deadline passes, each time on the next node (a dead node does not hold
            # up the final phase).
            nodes = self._node_list
            w.node = nodes[(nodes.index(node) + 1) % len(nodes)] if node in nodes else w.home
            self.backend.loop.call_later(self.retry_delay_s, lambda: self._invoke(w, o, attempt + 1))
            return
        if c.error == NODE_DOWN and self.backoff_s > 0 and not self._exhausted:
            self.backend.loop.call_later(self.backoff_s, lambda: self._unbusy_and_ask(w))
        else:
            w.busy = False
            self._ask(w)
        if self._pending and not self._exhausted:
            self._reask()
        self._check_done()
