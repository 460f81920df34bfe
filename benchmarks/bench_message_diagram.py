"""How big and how fast the message diagram (messages.html) is on big runs.

    python benchmarks/bench_message_diagram.py [--messages 200000 1000000] [--nodes 25]

For each size, writes a synthetic broadcast-like run (tests/synthetic_messages.write_big_run: 25
nodes, 10 clients, a partition) into a temporary directory and prints: the time to write
messages.html from messages.jsonl + history.jsonl (read, build, compress), its size (total and
per message, against the size of messages.jsonl), and, when headless Chromium is installed, the
time from page start until the diagram is drawn (decompress, parse, index, first frame) and the
time of one frame at an operation in the middle of the run. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from splitbrain.harness.report.messages import write_messages  # noqa: E402
from splitbrain.history.jsonl import read_jsonl  # noqa: E402
from synthetic_messages import write_big_run  # noqa: E402


def browser_figures(page: Path, op: int, profile: Path) -> str:
    """Page start to drawn (performance.now in headless Chromium) and the mean time of a frame
    (computed and rasterized; the page's #bench=N), for the whole run (fit: drawn sampled) and
    zoomed at one operation."""
    whole = _browser(page.as_uri() + "#bench=10", profile)
    at_op = _browser(page.as_uri() + f"#op={op}&bench=10", profile)
    return f"browser, whole run: {whole}; at an operation: {at_op}"


def _browser(url: str, profile: Path) -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        return "no chromium: browser figures skipped"
    proc = subprocess.Popen([exe, "--headless=new", "--no-sandbox", "--disable-gpu",
                             "--window-size=1400,900", f"--user-data-dir={profile}",
                             "--virtual-time-budget=60000", "--dump-dom", url],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=600)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
    dom = out.decode("utf-8", "replace")
    load = re.search(r'data-load-ms="(\d+)"', dom)
    frame = re.search(r'data-frame-ms="([\d.]+)"', dom)
    if load is None or frame is None:
        return "the page did not finish loading in the browser"
    drawn = re.search(r'data-drawn="(\d+)"', dom)
    return f"drawn {int(load.group(1)) / 1000:.2f} s after page start, a frame of " \
           f"{drawn.group(1) if drawn else '?'} messages {frame.group(1)} ms"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, nargs="+", default=[200_000])
    ap.add_argument("--nodes", type=int, default=25)
    args = ap.parse_args()
    for n in args.messages:
        with tempfile.TemporaryDirectory(prefix="splitbrain-bench-diagram-") as tmp:
            run = Path(tmp) / "run"
            info = write_big_run(str(run), n_messages=n, nodes=args.nodes)
            history = read_jsonl(str(run / "history.jsonl"))
            cpu, t = time.process_time(), time.monotonic()
            path = Path(write_messages(str(run), history, info["test"], "bench"))
            wall, cpu = time.monotonic() - t, time.process_time() - cpu
            size, log_size = path.stat().st_size, (run / "messages.jsonl").stat().st_size
            mid = next(op for op in history[len(history) // 2:]
                       if op.type == "invoke" and op.process != "nemesis")
            print(f"{info['messages']} messages, {info['ops']} ops, {args.nodes} nodes: "
                  f"messages.html written in {wall:.2f} s ({cpu:.2f} s CPU), "
                  f"{size / 1e6:.2f} MB = {size / info['messages']:.1f} B/message "
                  f"(messages.jsonl {log_size / 1e6:.1f} MB); "
                  + browser_figures(path, mid.index, Path(tmp) / "profile"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
