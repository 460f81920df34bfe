"""Reports: fault intervals, timeline.html and the perf plots."""

import io
import os

from splitbrain.harness.report import Progress, fault_intervals, write_reports
from splitbrain.harness.report.timeline import TIMELINE_OPS_MAX, render_timeline
from splitbrain.history import Op

MS = 1_000_000


def _history():
    h, i = [], 0

    def add(t, p, typ, f, v=None, **kw):
        nonlocal i
        h.append(Op(i, t * MS, p, typ, f, v, **kw))
        i += 1

    add(0, 0, "invoke", "write", 1)
    add(5, "nemesis", "invoke", "start-partition", None)
    add(6, "nemesis", "info", "start-partition", {"n1": ["n2"]})
    add(10, 0, "ok", "write", 1, node="n1")
    add(11, 1, "invoke", "read", None)
    add(40, 1, "info", "read", None, error="timed-out")
    add(50, "nemesis", "invoke", "stop-partition", None)
    add(51, "nemesis", "info", "stop-partition", None)
    add(60, 2, "invoke", "cas", [1, 2])
    add(61, 2, "fail", "cas", [1, 2], error="precondition-failed")
    add(70, "nemesis", "invoke", "kill", None)
    add(71, "nemesis", "info", "kill", ["n3"])
    add(80, 3, "invoke", "read", None)
    return h


def test_fault_intervals_pair_and_leave_open_ones_to_the_end():
    iv = fault_intervals(_history())
    assert [(i.name, i.start_ns // MS, i.end_ns // MS) for i in iv] == [
        ("partition", 6, 51), ("kill", 71, 80)]


def test_write_reports_makes_every_file(tmp_path):
    paths = write_reports(str(tmp_path), _history(), {"system": "raft", "workload": "kv"})
    names = sorted(os.path.basename(p) for p in paths)
    assert names == ["latency.png", "rate.png", "timeline.html"]
    for p in paths:
        assert os.path.getsize(p) > 1000
    assert not (tmp_path / "report-errors.txt").exists()
    with open(tmp_path / "latency.png", "rb") as fh:
        assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


def test_timeline_shows_each_op_and_escapes_values():
    h = _history()
    h.append(Op(len(h), 90 * MS, 4, "invoke", "write", "</script><b>x"))
    page = render_timeline(h, "t")
    assert "</script><b>x" not in page  # a value cannot break out of the script
    assert page.count('"c": "ok"') == 1 and page.count('"c": "fail"') == 1
    assert page.count('"c": "info"') == 1 and page.count('"c": "open"') == 2
    assert "5 client operations" in page and "Showing the first" not in page


def test_timeline_says_when_it_draws_only_part():
    h = []
    for k in range(TIMELINE_OPS_MAX + 10):
        h.append(Op(2 * k, 2 * k, 0, "invoke", "read"))
        h.append(Op(2 * k + 1, 2 * k + 1, 0, "ok", "read", 1))
    page = render_timeline(h, "big")
    assert f"Showing the first {TIMELINE_OPS_MAX} of {TIMELINE_OPS_MAX + 10}" in page


def test_progress_counts_and_tracks_faults():
    out = io.StringIO()
    with Progress("t", stream=out) as p:
        for op in _history()[:7]:
            p.record(op)
        assert "ok 1" in p.line() and "info 1" in p.line() and "faults: partition" in p.line()
        for op in _history()[7:]:
            p.record(op)
        assert "faults: kill" in p.line()
    assert "ops 4" in out.getvalue().splitlines()[-1]
