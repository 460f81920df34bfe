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
SHARED = REPO.parent / "shared"
PORCUPINE = SHARED / "data" / "porcupine"
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
