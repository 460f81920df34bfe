"""`splitbrain serve`: the web UI over the store. Real HTTP requests against a real server over a
hand-made store (runs complete, invalid, incomplete, broken; a campaign in the shape `splitbrain
campaign` writes), then the UI in headless Chromium (one browser for every browser check; skipped
outside CI when no Chromium is installed, CI installs it)."""

from __future__ import annotations

import datetime as _dt
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from splitbrain.history import Op
from splitbrain.serve import make_server

sys.path.insert(0, str(Path(__file__).parent))
from conftest import require  # noqa: E402
from cdp import Chromium, chromium_path  # noqa: E402

MS = 1_000_000
EVIL = "<script>alert(1)</script>"
EVIL_NAME = "<img src=x onerror=alert(2)>"
SECRET = "TOP-SECRET-OUTSIDE-THE-STORE"
BAD_READ = 8      # the invoke of the read that returns a value never written (the anomaly)


def _register_history() -> list[Op]:
    """A register history: writes 1..4 served by n1/n2, a partition n1 n2 | n3 n4 n5 from 10 ms
    to 60 ms, and one read served by n2 inside it that returns 99 (never written)."""
    h: list[Op] = []

    def add(t, p, typ, f, v=None, **kw):
        h.append(Op(len(h), t * MS, p, typ, f, v, **kw))

    add(0, 0, "invoke", "write", 1)
    add(2, 0, "ok", "write", 1, node="n1")
    add(3, 1, "invoke", "write", 2)
    add(5, 1, "ok", "write", 2, node="n1")
    add(8, "nemesis", "invoke", "start-partition", {"shape": "halves"})
    add(10, "nemesis", "info", "start-partition",
        {"shape": "halves", "grudge": {"n1": ["n3", "n4", "n5"], "n2": ["n3", "n4", "n5"],
                                       "n3": ["n1", "n2"], "n4": ["n1", "n2"],
                                       "n5": ["n1", "n2"]}})
    add(12, 2, "invoke", "write", 3)
    add(14, 2, "ok", "write", 3, node="n3")
    add(20, 1, "invoke", "read", None)
    assert h[-1].index == BAD_READ
    add(25, 1, "ok", "read", 99, node="n2")
    add(30, 0, "invoke", "write", 4)
    add(34, 0, "ok", "write", 4, node="n1")
    add(58, "nemesis", "invoke", "stop-partition", None)
    add(60, "nemesis", "info", "stop-partition", None)
    add(70, 2, "invoke", "read", None)
    add(72, 2, "ok", "read", 4, node="n4")
    return h


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def _test_json(**kw) -> dict:
    t = {"name": "raft-register", "backend": "sim", "system": "raft", "bin": None, "db": None,
         "workload": "register", "nemesis": ["partition"], "time_limit": 1.0, "nodes": 5,
         "concurrency": 3, "rate": 100.0, "seed": 7, "bugs": ["stale-reads"], "opts": {},
         "workload_opts": {}, "sim_opts": {}, "harness_opts": {}, "schedule": None,
         "bin_args": [], "latency": None, "phase": "done", "interrupted": False}
    t.update(kw)
    return t


