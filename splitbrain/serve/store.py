"""The store as the web UI sees it: runs, campaigns, one run's page data, path confinement.

Runs are found by walking the store (without following symlinks, so `latest` links are not
listed twice): a directory holding test.json or history.jsonl is a run (its subdirectories are
not walked). A directory holding campaign.json is a campaign (its subdirectories are walked: a
campaign's runs may live under it). A run whose files cannot be read is listed as "broken" with
the reason; a run that did not finish as "incomplete" (analyze.completeness: interrupted, its
harness died, or still running). Nothing here raises for a bad file: the UI shows what is there.

Dates come from the run directory's name (the store's UTC timestamp) or, failing that, test.json's
modification time. The duration is wall-clock: from the run directory's timestamp to the last
write of test.json (which the harness rewrites when the run ends), so it is None for a run that
did not finish.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUNS_MAX = 10_000            # runs listed (newest first); more are counted, not listed
WALK_DEPTH_MAX = 8           # directory levels under the store that are searched for runs
JSON_BYTES_MAX = 32 << 20    # test.json / results.json / campaign.json larger than this: broken
TEXT_BYTES_MAX = 64 << 10    # bytes of one text file (node log, splitbrain.log) shown inline
PAGE_TEXT_BYTES_MAX = 2 << 20   # bytes of all inline text of one run page together
NODE_FILES_MAX = 40          # files listed per node directory
OP_LINKS_MAX = 40            # operation links per anomaly on a run page
ANOMALIES_SHOWN_MAX = 100    # anomalies shown per checker on a run page (the rest are counted)
MESSAGE_CHARS_MAX = 20_000   # characters of one anomaly's message on a run page

_STAMP = re.compile(r"^(\d{8}T\d{6})\.(\d{3})Z(?:-\d+)?$")


def resolve_in_store(root: Path, rel: str) -> Path | None:
    """The path `rel` (relative to the store, '/'-separated, already URL-decoded) names, or None
    when it is not inside the store: NUL or backslash, an absolute path, a `..` component, or a
    path whose resolution (symlinks followed) leaves the store's resolved root."""
    if "\x00" in rel or "\\" in rel or rel.startswith("/"):
        return None
    if any(part == ".." for part in rel.split("/")):
        return None
    try:
        path = (root / rel).resolve()
    except (OSError, RuntimeError, ValueError):    # a symlink loop, a too-long name
        return None
    if path != root and root not in path.parents:
        return None
    return path


def read_json(path: Path) -> tuple[Any, str | None]:
    """(data, None) or (None, why it cannot be read)."""
    try:
        size = path.stat().st_size
        if size > JSON_BYTES_MAX:
            return None, f"{path.name}: {size} bytes, over the {JSON_BYTES_MAX >> 20} MiB limit"
        with open(path, encoding="utf-8") as fh:
            return json.load(fh), None
    except FileNotFoundError:
        return None, f"no {path.name}"
    except (OSError, ValueError, UnicodeDecodeError) as e:
        return None, f"{path.name}: {type(e).__name__}: {e}"


def run_started(run_dir: Path) -> _dt.datetime | None:
    m = _STAMP.match(run_dir.name)
    if not m:
        return None
    try:
        t = _dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S")
    except ValueError:
        return None
    return t.replace(microsecond=int(m.group(2)) * 1000, tzinfo=_dt.timezone.utc)


def verdict_name(v: Any) -> str:
    """"valid", "invalid" or "unknown" for a validity (True, False, anything else)."""
    return {True: "valid", False: "invalid"}.get(v, "unknown") if v is not None else "unknown"


def target_of(test: dict) -> tuple[str, str]:
    """(kind, text): ("system", "raft +stale-reads"), ("bin", "node.py"), ("db", "etcd")."""
    bugs = [str(b) for b in test.get("bugs") or []] if isinstance(test.get("bugs"), list) else []
    if test.get("db"):
        kind, name = "db", str(test["db"])
    elif test.get("bin"):
        kind, name = "bin", os.path.basename(str(test["bin"]))
        args = test.get("bin_args")
        if isinstance(args, list):
            script = next((os.path.basename(str(a)) for a in args
                           if not str(a).startswith("-")), None)
            if script:
                name = f"{name} {script}"
    else:
        kind, name = "system", str(test.get("system") or "?")
    return kind, name + "".join(f" +{b}" for b in bugs)


@dataclass
class RunInfo:
    """One row of the runs list."""

    rel: str                       # the run directory relative to the store, '/'-separated
    name: str
    verdict: str                   # valid | invalid | unknown | incomplete | broken
    state: str                     # complete | incomplete | broken
    reason: str | None = None      # why incomplete / broken
    target_kind: str = ""
    target: str = ""
    workload: str = ""
    nemesis: str = ""
    backend: str = ""
    seed: Any = None
    started: str = ""              # ISO UTC
    duration_s: float | None = None
    anomalies: list[str] = field(default_factory=list)
    test: dict = field(default_factory=dict)
    results: dict | None = None
    results_error: str | None = None


