"""Shared pytest fixtures and the CI rule for environment-dependent tests.

Tests that need root or Docker skip only outside CI: with CI=true a missing dependency fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# Porcupine's test data, shipped in the repository with its licence (tests/data/porcupine/).
PORCUPINE = REPO / "tests" / "data" / "porcupine"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, what: str) -> None:
    """Skip outside CI, fail in CI, when an environment dependency is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI=true but {what} is not available", pytrace=False)
    pytest.skip(f"{what} not available")


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def require_node_image() -> None:
    """A Docker engine, and the offline base image or what building it needs.

    The base image (harness/backends/docker_image.py) is made with debootstrap, which needs root.
    Once it exists neither is needed. The skip reason names exactly what is missing, so a machine
    with Docker but no debootstrap is told to install debootstrap, not blamed for not being root.
    """
    require(docker_available(), "a Docker engine")
    from splitbrain.harness.backends.docker_image import base_tag
    have = subprocess.run(["docker", "image", "inspect", base_tag()],
                          capture_output=True).returncode == 0
    if have:
        return
    missing = []
    if shutil.which("debootstrap") is None:
        missing.append("debootstrap (apt-get install debootstrap)")
    if os.geteuid() != 0:
        missing.append("root (debootstrap runs as root)")
    if missing:
        what = (f"the {base_tag()} Docker image is not built, and building it needs "
                f"{' and '.join(missing)}")
        if IN_CI:
            pytest.fail(f"CI=true but {what}", pytrace=False)
        pytest.skip(what)


def default_sigint() -> None:
    """`preexec_fn` for a child that a test interrupts with SIGINT: Ctrl-C's default action.

    A shell without job control starts background jobs with SIGINT ignored, and children inherit
    that; a Python started so never turns SIGINT into KeyboardInterrupt. Tests of Ctrl-C must
    not depend on how the test run itself was launched."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture
def porcupine_dir() -> Path:
    require(PORCUPINE.is_dir(), f"the Porcupine corpus at {PORCUPINE}")
    return PORCUPINE
