"""Node processes that each lead a process group: signals go to the whole group.

Shared by the backends whose nodes are local child processes reached over TCP (netns, and the
databases' loopback variant). Each node is started with `start_new_session=True`, so a node that
forks (a JVM, a shell wrapper, a `--bin` program's children) is signalled, paused and killed as a
whole, and nothing it started outlives it (a child that calls setsid itself leaves the group and
is beyond reach: documented in backends/local.py).
"""

from __future__ import annotations

import os
import signal
import subprocess

KILL_WAIT_S = 10.0      # how long a SIGKILLed node may take to be reaped before it is an error


class ProcessGroupNodes:
    """The process operations of TcpClusterBackend for `self.procs`: node -> subprocess.Popen
    (the leader of the node's process group). Mix in before TcpClusterBackend."""

    procs: dict[str, subprocess.Popen]

    def _signal(self, n: str, sig: int) -> None:
        p = self.procs.get(n)
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass

    def _kill_process(self, n: str) -> None:
        p = self.procs.get(n)
        if p is None:
            return
        self._signal(n, signal.SIGKILL)
        try:
            p.wait(timeout=KILL_WAIT_S)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{n}: still alive {KILL_WAIT_S} s after SIGKILL") from None

    def _pause_process(self, n: str) -> None:
        self._signal(n, signal.SIGSTOP)

    def _resume_process(self, n: str) -> None:
        self._signal(n, signal.SIGCONT)

    def _process_alive(self, n: str) -> bool:
        p = self.procs.get(n)
        return p is not None and p.poll() is None
