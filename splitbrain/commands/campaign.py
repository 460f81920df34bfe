"""`splitbrain campaign FILE`: a matrix of tests from a TOML file, run, summarized, gated.

The file's format and its decisions: splitbrain/campaign/spec.py; running, the files written
and the exit code: splitbrain/campaign/run.py; JUnit XML: splitbrain/campaign/junit.py.

On a terminal a live table shows each cell's progress; elsewhere (CI logs) one line per finished
run. At the end a summary table: per cell the runs, valid / invalid / unknown / error counts, the
anomalies by name, and the replay command of every failure (and, on sim, the command that
replays its Hypothesis-shrunk minimal fault schedule).
"""

from __future__ import annotations

import click

from ..cli import UserError
from ..termsafe import echo


def _status(c: dict, running: int) -> str:
    if c["ok"] is True:
        return "[green]ok[/green]" if running == 0 else "[green]caught[/green], shrinking"
    if c["ok"] is False:
        return "[red]FAIL[/red]"
    return f"running ({running})" if running else "waiting"


def _table(crun, final: bool = False):
    from rich.table import Table
    from rich.markup import escape
    from ..campaign.run import summary_rows
    rows = summary_rows(crun.state)
    title = (f"campaign {crun.camp.name} ({crun.camp.backend}, {crun.jobs} job"
             f"{'s' if crun.jobs > 1 else ''})")
    t = Table(title=escape(title), expand=False)
    width = max([len(r["id"]) for r in rows] + [4])
    # Short headers keep the numbers narrow so that the cell ids stay whole at 80 columns.
    for col, kw in (("cell", {"overflow": "fold", "min_width": min(width, 44)}),
                    ("expect", {}), ("runs", {"justify": "right"}),
                    ("val", {"justify": "right"}), ("inv", {"justify": "right"}),
                    ("unk", {"justify": "right"}), ("err", {"justify": "right"}),
                    ("anomalies", {"overflow": "fold"}), ("status", {"no_wrap": True})):
        t.add_column(col, **kw)
    for r in rows:
        running = crun.running.get(r["id"], 0)
        an = ", ".join(f"{n} x{k}" for n, k in sorted(r["anomalies"].items())) or "-"
        t.add_row(escape(r["id"]), r["expect"] or "-", f"{r['runs']}/{r['seeds']}",
                  str(r["valid"]), str(r["invalid"]), str(r["unknown"]), str(r["error"]),
                  escape(an), _status(r, 0 if final else running))
    return t


def _failures(crun) -> list[str]:
    """The replay command of every run whose verdict is not valid, cell by cell."""
    from ..campaign.run import summary_rows
    out = []
    for r in summary_rows(crun.state):
        for run in r["failures"]:
            out.append(f"{r['id']} seed {run['seed']}: {run['verdict'].upper()}"
                       + (f" ({run['error']})" if run.get("error") else "")
                       + ("" if run["ok"] else "  [not expected]"))
            if run.get("run_dir"):
                out.append(f"  store: {crun.store_root}/{run['run_dir']}")
            out.append(f"  replay: {run['replay']}")
            sh = run.get("shrunk") or {}
            if sh.get("status") == "shrunk":
                out.append(f"  shrunk to {sh['faults']} of {sh['faults_before']} faults "
                           f"({sh['examples']} schedules, {sh['duration_s']:.1f}s): "
                           f"{sh['replay']}")
            elif sh.get("status") in ("not-reproduced", "error"):
                out.append(f"  shrink: {sh['status']} {sh.get('error', '')}".rstrip())
    return out


@click.command("campaign")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--jobs", "-j", type=int, help="Tests at once (sim and local; default the file's "
              "`jobs`, else 1).")
@click.option("--backend", help="Override the file's backend: sim, local, netns, docker.")
@click.option("--expect", type=click.Choice(["valid", "invalid", "none"]),
              help="Expected verdict of every cell (default: invalid for bug switches, valid "
              "otherwise, or the file's `expect`).")
