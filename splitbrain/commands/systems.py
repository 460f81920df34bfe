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
@click.argument("system", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--recipes", is_flag=True,
              help="Print, for each bug switch, a short real run that exposes it.")
def command(system: str | None, as_json: bool, recipes: bool) -> int:
    """List the in-house systems: replication model, bug switches and crash points.

    `splitbrain systems SYSTEM` shows one system in full: what it is, its options (--opt
    NAME=VALUE, with defaults) and what each bug switch (--bug NAME) breaks.
    """
    if system is not None:
        if system not in SYSTEM_PATHS:
            from ..cli import UserError
            raise UserError(f"unknown system {system!r} (choose from {', '.join(SYSTEM_PATHS)})")
        infos = [_describe(system)]
        if not infos[0]["available"]:
            from ..cli import UserError
            raise UserError(f"system {system}: not available ({infos[0]['error']})")
    else:
        infos = [_describe(n) for n in SYSTEM_PATHS]
        infos = [i for i in infos if i["available"]]
    if recipes:
        return _recipes(infos)
    if as_json:
        click.echo(json.dumps(infos[0] if system else infos, indent=2))
        return 0
    if system is not None:
        _print_one(infos[0])
        return 0
    # Compact (issue 18): one row per system, bug names whole (they are what users type); the
    # descriptions are in `splitbrain systems SYSTEM`.
    table = Table(title="splitbrain systems", show_lines=True,
                  caption="splitbrain systems SYSTEM: its options and what each bug does")
    table.add_column("system", no_wrap=True)
    table.add_column("model")
    table.add_column("bug switches (--bug NAME)", no_wrap=True)
    table.add_column("crash points", no_wrap=True)
    for i in infos:
        table.add_row(i["name"], f"{i['model']}\n({i['logs']})", "\n".join(i["bugs"]) or "-",
                      "\n".join(i["crash_points"]) or "-")
    Console().print(table)
    return 0


def _print_one(i: dict) -> None:
    from rich.markup import escape
    from ..systems.registry import option_label
    console = Console()
    console.print(f"[bold]{i['name']}[/bold]: {escape(i['description'])}")
    console.print(f"model: {i['model']}; logs {i['logs']}", markup=False, highlight=False)
    opts = Table(title=f"{i['name']} options (--opt NAME=VALUE)", show_lines=False)
    opts.add_column("option", no_wrap=True)
    opts.add_column("default", no_wrap=True)
    opts.add_column("meaning")
    for k, v in i["options"].items():
        opts.add_row(option_label(k), escape(json.dumps(v["default"])), escape(v["meaning"]))
    console.print(opts)
    bugs = Table(title=f"{i['name']} bug switches (--bug NAME)", show_lines=True)
    bugs.add_column("bug", no_wrap=True)
    bugs.add_column("what it breaks")
    for b, d in i["bugs"].items():
        bugs.add_row(b, escape(d))
    console.print(bugs)
    console.print(f"crash points (harness.crash_point_types): "
                  f"{', '.join(i['crash_points']) or 'none'}", markup=False, highlight=False)
