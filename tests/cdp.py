"""A minimal headless-Chromium driver for tests and benchmarks: the DevTools protocol over
`--remote-debugging-pipe` (file descriptors 3 and 4, NUL-terminated JSON), standard library only.

    with Chromium.start(profile_dir) as browser:     # None when no Chromium is installed
        page = browser.open("file:///.../messages.html#op=3")
        page.wait_for("document.body.dataset.ready", timeout_s=60)
        page.eval("cv.dataset.visible")
        page.mouse("mouseMoved", 300, 400)

Real time throughout (no virtual time: the page's async work is waited for by polling). The
browser runs in a process group of its own; `close()` (and leaving the `with`) kills that whole
group and waits until no process of it is left.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

CALL_TIMEOUT_S = 120.0


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _pgid_alive(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:
            return True
    return False


class CDPError(RuntimeError):
    pass


class Page:
    def __init__(self, browser: "Chromium", session: str):
        self.browser, self.session = browser, session

    def call(self, method: str, **params: Any) -> dict:
        return self.browser.call(method, session=self.session, **params)

    def eval(self, expression: str) -> Any:
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            raise CDPError(f"{expression}: {r['exceptionDetails'].get('text')} "
                           f"{r['exceptionDetails'].get('exception', {}).get('description', '')}")
        return r.get("result", {}).get("value")

    def wait_for(self, expression: str, timeout_s: float = 60.0, poll_s: float = 0.05) -> Any:
        """Poll until the expression is truthy; its value. Raises TimeoutError."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                value = self.eval(expression)
            except CDPError:
                value = None
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"{expression} still false after {timeout_s} s")
            time.sleep(poll_s)

    def mouse(self, kind: str, x: float, y: float, **kw: Any) -> None:
        """Input.dispatchMouseEvent: kind mouseMoved / mousePressed / mouseReleased / mouseWheel."""
        params = {"type": kind, "x": x, "y": y, **kw}
        if kind in ("mousePressed", "mouseReleased"):
            params.setdefault("button", "left")
            params.setdefault("clickCount", 1)
        self.call("Input.dispatchMouseEvent", **params)

    def click(self, x: float, y: float) -> None:
        self.mouse("mouseMoved", x, y)
        self.mouse("mousePressed", x, y)
        self.mouse("mouseReleased", x, y)

    def screenshot(self, path: str | os.PathLike) -> None:
        import base64
        data = self.call("Page.captureScreenshot", format="png")["data"]
        Path(path).write_bytes(base64.b64decode(data))


class Chromium:
    """See the module docstring."""

    def __init__(self, proc: subprocess.Popen, to_browser: int, from_browser: int):
        self.proc, self._w, self._r = proc, to_browser, from_browser
        self._next_id = 0
        self._buf = b""
        self.events: list[dict] = []

    @classmethod
    def start(cls, profile_dir: str | os.PathLike, width: int = 1400,
              height: int = 900) -> "Chromium | None":
        exe = chromium_path()
        if exe is None:
            return None
        to_r, to_w = os.pipe()      # we write commands, the browser reads fd 3
        from_r, from_w = os.pipe()  # the browser writes fd 4, we read

        def child_fds() -> None:
            # Move both ends above 3 and 4 first, so placing one cannot clobber the other; the
            # dup2'd 3 and 4 are inheritable, every other descriptor Python made is close-on-exec.
            import fcntl
            r, w = fcntl.fcntl(to_r, fcntl.F_DUPFD, 10), fcntl.fcntl(from_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)
        proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-pipe", f"--window-size={width},{height}",
             f"--user-data-dir={profile_dir}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            close_fds=False, preexec_fn=child_fds, start_new_session=True)
        os.close(to_r)
        os.close(from_w)
        return cls(proc, to_w, from_r)

    def __enter__(self) -> "Chromium":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def call(self, method: str, session: str | None = None, **params: Any) -> dict:
        self._next_id += 1
        mid = self._next_id
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + CALL_TIMEOUT_S
        while True:
            for reply in self._read(deadline):
                if reply.get("id") == mid:
                    if "error" in reply:
                        raise CDPError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
                self.events.append(reply)
                del self.events[:-1000]

    def _read(self, deadline: float) -> list[dict]:
        import select
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise CDPError("no answer from Chromium")
            ready, _, _ = select.select([self._r], [], [], min(left, 1.0))
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise CDPError("Chromium closed the pipe")
                self._buf += chunk
        *msgs, self._buf = self._buf.split(b"\0")
        return [json.loads(m) for m in msgs if m]

    def open(self, url: str) -> Page:
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        page = Page(self, session)
        page.call("Page.enable")
        page.call("Page.navigate", url=url)
        return page

    def close(self) -> None:
        try:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
            deadline = time.monotonic() + 10
            while _pgid_alive(self.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            for fd in (self._w, self._r):
                try:
                    os.close(fd)
                except OSError:
                    pass

    @property
    def left_over(self) -> bool:
        """True when a process of the browser's group is still alive (after close())."""
        return _pgid_alive(self.proc.pid)