def load_run(root: Path, rel: str) -> RunInfo:
    """A run's row (and its test.json / results.json) without ever raising for a bad file."""
    run_dir = root / rel
    started = run_started(run_dir)
    info = RunInfo(rel=rel, name=run_dir.parent.name, verdict="broken", state="broken")
    test_path = run_dir / "test.json"
    try:
        mtime = test_path.stat().st_mtime
    except OSError:
        mtime = None
    if started is None and mtime is not None:
        started = _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc)
    info.started = started.strftime("%Y-%m-%d %H:%M:%S") if started else ""
    test, err = read_json(test_path)
    if err or not isinstance(test, dict):
        info.reason = err or "test.json: not a JSON object"
        return info
    info.test = test
    info.name = str(test.get("name") or info.name)
    info.target_kind, info.target = target_of(test)
    info.workload = str(test.get("workload") or "")
    nem = test.get("nemesis")
    info.nemesis = ",".join(map(str, nem)) if isinstance(nem, list) else str(nem or "")
    info.nemesis = info.nemesis or "none"
    info.backend = str(test.get("backend") or "")
    info.seed = test.get("seed") if isinstance(test.get("seed"), (int, str)) else None
    results, rerr = read_json(run_dir / "results.json")
    if isinstance(results, dict):
        info.results = results
        names = results.get("anomaly_names")
        if isinstance(names, list):
            info.anomalies = [str(n) for n in names]
    else:
        info.results_error = rerr or "results.json: not a JSON object"
    try:
        from ..commands.analyze import completeness
        incomplete, _ = completeness(run_dir, test)
    except Exception as e:  # noqa: BLE001 - a bad marker must not hide the run
        incomplete = f"state unknown ({type(e).__name__}: {e})"
    # results.json is the latest check (analyze rewrites it, not test.json's outcome).
    valid = results.get("valid") if isinstance(results, dict) and "valid" in results else (
        test.get("valid"))
    if incomplete:
        info.state, info.reason = "incomplete", incomplete
        # A checker's INVALID stands even for a cut-short run; otherwise it is incomplete.
        info.verdict = "invalid" if valid is False else "incomplete"
    else:
        info.state = "complete"
        info.verdict = verdict_name(valid)
        if started is not None and mtime is not None:
            info.duration_s = max(0.0, round(mtime - started.timestamp(), 1))
    return info


@dataclass
class CampaignInfo:
    rel: str
    name: str
    state: str                     # finished | running | broken
    reason: str | None = None
    started: str = ""
    finished: str = ""
    backend: str = ""
    exit_code: Any = None
    cells: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)   # verdict -> runs


def load_campaign(root: Path, rel: str) -> CampaignInfo:
    """A campaign from its campaign.json (the contract of `splitbrain campaign`), never
    raising for a bad file."""
    d = root / rel
    info = CampaignInfo(rel=rel, name=d.parent.name, state="broken")
    data, err = read_json(d / "campaign.json")
    if err or not isinstance(data, dict):
        info.reason = err or "campaign.json: not a JSON object"
        return info
    info.name = str(data.get("name") or info.name)
    info.started = str(data.get("started") or "")
    info.finished = str(data.get("finished") or "")
    info.backend = str(data.get("backend") or "")
    info.exit_code = data.get("exit_code")
    info.state = "finished" if data.get("finished") else "running"
    cells = data.get("cells")
    if not isinstance(cells, list):
        info.state, info.reason = "broken", "campaign.json: 'cells' is not a list"
        return info
    counts: dict[str, int] = {}
    for c in cells:
        if not isinstance(c, dict):
            continue
        runs = [r for r in c.get("runs") or [] if isinstance(r, dict)]
        for r in runs:
            v = str(r.get("verdict") or "unknown")
            counts[v] = counts.get(v, 0) + 1
            rd = r.get("run_dir")
            r["_link"] = None
            if isinstance(rd, str) and rd:
                p = resolve_in_store(root, rd)
                if p is not None and p.is_dir():
                    r["_link"] = rd.strip("/")
        target = c.get("target") if isinstance(c.get("target"), dict) else {}
        info.cells.append({"id": str(c.get("id") or ""), "target": target,
                           "workload": str(c.get("workload") or ""),
                           "nemesis": str(c.get("nemesis") or ""),
                           "expect": c.get("expect"), "runs": runs})
    info.counts = counts
    return info


