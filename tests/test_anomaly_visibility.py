"""An anomaly is visible where a person looks: where it happened (the serving node, the faults in
force) in results.json and on the console, the counterexample files listed, every operation it
names marked in the timeline (which opens at the first), a time axis and lanes per node, and
fault colours that are the same in every run and every report."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from click.testing import CliRunner

from splitbrain.checkers.result import Anomaly, Result
from splitbrain.harness.report.colors import FALLBACK, FAULT_COLORS, fault_color
from splitbrain.harness.report.context import OpIndex, annotate_anomalies, where_line
from splitbrain.harness.report.timeline import render_timeline
from splitbrain.history import Op

sys.path.insert(0, str(Path(__file__).parent))
from test_serve import BAD_READ, MS, _register_history, _test_json  # noqa: E402


def _ops_json(page: str) -> list[dict]:
    return json.loads(re.search(r"const OPS = (.*?);\n", page).group(1))


def test_where_names_the_serving_node_and_the_faults_in_force():
    h = _register_history()
    index = OpIndex(h)
    w = index.where([BAD_READ, 99])
    assert w["op"] == BAD_READ and w["completion"] == BAD_READ + 1 and w["node"] == "n2"
    assert [f["label"] for f in w["faults"]] == ["partition halves: n1 n2 | n3 n4 n5"]
    assert index.where([BAD_READ + 1])["op"] == BAD_READ          # by its completion too
    first = index.where([0])                                       # before the partition
    assert first["node"] == "n1" and first["faults"] == []
    assert index.where([4]) is None and index.where([]) is None    # a nemesis op; nothing
    assert where_line(w) == ("op 8 (read, process 1) served by n2 at 0.02 s; faults in force: "
                             "partition halves: n1 n2 | n3 n4 n5")
    assert where_line(first).endswith("served by n1 at 0.0 s; no fault in force")
    r = Result(valid=False, checker="compose", children={"x": Result(valid=False, anomalies=[
        Anomaly("a", "m", ops=[BAD_READ]), Anomaly("b", "m", ops=[0], details={"where": "own"}),
        Anomaly("c", "m")])})
    annotate_anomalies(r, h)
    a, b, c = r.children["x"].anomalies
    assert a.details["where"]["node"] == "n2" and b.details["where"] == "own"
    assert "where" not in c.details


def test_the_console_says_where_and_lists_the_counterexamples(tmp_path):
    from splitbrain.commands.analyze import command as analyze
    from splitbrain.history.jsonl import write_jsonl
    run = tmp_path / "run"
    run.mkdir()
    (run / "test.json").write_text(json.dumps(_test_json(out_dir=str(run))))
    write_jsonl(str(run / "history.jsonl"), _register_history())
    res = CliRunner().invoke(analyze, [str(run)], standalone_mode=False)
    assert res.return_value == 1, res.output
    assert ("      where: op 8 (read, process 1) served by n2 at 0.02 s; faults in force: "
            "partition halves: n1 n2 | n3 n4 n5\n") in res.output
    html = run / "linearizability" / "history.html"
    assert f"counterexamples (1 file):\n  {html}\n" in res.output and html.is_file()
    results = json.loads((run / "results.json").read_text())
    assert results["anomalies"][0]["details"]["where"]["node"] == "n2"


def test_the_summary_lists_every_counterexample_file_of_every_checker(capsys):
    from splitbrain.commands.test import COUNTEREXAMPLES_SHOWN_MAX, print_summary
    from splitbrain.harness.store import RunSummary
    files = [f"/s/run/linearizability/k{i}.html" for i in range(COUNTEREXAMPLES_SHOWN_MAX + 3)]
    results = {"valid": False, "files": [], "children": {
        "linearizable": {"valid": False, "files": files[:-1]},
        "txn": {"valid": False, "files": [files[-1], files[0]]}}}
    print_summary(RunSummary(valid=False, results=results, test={}, replay="r", run_dir=None))
    out = capsys.readouterr().out
    assert f"counterexamples ({len(files)} files):" in out
    shown = [line.strip() for line in out.splitlines() if line.startswith("  /s/run/")]
    assert shown == files[:COUNTEREXAMPLES_SHOWN_MAX]
    assert "... 3 more (results.json lists them all)" in out


def test_the_timeline_marks_every_named_op_opens_at_the_first_and_has_axis_and_node_lanes():
    h = _register_history()
    anomalies = [{"name": "nonlinearizable", "message": "m", "ops": [BAD_READ, BAD_READ + 1, 0]},
                 {"name": "other", "message": "<b>x</b>", "ops": [15]}]
    page = render_timeline(h, "t", anomalies=anomalies)
    ops = _ops_json(page)
    assert sorted(o["i"] for o in ops if o["a"]) == [0, BAD_READ, 14]   # 15 completes 14
    assert "const FIRST_ANOMALY = 8;" in page
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert page.count('class="oplink" href="#op=') == 4
    lanes = json.loads(re.search(r"const LANES = (.*?);\n", page).group(1))
    assert lanes == {"process": ["0", "1", "2"], "node": ["n1", "n2", "n3", "n4"]}
    bad = next(o for o in ops if o["i"] == BAD_READ)
    assert lanes["node"][bad["n"]] == "n2" and lanes["process"][bad["p"]] == "1"
    ticks = re.findall(r'class="tick" style="left:(\d+)px">([^<]*)<', page)
    assert [t for _, t in ticks][:3] == ["0.00 s", "0.01 s", "0.02 s"] and len(ticks) >= 7
    xs = [int(x) for x, _ in ticks]
    assert xs == sorted(xs) and len(set(b - a for a, b in zip(xs, xs[1:]))) <= 2   # evenly
    # no anomaly: nothing marked, nothing opened
    plain = render_timeline(h, "t")
    assert "const FIRST_ANOMALY = -1;" in plain and not any(o["a"] for o in _ops_json(plain))
    assert 'id="anomalies"' not in plain


def _faults_history(names: list[str]) -> list[Op]:
    opener = {"partition": ("start-partition", "stop-partition"), "kill": ("kill", "restart"),
              "pause": ("pause", "resume"), "new-thing": ("start-new-thing", "stop-new-thing")}
    h: list[Op] = [Op(0, 0, 0, "invoke", "read", None), Op(1, MS, 0, "ok", "read", 1)]
    t = 2
    for n in names:
        for f in opener[n]:
            h.append(Op(len(h), t * MS, "nemesis", "invoke", f, None))
            h.append(Op(len(h), (t + 1) * MS, "nemesis", "info", f, ["n1"]))
            t += 2
    return h


def test_fault_colours_are_fixed_per_fault_type_across_runs(tmp_path):
    assert len(set(FAULT_COLORS.values())) == len(FAULT_COLORS)
    assert fault_color("new-thing") == fault_color("new-thing") in FALLBACK

    def legend(names):
        page = render_timeline(_faults_history(names), "t")
        return dict((n, c) for c, n in re.findall(
            r'<span style="background:(#[0-9a-f]{6})">([a-z-]+)</span>', page))
    one, two = legend(["pause"]), legend(["kill", "pause", "partition", "new-thing"])
    assert one["pause"] == two["pause"] == FAULT_COLORS["pause"]
    assert two["kill"] == FAULT_COLORS["kill"] and two["new-thing"] == fault_color("new-thing")
    # the plots and the message diagram use the same table
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex
    from splitbrain.harness.report.intervals import fault_intervals
    from splitbrain.harness.report.plots import _shade
    for names in (["pause"], ["kill", "pause"]):
        fig, ax = plt.subplots()
        _shade(ax, fault_intervals(_faults_history(names)))
        got = {p.get_label(): to_hex(p.get_facecolor(), keep_alpha=False) for p in ax.patches}
        plt.close(fig)
        assert got == {n: FAULT_COLORS[n] for n in names}
    from splitbrain.harness.report.messages import build_diagram_data, read_message_log
    (tmp_path / "messages.jsonl").write_text("")
    data = build_diagram_data(read_message_log(tmp_path / "messages.jsonl"),
                              _faults_history(["kill", "pause"]), {"node_ids": ["n1"]})
    assert [(f["name"], f["color"]) for f in data["faults"]] == [
        ("kill", FAULT_COLORS["kill"]), ("pause", FAULT_COLORS["pause"])]
