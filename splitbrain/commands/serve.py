"""`splitbrain serve [STORE]`: browse the store in a web browser (splitbrain/serve/).

Listens on 127.0.0.1 (only this machine) unless `--host` says otherwise; `--port 0` picks a free
port. Prints the address, serves until Ctrl-C (exit 0). A store that does not exist, or an address
it cannot listen on, is a one-line error and exit 2.
"""

from __future__ import annotations

import click

from ..cli import UserError

DEFAULT_PORT = 8080   # Jepsen's `lein run serve` port


@click.command("serve")
@click.argument("store", default="store", required=False)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (0.0.0.0: every interface; the UI has no login).")
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=click.IntRange(0, 65535),
              help="Port to listen on (0: pick a free one; the address is printed).")
@click.option("--verbose", is_flag=True, help="Log every request on stderr.")
def command(store: str, host: str, port: int, verbose: bool) -> int:
    """Serve a local web UI over STORE (default ./store): the runs (filterable), each run's
    results, timeline, plots, counterexamples and logs, and the campaigns."""
    import os

    from ..serve import make_server, serve_forever

    if not os.path.isdir(store):
        raise UserError(f"{store}: no such store directory (runs are written to ./store by "
                        f"default; give the store's path)")
    try:
        server = make_server(store, host, port, quiet=not verbose)
    except OSError as e:
        raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    click.echo(f"serving {server.index.root} at {server.url} (Ctrl-C to stop)", )
    try:
        serve_forever(server)
    except KeyboardInterrupt:
        click.echo("stopped")
    return 0
