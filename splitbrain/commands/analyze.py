"""`splitbrain analyze RUN`: re-check a stored run with the current checkers.

RUN is a run directory of the store (`store/raft-append-log/20260101T120000.000Z`, or
`store/latest`). It reads `test.json` and `history.jsonl`, runs the workload's checkers again,
prints the verdict like `splitbrain test` does, rewrites `results.json` (the previous one is
kept as `results.previous.json`) and regenerates the reports (timeline.html, the plots, and
messages.html when the run has a messages.jsonl). The `recovery`/`liveness` results of the original run depend on
observations that are not in the history and are not recomputed. Exit code from the validity.

Cut-short runs: a run stopped by Ctrl-C or SIGTERM records `"interrupted": true` and the phase it
reached in test.json; a run whose harness was killed outright (SIGKILL, a crash) keeps its run
marker `running.json` with an owner that is gone. Either way the verdict line says "incomplete
run (interrupted at PHASE)". A run cut short before its final phase ended never made the final
reads, so what they would have shown (durability, convergence) is unknown: its verdict is
UNKNOWN unless a checker found an anomaly (INVALID stays INVALID), by a child result "run" with
the reason. A run cut short while checking (phase "check") has its whole history and keeps its
checkers' verdict. A run whose harness is still alive is reported as in progress.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .. import exitcodes
from ..cli import UserError

COMPLETE_HISTORY_PHASES = ("check", "done")   # the final phase had ended: the history is whole


def completeness(run_dir: Path, test: dict) -> tuple[str | None, bool]:
    """(why the run is incomplete, or None; whether its history lacks the final phase)."""
    from ..harness.ownership import owner_state, read_marker
    phase = test.get("interrupted_at") or test.get("phase")
    marker = read_marker(run_dir)
    if marker is not None:
        state, why = owner_state(marker.get("owner"))
        if state == "alive":
            return f"incomplete run (still in progress at phase {phase}: {why})", True
        if state == "dead":
            return (f"incomplete run (interrupted at {phase or 'an unknown phase'}: the harness "
                    f"died without finishing; {why})", phase not in COMPLETE_HISTORY_PHASES)
    if test.get("interrupted"):
        by = f" by {test['interrupted_by']}" if test.get("interrupted_by") else ""
        return (f"incomplete run (interrupted at {phase or 'an unknown phase'}{by})",
                phase not in COMPLETE_HISTORY_PHASES)
    if "phase" in test:
        if phase != "done":
            return f"incomplete run (interrupted at {phase})", phase not in COMPLETE_HISTORY_PHASES
        return None, False
    if "valid" not in test:
        # Older runs record no phase: one without an outcome did not finish.
        return "incomplete run (interrupted at an unknown phase: test.json has no outcome)", True
    return None, False


HARNESS_RESULTS = ("nodes", "recovery")   # what the run observed, not what a checker derives


def _previous_results(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _harness_results(previous: dict) -> list:
    """The run's own observations in its results.json (a node that crashed by itself, a
    cluster that did not converge) cannot be re-derived from the history: a re-check keeps
    them, so that re-analysing a run never turns its node-crashed INVALID into VALID."""
    from ..checkers.result import UNKNOWN, Anomaly, Result
    out = []
    children = previous.get("children")
    if not isinstance(children, dict):
        return out
    for name in HARNESS_RESULTS:
        c = children.get(name)
        if not isinstance(c, dict):
            continue
        valid = c.get("valid")
        anomalies = [Anomaly(str(a.get("name")), str(a.get("message")),
                             ops=list(a.get("ops") or []), details=a.get("details") or {})
                     for a in c.get("anomalies") or [] if isinstance(a, dict)]
        out.append(Result(valid=valid if valid in (True, False) else UNKNOWN, checker=name,
                          anomalies=anomalies, stats=c.get("stats") or {}))
    return out


@click.command("analyze")
@click.argument("run", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--no-write", is_flag=True, help="Do not rewrite results.json nor the reports.")
def command(run: str, as_json: bool, no_write: bool) -> int:
    """Re-check a stored run (a store run directory, or store/latest)."""
    from ..harness.store import RunSummary, _write_json_atomic
    from ..harness.workloads import check_history, make_workload
    from ..history.jsonl import read_jsonl
    from .test import print_summary, replay_command

    run_dir = Path(run).resolve()
    if not run_dir.is_dir():
        raise UserError(f"{run}: not a directory (give a run directory of the store)")
    test_path = run_dir / "test.json"
    hist_path = run_dir / "history.jsonl"
    for p in (test_path, hist_path):
        if not p.is_file():
            raise UserError(f"{run}: no {p.name} (is this a run directory of the store?)")
    try:
        test = json.loads(test_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise UserError(f"{test_path}: not valid JSON ({e})") from None
    if not isinstance(test, dict) or not test.get("workload"):
        raise UserError(f"{test_path}: has no 'workload'")
    try:
        workload = make_workload(test["workload"], test.get("workload_opts") or {})
    except ValueError as e:
        raise UserError(f"{test_path}: {e}") from None
    # A torn last line (a crash or a full disk while writing) is ignored; the note says so.
    warnings: list[str] = []
    history = read_jsonl(str(hist_path), on_warning=lambda m: warnings.append(f"warning: {m}"))
    test["out_dir"] = str(run_dir)
    previous = _previous_results(run_dir / "results.json")
    incomplete, no_final = completeness(run_dir, test)
    extra = _harness_results(previous)
    if incomplete and no_final:
        from ..checkers.result import UNKNOWN, Result
        extra.append(Result(valid=UNKNOWN, checker="run", error=(
            f"{incomplete}: the run never finished its final phase, so what the final reads "
            f"would show (durability, convergence) is unknown")))
    result = check_history(workload, history, test, extra=extra)
    data = result.to_json()
    if isinstance(previous.get("net"), dict):
        data["net"] = previous["net"]
    if incomplete:
        data["incomplete"] = incomplete
    if not no_write:
        from ..harness.store import StoreWriteError
        old = run_dir / "results.json"
        moved = False
        try:
            if old.is_file():
                os.replace(old, run_dir / "results.previous.json")
                moved = True
            _write_json_atomic(old, data)
        except OSError as e:
            kept = ("the previous results are in results.previous.json" if moved else
                    "results.json was not changed")
            raise StoreWriteError(old, e, f"{kept}; --no-write only prints the verdict") from None
        _write_reports(run_dir, history, test)
    replay = replay_command(test) if test.get("backend") else ""
    summary = RunSummary(valid=result.valid, results=data, test=test, replay=replay,
                         run_dir=str(run_dir), history_ops=len(history),
                         notes=[f"re-checked {hist_path}"] + warnings, incomplete=incomplete)
    if as_json:
        click.echo(json.dumps(summary.to_json(), indent=2, default=str))
    else:
        print_summary(summary)
    return exitcodes.for_validity(result.valid)


def _write_reports(run_dir: Path, history: list, test: dict) -> None:
    """Regenerate the run's reports; a failure is a warning (the verdict stands without them)."""
    from ..harness.report import write_reports
    try:
        write_reports(str(run_dir), history, test)
    except Exception as e:  # noqa: BLE001 - a report must never mask the verdict
        click.echo(f"warning: reports not regenerated: {type(e).__name__}: {e}", err=True)
