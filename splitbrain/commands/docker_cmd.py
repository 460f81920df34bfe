"""`splitbrain docker build-image`: build (or reuse) the node image without a registry."""

from __future__ import annotations

import click

from .. import exitcodes


@click.group("docker")
def command() -> None:
    """Docker helpers: the offline node image."""


@command.command("build-image")
@click.option("--rebuild", is_flag=True, help="Rebuild the node layer even if its tag exists.")
def build_image(rebuild: bool) -> int:
    """Build splitbrain-node from a debootstrap rootfs (cached; a second run reuses it)."""
    from ..harness.backends.docker_image import ImageBuildError, ensure_image
    try:
        tag = ensure_image(log=lambda m: click.echo(m, err=True), rebuild=rebuild)
    except ImageBuildError as e:
        click.echo(f"splitbrain: image build failed: {e}", err=True)
        return exitcodes.HARNESS_ERROR
    click.echo(tag)
    return exitcodes.VALID
