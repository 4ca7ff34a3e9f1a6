"""``make demo``: it runs on its own, leaves nothing running, and what it suggests next works."""

from __future__ import annotations

import contextlib
import io
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from memrepl.cli.main import main

REPO = Path(__file__).resolve().parents[1]


def test_the_demo_runs_and_every_next_step_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "memrepl.demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "converged" in done.stdout
    assert all(f"node-{n} exited with 0" in done.stdout for n in "abc")
    start = lines.index("what to try next (the stores stay; the commands are in .venv):")
    steps = [line.strip() for line in lines[start + 1 :]]
    assert steps[0].startswith("source .venv/bin/activate")
    commands = [shlex.split(step, comments=True) for step in steps if step.startswith("memrepl ")]
    assert len(commands) >= 5
    # The conflict queries it printed can be copied and run as they are.
    shown_sql = [shlex.split(line.strip()[2:]) for line in lines if line.strip().startswith("$ ")]
    assert len(shown_sql) == 3
    monkeypatch.chdir(tmp_path)
    for command in [*shown_sql, *commands]:
        assert command[0] == "memrepl"
        output = io.StringIO()
        with contextlib.redirect_stdout(output):
            code = main(command[1:])
        assert code == 0, command
        assert output.getvalue(), command
