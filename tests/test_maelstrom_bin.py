"""Any Maelstrom node: a lin-kv node written in JavaScript (tests/nodes/linkv.js) end to end."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path


from conftest import require

NODES = Path(__file__).parent / "nodes"


def _run(tmp_path, bin_name, *extra):
    return subprocess.run(
        [sys.executable, "-m", "splitbrain.cli", "test", "--bin", str(NODES / bin_name),
         "--workload", "lin-kv", "--nodes", "3", "--time-limit", "3", "--rate", "200",
         "--seed", "5", "--store", str(tmp_path / "store"), "--json",
         "--opt", "harness.reports=false", "--opt", "harness.recovery_s=0.5", *extra],
        capture_output=True, text=True, timeout=120)


def test_js_lin_kv_node_is_valid_under_partitions(tmp_path):
    require(shutil.which("node") is not None, "node (JavaScript)")
    p = _run(tmp_path, "linkv.js", "--nemesis", "partition")
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert out["valid"] is True
    assert out["results"]["children"]["linearizable"]["valid"] is True
    run = Path(out["run_dir"])
    hist = (run / "history.jsonl").read_text().splitlines()
    assert len(hist) > 300
    assert any('"start-partition"' in line for line in hist)
    assert (run / "nodes" / "n2" / "node.log").read_text().startswith("init n2")


def test_js_lin_kv_node_with_stale_reads_is_invalid(tmp_path):
    require(shutil.which("node") is not None, "node (JavaScript)")
    p = _run(tmp_path, "linkv-stale.sh", "--nemesis", "none")
    assert p.returncode == 1, p.stdout[-2000:] + p.stderr[-2000:]
    out = json.loads(p.stdout)
    assert out["results"]["children"]["linearizable"]["valid"] is False


def test_bin_that_is_not_executable_is_a_usage_error(tmp_path):
    p = subprocess.run([sys.executable, "-m", "splitbrain.cli", "test", "--bin",
                        str(NODES / "tinycore.py"), "--workload", "lin-kv",
                        "--store", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "not an executable" in p.stderr
    assert "Traceback" not in p.stderr
