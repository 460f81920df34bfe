"""`splitbrain workloads`: the workloads, their operations, state machine and checkers."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..harness.workloads import WORKLOADS, Workload


@click.command("workloads")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def command(as_json: bool) -> int:
    """List the workloads: operations, the in-house state machine, and the checkers they run."""
    infos = [cls().describe() for cls in WORKLOADS.values()]
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return 0
    common = "; ".join(f"--opt workload.{k}=...: {m}"
                       for k, (m, _) in Workload.COMMON_OPTIONS.items())
    table = Table(title="splitbrain workloads", show_lines=True,
                  caption=f"Every workload: {common}")
    for col in ("workload", "ops", "machine", "checkers", "description"):
        table.add_column(col)
    for i in infos:
        opts = "".join(f"\n--opt workload.{k}=... ({v['meaning']}, default {v['default']})"
                       for k, v in i["options"].items() if k not in Workload.COMMON_OPTIONS)
        table.add_row(i["name"], " ".join(i["ops"]),
                      i["machine"] or "(Maelstrom nodes only)", " ".join(i["checkers"]),
                      escape(i["description"] + opts))
    Console(width=140).print(table)
    return 0
