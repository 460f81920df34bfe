"""`splitbrain systems`: the in-house systems, their replication model and their bug switches."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table

from ..systems.registry import SYSTEM_PATHS, get_system


def _describe(name: str) -> dict:
    try:
        cls = get_system(name)
    except (ImportError, AttributeError) as e:
        return {"name": name, "available": False, "error": str(e)}
    return {
        "name": name,
        "available": True,
        "model": cls.MODEL,
        "logs": cls.LOGS,
        "description": cls.DESCRIPTION,
        "bugs": dict(cls.BUGS),
        "options": {k: {"meaning": m, "default": d} for k, (m, d) in cls.OPTIONS.items()},
        "crash_points": dict(cls.CRASH_POINTS),
    }


def _recipes(infos: list[dict]) -> int:
    from ..harness.recipes import RECIPES, command
    for i in infos:
        for bug in i["bugs"]:
            r = RECIPES.get((i["name"], bug))
            if r is None:
                click.echo(f"# {i['name']} --bug {bug}: no recipe\n")
                continue
            click.echo(f"# {i['name']} --bug {bug}: {r.why}\n{command(i['name'], bug)}\n")
    return 0


@click.command("systems")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--recipes", is_flag=True,
              help="Print, for each bug switch, a short real run that exposes it.")
def command(as_json: bool, recipes: bool) -> int:
    """List the in-house systems: replication model, what they log, and their bug switches."""
    infos = [_describe(n) for n in SYSTEM_PATHS]
    infos = [i for i in infos if i["available"]]
    if recipes:
        return _recipes(infos)
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return 0
    table = Table(title="splitbrain systems", show_lines=True)
    for col in ("system", "model", "logs", "bug switches (--bug NAME)", "crash points"):
        table.add_column(col)
    for i in infos:
        bugs = "\n".join(f"[bold]{b}[/bold]: {d}" for b, d in i["bugs"].items())
        points = ", ".join(i["crash_points"]) or "-"
        table.add_row(i["name"], i["model"], i["logs"], bugs or "-", points)
    Console().print(table)
    return 0
