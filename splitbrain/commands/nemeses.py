"""`splitbrain nemeses`: the faults the nemesis can inject, and the partition shapes."""

from __future__ import annotations

import json

import click


@click.command("nemeses")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def command(as_json: bool) -> int:
    """List the nemeses (--nemesis a,b,...) with what each does and what it needs."""
    from ..harness.grudges import SHAPES
    from ..harness.nemesis import DESCRIPTIONS, FAULTS
    rows = [{"name": n, "opens": o, "closes": c, "needs": need, "description": DESCRIPTIONS[n]}
            for n, (o, c, need) in FAULTS.items()]
    if as_json:
        click.echo(json.dumps({"nemeses": rows, "partition_shapes": list(SHAPES)}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table
    table = Table(title="splitbrain nemeses (--nemesis a,b,... | all | none)")
    for col in ("nemesis", "history ops", "what it does"):
        table.add_column(col)
    for r in rows:
        note = " (in-house nodes only)" if r["needs"] in ("clock", "lose-unsynced") else ""
        table.add_row(r["name"], f"{r['opens']} / {r['closes']}", r["description"] + note)
    Console().print(table)
    click.echo("partition shapes: " + ", ".join(SHAPES))
    return 0
