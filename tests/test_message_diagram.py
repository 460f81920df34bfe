"""The message diagram (messages.html): the data it embeds, its bounds, its wiring into the
reports, analyze and the summary, its size and time on a big run, and the page itself in headless
Chromium (skipped outside CI when no Chromium is installed; CI installs it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from splitbrain.harness.report import write_reports
from splitbrain.harness.report.messages import (BODY_CHARS_MAX, FATES, build_diagram_data,
                                                data_json, diagram_link, extract_data,
                                                read_message_log, render_messages,
                                                write_messages)


def _data(*args, **kw) -> dict:
    """build_diagram_data as the page sees it (JSON)."""
    return data_json(build_diagram_data(*args, **kw))
from splitbrain.harness.report.timeline import render_timeline
from splitbrain.history.jsonl import read_jsonl
from splitbrain.history.values import json_equal

sys.path.insert(0, str(Path(__file__).parent))
from conftest import require  # noqa: E402
from cdp import Chromium, chromium_path  # noqa: E402
from synthetic_messages import make_run, write_big_run  # noqa: E402

BIG_MESSAGES = 200_000
BIG_RENDER_S_MAX = 90.0          # generous: the test machine is shared and loaded
BIG_BYTES_PER_MESSAGE_MAX = 25   # measured about 12 (gzip'd columns + bodies, base64)


def _page(run_dir) -> tuple[str, dict]:
    history = read_jsonl(str(Path(run_dir) / "history.jsonl"))
    test = json.loads((Path(run_dir) / "test.json").read_text())
    path = write_messages(str(run_dir), history, test, "t")
    assert path == str(Path(run_dir) / "messages.html")
    page = Path(path).read_text(encoding="utf-8")
    return page, extract_data(page)


def _rows(data: dict) -> list[dict]:
    m = data["msgs"]
    return [{k: m[k][i] for k in m} for i in range(len(m["id"]))]


def test_page_embeds_every_message_with_its_lanes_times_fate_and_body(tmp_path):
    run = make_run(str(tmp_path), ops=30)
    page, data = _page(tmp_path)
    assert "<script src" not in page and "http://" not in page and "https://" not in page
    msgs = run["messages"]
    rows = _rows(data)
    assert len(rows) == len(msgs) == data["counts"]["messages"]
    lanes = [l[0] for l in data["lanes"]]
    assert lanes == ["c0", "c1", "c2", "c3", "c4", "n1", "n2", "n3", "n4", "n5", "lin-kv", "?"]
    by_id = {m["id"]: m for m in msgs}
    for row, r in enumerate(rows):
        m = by_id[r["id"]]
        assert lanes[r["s"]] == m["src"]
        if m["fate"] == "unknown-dest":
            assert lanes[r["d"]] == "?" and data["xdest"][str(row)] == m["dest"]
        else:
            assert lanes[r["d"]] == m["dest"]
        assert FATES[r["f"]] == m["fate"]
        assert r["t0"] == m["sent"] // 1000
        assert r["t1"] == (m["recv"] // 1000 if m["fate"] == "delivered" else -1)
        assert data["types"][r["y"]] == m["body"]["type"]
        assert r["o"] == m.get("op", -1)
        assert r["c"] == (1 if m.get("control") else 0)
        assert json_equal(data["bodies"][row], m["body"])
    assert [r["t0"] for r in rows] == sorted(r["t0"] for r in rows)
    for fate in FATES:
        assert data["counts"]["fates"][fate] == sum(1 for m in msgs if m["fate"] == fate) > 0


def test_operations_are_bars_on_their_client_lane_linked_to_their_messages(tmp_path):
    run = make_run(str(tmp_path), ops=30)
    _, data = _page(tmp_path)
    ops = data["ops"]
    lanes = [l[0] for l in data["lanes"]]
    history = run["history"]
    invokes = [o for o in history if o["process"] != "nemesis" and o["type"] == "invoke"]
    assert ops["i"] == [o["index"] for o in invokes]
    kinds = ["ok", "fail", "info", "open"]
    for k, inv in enumerate(invokes):
        comp = next((o for o in history[inv["index"] + 1:] if o["process"] == inv["process"]), None)
        assert lanes[ops["l"][k]] == f"c{inv['process'] + 1}"
        assert ops["t0"][k] == inv["time"] // 1000
        assert kinds[ops["k"][k]] == (comp["type"] if comp else "open")
        assert ops["j"][k] == (comp["index"] if comp else -1)
        # every message the log ties to this op is in the page under the same op id
        tied = [m["id"] for m in run["messages"] if m.get("op") == inv["index"]]
        assert tied and sorted(i for i, o in zip(data["msgs"]["id"], data["msgs"]["o"])
                               if o == inv["index"]) == sorted(tied)
    assert kinds[ops["k"][-1]] == "open" and ops["t1"][-1] == -1


def test_fault_intervals_carry_their_grudge_and_targets(tmp_path):
    run = make_run(str(tmp_path), ops=10)
    _, data = _page(tmp_path)
    lanes = [l[0] for l in data["lanes"]]
    part, kill = data["faults"]
    assert part["name"] == "partition" and kill["name"] == "kill"
    assert part["t0"] < part["t1"] <= kill["t0"] < kill["t1"]
    sides: dict[int, set] = {}
    for lane, group in part["targets"]:
        sides.setdefault(group, set()).add(lanes[lane])
    assert sorted(map(sorted, sides.values())) == [["n1", "n2"], ["n3", "n4", "n5"]]
    assert part["label"] == "partition halves: n1 n2 | n3 n4 n5"
    assert [lanes[l] for l, _ in kill["targets"]] == ["n3"] and kill["label"] == "kill n3"
    assert data["nemesis"] == [[o["index"], o["time"] // 1000] for o in run["history"]
                               if o["process"] == "nemesis"] and len(data["nemesis"]) == 8


def test_fault_captions_name_what_they_did(tmp_path):
    from splitbrain.history import Op
    h = [Op(0, 1_000, "nemesis", "invoke", "start-partition", {"shape": "majorities-ring"}),
         Op(1, 2_000, "nemesis", "info", "start-partition", {"shape": "majorities-ring",
                                                               "grudge": {}}),
         Op(2, 3_000, "nemesis", "invoke", "start-loss", {"loss": 0.3}),
         Op(3, 4_000, "nemesis", "info", "start-loss", {"loss": 0.3}),
         Op(4, 5_000, "nemesis", "invoke", "pause", None),
         Op(5, 6_000, "nemesis", "info", "pause", {"nodes": ["n2", "n1"]})]
    data = _data(read_message_log(_empty(tmp_path)), h, {"node_ids": ["n1", "n2"]})
    assert [f["label"] for f in data["faults"]] == [
        "partition majorities-ring: nobody cut off", 'loss {"loss": 0.3}', "pause n2 n1"]
    assert [f["targets"] for f in data["faults"]] == [[], [], [[1, 0], [0, 0]]]


def _empty(tmp_path) -> Path:
    (tmp_path / "messages.jsonl").write_text("")
    return tmp_path / "messages.jsonl"


def test_client_lanes_are_per_worker_and_the_control_client_has_its_own(tmp_path):
    lines = [{"id": 0, "src": "c0", "dest": "n1", "body": {"type": "init"}, "sent": 0, "recv": 1000,
              "fate": "delivered", "control": True}]
    for k, c in enumerate(["c1", "c4", "c7", "c2"]):      # 3 workers: c1, c4, c7 are worker 0
        lines.append({"id": k + 1, "src": c, "dest": "n1", "body": {"type": "read", "msg_id": 1},
                      "sent": 10_000 * (k + 1), "recv": 10_000 * (k + 1) + 500,
                      "fate": "delivered"})
    (tmp_path / "messages.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    log = read_message_log(tmp_path / "messages.jsonl")
    data = _data(log, [], {"concurrency": 3, "nodes": 2, "node_ids": ["n1", "n2"]})
    assert [l[0] for l in data["lanes"]] == ["c0", "c1", "c2", "n1", "n2"]
    assert data["lanes"][1][2] == "client ids c1, c4, c7"
    assert [data["lanes"][s][0] for s in data["msgs"]["s"]] == ["c0", "c1", "c1", "c1", "c2"]
    # without the concurrency every client id is a lane
    data = _data(log, [], {})
    assert [l[0] for l in data["lanes"]] == ["c0", "c1", "c2", "c4", "c7", "n1"]


def test_the_log_as_the_harness_writes_it_out_of_order_and_before_the_clock(tmp_path):
    """Lines are written when a message's fate is known (not in send order); the init handshake
    happens before the history's clock starts (negative times); what a node wrote is drawn as
    it is, even a dest that is not a string or a body that is not an object."""
    lines = [
        {"id": 2, "src": "c1", "dest": "n1", "body": {"type": "read", "msg_id": 1},
         "sent": 5_000_000,
         "recv": 5_100_000, "fate": "delivered", "op": 0},
        {"id": 0, "src": "c0", "dest": "n1", "body": {"type": "init"}, "sent": -3_000_000,
         "recv": -2_900_000, "fate": "delivered", "control": True},
        {"id": 1, "src": "n1", "dest": "c0", "body": {"type": "init_ok"}, "sent": -2_800_000,
         "recv": -2_700_000, "fate": "delivered", "control": True},
        {"id": 3, "src": "n1", "dest": 7, "body": [1, 2], "sent": 5_200_000, "recv": None,
         "fate": "unknown-dest"},
        {"id": 4, "src": "n1", "dest": "c1", "body": {"type": "read_ok", "in_reply_to": 1},
         "sent": 5_300_000, "recv": 5_400_000, "fate": "delivered", "op": 0, "x-new-field": 1},
    ]
    (tmp_path / "messages.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    from splitbrain.history import Op
    history = [Op(0, 4_000_000, 0, "invoke", "read", None), Op(1, 6_000_000, 0, "ok", "read", 3)]
    data = _data(read_message_log(tmp_path / "messages.jsonl"), history,
                 {"concurrency": 1, "nodes": ["n1"]})
    assert data["msgs"]["id"] == [0, 1, 2, 3, 4] and not data["notes"]
    assert data["start"] == -3000 and data["msgs"]["t0"][0] == -3000 and data["end"] == 6000
    assert data["xdest"] == {"3": "7"} and data["types"][data["msgs"]["y"][3]] == "(not an object)"
    assert data["bodies"][3] == [1, 2]


def test_unreadable_lines_and_the_harness_cut_are_said_never_silent(tmp_path):
    make_run(str(tmp_path), ops=5, extra_lines=[
        "{not json", json.dumps({"src": "n1", "dest": "n2", "sent": 5, "fate": "teleported"}),
        json.dumps({"src": "n1", "dest": "n2", "sent": 5, "fate": "delivered"}),
        json.dumps({"truncated": True, "logged": 12345})])
    page, data = _page(tmp_path)
    notes = " ".join(data["notes"])
    assert "3 unreadable lines of messages.jsonl skipped" in notes
    assert "line " in notes and "not JSON" in notes and "'fate' must be one of" in notes
    assert "a delivered message needs 'recv'" in notes
    assert "stopped logging messages after 12345" in notes
    assert "3 unreadable lines" in page and "12345" in page     # in the page's header too


def test_the_reader_keeps_at_most_its_limit_and_counts_the_rest(tmp_path):
    make_run(str(tmp_path), ops=5)
    log = read_message_log(tmp_path / "messages.jsonl", limit=10)
    assert len(log) == 10 and log.cut > 0
    data = _data(log, [], {})
    assert any(f"Only the first 10 messages are drawn" in n for n in data["notes"])


def test_long_bodies_are_shortened_and_no_body_can_end_the_script(tmp_path):
    evil = "</script><script>alert(1)</script>"
    lines = [{"id": 0, "src": "n1", "dest": "n2", "sent": 0, "recv": 10, "fate": "delivered",
              "body": {"type": "gossip", "messages": list(range(3000))}},
             {"id": 1, "src": "n1", "dest": "n2", "sent": 20, "recv": 30, "fate": "delivered",
              "body": {"type": evil, "value": evil}}]
    (tmp_path / "messages.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    (tmp_path / "history.jsonl").write_text("")
    (tmp_path / "test.json").write_text("{}")
    page, data = _page(tmp_path)
    assert evil not in page and "alert(1)" not in page
    big = data["bodies"][0]
    assert big["type"] == "gossip" and len(big["head"]) == BODY_CHARS_MAX
    assert "whole body is in messages.jsonl" in big["(shortened)"]
    assert data["bodies"][1] == {"type": evil, "value": evil} and evil in data["types"]


def test_reports_write_the_diagram_only_with_a_message_log_and_link_the_timeline(tmp_path):
    run = make_run(str(tmp_path / "with"), ops=8)
    history = read_jsonl(str(tmp_path / "with" / "history.jsonl"))
    paths = write_reports(str(tmp_path / "with"), history, run["test"])
    assert sorted(os.path.basename(p) for p in paths) == [
        "latency.png", "messages.html", "rate.png", "timeline.html"]
    assert not (tmp_path / "with" / "report-errors.txt").exists()
    timeline = (tmp_path / "with" / "timeline.html").read_text()
    assert 'href="messages.html"' in timeline and "'messages.html#op=' + OPS[i].i" in timeline
    inv = next(o for o in run["history"] if o["type"] == "invoke" and o["process"] != "nemesis")
    assert f'"i": {inv["index"]}' in timeline
    os.makedirs(tmp_path / "without")
    paths = write_reports(str(tmp_path / "without"), history, run["test"])
    assert "messages.html" not in [os.path.basename(p) for p in paths]
    assert "messages.html" not in render_timeline(history, "t")


def test_the_summary_links_an_anomaly_to_its_operation_in_the_diagram(tmp_path, capsys):
    from splitbrain.commands.test import print_summary
    from splitbrain.harness.store import RunSummary
    run = make_run(str(tmp_path), ops=8)
    inv = next(o for o in run["history"] if o["type"] == "invoke" and o["process"] != "nemesis")
    results = {"valid": False, "anomalies": [{"name": "stale-read", "message": "a stale read",
                                              "ops": [inv["index"], 99]}],
               "children": {"linear": {"valid": False, "anomalies": [
                   {"name": "stale-read", "message": "a stale read", "ops": [inv["index"]]}]}}}
    (tmp_path / "results.json").write_text(json.dumps(results))
    _, data = _page(tmp_path)
    assert data["anomalies"] == [{"name": "stale-read", "message": "a stale read",
                                  "ops": [inv["index"], 99]}]
    link = diagram_link(str(tmp_path), [inv["index"]])
    assert link == (tmp_path / "messages.html").resolve().as_uri() + f"#op={inv['index']}"
    assert diagram_link(str(tmp_path), []) is None and diagram_link(None, [1]) is None
    print_summary(RunSummary(valid=False, results=results, test=run["test"], replay="x",
                             run_dir=str(tmp_path), history_ops=len(run["history"]), notes=[]))
    out = capsys.readouterr().out
    assert f"messages: {link}" in out
    (tmp_path / "messages.html").unlink()
    assert diagram_link(str(tmp_path), [inv["index"]]) is None


def test_analyze_regenerates_the_diagram(tmp_path):
    from splitbrain.commands.analyze import command
    run = make_run(str(tmp_path), ops=8)
    (tmp_path / "test.json").write_text(json.dumps(dict(run["test"], workload="kv")))
    assert not (tmp_path / "messages.html").exists()
    res = CliRunner().invoke(command, [str(tmp_path)])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.output
    data = extract_data((tmp_path / "messages.html").read_text())
    assert data["counts"]["messages"] == len(run["messages"])
    assert (tmp_path / "timeline.html").exists()
    os.remove(tmp_path / "messages.html")
    CliRunner().invoke(command, [str(tmp_path), "--no-write"])
    assert not (tmp_path / "messages.html").exists()


@pytest.fixture(scope="module")
def big_run(tmp_path_factory):
    """200k messages, 25 nodes, 10 clients; the page written once, with its figures."""
    d = tmp_path_factory.mktemp("big")
    info = write_big_run(str(d), n_messages=BIG_MESSAGES)
    history = read_jsonl(str(d / "history.jsonl"))
    t = time.monotonic()
    path = write_messages(str(d), history, info["test"], "big")
    info.update(dir=d, path=path, render_s=time.monotonic() - t, history=history,
                bytes=os.path.getsize(path), log_bytes=os.path.getsize(d / "messages.jsonl"))
    return info


def test_a_big_run_renders_in_bounded_time_and_size(big_run):
    n = big_run["messages"]
    print(f"\n{n} messages, {big_run['ops']} ops: messages.html {big_run['bytes'] / 1e6:.1f} MB "
          f"({big_run['bytes'] / n:.1f} B/message; messages.jsonl {big_run['log_bytes'] / 1e6:.1f}"
          f" MB) written in {big_run['render_s']:.1f} s")
    assert big_run["render_s"] < BIG_RENDER_S_MAX
    assert big_run["bytes"] < BIG_BYTES_PER_MESSAGE_MAX * n
    data = extract_data(Path(big_run["path"]).read_text())
    assert data["counts"]["messages"] == n == BIG_MESSAGES and not data["notes"]
    assert len(data["lanes"]) == 10 + 25 and len(data["ops"]["i"]) == big_run["ops"]
    assert data["counts"]["fates"]["dropped"] > 0


def test_the_page_script_parses(tmp_path):
    """A syntax error would leave the page blank: check the script with node (cheap)."""
    require(shutil.which("node") is not None, "node (JavaScript)")
    page = render_messages(read_message_log(_empty(tmp_path)), [], {}, (), "t")
    scripts = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert len(scripts) == 2
    for k, js in enumerate(scripts):
        (tmp_path / f"page{k}.js").write_text(js)
        p = subprocess.run(["node", "--check", str(tmp_path / f"page{k}.js")],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr


# ---- in a browser (the DevTools protocol over a pipe: tests/cdp.py) ----------------------------

PAGE_READY_S_MAX = 120.0     # generous: the machine is shared


@pytest.fixture
def browser(tmp_path):
    require(chromium_path() is not None, "headless Chromium (Debian package chromium)")
    b = Chromium.start(tmp_path / "chromium-profile")
    try:
        yield b
    finally:
        b.close()
        assert not b.left_over, "a Chromium process outlived the test"


def _canvas_point(page, row_expr: str) -> tuple[float, float, int]:
    """Viewport coordinates of the middle of the message drawn for row `row_expr`, and its id."""
    return tuple(page.eval(f"""(() => {{ const i = {row_expr}; const s = seg(i);
        const r = cv.getBoundingClientRect();
        return [r.left + (s[0] + s[2]) / 2, r.top + (s[1] + s[3]) / 2, M.id[i]]; }})()"""))


def test_the_page_opens_at_an_operation_and_answers_the_mouse(tmp_path, browser):
    run = make_run(str(tmp_path), ops=30)
    _page(tmp_path)
    url = (tmp_path / "messages.html").as_uri()
    inv = [o for o in run["history"] if o["type"] == "invoke" and o["process"] != "nemesis"][12]
    tied = [m for m in run["messages"] if m.get("op") == inv["index"]]
    page = browser.open(url + f"#op={inv['index']}")
    assert page.wait_for("document.body.dataset.ready", PAGE_READY_S_MAX) == "1"
    cv = page.eval("Object.assign({}, cv.dataset)")
    assert cv["selectedOp"] == str(inv["index"]) and int(cv["highlighted"]) == len(tied) > 0
    top, bottom = map(int, cv["window"].split(","))
    assert top <= inv["time"] // 1000 <= bottom and bottom - top < 200_000   # zoomed in on it
    assert "timeline.html#op=" in page.eval("document.getElementById('detail').textContent")
    # hovering a message shows it with its body; clicking pins it with its request or reply
    reply = next(m for m in tied if "in_reply_to" in m["body"])
    x, y, mid = _canvas_point(page, f"M.row.get({reply['id']})")
    assert mid == reply["id"]
    page.mouse("mouseMoved", x, y)
    tip = page.eval("document.getElementById('tip').textContent")
    assert tip.startswith(f"message {reply['id']}:") and f'"in_reply_to":' in tip
    page.click(x, y)
    # (the page may handle the click after the input call returns: under load it did once)
    assert page.wait_for("cv.dataset.selectedMsg", 10) == str(reply["id"])
    assert page.eval("cv.dataset.highlighted") == "2"          # the reply and its request
    assert page.eval("location.hash") == f"#msg={reply['id']}"
    assert f'"in_reply_to": {reply["body"]["in_reply_to"]}' in page.eval(
        "document.querySelector('#detail pre').textContent")
    # Ctrl+wheel zooms in around the pointer
    window = page.eval("cv.dataset.window")
    top, bottom = map(int, window.split(","))
    page.mouse("mouseWheel", x, y, deltaX=0, deltaY=-400, modifiers=2)
    page.wait_for(f"cv.dataset.window !== '{window}'", 10)
    t2, b2 = map(int, page.eval("cv.dataset.window").split(","))
    assert b2 - t2 < bottom - top and t2 >= top and b2 <= bottom
    # at a time: #t=1.3 shows a window around 1.3 s
    page.eval("location.hash = 't=1.3&w=0.2'")
    page.wait_for("(([a, b]) => a < 1300000 && 1300000 < b)"
                  "(cv.dataset.window.split(',').map(Number))", 10)
    top, bottom = map(int, page.eval("cv.dataset.window").split(","))
    assert top < 1_300_000 < bottom and bottom - top <= 250_000
    # focusing on one lane shows only its messages
    before = int(page.eval("cv.dataset.visible"))
    page.eval("""(() => { const f = document.getElementById('focus');
        f.value = String(D.lanes.findIndex(l => l[0] === 'c1'));
        f.dispatchEvent(new Event('change')); })()""")
    page.wait_for(f"cv.dataset.visible !== '{before}'", 10)
    assert 0 < int(page.eval("cv.dataset.visible")) < before
    page.screenshot(tmp_path / "diagram.png")
    assert (tmp_path / "diagram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_big_page_loads_and_draws_in_a_browser(big_run, browser):
    history = big_run["history"]
    op = next(o for o in history[len(history) // 2:]
              if o.type == "invoke" and o.process != "nemesis")
    t = time.monotonic()
    page = browser.open(Path(big_run["path"]).as_uri() + f"#op={op.index}")
    assert page.wait_for("document.body.dataset.ready", PAGE_READY_S_MAX) == "1"
    load_s = time.monotonic() - t
    assert page.eval("cv.dataset.selectedOp") == str(op.index)
    assert page.eval("cv.dataset.highlighted") == "2"          # its request and its reply
    # a frame of the whole run (fit: 200k messages in view, at most DRAW_MAX drawn), rasterized
    frame = page.eval("""(() => { fit(); const t = performance.now();
        for (let k = 0; k < 3; k++) { draw(); ctx.getImageData(0, 0, 1, 1); }
        return [(performance.now() - t) / 3, +cv.dataset.visible, +cv.dataset.drawn]; })()""")
    print(f"\nbig page: ready {load_s:.1f} s after navigation; a frame of the whole run "
          f"{frame[0]:.0f} ms ({frame[1]} messages in view, {frame[2]} drawn)")
    assert frame[1] == big_run["messages"] and 0 < frame[2] <= page.eval("DRAW_MAX")
    assert frame[0] < 10_000
