"""Running a campaign: its runs in worker processes, campaign.json kept current, the exit code.

Files (the contract `splitbrain serve` reads):

    <store>/campaigns/<name>/<timestamp>/campaign.toml   a copy of the campaign file
                                         campaign.json   rewritten as each run finishes
                                         junit.xml       at the end (also --junit FILE)
    <store>/campaigns/<name>/latest -> <timestamp>

campaign.json = {"name", "file", "backend", "started", "finished" (ISO UTC, null while it runs),
"exit_code" (null while it runs), "cells": [{"id", "target": {"kind", "name", "bug"},
"workload", "nemesis", "expect", "seeds", "ok" (the cell meets its expectation; null while
undecided), "runs": [{"seed", "run_dir" (relative to the store root, or null), "verdict"
(valid | invalid | unknown | error), "ok" (the verdict is the expected one), "anomalies": {name:
count}, "replay", "duration_s", "error" (error runs), "shrunk" (sim failures: the minimal fault
schedule and its replay command)}]}]}.

Parallelism (`--jobs N`): sim and local runs go to N worker processes (spawned, not forked: the
live display has a thread). netns, docker and database campaigns run one test at a time, whatever
--jobs says: their runs take fixed resources (a database's ports, namespaces named per run, the
machine's iptables), and two at once would measure contention, not the system.

Exit code (splitbrain/exitcodes.py), the worst over the cells: 1 when a cell misses its
expectation by a verdict (invalid where valid was expected, or a bug switch never caught), else 4
when a run failed with a harness error, else 3 when a verdict was unknown, else 0.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as _dt
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any, Callable

from .. import exitcodes
from .spec import Campaign, Cell

PARALLEL_BACKENDS = ("sim", "local")


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


# ---- in the worker process ------------------------------------------------------------------

def _quiet() -> None:
    """A worker's own output goes nowhere: the run's files (splitbrain.log) hold it, and the
    campaign's display is the parent's."""
    import sys
    devnull = open(os.devnull, "w")
    sys.stdout = devnull
    sys.stderr = devnull


def run_one(test: dict, store_root: str | None) -> dict:
    """Run one `splitbrain test` dict; the campaign.json run entry (without `ok`)."""
    _quiet()
    from ..commands.test import replay_command, run
    from .junit import anomaly_counts, anomaly_lines, verdict_of
    t0 = time.perf_counter()
    out: dict[str, Any] = {"seed": test.get("seed"), "run_dir": None}
    try:
        summary = run(dict(test))
    except KeyboardInterrupt:
        raise
    except BaseException as e:     # noqa: BLE001 - one failed run must not end the campaign
        msg = getattr(e, "message", None) or getattr(e, "format_message", lambda: str(e))()
        out.update(verdict="error", anomalies={}, replay=replay_command(test),
                   error=f"{type(e).__name__}: {msg}", lines=[])
        out["duration_s"] = round(time.perf_counter() - t0, 3)
        return out
    rd = summary.run_dir
    if rd and store_root:
        try:
            rd = os.path.relpath(rd, store_root)
        except ValueError:
            pass
    out.update(run_dir=rd, verdict=verdict_of(summary.valid),
               anomalies=anomaly_counts(summary.results), replay=summary.replay,
               lines=anomaly_lines(summary.results), test=summary.test or test)
    out["duration_s"] = round(time.perf_counter() - t0, 3)
    return out


def shrink_one(test: dict, max_examples: int, time_budget_s: float) -> dict:
    _quiet()
    from .shrink import shrink_failure
    try:
        return shrink_failure(test, max_examples=max_examples, time_budget_s=time_budget_s)
    except Exception as e:  # noqa: BLE001 - a failed shrink leaves the failure unshrunk
        return {"status": "error", "error": f"{type(e).__name__}: {e}"}


# ---- in the parent --------------------------------------------------------------------------

def run_ok(verdict: str, expect: str | None) -> bool:
    if verdict == "error":
        return False
    return expect is None or verdict == expect


def cell_outcome(cell: dict, finished: bool) -> tuple[bool | None, int]:
    """(ok, exit code) of a cell from its runs; ok None while it is undecided."""
    runs = cell["runs"]
    verdicts = [r["verdict"] for r in runs]
    exp = cell["expect"]
    if exp == "invalid":
        if "invalid" in verdicts:
            code = exitcodes.HARNESS_ERROR if "error" in verdicts else exitcodes.VALID
            return True, code
        if not finished:
            return None, exitcodes.VALID
        if "error" in verdicts:
            return False, exitcodes.HARNESS_ERROR
        if "unknown" in verdicts:
            return False, exitcodes.UNKNOWN
        return False, exitcodes.INVALID
    if "error" in verdicts:
        bad = exp == "valid" and "invalid" in verdicts
        return False, exitcodes.INVALID if bad else exitcodes.HARNESS_ERROR
    if exp == "valid":
        if "invalid" in verdicts:
            return False, exitcodes.INVALID
        if "unknown" in verdicts:
            return False, exitcodes.UNKNOWN
        return (True if finished else None), exitcodes.VALID
    return True, exitcodes.VALID


def worst(codes) -> int:
    """1 before 4 before 3 before 0 (module docstring)."""
    order = [exitcodes.INVALID, exitcodes.HARNESS_ERROR, exitcodes.UNKNOWN]
    for c in order:
        if c in codes:
            return c
    return exitcodes.VALID


class CampaignRun:
    """One execution of a Campaign into the store; `state` is campaign.json's content."""

    def __init__(self, camp: Campaign, store_root: str, *, jobs: int | None = None,
                 shrink_time_s: float = 120.0):
        from ..harness.store import _safe_name, _symlink_atomic, _timestamp
        self.camp = camp
        self.store_root = store_root
        backend_parallel = camp.backend in PARALLEL_BACKENDS and not any(
            c.kind == "db" for c in camp.cells)
        self.jobs = max(1, jobs or camp.jobs) if backend_parallel else 1
        self.jobs_note = None
        if (jobs or camp.jobs) > 1 and not backend_parallel:
            self.jobs_note = (f"--jobs ignored: {camp.backend} and database campaigns run one "
                              f"test at a time")
        self.shrink_time_s = shrink_time_s
        base = Path(store_root) / "campaigns" / _safe_name(camp.name)
        base.mkdir(parents=True, exist_ok=True)
        stamp = _timestamp()
        d = base / stamp
        i = 0
        while True:
            try:
                d.mkdir()
                break
            except FileExistsError:
                i += 1
                d = base / f"{stamp}-{i}"
        self.dir = d
        (d / "campaign.toml").write_text(camp.text, encoding="utf-8")
        _symlink_atomic(d.name, base / "latest")
        self.state: dict[str, Any] = {
            "name": camp.name, "file": os.path.abspath(camp.file), "backend": camp.backend,
            "started": _now(), "finished": None, "exit_code": None, "jobs": self.jobs,
            "cells": [{"id": c.id, "target": c.target_json(), "workload": c.workload,
                       "nemesis": c.nemesis, "expect": c.expect,
                       "seeds": [t["seed"] for t in c.tests], "ok": None, "runs": []}
                      for c in camp.cells]}
        self.running: dict[str, int] = {}     # cell id -> runs in flight
        self.write()

    # -- files --
    def write(self) -> None:
        from ..harness.store import _write_json_atomic
        _write_json_atomic(self.dir / "campaign.json", self.state)

    # -- execution --
    def execute(self, on_change: Callable[["CampaignRun"], None] = lambda r: None,
                on_run: Callable[[dict, dict], None] = lambda cell, run: None) -> int:
        """Run every cell's seeds (skipping a caught bug's remaining seeds when stop_on_catch),
        shrink sim failures, keep campaign.json current; returns the exit code."""
        camp = self.camp
        # Round-robin over cells, seed by seed: every cell makes progress early, and a bug's
        # later seeds are only started once its earlier ones did not catch it.
        queue: list[tuple[int, int]] = []
        depth = max(len(c.tests) for c in camp.cells)
        for k in range(depth):
            for i, c in enumerate(camp.cells):
                if k < len(c.tests):
                    queue.append((i, k))
        ctx = multiprocessing.get_context("spawn")
        pending: dict[cf.Future, tuple[str, int, Any]] = {}
        interrupted = False
        with cf.ProcessPoolExecutor(max_workers=self.jobs, mp_context=ctx) as pool:
            try:
                while queue or pending:
                    while queue and len(pending) < self.jobs:
                        i, k = queue.pop(0)
                        cstate = self.state["cells"][i]
                        if self._caught(cstate):
                            continue
                        fut = pool.submit(run_one, camp.cells[i].tests[k], self.store_root)
                        pending[fut] = ("run", i, k)
                        self.running[cstate["id"]] = self.running.get(cstate["id"], 0) + 1
                        on_change(self)
                    if not pending:
                        break
                    done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                    for fut in done:
                        what, i, k = pending.pop(fut)
                        cstate = self.state["cells"][i]
                        if what == "run":
                            self.running[cstate["id"]] -= 1
                            self._record(fut, i, k, pool, pending, on_run)
                        else:
                            run = cstate["runs"][k]
                            try:
                                run["shrunk"] = fut.result()
                            except Exception as e:  # noqa: BLE001 - a worker died
                                run["shrunk"] = {"status": "error", "error": str(e)}
                            self.running[cstate["id"]] -= 1
                        self._update_cell(i, queue)
                        self.write()
                        on_change(self)
            except KeyboardInterrupt:
                interrupted = True
                for f in pending:
                    f.cancel()
                raise
            finally:
                if interrupted:
                    self.state["finished"] = _now()
                    self.state["exit_code"] = 130
                    self.state["interrupted"] = True
                    self.write()
        for i in range(len(camp.cells)):
            self._update_cell(i, [], finished=True)
        codes = [cell_outcome(c, True)[1] for c in self.state["cells"]]
        code = worst(codes)
        self.state["finished"] = _now()
        self.state["exit_code"] = code
        self.write()
        on_change(self)
        return code

    def _caught(self, cstate: dict) -> bool:
        return (self.camp.stop_on_catch and cstate["expect"] == "invalid"
                and any(r["verdict"] == "invalid" for r in cstate["runs"]))

    def _record(self, fut, i, k, pool, pending, on_run) -> None:
        cell: Cell = self.camp.cells[i]
        cstate = self.state["cells"][i]
        try:
            r = fut.result()
        except Exception as e:  # noqa: BLE001 - a worker process died (out of memory, ...)
            from ..commands.test import replay_command
            r = {"seed": cell.tests[k]["seed"], "run_dir": None, "verdict": "error",
                 "anomalies": {}, "replay": replay_command(cell.tests[k]),
                 "error": f"worker died: {type(e).__name__}: {e}", "duration_s": 0.0,
                 "lines": []}
        test = r.pop("test", None)
        r["ok"] = run_ok(r["verdict"], cell.expect)
        run = {"seed": r["seed"], "run_dir": r["run_dir"], "verdict": r["verdict"], "ok": r["ok"],
               "anomalies": r["anomalies"], "replay": r["replay"], "duration_s": r["duration_s"]}
        if r.get("error"):
            run["error"] = r["error"]
        run["lines"] = r.get("lines") or []
        cstate["runs"].append(run)
        on_run(cstate, run)
        if (self.camp.shrink and r["verdict"] == "invalid" and test is not None
                and test.get("schedule") is None):
            run["shrunk"] = {"status": "running"}
            fut2 = pool.submit(shrink_one, test, self.camp.shrink_examples, self.shrink_time_s)
            pending[fut2] = ("shrink", i, len(cstate["runs"]) - 1)
            self.running[cstate["id"]] = self.running.get(cstate["id"], 0) + 1

    def _update_cell(self, i: int, queue, finished: bool = False) -> None:
        cstate = self.state["cells"][i]
        left = any(q[0] == i for q in queue) or self.running.get(cstate["id"], 0) > 0
        cstate["ok"] = cell_outcome(cstate, finished or not left)[0]

    # -- reports --
    def junit_suites(self):
        from .junit import Case, Suite, run_case
        suites = []
        for c in self.state["cells"]:
            s = Suite(f"{self.camp.name}: {c['id']}")
            caught = c["expect"] == "invalid" and c["ok"]
            for r in c["runs"]:
                lines = list(r.get("lines") or [])
                sh = r.get("shrunk") or {}
                replay = r["replay"]
                extra = None
                if sh.get("status") == "shrunk":
                    extra = (f"shrunk to {sh['faults']} of {sh['faults_before']} faults; "
                             f"minimal replay: {sh['replay']}")
                case = run_case(name=f"seed {r['seed']}", classname=f"{self.camp.name}.{c['id']}",
                                verdict=r["verdict"], expect=c["expect"], results=None,
                                replay=replay, time_s=r["duration_s"], run_dir=r["run_dir"],
                                error=r.get("error"))
                body = "\n".join(lines + ([extra] if extra else []))
                case.text = "\n".join(x for x in (body, case.text) if x)
                if caught and case.outcome == "failure" and r["verdict"] == "valid":
                    # A bug not caught by this seed, but by another of the cell: the gate passes.
                    case.outcome, case.message = "passed", ""
                    case.stdout = f"verdict VALID (the bug was caught by another seed)\n{case.text}"
                s.cases.append(case)
            if not c["runs"]:
                s.cases.append(Case("no run", f"{self.camp.name}.{c['id']}", 0.0, "skipped",
                                    "no run of this cell finished"))
            suites.append(s)
        return suites

    def write_junit(self, extra_path: str | None = None) -> list[str]:
        from .junit import write
        paths = [str(self.dir / "junit.xml")]
        if extra_path:
            paths.append(extra_path)
        for p in paths:
            write(p, self.junit_suites(), name=f"splitbrain campaign {self.camp.name}")
        return paths


def summary_rows(state: dict) -> list[dict]:
    """Per cell: runs, valid/invalid/unknown/error counts, anomalies by name, failures."""
    rows = []
    for c in state["cells"]:
        counts = {"valid": 0, "invalid": 0, "unknown": 0, "error": 0}
        anomalies: dict[str, int] = {}
        for r in c["runs"]:
            counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
            for n, k in (r.get("anomalies") or {}).items():
                anomalies[n] = anomalies.get(n, 0) + k
        rows.append({"id": c["id"], "expect": c["expect"], "ok": c["ok"], "runs": len(c["runs"]),
                     "seeds": len(c["seeds"]), **counts, "anomalies": anomalies,
                     "failures": [r for r in c["runs"] if r["verdict"] != "valid"]})
    return rows


def dumps(state: dict) -> str:
    return json.dumps(state, indent=2)
