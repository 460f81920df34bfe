"""`splitbrain cleanup`: remove what a crashed harness left behind — containers and networks
labelled io.splitbrain.run, network namespaces sb-*, links sbr-*/sbv-*/sbp-*, and host iptables
rules tagged splitbrain-*. A test's own teardown does this for its own run; this command is for
runs whose harness was killed before it could."""

from __future__ import annotations

import os

import click

from .. import exitcodes


@click.command("cleanup")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def command(dry_run: bool) -> int:
    """Remove leftover splitbrain containers, networks, namespaces, links and iptables rules."""
    from ..harness.backends.docker import LABEL
    if dry_run:
        import subprocess
        out = subprocess.run(
            f"docker ps -a --filter label={LABEL} --format '{{{{.Names}}}}' 2>/dev/null;"
            f"docker network ls --filter label={LABEL} --format '{{{{.Name}}}}' 2>/dev/null;"
            "ip netns list 2>/dev/null | grep '^sb-';"
            "ip -o link show 2>/dev/null | grep -oE 'sb[rvp]-[^:@ ]+';"
            "iptables -S FORWARD 2>/dev/null | grep splitbrain-",
            shell=True, capture_output=True, text=True).stdout.strip()
        click.echo(out or "nothing to remove")
        return exitcodes.VALID
    removed = 0
    from ..harness.backends.docker import cleanup_docker
    removed += cleanup_docker(log=click.echo)
    if os.geteuid() == 0:
        from ..harness.backends.netns import cleanup_netns
        removed += cleanup_netns(log=click.echo)
    else:
        click.echo("not root: network namespaces and host rules were not examined", err=True)
    click.echo(f"removed {removed} item(s)")
    return exitcodes.VALID
