"""`splitbrain analyze RUN`: re-check a stored run with the current checkers.

RUN is a run directory of the store (`store/raft-append-log/20260101T120000.000Z`, or
`store/latest`). It reads `test.json` and `history.jsonl`, runs the workload's checkers again,
prints the verdict like `splitbrain test` does, rewrites `results.json` (the previous one is
kept as `results.previous.json`) and regenerates the reports (timeline.html, the plots, and
messages.html when the run has a messages.jsonl). The `recovery`/`liveness` results of the original run depend on
observations that are not in the history and are not recomputed. Exit code from the validity.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from .. import exitcodes
from ..cli import UserError


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
    result = check_history(workload, history, test)
    data = result.to_json()
    if not no_write:
        old = run_dir / "results.json"
        if old.is_file():
            os.replace(old, run_dir / "results.previous.json")
        _write_json_atomic(old, data)
        _write_reports(run_dir, history, test)
    replay = replay_command(test) if test.get("backend") else ""
    summary = RunSummary(valid=result.valid, results=data, test=test, replay=replay,
                         run_dir=str(run_dir), history_ops=len(history),
                         notes=[f"re-checked {hist_path}"] + warnings)
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
