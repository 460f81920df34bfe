"""The web UI's HTTP server: the standard library's ThreadingHTTPServer and one request handler.

Routes (GET and HEAD):
    /                       the runs list (filterable) and the campaigns
    /run/<run dir>          a run's page (the run dir relative to the store; `latest` works)
    /campaign/<dir>         a campaign's page (campaigns/<name>/<timestamp>, or .../latest)
    /files/<path>           a file of the store, as is (reports, logs, plots)
Anything else, and every path that is not inside the store (store.resolve_in_store), is a 404.

Content types of /files: our reports (`*.html` outside `nodes/`) as text/html, PNG as image/png,
everything else (node logs, JSON, XML, SVG, files a node wrote, whatever their name) as
text/plain with `nosniff` and a sandboxing CSP, so nothing in a store can run script in the UI.
Every HTML response carries a CSP allowing only this server and inline code: no network asset is
loaded, ever. A page that fails to render gives a 500 with one escaped line; the server goes on.
"""

from __future__ import annotations

import html
import json
import os
import socket
import sys
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from . import store as st

TEMPLATES = Path(__file__).parent / "templates"
PAGE_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' "
            "'unsafe-inline'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'self'")
RAW_CSP = "default-src 'none'; sandbox"
CHUNK = 1 << 16

_env = Environment(loader=FileSystemLoader(str(TEMPLATES)),
                   autoescape=select_autoescape(["html", "j2"], default=True),
                   trim_blocks=True, lstrip_blocks=True)


def _duration(s: Any) -> str:
    if not isinstance(s, (int, float)):
        return ""
    s = float(s)
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(int(round(s)), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


_env.filters["duration"] = _duration
_env.filters["quote_path"] = lambda p: urllib.parse.quote(str(p), safe="/")


def render(template: str, **ctx: Any) -> bytes:
    return _env.get_template(template).render(**ctx).encode("utf-8")


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


class StoreServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, addr: tuple[str, int], root: str | os.PathLike, quiet: bool = True):
        self.index = st.StoreIndex(root)
        self.quiet = quiet
        self._lock = threading.Lock()      # the index's cache is shared by the threads
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, Handler)
        # Bound to loopback: only requests naming a loopback host are answered, so a web page
        # elsewhere cannot read the store through DNS rebinding (its Host header is its own).
        self.loopback_only = addr[0] in LOOPBACK_NAMES or addr[0].startswith("127.")

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}/"


def make_server(root: str | os.PathLike, host: str = "127.0.0.1", port: int = 8080,
                quiet: bool = True) -> StoreServer:
    """A server over the store `root`, listening (port 0: a free port; see `.url`). Raises
    OSError when it cannot listen."""
    return StoreServer((host, port), root, quiet)


def serve_forever(server: StoreServer) -> None:
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


