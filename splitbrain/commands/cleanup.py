"""`splitbrain cleanup`: remove what a harness that died (SIGKILL, a crash) left behind — and only
that. A test's own teardown removes its own run's things; this command is for runs whose harness
was killed before it could.

What belongs to whom (harness/ownership.py): every run registers its owner (the harness's pid and
start time, so a reused pid never passes for it) in the registry directory (/run/splitbrain as
root, $SPLITBRAIN_STATE_DIR to override), with its run directory, where `pids.jsonl` lists every
node process started. The netns backend's state files there name its namespaces, links and host
iptables rule; Docker containers and networks carry the owner in a label. By default cleanup
ends and removes only what belongs to runs whose owner is gone: node process groups (only
processes that provably belong to them), namespaces, links, host rules, containers and networks.
Everything else is left, and cleanup says what it left and why: a live run's things, and things
with splitbrain's name prefixes that no run recorded (a namespace `sb-notmine`, containers made by
an older splitbrain without an owner label). `--all` is the old sweep: everything with
splitbrain's labels and name prefixes, live runs included. `--dry-run` only lists.

`--hosts hosts.toml` (or `--host n1=USER@ADDRESS ...`): the SSH backend's hosts instead of this
machine: on each, every run folder whose marker names a controller that is gone loses its node
process group, its iptables chain and tagged jump, and the folder (backends/ssh.py
cleanup_hosts). A host that cannot be reached is a harness error (exit 4) naming it.
"""

from __future__ import annotations

import os

import click

from .. import exitcodes


def cleanup_local(log, left: list[str], *, dry_run: bool, all_: bool) -> int:
    """End the node processes of registered runs whose owner is gone; returns groups ended."""
    from ..harness.ownership import group_members, owner_state, read_ledger, registered_runs
    removed = 0
    verb = "would end" if dry_run else "ended"
    for entry_path, entry in registered_runs():
        run_dir = entry.get("run_dir") or "?"
        status, why = owner_state(entry.get("owner"))
        if status != "dead" and not all_:
            left.append(f"run {run_dir}: {why}")
            continue
        for rec in read_ledger(run_dir):
            pids = group_members(rec["pgid"], rec.get("start"))
            if not pids:
                continue
            if not dry_run:
                from ..harness.ownership import kill_group
                pids = kill_group(rec["pgid"], rec.get("start"))
            log(f"{verb} node {rec.get('node')} of {run_dir}: process group {rec['pgid']} "
                f"(pids {', '.join(map(str, pids))}); {why}")
            removed += 1
        if not dry_run:
            # The run marker in the run directory stays: analyze reports the run as cut short.
            try:
                entry_path.unlink()
            except OSError:
                pass
    return removed


def cleanup_ssh(hosts_file, host_args, *, dry_run: bool, all_: bool) -> int:
    """`cleanup --hosts/--host`: the SSH hosts' dead runs (backends/ssh.py cleanup_hosts)."""
    from ..cli import UserError
    from ..harness.backends.ssh import cleanup_hosts
    from ..harness.backends.ssh_hosts import HostsError, SshError, parse_host_args, \
        parse_hosts_file
    from ..harness.runner import ClusterError
    if hosts_file and host_args:
        raise UserError("give either --hosts FILE or --host NODE=USER@ADDRESS, not both")
    try:
        specs = parse_hosts_file(hosts_file) if hosts_file else parse_host_args(host_args)
    except HostsError as e:
        raise UserError(str(e)) from None
    left: list[str] = []
    try:
        removed = cleanup_hosts(specs, click.echo, all_=all_, dry_run=dry_run, left=left)
    except SshError as e:
        raise ClusterError(str(e)) from None
    for why in left:
        click.echo(f"left {why}")
    click.echo(f"{'would remove' if dry_run else 'removed'} {removed} run(s) on "
               f"{len(specs)} host(s); left {len(left)}")
    return exitcodes.VALID


@click.command("cleanup")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed (and left).")
@click.option("--all", "all_", is_flag=True,
              help="Remove everything that looks like splitbrain's, live runs included.")
@click.option("--hosts", "hosts_file", help="Clean the SSH backend's hosts of this hosts file "
              "(TOML) instead of this machine.")
@click.option("--host", "host_args", multiple=True, help="Clean this SSH host instead of this "
              "machine: NODE=[USER@]ADDRESS[:PORT] (repeatable).")
def command(dry_run: bool, all_: bool, hosts_file: str | None = None, host_args=()) -> int:
    """Remove what dead splitbrain runs left: node processes, containers, networks, namespaces,
    links and iptables rules (only of runs whose harness is gone, unless --all); with --hosts,
    what dead runs left on the SSH hosts."""
    if hosts_file or host_args:
        return cleanup_ssh(hosts_file, host_args, dry_run=dry_run, all_=all_)
    from ..harness.backends.docker import cleanup_docker
    left: list[str] = []
    removed = cleanup_local(click.echo, left, dry_run=dry_run, all_=all_)
    removed += cleanup_docker(log=click.echo, all_=all_, dry_run=dry_run, left=left)
    if os.geteuid() == 0:
        from ..harness.backends.netns import cleanup_netns
        removed += cleanup_netns(only_dead_owners=not all_, log=click.echo, dry_run=dry_run,
                                 left=left)
    else:
        click.echo("not root: network namespaces and host rules were not examined", err=True)
    for why in left:
        click.echo(f"left {why}")
    click.echo(f"{'would remove' if dry_run else 'removed'} {removed} item(s); left {len(left)}")
    return exitcodes.VALID
