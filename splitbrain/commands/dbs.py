"""`splitbrain dbs`: the real databases splitbrain tests, with their workloads, options, known-bad
modes (options a correct harness must catch) and the faults that do not apply to them."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..dbs import db_names, get_db
from ..dbs.base import DbMissing


def _info(name: str) -> dict:
    cls = get_db(name)
    info = cls.describe()
    try:
        cls.require_installed()
        info["installed"] = True
    except DbMissing as e:
        info["installed"] = False
        info["missing"] = str(e)
    return info


@click.command("dbs")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def command(as_json: bool) -> int:
    """List the real databases (splitbrain test --db NAME): workloads, options, known-bad modes."""
    infos = [_info(n) for n in db_names()]
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return 0
    table = Table(title="splitbrain dbs (splitbrain test --db NAME; backends netns (default), "
                        "docker, local = loopback)", show_lines=True)
    for col in ("db", "workloads", "options (--opt NAME=VALUE)", "known-bad modes",
                "faults that do not apply"):
        table.add_column(col)
    for i in infos:
        opts = "\n".join(f"{k}: {o['meaning']} (default {o['default']})"
                         for k, o in i["options"].items())
        bad = "\n".join(f"{k}: {v}" for k, v in i["known_bad"].items())
        refused = "\n".join(f"{k}: {v}" for k, v in i["refused_faults"].items())
        name = i["name"] + ("" if i["installed"] else f"\n(NOT INSTALLED: {i['missing']})")
        table.add_row(escape(name + "\n" + i["description"]), " ".join(i["workloads"]),
                      escape(opts), escape(bad), escape(refused))
    Console(width=160).print(table)
    return 0