class Handler(BaseHTTPRequestHandler):
    server: StoreServer
    server_version = "splitbrain-serve"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:   # noqa: A002 - the base's name
        if not self.server.quiet:
            sys.stderr.write("serve: " + (format % args) + "\n")

    # ---- dispatch ------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def _host_ok(self) -> bool:
        host = (self.headers.get("Host") or "").strip().lower()
        if host.startswith("["):
            name = host[:host.find("]") + 1]
        else:
            name = host.rsplit(":", 1)[0] if ":" in host else host
        return name in LOOPBACK_NAMES or name.startswith("127.")

    def _dispatch(self, head: bool) -> None:
        self.head = head
        if self.server.loopback_only and not self._host_ok():
            return self._error(HTTPStatus.FORBIDDEN, "this server answers requests for "
                               "127.0.0.1 / localhost only")
        try:
            raw = urllib.parse.urlsplit(self.path).path
            path = urllib.parse.unquote(raw, errors="strict")
        except (ValueError, UnicodeDecodeError):
            return self._error(HTTPStatus.NOT_FOUND, "no such page")
        try:
            if path == "/":
                return self._page(render("runs.html.j2", **self._runs_ctx()))  # has `store`
            for prefix, fn in (("/run/", self._run), ("/campaign/", self._campaign),
                               ("/files/", self._file)):
                if path.startswith(prefix):
                    return fn(path[len(prefix):].rstrip("/") if prefix != "/files/"
                              else path[len(prefix):])
            return self._error(HTTPStatus.NOT_FOUND, "no such page")
        except (BrokenPipeError, ConnectionResetError):
            return None
        except Exception as e:  # noqa: BLE001 - one bad run must not stop the server
            if os.environ.get("SPLITBRAIN_DEBUG"):
                import traceback
                traceback.print_exc()
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR,
                               f"internal error: {type(e).__name__}: {e}")

    # ---- responses -----------------------------------------------------------------------------

    def _send(self, status: int, ctype: str, body: bytes, csp: str = PAGE_CSP) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self._common_headers(csp)
        self.end_headers()
        if not self.head:
            self.wfile.write(body)

    def _common_headers(self, csp: str) -> None:
        self.send_header("Content-Security-Policy", csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")

    def _page(self, body: bytes, status: int = HTTPStatus.OK) -> None:
        self._send(status, "text/html; charset=utf-8", body)

    def _error(self, status: int, message: str) -> None:
        body = (f"<!doctype html><meta charset=utf-8><title>{int(status)}</title>"
                f"<p>{int(status)} {html.escape(message)}</p><p><a href=\"/\">runs</a></p>")
        self._send(status, "text/html; charset=utf-8", body.encode("utf-8"))

    # ---- pages ---------------------------------------------------------------------------------

    def _runs_ctx(self) -> dict:
        with self.server._lock:
            runs, total = self.server.index.runs()
            campaigns = self.server.index.campaigns()
        def options(attr: str) -> list[str]:
            return sorted({getattr(r, attr) for r in runs if getattr(r, attr)})
        return {"store": str(self.server.index.root), "runs": runs, "total": total,
                "campaigns": campaigns, "verdicts": ["valid", "invalid", "unknown", "incomplete",
                                                     "broken"],
                "targets": options("target"), "workloads": options("workload"),
                "nemeses": options("nemesis")}

    def _dir(self, rel: str) -> tuple[Path, str] | None:
        """The store directory `rel` names and its clean relative form, or None (404)."""
        root = self.server.index.root
        path = st.resolve_in_store(root, rel)
        if path is None or not path.is_dir() or path == root:
            return None
        return path, rel.strip("/")

    def _run(self, rel: str) -> None:
        found = self._dir(rel)
        if found is None:
            return self._error(HTTPStatus.NOT_FOUND, "no such run in the store")
        run_dir, rel = found
        root = self.server.index.root
        info = st.load_run(root, rel)
        if info.state == "broken" and not (run_dir / "history.jsonl").is_file():
            return self._error(HTTPStatus.NOT_FOUND, "no such run in the store")
        return self._page(render("run.html.j2", store=str(root),
                                 **run_context(root, run_dir, rel, info)))

    def _campaign(self, rel: str) -> None:
        found = self._dir(rel)
        if found is None or not (found[0] / "campaign.json").is_file():
            return self._error(HTTPStatus.NOT_FOUND, "no such campaign in the store")
        run_dir, rel = found
        info = st.load_campaign(self.server.index.root, rel)
        files = [f for f in ("campaign.toml", "campaign.json", "junit.xml")
                 if (run_dir / f).is_file()]
        return self._page(render("campaign.html.j2", store=str(self.server.index.root),
                                 c=info, files=files))

    def _file(self, rel: str) -> None:
        root = self.server.index.root
        path = st.resolve_in_store(root, rel)
        if path is None or not path.is_file():
            return self._error(HTTPStatus.NOT_FOUND, "no such file in the store")
        parts = path.relative_to(root).parts
        ext = path.suffix.lower()
        if ext == ".html" and "nodes" not in parts:
            ctype, csp = "text/html; charset=utf-8", PAGE_CSP     # our reports
        elif ext == ".png":
            ctype, csp = "image/png", RAW_CSP
        else:
            ctype, csp = "text/plain; charset=utf-8", RAW_CSP
        try:
            fh = open(path, "rb")
        except OSError:
            return self._error(HTTPStatus.NOT_FOUND, "no such file in the store")
        with fh:
            size = os.fstat(fh.fileno()).st_size
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(size))
            self._common_headers(csp)
            self.end_headers()
            if not self.head:
                # Exactly the size announced (a growing log is cut at it).
                left = size
                while left > 0:
                    chunk = fh.read(min(CHUNK, left))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)
                if left > 0:
                    self.close_connection = True


