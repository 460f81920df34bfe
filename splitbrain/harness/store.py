"""The store: where a test run's files live (DESIGN.md, "The store"), and the history Recorder.

Layout (Jepsen's):

    <root>/<test-name>/<timestamp>/
        test.json          every option, the seed, node names, versions (written at the start,
                           rewritten at the end with the outcome summary)
        history.jsonl      appended and flushed op by op while the test runs
        results.json       the composed checker Result (Result.to_json())
        splitbrain.log     the harness's log of this run
        nodes/<node>/      per-node logs and data
        ...                reports (timeline.html, latency.png, ...) by splitbrain.harness.report
    <root>/latest             -> <test-name>/<timestamp>   (symlink to the newest run)
    <root>/<test-name>/latest -> <timestamp>

Timestamps are UTC `YYYYmmddTHHMMSS.mmmZ`; two runs in the same millisecond get `-1`, `-2`, ...
The store path depends on the wall clock; nothing inside history.jsonl does.

Usage:
    run = RunStore.create(root, "raft-append-log")
    run.write_test(test)
    with run.recorder() as rec:
        i = rec.invoke(process=0, f="append", value=1, time_ns=...)
        rec.complete(process=0, type="ok", f="append", value=1, time_ns=...)
    run.write_results(result); run.write_reports(rec.ops, test); run.finish()
"""

from __future__ import annotations

import datetime as _dt
import errno
import json
import logging
import os
import platform
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import click

from .. import __version__
from ..history import HistoryWriter, Op
from ..history.errors import HistoryError
from ..history.op import COMPLETIONS, INVOKE, NEMESIS
from ..exitcodes import HARNESS_ERROR

DEFAULT_ROOT = "store"
RUN_SUFFIX_MAX = 1000  # same-millisecond runs in one test directory before giving up


class StoreWriteError(click.ClickException):
    """A file of the run could not be written (disk full, quota, I/O error): exit 4, one line
    naming the file, the reason and what was kept."""

    exit_code = HARNESS_ERROR

    def __init__(self, path: str | os.PathLike, error: OSError, kept: str = ""):
        self.path = str(path)
        self.error = error
        reason = error.strerror or str(error)
        code = errno.errorcode.get(error.errno or 0)
        if code:
            reason = f"{reason} ({code})"
        super().__init__(f"cannot write {self.path}: {reason}" + (f"; {kept}" if kept else ""))

    def with_kept(self, kept: str) -> "StoreWriteError":
        return StoreWriteError(self.path, self.error, kept)


def trim_to_last_line(path: str | os.PathLike) -> None:
    """Cut a torn last line (a write that failed half-way) so the file is whole lines again."""
    try:
        with open(path, "rb+") as fh:
            size = fh.seek(0, os.SEEK_END)
            pos = size
            while pos > 0:
                step = min(pos, 1 << 16)
                fh.seek(pos - step)
                chunk = fh.read(step)
                nl = chunk.rfind(b"\n")
                if nl >= 0:
                    pos = pos - step + nl + 1
                    break
                pos -= step
            if pos != size:
                fh.truncate(pos)
    except OSError:
        pass


def drop_text_file(fh, path: str | os.PathLike) -> None:
    """Give up an open file after a failed write: close it without writing its buffers, and cut
    a torn last line, so that the file holds whole lines only.

    The descriptor under the buffers is first pointed at /dev/null: the unwritten rest of the
    failed line must never reach the file (a flush at close, once space is freed, would write a
    line's tail without its head). dup2, not close: the file object still owns the number."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(null, fh.fileno())
        finally:
            os.close(null)
    except (OSError, ValueError, AttributeError):
        pass
    try:
        fh.close()
    except (OSError, ValueError):
        pass
    trim_to_last_line(path)


def count_lines(path: str | os.PathLike) -> int:
    """Newlines in a file (0 when it cannot be read)."""
    n = 0
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                n += chunk.count(b"\n")
    except OSError:
        pass
    return n


class _LogHandler(logging.FileHandler):
    """The run log's handler: a failed write (disk full) is reported to the store once instead of
    logging's traceback on stderr, and the log stops."""

    def __init__(self, path: Path, on_error: Callable[[OSError], None]):
        super().__init__(path, encoding="utf-8")
        self.on_error = on_error
        self.failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        import sys
        err = sys.exc_info()[1]
        self.failed = True
        if isinstance(err, OSError):
            self.on_error(err)

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as e:
            if not self.failed:
                self.failed = True
                self.on_error(e)

    def close(self) -> None:
        try:
            super().close()
        except OSError:
            pass        # the failure was reported when the write failed