def build_store(root: Path) -> dict:
    """The hand-made store (see the module docstring); returns what the tests look for."""
    from splitbrain.commands.analyze import command as analyze
    from splitbrain.history.jsonl import write_jsonl

    store = root / "store"
    bad = store / "raft-register" / "20260102T030405.678Z"
    nodes = bad / "nodes"
    _write_json(bad / "test.json", _test_json(name="raft-register", out_dir=str(bad),
                                              run_dir=str(bad)))
    write_jsonl(str(bad / "history.jsonl"), _register_history())
    (nodes / "n1").mkdir(parents=True)
    (nodes / "n2").mkdir()
    (nodes / "n1" / "node.log").write_text(f"started\n{EVIL}\n\x1b[31mred\x1b[0m\n")
    (nodes / "n1" / "evil.html").write_text(f"<html><body>{EVIL}</body></html>")
    (nodes / "n2" / "big.log").write_text("".join(f"line {i:07d}\n" for i in range(20_000)))
    (nodes / "n2" / "data.bin").write_bytes(b"\x00\x01\x02" * 100)
    (root / "secret.txt").write_text(SECRET)
    os.symlink(root / "secret.txt", nodes / "n1" / "leak.log")   # a node's symlink out
    os.symlink(root, store / "outside")                          # a directory symlink out
    (bad / "messages.jsonl").write_text("".join(json.dumps(m) + "\n" for m in [
        {"id": 0, "src": "c2", "dest": "n2", "body": {"type": "read", "msg_id": 1},
         "sent": 20 * MS, "recv": 21 * MS, "fate": "delivered", "op": BAD_READ},
        {"id": 1, "src": "n2", "dest": "c2", "body": {"type": "read_ok", "in_reply_to": 1,
                                                      "value": 99},
         "sent": 24 * MS, "recv": 25 * MS, "fate": "delivered", "op": BAD_READ}]))
    res = CliRunner().invoke(analyze, [str(bad)], standalone_mode=False)
    assert res.return_value == 1, res.output                     # INVALID
    assert (bad / "timeline.html").is_file() and (bad / "results.json").is_file()
    os.symlink("20260102T030405.678Z", store / "raft-register" / "latest")
    # test.json is last written when the run ends: 12.5 s after the directory's timestamp
    end = _dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=_dt.timezone.utc).timestamp() + 12.5
    os.utime(bad / "test.json", (end, end))

    ok = store / "etcd-kv" / "20260101T000000.000Z"
    _write_json(ok / "test.json", _test_json(name=EVIL_NAME, backend="netns", system=None,
                                             db="etcd", workload="kv", bugs=[], seed=3,
                                             valid=True, nemesis=["kill", "pause"]))
    _write_json(ok / "results.json", {"valid": True, "checker": "compose", "anomalies": [],
                                      "anomaly_names": [], "files": [], "stats": {},
                                      "children": {"linearizable": {"valid": True}}})
    (ok / "history.jsonl").write_text("")

    binrun = store / "node.py-echo" / "20260103T000000.000Z"
    _write_json(binrun / "test.json", _test_json(name="node.py-echo", backend="local",
                                                 system=None, bin="/usr/bin/python3",
                                                 bin_args=["node.py"], workload="echo",
                                                 bugs=[], valid="unknown", nemesis=[]))
    many = [{"name": "odd", "message": f"odd {i}" + "x" * (30_000 if i == 0 else 0),
             "ops": list(range(100))} for i in range(130)]
    _write_json(binrun / "results.json", {"valid": "unknown", "anomalies": many,
                                          "anomaly_names": ["odd"], "children": {
                                              "echo": {"valid": "unknown", "anomalies": many}}})

    cut = store / "raft-kv" / "20260104T000000.000Z"
    _write_json(cut / "test.json", _test_json(name="raft-kv", workload="kv", phase="main",
                                              interrupted=True, interrupted_at="main",
                                              interrupted_by="SIGINT"))
    (cut / "history.jsonl").write_text('{"index":0,"time":1,"process":0,"type":"invoke",'
                                       '"f":"read","value":null}\n')

    broken = store / "vr-kv" / "20260105T000000.000Z"
    broken.mkdir(parents=True)
    (broken / "test.json").write_text("{not json")
    (broken / "history.jsonl").write_text("")

    camp = store / "campaigns" / "nightly" / "20260106T000000.000Z"
    _write_json(camp / "campaign.json", {
        "name": "nightly", "file": "nightly.toml", "backend": "sim",
        "started": "2026-01-06T00:00:00Z", "finished": "2026-01-06T00:01:00Z", "exit_code": 0,
        "cells": [
            {"id": "raft/register/partition/stale-reads",
             "target": {"kind": "system", "name": "raft", "bug": "stale-reads"},
             "workload": "register", "nemesis": "partition", "expect": "invalid",
             "runs": [{"seed": 7, "run_dir": "raft-register/20260102T030405.678Z",
                       "verdict": "invalid", "ok": True, "anomalies": {"nonlinearizable": 1},
                       "replay": f"splitbrain test --seed 7 {EVIL}", "duration_s": 1.5},
                      {"seed": 8, "run_dir": "raft-register/gone", "verdict": "error",
                       "ok": False, "anomalies": {}, "replay": "splitbrain test --seed 8",
                       "duration_s": 0.2}]},
            {"id": "raft/register/partition", "target": {"kind": "system", "name": "raft",
                                                         "bug": None},
             "workload": "register", "nemesis": "partition", "expect": "valid", "runs": []}]})
    (camp / "campaign.toml").write_text('[campaign]\nname = "nightly"\n')
    (camp / "junit.xml").write_text(f"<testsuite><testcase name='{EVIL}'/></testsuite>")
    os.symlink("20260106T000000.000Z", camp.parent / "latest")
    return {"store": store, "bad": "raft-register/20260102T030405.678Z",
            "ok": "etcd-kv/20260101T000000.000Z", "cut": "raft-kv/20260104T000000.000Z",
            "broken": "vr-kv/20260105T000000.000Z", "bin": "node.py-echo/20260103T000000.000Z",
            "campaign": "campaigns/nightly/20260106T000000.000Z", "root": root}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    info = build_store(tmp_path_factory.mktemp("serve"))
    server = make_server(info["store"], "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        info["server"] = server
        info["port"] = server.server_address[1]
        yield info
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
        assert not thread.is_alive()


def get(site, raw_path: str, method: str = "GET", host: str | None = None
        ) -> tuple[int, dict, bytes]:
    """One request with the path sent exactly as given (no client-side normalising)."""
    conn = http.client.HTTPConnection("127.0.0.1", site["port"], timeout=30)
    try:
        conn.putrequest(method, raw_path, skip_accept_encoding=True, skip_host=host is not None)
        if host is not None:
            conn.putheader("Host", host)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


# ---- confinement ---------------------------------------------------------------------------------

OUTSIDE = ["/files/../secret.txt", "/files/%2e%2e/secret.txt", "/files/%2E%2E%2Fsecret.txt",
           "/files/..%2fsecret.txt", "/files/%252e%252e/secret.txt", "/files//etc/passwd",
           "/files/%2Fetc%2Fpasswd", "/files/outside/secret.txt", "/files/outside",
           "/files/raft-register/latest/nodes/n1/leak.log",
           "/files/raft-register/latest/../../secret.txt", "/files/..\\secret.txt",
           "/files/a%00b", "/files/%ff%fe", "/run/..", "/run/%2e%2e", "/run/outside",
           "/run/raft-register/latest/../../..", "/campaign/..%2f..", "/campaign/outside",
           "/files/", "/run/", "/nope", "/files/raft-register/20260102T030405.678Z/nodes"]


def test_no_path_outside_the_store_is_served(site):
    assert (site["root"] / "secret.txt").read_text() == SECRET
    for path in OUTSIDE:
        status, headers, body = get(site, path)
        assert status == 404, (path, status)
        assert SECRET.encode() not in body and b"root:" not in body, path
        assert headers["content-type"].startswith("text/html")
    # ... while the store's own files, through `latest` links too, are served
    for path in (f"/files/{site['bad']}/history.jsonl", "/files/raft-register/latest/test.json",
                 f"/run/{site['bad']}", "/run/raft-register/latest",
                 f"/campaign/{site['campaign']}", "/campaign/campaigns/nightly/latest"):
        status, _, body = get(site, path)
        assert status == 200, path
        assert SECRET.encode() not in body


def test_only_loopback_host_names_are_answered(site):
    """DNS rebinding: a page at evil.example resolving to 127.0.0.1 sends Host: evil.example."""
    for host in ("evil.example", f"evil.example:{site['port']}", "10.0.0.1"):
        status, _, body = get(site, f"/files/{site['bad']}/test.json", host=host)
        assert status == 403 and b"stale-reads" not in body, host
    for host in (f"localhost:{site['port']}", f"127.0.0.1:{site['port']}", "localhost"):
        assert get(site, "/", host=host)[0] == 200, host


def test_files_a_node_wrote_are_text_never_html(site):
    status, h, body = get(site, f"/files/{site['bad']}/nodes/n1/evil.html")
    assert status == 200 and h["content-type"] == "text/plain; charset=utf-8"
    assert h["x-content-type-options"] == "nosniff" and "sandbox" in h["content-security-policy"]
    assert EVIL.encode() in body                            # as it is, but never rendered
    status, h, _ = get(site, f"/files/{site['campaign']}/junit.xml")
    assert status == 200 and h["content-type"].startswith("text/plain")
    status, h, body = get(site, f"/files/{site['bad']}/latency.png")
    assert status == 200 and h["content-type"] == "image/png" and body[:4] == b"\x89PNG"
    assert int(h["content-length"]) == len(body)
    status, h, body = get(site, f"/files/{site['bad']}/timeline.html")
    assert status == 200 and h["content-type"].startswith("text/html")
    status, h, body = get(site, f"/files/{site['bad']}/timeline.html", "HEAD")
    assert status == 200 and body == b"" and int(h["content-length"]) > 1000


# ---- escaping and offline pages ------------------------------------------------------------------

def test_every_value_is_escaped_and_pages_load_nothing_from_a_network(site):
    pages = {p: get(site, p) for p in ("/", f"/run/{site['bad']}", f"/run/{site['ok']}",
                                       f"/campaign/{site['campaign']}", f"/run/{site['cut']}")}
    for path, (status, h, body) in pages.items():
        text = body.decode()
        assert status == 200, path
        assert EVIL not in text and EVIL_NAME not in text, path
        assert "default-src 'self'" in h["content-security-policy"]
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", text), path   # no CDN
    index = pages["/"][2].decode()
    assert "&lt;img src=x onerror=alert(2)&gt;" in index           # the run's name, escaped
    run = pages[f"/run/{site['bad']}"][2].decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in run          # the node log, escaped
    assert "\\x1b[31mred" in run and "\x1b" not in run              # control characters shown
    camp = pages[f"/campaign/{site['campaign']}"][2].decode()
    assert "splitbrain test --seed 7 &lt;script&gt;" in camp


# ---- the pages -----------------------------------------------------------------------------------

def _rows(index: str) -> dict[str, str]:
    """run dir -> verdict, from the runs list."""
    out = {}
    for m in re.finditer(r'<tr class="run" data-verdict="([a-z]+)".*?href="/run/([^"]+)"',
                         index, re.S):
        out[m.group(2)] = m.group(1)
    return out


def test_the_runs_list_shows_every_run_with_its_state(site):
    status, _, body = get(site, "/")
    index = body.decode()
    assert _rows(index) == {site["bad"]: "invalid", site["ok"]: "valid", site["bin"]: "unknown",
                            site["cut"]: "incomplete", site["broken"]: "broken"}
    assert "incomplete run (interrupted at main by SIGINT)" in index
    assert "test.json: JSONDecodeError" in index
    assert "raft +stale-reads" in index and "etcd" in index and "python3 node.py" in index
    assert "2026-01-02 03:04:05" in index and "kill,pause" in index
    row = re.search(rf'<tr class="run"[^>]*>(?:(?!</tr>).)*{site["bad"]}(?:(?!</tr>).)*</tr>',
                    index, re.S).group(0)
    assert "<td>12.5 s</td>" in row                                   # its duration
    assert re.search(r'href="/campaign/campaigns/nightly/20260106T000000.000Z">nightly', index)
    # a broken run still has its page (it has a history), with the reason
    status, _, body = get(site, f"/run/{site['broken']}")
    assert status == 200 and "JSONDecodeError" in body.decode()
    status, _, body = get(site, f"/run/{site['cut']}")
    assert status == 200 and "interrupted at main" in body.decode()


def test_a_run_page_shows_results_linked_to_the_timeline_and_its_files(site):
    status, _, body = get(site, f"/run/{site['bad']}")
    page = body.decode()
    files = f"/files/{site['bad']}/"
    assert status == 200 and 'id="verdict">invalid' in page
    assert f'href="{files}timeline.html#op={BAD_READ}"' in page          # the anomaly's op
    assert "served by n2" in page and "partition halves: n1 n2 | n3 n4 n5" in page
    assert f'src="{files}timeline.html"' in page                         # the timeline
    assert f'href="{files}messages.html#op={BAD_READ}"' in page           # the diagram
    assert f'<iframe loading="lazy" src="{files}messages.html"' in page
    assert f'src="{files}latency.png"' in page and f'src="{files}rate.png"' in page
    assert f'href="{files}linearizability/history.html"' in page         # counterexample
    assert "replay: <code" in page and "--seed 7" in page
    assert "node n1" in page and "node n2" in page and "leak.log" not in page
    assert re.search(r"Showing the first \d+ characters of 260000 bytes", page)  # capped
    assert "line 0000000" in page and "line 0019999" not in page
    assert "Binary file" in page                                         # data.bin
    assert '&#34;seed&#34;: 7' in page                                   # test.json, escaped
    status, _, body = get(site, f"/files/{site['bad']}/linearizability/history.html")
    assert status == 200 and b"not linearizable" in body


def test_a_run_page_is_bounded(site):
    status, _, body = get(site, f"/run/{site['bin']}")
    page = body.decode()
    assert status == 200 and page.count('<div class="anomaly"') == 100
    assert "30 more anomalies of echo are in" in page and "... (cut; results.json" in page
    assert page.count("<span>op ") == 100 * 40 and "and 60 more" in page  # no timeline: no links
    assert len(body) < 2_000_000


def test_a_campaign_page_links_its_runs(site):
    status, _, body = get(site, f"/campaign/{site['campaign']}")
    page = body.decode()
    assert status == 200 and "campaign nightly" in page and "finished" in page
    assert f'href="/run/{site["bad"]}"' in page
    assert "(run directory not in the store)" in page                    # the missing one
    assert "nonlinearizable x1" in page and "no run yet" in page
    assert 'href="/files/campaigns/nightly/20260106T000000.000Z/junit.xml"' in page


def test_a_page_that_fails_is_a_500_and_the_server_goes_on(site, monkeypatch):
    from splitbrain.serve import app

    def boom(*a, **kw):
        raise RuntimeError(EVIL)
    monkeypatch.setattr(app, "run_context", boom)
    status, _, body = get(site, f"/run/{site['bad']}")
    assert status == 500 and b"RuntimeError" in body and EVIL.encode() not in body
    monkeypatch.undo()
    assert get(site, f"/run/{site['bad']}")[0] == 200


# ---- the command ---------------------------------------------------------------------------------

def test_the_command_listens_on_loopback_prints_its_address_and_stops_on_ctrl_c(tmp_path):
    (tmp_path / "store").mkdir()
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent))
    p = subprocess.Popen([sys.executable, "-m", "splitbrain", "serve", str(tmp_path / "store"),
                          "--port", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)
    try:
        line = p.stdout.readline()
        m = re.search(r"at http://127\.0\.0\.1:(\d+)/", line)
        assert m, line
        conn = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=30)
        conn.request("GET", "/")
        r = conn.getresponse()
        assert r.status == 200 and b"No runs in this store yet" in r.read()
        conn.close()
        p.send_signal(signal.SIGINT)
        assert p.wait(30) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.poll() is not None
    res = subprocess.run([sys.executable, "-m", "splitbrain", "serve", str(tmp_path / "nope")],
                         capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert "no such store directory" in res.stderr and "Traceback" not in res.stderr
    import socket
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        res = subprocess.run([sys.executable, "-m", "splitbrain", "serve",
                              str(tmp_path / "store"), "--port", str(port)],
                             capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in res.stderr


# ---- in a browser ------------------------------------------------------------------------------

def _png_facts(path: Path) -> tuple[int, int, dict]:
    """(width, height, {colour: pixels}) of a PNG (Pillow: matplotlib's own dependency)."""
    from PIL import Image
    with Image.open(path) as im:
        assert im.format == "PNG"
        rgb = im.convert("RGB")
        return rgb.width, rgb.height, {c: n for n, c in rgb.getcolors(maxcolors=1 << 22)}


def _click(page, selector: str) -> None:
    x, y = page.eval(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
        e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();
        return [r.left + Math.min(r.width / 2, 20), r.top + r.height / 2]; }})()""")
    page.click(x, y)


def test_the_ui_in_a_browser(site, tmp_path):
    """One browser: the list, its filters, a run page, an anomaly link into the timeline, the
    lanes toggle, and a screenshot of the run page."""
    require(chromium_path() is not None, "headless Chromium (Debian package chromium)")
    base = f"http://127.0.0.1:{site['port']}"
    browser = Chromium.start(tmp_path / "chromium-profile", width=1280, height=900)
    try:
        page = browser.open(base + "/")
        page.wait_for("document.body && document.body.dataset.ready === '1'", 60)
        shown = "document.getElementById('shown').dataset.shown"
        assert page.eval(shown) == "5"
        page.eval("""(() => { const s = document.getElementById('f-verdict');
            s.value = 'invalid'; s.dispatchEvent(new Event('change')); })()""")
        assert page.eval(shown) == "1"
        assert page.eval("location.hash") == "#verdict=invalid"
        page.eval("""(() => { const s = document.getElementById('f-verdict');
            s.value = ''; s.dispatchEvent(new Event('change'));
            const t = document.getElementById('f-text'); t.value = 'etcd';
            t.dispatchEvent(new Event('input')); })()""")
        assert page.eval(shown) == "1"
        visible = page.eval("""Array.from(document.querySelectorAll('#runs tr.run'))
            .filter(r => r.style.display !== 'none').map(r => r.dataset.verdict)""")
        assert visible == ["valid"]
        page.eval("""(() => { const t = document.getElementById('f-text'); t.value = '';
            t.dispatchEvent(new Event('input'));
            const s = document.getElementById('f-workload'); s.value = 'register';
            s.dispatchEvent(new Event('change')); })()""")
        assert page.eval(shown) == "1"
        # open the run by clicking its link
        _click(page, "#runs tr.run:not([style*='none']) a.runlink")
        page.wait_for(f"location.pathname === '/run/{site['bad']}' && "
                      "document.body.dataset.ready === '1'", 60)
        assert page.eval("document.getElementById('verdict').textContent") == "invalid"
        page.wait_for("(() => { const f = document.getElementById('timeline');"
                      " return f.contentDocument && f.contentDocument.body &&"
                      " f.contentDocument.body.dataset.ready === '1'; })()", 60)
        # the embedded timeline opened at the anomaly's operation without scrolling the page
        assert page.eval("document.getElementById('timeline').contentDocument.body"
                         ".dataset.selected") == str(BAD_READ)
        assert page.eval("window.scrollY") == 0
        shot = tmp_path / "run-page.png"
        print(f"\nrun page screenshot: {shot}")
        page.screenshot(shot)
        w, h, colours = _png_facts(shot)
        assert [w, h] == page.eval("[innerWidth * devicePixelRatio, innerHeight * devicePixelRatio]")
        assert len(colours) > 50                        # not blank, not one colour
        assert max(colours.values()) < 0.95 * w * h
        assert colours.get((0xc6, 0x28, 0x28), 0) > 300   # the red INVALID badge is drawn
        assert colours.get((0x26, 0x32, 0x38), 0) > 1000  # the header bar
        # follow the anomaly's link into the timeline
        _click(page, "a.oplink")
        page.wait_for("location.pathname.endsWith('/timeline.html') && "
                      "document.body.dataset.ready === '1'", 60)
        assert page.eval("location.hash") == f"#op={BAD_READ}"
        assert page.eval("document.body.dataset.selected") == str(BAD_READ)
        sel = "document.querySelector('.op.sel')"
        assert page.eval(f"{sel}.classList.contains('anom')") is True
        assert page.eval("document.body.dataset.anomalyOps") == page.eval(
            "String(document.querySelectorAll('.op.anom').length)") != "0"
        # the bad read sits in its process's lane, then in the lane of n2, the node it served
        top = page.eval(f"parseInt({sel}.style.top)")
        _click(page, "#bynode")
        page.wait_for("document.body.dataset.lanes === 'node'", 10)
        lanes = page.eval("Array.from(document.querySelectorAll('.lbl')).map(l => l.textContent)")
        assert sorted(lanes) == ["n1", "n2", "n3", "n4"]
        node_top = page.eval(f"parseInt({sel}.style.top)")
        assert node_top == page.eval("LANES.node.indexOf('n2')") * page.eval("LANE") + 2
        assert node_top != top or page.eval("OPS.find(o => o.i === %d).p" % BAD_READ) == 1
        # the time axis: ticks in seconds from 0
        ticks = page.eval("Array.from(document.querySelectorAll('.tick')).map(t => t.textContent)")
        assert ticks[0].startswith("0.0") and ticks[-1].endswith(" s") and len(ticks) >= 5
    finally:
        browser.close()
    assert not browser.left_over, "a Chromium process outlived the test"
