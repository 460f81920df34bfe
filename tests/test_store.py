"""The store layout and the Recorder's Jepsen rules."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from splitbrain.checkers.result import Result
from splitbrain.harness.store import Recorder, RunStore
from splitbrain.history import HistoryError, read_jsonl


def test_layout_latest_and_files(tmp_path):
    now = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc)
    run = RunStore.create(tmp_path, "raft-kv", now=now)
    assert run.run_dir == tmp_path / "raft-kv" / "20260102T030405.678Z"
    run2 = RunStore.create(tmp_path, "raft-kv", now=now)
    assert run2.run_dir.name == "20260102T030405.678Z-1"
    assert os.path.realpath(tmp_path / "latest") == os.path.realpath(run2.run_dir)
    assert os.path.realpath(tmp_path / "raft-kv" / "latest") == os.path.realpath(run2.run_dir)
    run2.write_test({"seed": 7, "nodes": ["n1"], "bugs": {"b"}})
    test = json.loads((run2.run_dir / "test.json").read_text())
    assert test["seed"] == 7 and test["bugs"] == ["b"] and "splitbrain" in test["versions"]
    with run2.recorder() as rec:
        rec.invoke(0, "write", 1, time_ns=5)
        # Flushed as it happens: readable before the recorder closes.
        assert len(read_jsonl(str(run2.history_path))) == 1
        rec.complete(0, "ok", 1, time_ns=9, node="n1")
    ops = read_jsonl(str(run2.history_path))
    assert [(o.index, o.type, o.node) for o in ops] == [(0, "invoke", None), (1, "ok", "n1")]
    run2.write_results(Result(valid=True, checker="x"))
    assert json.loads((run2.run_dir / "results.json").read_text())["valid"] is True
    run2.log("hello")
    run2.finish()
    assert "hello" in (run2.run_dir / "splitbrain.log").read_text()
    assert run2.node_dir("n1").is_dir()


def test_odd_test_names_stay_inside_the_store(tmp_path):
    run = RunStore.create(tmp_path, "../../etc/passwd")
    assert tmp_path in run.run_dir.parents
    run.finish()


def test_recorder_enforces_jepsen_process_rules():
    rec = Recorder()
    rec.invoke(0, "read", time_ns=0)
    with pytest.raises(HistoryError, match="outstanding"):
        rec.invoke(0, "read", time_ns=1)
    rec.complete(0, "info", time_ns=2, error="timed-out")
    with pytest.raises(HistoryError, match="after an info"):
        rec.invoke(0, "read", time_ns=3)
    with pytest.raises(HistoryError, match="no outstanding"):
        rec.complete(1, "ok", time_ns=3)
    # The nemesis may go on after its info completions.
    rec.invoke("nemesis", "kill", ["n1"], time_ns=4)
    rec.complete("nemesis", "info", ["n1"], time_ns=5)
    rec.invoke("nemesis", "restart", ["n1"], time_ns=6)
    assert [o.index for o in rec.ops] == list(range(5))