def versions() -> dict[str, str]:
    """The versions recorded in test.json."""
    return {"splitbrain": __version__, "python": platform.python_version(),
            "platform": platform.platform()}


def _timestamp(now: _dt.datetime | None = None) -> str:
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S.") + f"{now.microsecond // 1000:03d}Z"


def _safe_name(name: str) -> str:
    """A test name usable as one path component (no separators, no leading dots)."""
    out = "".join(c if (c.isalnum() or c in "-_.+=") else "-" for c in name).strip(".")
    return out or "test"


def _jsonable(value: Any) -> Any:
    """Options may hold sets, tuples or Paths: make them JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(_jsonable(v) for v in value)
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return repr(value)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(_jsonable(data), fh, indent=2, sort_keys=False)
        fh.write("\n")
    os.replace(tmp, path)


def _symlink_atomic(target: str, link: Path) -> None:
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        os.symlink(target, tmp)
        os.replace(tmp, link)
    except OSError:
        # A filesystem without symlinks: leave a text file naming the run instead.
        if tmp.is_symlink():
            tmp.unlink()
        if link.is_symlink() or link.is_file():
            link.unlink()
        if not link.exists():
            link.write_text(target + "\n", encoding="utf-8")


class RunStore:
    """One run's directory in the store. Create with `RunStore.create`."""

    def __init__(self, root: Path, test_name: str, run_dir: Path):
        self.root = root
        self.test_name = test_name
        self.run_dir = run_dir
        self.history_path = run_dir / "history.jsonl"
        self.test_path = run_dir / "test.json"
        self.results_path = run_dir / "results.json"
        self.log_path = run_dir / "splitbrain.log"
        self.write_error: StoreWriteError | None = None   # the first failed write of the run
        self.on_write_error: Callable[[StoreWriteError], None] | None = None
        self._recorder: Recorder | None = None
        self.logger = self._make_logger()

    @classmethod
    def create(cls, root: str | os.PathLike, test_name: str,
               now: _dt.datetime | None = None) -> "RunStore":
        """Make a fresh run directory and point `latest` at it (so a crashed run is findable)."""
        root_p = Path(root)
        name = _safe_name(test_name)
        test_dir = root_p / name
        try:
            test_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO):
                raise StoreWriteError(test_dir, e, "nothing was run") from None
            from ..cli import UserError
            raise UserError(f"cannot create the store directory {test_dir}: {e.strerror}") from None
        stamp = _timestamp(now)
        run_dir = test_dir
        try:
            for i in range(RUN_SUFFIX_MAX):
                run_dir = test_dir / (stamp if i == 0 else f"{stamp}-{i}")
                try:
                    run_dir.mkdir()
                    break
                except FileExistsError:
                    continue
            else:
                raise RuntimeError(f"{RUN_SUFFIX_MAX} runs named {stamp} already in {test_dir}")
            (run_dir / "nodes").mkdir()
            store = cls(root_p, name, run_dir)
            store.update_latest()
        except OSError as e:       # a full disk: name the directory, exit 4
            raise StoreWriteError(e.filename or run_dir, e, "nothing was run") from None
        return store

    def _make_logger(self) -> logging.Logger:
        logger = logging.getLogger(f"splitbrain.run.{id(self)}")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        handler = _LogHandler(self.log_path, lambda e: self.write_failed(self.log_path, e))
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        return logger

    def log(self, message: str, level: int = logging.INFO) -> None:
        self.logger.log(level, message)

    def write_failed(self, path: str | os.PathLike, error: OSError) -> StoreWriteError:
        """Remember the first failed write and tell whoever runs the test (it stops the run)."""
        err = StoreWriteError(path, error)
        if self.write_error is None:
            self.write_error = err
            if self.on_write_error is not None:
                self.on_write_error(err)
        return err

    def kept(self) -> str:
        """What of the run is on disk, for the one-line error of a failed write."""
        n = self._recorder.written if self._recorder is not None else None
        if n is None:
            return f"the run's files so far are in {self.run_dir}"
        return (f"kept the first {n} history events in {self.history_path} (whole lines; "
                f"re-check them with `splitbrain analyze {self.run_dir}`)")

    def write_error_final(self) -> StoreWriteError | None:
        """The run's first failed write, with what was kept (None: every write succeeded)."""
        return None if self.write_error is None else self.write_error.with_kept(self.kept())

    def _guard(self, path: Path, fn: Callable[[], Any]) -> Any:
        """Run a write; a failure (or an earlier one: the run's files are already incomplete,
        e.g. history.jsonl stopped) raises StoreWriteError."""
        if self.write_error is not None:
            raise self.write_error_final()
        try:
            return fn()
        except OSError as e:
            self.write_failed(path, e)
            raise self.write_error_final() from None

    def node_dir(self, node: str) -> Path:
        d = self.run_dir / "nodes" / _safe_name(node)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def write_test(self, test: dict) -> None:
        """test.json: the test's options as given, plus `versions` and `store` paths."""
        data = dict(test)
        data.setdefault("versions", versions())
        data.setdefault("run_dir", str(self.run_dir))
        self._guard(self.test_path, lambda: _write_json_atomic(self.test_path, data))

    def write_results(self, result) -> dict:
        """results.json from a checkers.Result (or an already-JSON dict); returns the JSON.
        Raises StoreWriteError (exit 4) when it cannot be written."""
        data = result.to_json() if hasattr(result, "to_json") else dict(result)
        self._guard(self.results_path, lambda: _write_json_atomic(self.results_path, data))
        return data

    def write_reports(self, history: list[Op], test: dict) -> list[str]:
        """Call splitbrain.harness.report.write_reports if that module exists; files written.

        A report failure is logged, never fatal: the verdict does not depend on the plots.
        """
        try:
            from . import report  # type: ignore[attr-defined]
        except ImportError:
            return []
        fn = getattr(report, "write_reports", None)
        if fn is None:
            return []
        try:
            return list(fn(self.run_dir, history, test) or [])
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
                # A full disk is not a report bug: the run's files are incomplete; say so.
                self.write_failed(e.filename or self.run_dir, e)
                raise self.write_error_final() from None
            self.log(f"reports failed: {type(e).__name__}: {e}", logging.WARNING)
            return []
        except Exception as e:  # noqa: BLE001 - reports are optional
            self.log(f"reports failed: {type(e).__name__}: {e}", logging.WARNING)
            return []

    def recorder(self, *, fsync: bool = False) -> "Recorder":
        """The run's Recorder. A failed write of history.jsonl (disk full) stops the file at the
        last whole line, keeps recording in memory and reports to `on_write_error`."""
        writer = self._guard(self.history_path,
                             lambda: HistoryWriter(str(self.history_path), fsync=fsync))
        self._recorder = Recorder(writer, on_write_error=lambda e: self.write_failed(
            self.history_path, e))
        return self._recorder

    def update_latest(self) -> None:
        rel_run = os.path.relpath(self.run_dir, self.root)
        _symlink_atomic(rel_run, self.root / "latest")
        _symlink_atomic(self.run_dir.name, self.run_dir.parent / "latest")

    def finish(self) -> None:
        for h in list(self.logger.handlers):
            h.close()
            self.logger.removeHandler(h)


