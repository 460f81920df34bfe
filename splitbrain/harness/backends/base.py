"""The Backend protocol every backend offers, and the event loop the harness runs on.

A backend runs a cluster somewhere (local processes, network namespaces, containers, ...) and
offers the same cluster operations (DESIGN.md, "Backends"):

  start()                       start every node and complete the init handshake
  kill(node, lose_unsynced)     SIGKILL (or equivalent); with lose_unsynced the node's records
                                file is cut back to its last fsync (a machine crash)
  restart(node)                 start a killed node again, from its data directory
  pause(node) / resume(node)    SIGSTOP / SIGCONT
  partition(grudge) / heal()    apply a grudge (grudges.py) / remove every network fault
  set_network(loss, latency_ms, duplicate)  packet loss probability, extra delay (lo, hi) in ms,
                                duplication probability; `set_network()` resets to a clean network
  set_clock(node, offset_ms)    the node's clock offset (in-house runtime nodes only)
  send_client(client, node, body)  a client request to a node (LOOP THREAD ONLY)
  on_client_message             callback(node, client, body) -> the invoke index of the op it
                                answers or None (runs on the loop thread)
  collect_logs()                make sure node logs are in the store's nodes/<node>/
  teardown()                    stop everything; idempotent; always called (in `finally`)

Threading contract: a backend owns one Loop thread that does all its I/O. Client traffic runs on
that thread (callbacks, timers), which is what makes the harness fast; control operations (kill,
partition, ...) may be called from any thread and are carried out on the loop thread via
`Loop.call` (they block the caller until done, not the loop).

Optional abilities are detected, not assumed: `supports(ability)` answers for "kill", "pause",
"clock", "lose-unsynced", "partition", "network".
"""

from __future__ import annotations

import heapq
import json
import itertools
import os
import selectors
import threading
import time
from collections import deque
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, Callable, Protocol

from ..grudges import Grudge

LOOP_SELECT_MAX_S = 0.05     # the loop wakes at least this often


class Backend(Protocol):
    name: str
    nodes: list[str]
    loop: "Loop"
    on_client_message: Callable[[str, str, dict], None] | None

    def supports(self, ability: str) -> bool: ...

    def start(self) -> None: ...

    def kill(self, node: str, lose_unsynced: bool = False) -> None: ...

    def restart(self, node: str) -> None: ...

    def pause(self, node: str) -> None: ...

    def resume(self, node: str) -> None: ...

    def partition(self, grudge: Grudge) -> None: ...

    def heal(self) -> None: ...

    def set_network(self, loss: float = 0.0, latency_ms: tuple[int, int] = (0, 0),
                    duplicate: float = 0.0) -> None: ...

    def set_clock(self, node: str, offset_ms: int) -> None: ...

    def send_client(self, client: str, node: str, body: dict, op: int | None = None) -> bool: ...

    def collect_logs(self) -> None: ...

    def teardown(self) -> None: ...


class Loop:
    """A single-threaded event loop: fd readiness (selectors), timers, and calls from other threads.

    Everything registered here runs on the loop thread. Other threads use `call_soon` (fire and
    forget) or `call` (wait for the result; exceptions are re-raised in the caller).
    """

    def __init__(self, name: str = "splitbrain-loop"):
        self.sel = selectors.DefaultSelector()
        self._timers: list[tuple[float, int, Callable[[], Any]]] = []
        self._seq = itertools.count()
        self._calls: deque[Callable[[], Any]] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.sel.register(self._wake_r, selectors.EVENT_READ, self._drain_wake)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.error: BaseException | None = None
        # Called at the end of every loop iteration (on the loop thread): e.g. flushing output
        # buffers once per iteration instead of one write syscall per message.
        self.after_iteration: list[Callable[[], Any]] = []
        self.on_error: Callable[[BaseException], None] | None = None

    # -- lifecycle --

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop = True
        self._wake()
        if threading.current_thread() is not self._thread and self._thread.is_alive():
            self._thread.join(timeout=5)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    @property
    def on_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    # -- scheduling --

    def call_later(self, delay_s: float, fn: Callable[[], Any]) -> None:
        """Run fn on the loop after delay_s (LOOP THREAD ONLY; use call_soon from elsewhere)."""
        heapq.heappush(self._timers, (time.monotonic() + delay_s, next(self._seq), fn))

    def call_soon(self, fn: Callable[[], Any]) -> None:
        """Run fn on the loop thread soon (thread-safe)."""
        self._calls.append(fn)
        self._wake()

    def call(self, fn: Callable[[], Any], timeout_s: float = 60.0) -> Any:
        """Run fn on the loop thread and return its result (thread-safe; runs inline if already
        on the loop thread)."""
        if self.on_loop_thread or not self._thread.is_alive():
            return fn()
        fut: Future = Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as e:  # noqa: BLE001 - handed back to the caller
                fut.set_exception(e)
        self.call_soon(run)
        return fut.result(timeout=timeout_s)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass    # already awake (pipe full) or closed at shutdown

    def _drain_wake(self, mask: int) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    # -- the loop --

    def _run(self) -> None:
        try:
            while not self._stop:
                timeout = LOOP_SELECT_MAX_S
                if self._timers:
                    timeout = min(timeout, max(0.0, self._timers[0][0] - time.monotonic()))
                if self._calls:
                    timeout = 0.0
                for key, mask in self.sel.select(timeout):
                    key.data(mask)
                while self._calls:
                    self._calls.popleft()()
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    _, _, fn = heapq.heappop(self._timers)
                    fn()
                for hook in self.after_iteration:
                    hook()
        except BaseException as e:  # noqa: BLE001 - surfaced to the runner
            self.error = e
            if self.on_error is not None:
                self.on_error(e)
        finally:
            try:
                self.sel.close()
            except Exception:  # noqa: BLE001
                pass


