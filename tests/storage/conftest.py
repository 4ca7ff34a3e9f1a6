"""Fixtures for the storage tests: stores on real files under tmp_path (``opener``, in
``tests/conftest.py``), and a child Python that imports this checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from memrepl.storage import Store

REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def subprocess_env() -> dict[str, str]:
    """The environment for a child Python: the checkout importable, as in this process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in a child run from the repository root, this checkout importable."""
    return subprocess.run(
        [PYTHON, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=120,
        check=False,
    )


def alembic_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``alembic ARGS`` run from the repository root, as a developer would."""
    return run_python("-m", "alembic", *args)


@pytest.fixture
def store(opener: Callable[..., Store]) -> Store:
    return opener()
