"""Fixtures for the storage tests: stores on real files under tmp_path (``opener``, in
``tests/conftest.py``), and a child Python that imports this checkout."""

from __future__ import annotations

import os
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


@pytest.fixture
def store(opener: Callable[..., Store]) -> Store:
    return opener()
