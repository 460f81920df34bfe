"""Clean teardown: SIGINT (Ctrl-C) or SIGTERM during a run leaves no node process behind.

Node processes are found by scanning /proc for command lines that mention the run's unique store
directory (no psutil needed).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import default_sigint


def _pids_mentioning(marker: str) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{entry}/stat").read_text().split(") ", 1)[1][:1]
        except OSError:
            continue
        if marker in cmd and "--data" in cmd and state != "Z":
            out.append(int(entry))
    return out


def _start_run(store: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "splitbrain.cli", "test", "--system", "raft", "--workload",
         "append-log", "--nodes", "3", "--time-limit", "60", "--nemesis", "pause,kill",
         "--seed", "1", "--store", str(store)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)


def _wait_for_nodes(marker: str, n: int, p: subprocess.Popen, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(_pids_mentioning(marker)) >= n:
            return
        assert p.poll() is None, p.communicate()
        time.sleep(0.1)
    raise AssertionError("the nodes did not start")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_a_run_leaves_no_node_process(tmp_path, sig):
    store = tmp_path / f"store-{sig.name}"
    marker = str(store)
    p = _start_run(store)
    try:
        _wait_for_nodes(marker, 3, p)
        time.sleep(1.5)          # clients and (maybe) a fault are in flight
        p.send_signal(sig)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 130, (p.returncode, err[-2000:])
        assert "Traceback" not in err and "interrupted" in err
        deadline = time.monotonic() + 5
        while _pids_mentioning(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _pids_mentioning(marker) == []
        # the history prefix recorded before the interrupt is in the store
        hist = next(store.glob("*/*/history.jsonl"))
        assert hist.read_text().count("\n") > 10
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for pid in _pids_mentioning(marker):
            os.kill(pid, signal.SIGKILL)