def run_context(root: Path, run_dir: Path, rel: str, info: st.RunInfo) -> dict:
    """Everything run.html.j2 shows for one run (see the template)."""
    from ..harness.report.context import where_line
    results = info.results or {}
    budget = [st.PAGE_TEXT_BYTES_MAX]

    def text_of(rel_file: str) -> dict:
        """A text file of the run for inline display, within the page's budget."""
        path = st.resolve_in_store(root, f"{rel}/{rel_file}")
        entry = {"rel": rel_file, "text": "", "size": 0, "cut": False, "binary": False,
                 "skipped": False}
        if path is None or not path.is_file():
            entry["text"] = "(not a file inside the store)"
            return entry
        limit = min(st.TEXT_BYTES_MAX, budget[0])
        if limit <= 0:
            entry["skipped"] = True
            entry["size"] = path.stat().st_size
            return entry
        text, size, cut = st.read_text_capped(path, limit)
        binary = cut and not text and size > 0
        budget[0] -= min(size, limit)
        entry.update(text=text, size=size, cut=cut and not binary, binary=binary)
        return entry

    checkers = []
    for name, child in (results.get("children") or {}).items():
        if not isinstance(child, dict):
            continue
        anomalies = []
        listed = [a for a in child.get("anomalies") or [] if isinstance(a, dict)]
        for a in listed[:st.ANOMALIES_SHOWN_MAX]:
            ops = [o for o in a.get("ops") or [] if isinstance(o, int) and not isinstance(o, bool)]
            details = a.get("details") if isinstance(a.get("details"), dict) else {}
            message = str(a.get("message") or "")
            if len(message) > st.MESSAGE_CHARS_MAX:
                message = message[:st.MESSAGE_CHARS_MAX] + "\n... (cut; results.json has it all)"
            anomalies.append({"name": str(a.get("name")), "message": message,
                              "ops": ops[:st.OP_LINKS_MAX],
                              "more": max(0, len(ops) - st.OP_LINKS_MAX),
                              "where": where_line(details.get("where"))})
        stats = child.get("stats") if isinstance(child.get("stats"), dict) else {}
        checkers.append({"name": str(name), "valid": st.verdict_name(child.get("valid")),
                         "error": child.get("error"), "headline": stats.get("headline"),
                         "anomalies": anomalies,
                         "more": max(0, len(listed) - st.ANOMALIES_SHOWN_MAX)})
    known = ("timeline.html", "messages.html", "history.jsonl", "results.json", "test.json",
             "splitbrain.log", "messages.jsonl", "report-errors.txt", "results.previous.json")
    reports = [f for f in known if (run_dir / f).is_file()] + sorted(
        p.name for p in run_dir.iterdir() if p.name not in known and p.is_file()
        and not p.is_symlink() and p.suffix != ".png")
    plots = [f for f in ("latency.png", "rate.png") if (run_dir / f).is_file()]
    replay = None
    if info.test.get("backend") and info.test.get("workload"):
        try:
            from ..commands.test import replay_command
            replay = replay_command(info.test)
        except Exception:  # noqa: BLE001 - an odd test.json: no replay line, the page still shows
            replay = None
    logs = [text_of(f) for f in ("splitbrain.log", "report-errors.txt")
            if (run_dir / f).is_file()]
    nodes = [{"name": n, "files": [text_of(f) for f in files], "more": more}
             for n, files, more in st.node_files(run_dir)]
    test_json = json.dumps(info.test, indent=2, sort_keys=False, default=str) if info.test else ""
    return {"r": info, "rel": rel, "checkers": checkers, "reports": reports, "plots": plots,
            "counterexamples": st.counterexamples(run_dir, info.test, info.results),
            "replay": replay, "logs": logs, "nodes": nodes,
            "test_json": test_json[:st.TEXT_BYTES_MAX * 4],
            "test_json_cut": len(test_json) > st.TEXT_BYTES_MAX * 4,
            "budget_mb": f"{st.PAGE_TEXT_BYTES_MAX >> 20} MiB",
            "has_timeline": (run_dir / "timeline.html").is_file(),
            "has_messages": (run_dir / "messages.html").is_file()}