@dataclass
class RunSummary:
    """What `splitbrain test` prints for any backend: the verdict, where it is, how to replay it.

    `results` is the composed Result's JSON (Result.to_json()); `notes` are extra lines shown
    under the verdict (e.g. the simulator's randomized settings); `stats` is free JSON.
    """

    valid: Any
    results: dict
    test: dict
    replay: str
    run_dir: str | None = None
    history_ops: int = 0
    notes: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    incomplete: str | None = None     # "incomplete run (interrupted at PHASE)" for a cut-short run

    def to_json(self) -> dict:
        out = {"valid": self.valid, "run_dir": self.run_dir, "replay": self.replay,
               "history_ops": self.history_ops, "notes": list(self.notes),
               "stats": self.stats, "results": self.results}
        if self.incomplete:
            out["incomplete"] = self.incomplete
        return out


class Recorder:
    """Records a history as it happens: dense indices, Jepsen's process rules checked per op.

    Every op is validated as it is recorded (a second invoke by a busy process, a completion
    without an invoke, an invoke by a process that ended in `info` raise HistoryError: a harness
    bug, never silently recorded). Thread-safe. `writer` may be None to record in memory only
    (the fault search). `ops` is the whole history in memory.
    """

    def __init__(self, writer: HistoryWriter | None = None, *,
                 on_write_error: Callable[[OSError], Any] | None = None):
        self.writer = writer
        self.on_write_error = on_write_error
        self.written: int | None = 0 if writer is not None else None   # ops in the file
        self.ops: list[Op] = []
        self._open: dict[Any, Op] = {}     # process -> its outstanding invoke
        self._crashed: set[Any] = set()    # processes whose last op ended in info
        self._lock = threading.Lock()

    def _append(self, op: Op) -> Op:
        self.ops.append(op)
        if self.writer is not None:
            try:
                self.writer.write(op)
                self.written += 1
            except OSError as e:
                # Disk full (or gone): the file keeps its whole lines, the history goes on in
                # memory, and the owner is told (the runner stops the run and exits 4).
                self._drop_writer()
                if self.on_write_error is None:
                    raise
                self.on_write_error(e)
        return op

    def _drop_writer(self) -> None:
        w, self.writer = self.writer, None
        drop_text_file(w._fh, w.path)
        self.written = count_lines(w.path)

    def invoke(self, process: Any, f: str, value: Any = None, *, time_ns: int,
               key: Any = None, node: str | None = None) -> Op:
        with self._lock:
            if process in self._open:
                raise HistoryError(f"process {process} invoked {f} while "
                                   f"{self._open[process].f} was outstanding")
            if process in self._crashed and process != NEMESIS:
                raise HistoryError(f"process {process} invoked {f} after an info completion")
            op = Op(len(self.ops), time_ns, process, INVOKE, f, value, key, node, None)
            self._open[process] = op
            return self._append(op)

    def complete(self, process: Any, type: str, value: Any = None, *, time_ns: int,
                 error: str | None = None, node: str | None = None) -> Op:
        with self._lock:
            if type not in COMPLETIONS:
                raise HistoryError(f"unknown completion type {type!r}")
            inv = self._open.pop(process, None)
            if inv is None:
                raise HistoryError(f"process {process} completed with no outstanding invoke")
            if time_ns < inv.time:
                raise HistoryError(f"process {process}: completion before its invoke")
            if type == "info" and process != NEMESIS:
                self._crashed.add(process)
            op = Op(len(self.ops), time_ns, process, type, inv.f, value, inv.key,
                    node if node is not None else inv.node, error)
            return self._append(op)

    def outstanding(self) -> dict[Any, Op]:
        with self._lock:
            return dict(self._open)

    def close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except OSError as e:
                self._drop_writer()
                if self.on_write_error is None:
                    raise
                self.on_write_error(e)

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