class StoreIndex:
    """The store's runs and campaigns, re-read on each call; rows are cached by the mtimes of
    their files, so a big store is read once and then only what changed."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self._cache: dict[str, tuple[tuple, RunInfo]] = {}

    def _stamp(self, rel: str) -> tuple:
        out = []
        for name in ("test.json", "results.json", "running.json"):
            try:
                st = (self.root / rel / name).stat()
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append(None)
        return tuple(out)

    def walk(self) -> tuple[list[str], list[str]]:
        """(run dirs, campaign dirs) relative to the store."""
        runs: list[str] = []
        campaigns: list[str] = []
        base_depth = len(self.root.parts)
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            here = Path(dirpath)
            rel = here.relative_to(self.root).as_posix()
            files = set(filenames)
            if "campaign.json" in files and rel != ".":
                campaigns.append(rel)
            if ("test.json" in files or "history.jsonl" in files) and rel != ".":
                runs.append(rel)
                dirnames[:] = []          # a run's subdirectories (nodes/) are not runs
                continue
            if len(here.parts) - base_depth >= WALK_DEPTH_MAX:
                dirnames[:] = []
            dirnames.sort()
        return runs, campaigns

    def runs(self) -> tuple[list[RunInfo], int]:
        """(rows newest first, at most RUNS_MAX; how many runs there are in all)."""
        rels, _ = self.walk()
        rows = []
        for rel in rels:
            stamp = self._stamp(rel)
            hit = self._cache.get(rel)
            if hit is None or hit[0] != stamp:
                hit = (stamp, load_run(self.root, rel))
                self._cache[rel] = hit
            rows.append(hit[1])
        rows.sort(key=lambda r: (r.started, r.rel), reverse=True)
        return rows[:RUNS_MAX], len(rows)

    def campaigns(self) -> list[CampaignInfo]:
        _, rels = self.walk()
        out = [load_campaign(self.root, rel) for rel in rels]
        out.sort(key=lambda c: (c.started, c.rel), reverse=True)
        return out


def read_text_capped(path: Path, limit: int) -> tuple[str, int, bool]:
    """(text, size in bytes, whether it was cut). Text is UTF-8 with bad bytes replaced, and
    control characters shown as escapes (termsafe.safe_text). A file with NUL bytes in its head
    is binary: ("", size, True)."""
    from ..termsafe import safe_text
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(limit)
    except OSError as e:
        return f"(cannot read: {e.strerror or e})", 0, False
    if b"\x00" in head[:8192]:
        return "", size, True
    return safe_text(head.decode("utf-8", errors="replace")), size, size > len(head)


def counterexamples(run_dir: Path, test: dict, results: dict | None) -> list[str]:
    """The counterexample files of a run, relative to the run directory: each file the checkers
    listed (results.json `files`, recursively) that lies in the run directory (the recorded paths
    are absolute at write time: they are mapped through test.json's `run_dir`/`out_dir`, so a
    moved store still works), and any other HTML file in the run's subdirectories other than
    nodes/."""
    out: list[str] = []
    recorded_dirs = [str(test.get(k)) for k in ("out_dir", "run_dir") if test.get(k)]
    stack = [results] if isinstance(results, dict) else []
    while stack:
        r = stack.pop(0)
        for f in r.get("files") or []:
            f = str(f)
            rel = None
            for d in recorded_dirs:
                if f.startswith(d.rstrip("/") + "/"):
                    rel = f[len(d.rstrip("/")) + 1:]
                    break
            if rel is None and not os.path.isabs(f):
                rel = f
            if rel and rel not in out and resolve_in_store(run_dir.resolve(), rel) and (
                    run_dir / rel).is_file():
                out.append(rel)
        stack.extend(c for c in (r.get("children") or {}).values() if isinstance(c, dict))
    for sub in sorted(p for p in run_dir.iterdir() if p.is_dir() and p.name != "nodes"
                      and not p.is_symlink()) if run_dir.is_dir() else []:
        for p in sorted(sub.rglob("*.html"))[:200]:
            rel = p.relative_to(run_dir).as_posix()
            if rel not in out and not p.is_symlink():
                out.append(rel)
    return out


def node_files(run_dir: Path) -> list[tuple[str, list[str], int]]:
    """[(node, [file paths relative to the run dir], files left out)] under nodes/."""
    nodes_dir = run_dir / "nodes"
    out = []
    if not nodes_dir.is_dir():
        return out
    for node in sorted(p for p in nodes_dir.iterdir() if p.is_dir() and not p.is_symlink()):
        # The node's own top-level files (node.log) first, then its data directories'.
        files = sorted((p for p in node.rglob("*") if p.is_file() and not p.is_symlink()),
                       key=lambda p: (len(p.parts), p.as_posix()))
        out.append((node.name, [p.relative_to(run_dir).as_posix() for p in files[:NODE_FILES_MAX]],
                    max(0, len(files) - NODE_FILES_MAX)))
    return out
