"""The web UI over a big store: how long the runs list takes to answer, the first time (every
run's test.json and results.json read) and then (rows cached by their files' mtimes), and a run
page.

    python benchmarks/bench_serve.py [--runs 5000]

Builds a store of RUNS synthetic runs (test.json, results.json with a few anomalies, an empty
history) in a temporary directory, serves it on 127.0.0.1 (port 0) and times real HTTP requests.
Prints wall and CPU time (this process: the server runs in a thread of it) and the load average.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from splitbrain.serve import make_server  # noqa: E402


def build(store: Path, n: int) -> None:
    for i in range(n):
        d = store / f"sys{i % 7}-kv" / f"2026010{1 + i % 9}T{i // 3600 % 24:02d}{i // 60 % 60:02d}{i % 60:02d}.{i % 1000:03d}Z"
        d.mkdir(parents=True)
        valid = i % 5 != 0
        (d / "test.json").write_text(json.dumps({
            "name": d.parent.name, "backend": "sim", "system": f"sys{i % 7}", "workload": "kv",
            "nemesis": ["partition", "kill"], "seed": i, "bugs": [], "phase": "done",
            "interrupted": False, "valid": valid}))
        anomalies = [] if valid else [{"name": "nonlinearizable", "message": "m" * 500,
                                       "ops": list(range(20)), "details": {}}] * 3
        (d / "results.json").write_text(json.dumps({
            "valid": valid, "anomalies": anomalies,
            "anomaly_names": sorted({a["name"] for a in anomalies}),
            "children": {"linearizable": {"valid": valid, "anomalies": anomalies}}}))
        (d / "history.jsonl").write_text("")


def timed(port: int, path: str) -> tuple[float, float, int]:
    w0, c0 = time.perf_counter(), time.process_time()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    assert r.status == 200, (path, r.status)
    return time.perf_counter() - w0, time.process_time() - c0, len(body)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        store = Path(tmp) / "store"
        t = time.perf_counter()
        build(store, args.runs)
        print(f"built {args.runs} runs in {time.perf_counter() - t:.1f} s")
        server = make_server(store, "127.0.0.1", 0)
        th = threading.Thread(target=server.serve_forever, daemon=True)
        th.start()
        port = server.server_address[1]
        try:
            for label in ("runs list, first", "runs list, cached"):
                w, c, size = timed(port, "/")
                print(f"{label:<20} wall {w:6.2f} s  cpu {c:6.2f} s  {size / 1e6:5.1f} MB")
            rel = next(p for p in store.glob("*/*") if p.is_dir()).relative_to(store).as_posix()
            w, c, size = timed(port, f"/run/{rel}")
            print(f"{'a run page':<20} wall {w:6.2f} s  cpu {c:6.2f} s  {size / 1e3:5.1f} kB")
        finally:
            server.shutdown()
            server.server_close()
        print(f"load average: {open('/proc/loadavg').read().strip()}")


if __name__ == "__main__":
    main()
