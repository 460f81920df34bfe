"""The `splitbrain` command line.

Each subcommand lives in its own module `splitbrain/commands/<name>.py` exposing a click command
named `command`; this file only collects them (lazily, so `splitbrain check` never imports the
harness) and turns errors into one line and a documented exit code (splitbrain/exitcodes.py):
a user mistake (bad option, malformed file) is one line on stderr and exit 2, never a traceback;
an unexpected failure of splitbrain itself is one line and exit 4 (set SPLITBRAIN_DEBUG=1 for the
traceback).
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from . import __version__, exitcodes
from .history.errors import HistoryError
from .termsafe import safe_line

# name -> module under splitbrain.commands. A module that does not exist yet is simply not listed.
COMMANDS = {
    "test": "test",
    "check": "check",
    "analyze": "analyze",
    "campaign": "campaign",
    "serve": "serve",
    "systems": "systems",
    "workloads": "workloads",
    "nemeses": "nemeses",
    "cleanup": "cleanup",
    "docker": "docker_cmd",
}


class UserError(click.ClickException):
    """A mistake of the user's: printed as one line, exit code 2."""

    exit_code = exitcodes.USAGE


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return [n for n in COMMANDS if self._load(n) is not None]

    def get_command(self, ctx, name):
        return self._load(name)

    @staticmethod
    def _load(name):
        mod = COMMANDS.get(name)
        if mod is None:
            return None
        try:
            module = importlib.import_module(f"splitbrain.commands.{mod}")
        except ModuleNotFoundError as e:
            if e.name == f"splitbrain.commands.{mod}":
                return None
            raise
        return getattr(module, "command", None)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="splitbrain")
def cli() -> None:
    """splitbrain: Jepsen-style correctness testing for replicated systems.

    \b
    Exit codes: 0 valid, 1 invalid, 2 usage error or bad input,
                3 unknown (undecided), 4 harness error.
    """


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns (and exits with) a documented exit code."""
    try:
        rv = cli.main(args=argv, prog_name="splitbrain", standalone_mode=False)
    except click.exceptions.Abort as e:
        # click turns KeyboardInterrupt into Abort; a run's says where its files are
        # (harness.runner.RunInterrupted).
        msg = getattr(e.__cause__, "message", None) or "interrupted"
        click.echo(f"splitbrain: {msg}", err=True)
        code = 130
    except click.ClickException as e:
        click.echo(f"splitbrain: {safe_line(e.format_message())}", err=True)
        code = e.exit_code
    except HistoryError as e:
        click.echo(f"splitbrain: {safe_line(e.one_line())}", err=True)
        code = exitcodes.USAGE
    except click.exceptions.Exit as e:
        code = e.exit_code
    except KeyboardInterrupt as e:
        # A run says where its files are (harness.runner.RunInterrupted).
        click.echo(f"splitbrain: {getattr(e, 'message', None) or 'interrupted'}", err=True)
        code = 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: no traceback for users
        if os.environ.get("SPLITBRAIN_DEBUG"):
            raise
        click.echo(f"splitbrain: internal error: {type(e).__name__}: {safe_line(e)} "
                   "(set SPLITBRAIN_DEBUG=1 for the traceback)", err=True)
        code = exitcodes.HARNESS_ERROR
    else:
        code = rv if isinstance(rv, int) else 0
    sys.exit(code)


if __name__ == "__main__":
    main()