CONTROL_CLIENT = "c0"     # the harness's own client id (init, status, clock and network control)


class ControlRequests:
    """The harness's own requests to nodes (init, status, clock, network settings), matched to
    their replies by msg_id. Shared by every process backend.

    A backend calls `_init_control()` in its constructor, implements
    `_deliver_control(node, data, force) -> bool` (LOOP THREAD: write the envelope `data` to the
    node; False when the node is down, or not yet initialised and not `force`), hands every reply
    addressed to CONTROL_CLIENT to `_control_reply(body)`, and calls `_fail_controls()` on
    teardown so that no caller waits forever.
    """

    loop: Loop
    nodes: list[str]

    def _init_control(self) -> None:
        self._control: dict[int, Future] = {}
        self._control_id = 0
        self._control_lock = threading.Lock()

    def _deliver_control(self, node: str, data: bytes, force: bool) -> bool:
        raise NotImplementedError

    def _send_control_id(self, node: str, body: dict, force: bool = False) -> tuple[int, Future]:
        with self._control_lock:
            self._control_id += 1
            mid = self._control_id
        fut: Future = Future()
        self._control[mid] = fut
        data = json.dumps({"src": CONTROL_CLIENT, "dest": node, "body": {**body, "msg_id": mid}},
                          separators=(",", ":")).encode() + b"\n"

        def send() -> None:
            if not self._deliver_control(node, data, force):
                self._control.pop(mid, None)
                if not fut.done():
                    fut.set_exception(TimeoutError(f"{node} is down"))
        self.loop.call_soon(send)
        return mid, fut

    def _send_control(self, node: str, body: dict, force: bool = False) -> Future:
        return self._send_control_id(node, body, force)[1]

    def _control_reply(self, body: dict) -> None:
        fut = self._control.pop(body.get("in_reply_to"), None)
        if fut is not None and not fut.done():
            fut.set_result(body)

    def _fail_controls(self) -> None:
        for fut in list(self._control.values()):
            if not fut.done():
                fut.set_exception(TimeoutError("backend torn down"))

    def control(self, node: str, body: dict, timeout_s: float = 5.0) -> dict:
        """A request from the harness itself; TimeoutError when no reply comes in time."""
        mid, fut = self._send_control_id(node, body)
        try:
            return fut.result(timeout=timeout_s)
        except FutureTimeout:
            raise TimeoutError(f"{node} did not answer {body.get('type')} in {timeout_s} s") from None
        finally:
            self._control.pop(mid, None)

    def status(self, node: str, timeout_s: float = 2.0) -> dict | None:
        """The node's status reply, None when it does not answer in time. A third-party
        (--bin) node is NEVER probed (Maelstrom sends it only init and the workload's requests;
        its libraries exit on a message type they have no handler for): None at once."""
        if not getattr(self, "in_house", True):
            return None
        try:
            return self.control(node, {"type": "status"}, timeout_s)
        except TimeoutError:
            return None

    def leader(self) -> str | None:
        """A node that says it leads (status `is_leader` or role leader/primary), else None
        (always None for --bin nodes: they are never probed)."""
        for n in self.nodes:
            st = self.status(n, 1.0)
            if st and (st.get("is_leader") or st.get("role") in ("leader", "primary")):
                return n
        return None