@click.option("--test-count", type=int, help="Seeds 0..N-1 for every cell (Jepsen's "
              "--test-count), overriding the file.")
@click.option("--junit", "junit_path", type=click.Path(dir_okay=False),
              help="Also write the JUnit XML here (always written into the campaign's folder).")
@click.option("--no-shrink", is_flag=True, help="sim: do not shrink failures with Hypothesis.")
@click.option("--shrink-time", type=float, default=120.0, show_default=True,
              help="sim: seconds the Hypothesis shrink of one failure may take.")
@click.option("--store", default="store", show_default=True, help="The store root directory.")
@click.option("--json", "as_json", is_flag=True, help="Print campaign.json at the end instead "
              "of the tables.")
def command(file, jobs, backend, expect, test_count, junit_path, no_shrink, shrink_time, store,
            as_json) -> int:
    """Run a campaign: targets x workloads x nemeses x seeds from a TOML FILE.

    \b
    [campaign]
    name = "nightly"
    backend = "sim"                  # or local, netns, docker
    systems = ["raft", "vr"]         # and/or bins = [...], dbs = [...]
    bugs = ["raft/stale-reads"]      # or "all"; each expected invalid
    workloads = ["append-log"]
    nemeses = ["partition,kill"]     # one entry per nemesis combination
    seeds = [1, 2]                   # or test_count = N
    time_limit = 5

    Per-target settings go in [target."raft/stale-reads"] tables (workloads, nemeses, seeds,
    test_count, time_limit, nodes, concurrency, rate, expect, opts). Writes
    STORE/campaigns/NAME/TIMESTAMP/ (campaign.json, junit.xml). Exit code: 1 when a cell
    misses its expectation, else 4 on a harness error, else 3 when undecided, else 0.
    """
    from rich.console import Console
    from ..campaign import spec
    from ..campaign.run import CampaignRun, dumps
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs must be >= 1, got {jobs}")
    if test_count is not None and test_count < 1:
        raise UserError(f"--test-count must be >= 1, got {test_count}")
    camp = spec.load(file, backend=backend, expect=expect, test_count=test_count, store=store)
    if no_shrink:
        camp.shrink = False
    console = Console()
    if not console.is_terminal:
        # CI logs: wide enough that cell ids and anomaly names are not folded.
        console = Console(width=max(console.width, 160))
    crun = CampaignRun(camp, store, jobs=jobs, shrink_time_s=shrink_time)
    if crun.jobs_note and not as_json:
        console.print(crun.jobs_note)
    if not as_json:
        click.echo(f"campaign {camp.name}: {len(camp.cells)} cells, "
                   f"{sum(len(c.tests) for c in camp.cells)} runs at most; files: {crun.dir}")
    live = None
    if console.is_terminal and not as_json:
        from rich.live import Live
        live = Live(_table(crun), console=console, refresh_per_second=4, transient=True)
        live.start()

    def on_change(r):
        if live is not None:
            live.update(_table(r))

    def on_run(cell, run):
        if live is None and not as_json:
            an = ", ".join(f"{n} x{k}" for n, k in sorted(run["anomalies"].items()))
            echo(f"{cell['id']} seed {run['seed']}: {run['verdict'].upper()}"
                 + (f" ({an})" if an else "") + ("" if run["ok"] else " [not expected]")
                 + f" {run['duration_s']:.1f}s")

    try:
        code = crun.execute(on_change=on_change, on_run=on_run)
    finally:
        if live is not None:
            live.stop()
        paths = crun.write_junit(junit_path)
    if as_json:
        click.echo(dumps(crun.state))
        return code
    console.print(_table(crun, final=True))
    for line in _failures(crun):
        echo(line)
    click.echo(f"campaign.json: {crun.dir / 'campaign.json'}")
    click.echo(f"junit: {', '.join(paths)}")
    click.echo(f"exit code {code}")
    return code
