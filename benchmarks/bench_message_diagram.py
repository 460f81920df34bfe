"""How big and how fast the message diagram (messages.html) is on big runs.

    python benchmarks/bench_message_diagram.py [--messages 200000 1000000] [--nodes 25]

For each size, writes a synthetic broadcast-like run (tests/synthetic_messages.write_big_run: 25
nodes, 10 clients, a partition) into a temporary directory and prints: the time to write
messages.html from messages.jsonl + history.jsonl (read, build, compress), its size (total and
per message, against the size of messages.jsonl), and, when headless Chromium is installed, the
time from navigation until the diagram is drawn (decompress, parse, index, first frame) and the
time of one frame of the whole run and at an operation in the middle of it. Prints figures,
asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from splitbrain.harness.report.messages import write_messages  # noqa: E402
from splitbrain.history.jsonl import read_jsonl  # noqa: E402
from cdp import Chromium, chromium_path  # noqa: E402
from synthetic_messages import write_big_run  # noqa: E402


def browser_figures(page: Path, op: int, profile: Path) -> str:
    """In headless Chromium (tests/cdp.py, real time): navigation to drawn, and the mean time of a
    frame (computed and rasterized: reading a pixel makes the canvas draw what it recorded) of
    the whole run (fit: drawn sampled) and zoomed at one operation."""
    if chromium_path() is None:
        return "no chromium: browser figures skipped"
    frame = """(() => { const t = performance.now();
        for (let k = 0; k < 5; k++) { draw(); ctx.getImageData(0, 0, 1, 1); }
        return [(performance.now() - t) / 5, +cv.dataset.visible, +cv.dataset.drawn]; })()"""
    with Chromium.start(profile) as browser:
        t = time.monotonic()
        p = browser.open(page.as_uri() + f"#op={op}")
        p.wait_for("document.body.dataset.ready", 600)
        load_s = time.monotonic() - t
        at_op = p.eval(frame)
        whole = p.eval("fit(), " + frame)
    return (f"browser: drawn {load_s:.2f} s after navigation; a frame of the whole run "
            f"{whole[0]:.0f} ms ({whole[1]} in view, {whole[2]} drawn), at an operation "
            f"{at_op[0]:.0f} ms ({at_op[2]} drawn)")


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
            rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            size, log_size = path.stat().st_size, (run / "messages.jsonl").stat().st_size
            mid = next(op for op in history[len(history) // 2:]
                       if op.type == "invoke" and op.process != "nemesis")
            print(f"{info['messages']} messages, {info['ops']} ops, {args.nodes} nodes: "
                  f"messages.html written in {wall:.2f} s ({cpu:.2f} s CPU, peak RSS {rss_mb:.0f} MB), "
                  f"{size / 1e6:.2f} MB = {size / info['messages']:.1f} B/message "
                  f"(messages.jsonl {log_size / 1e6:.1f} MB); "
                  + browser_figures(path, mid.index, Path(tmp) / "profile"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
