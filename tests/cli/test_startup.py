"""The command starts fast because it imports only what a command uses.

Not a timing test (``bench/cli_bench.py`` measures the time): each case runs the command in a
fresh interpreter and lists the heavy modules it loaded. ``--help`` builds every command's parser,
so a command module that imports SQLAlchemy, networkx or the policy package at module level --
instead of inside the function that needs it -- fails here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import memrepl

#: Packages that cost tenths of a second to import and that --help and get never need.
HEAVY = ("sqlalchemy", "networkx", "alembic", "aiosqlite", "memrepl.policy", "memrepl.node")

PROBE = """
import contextlib, io, json, sys
from memrepl.cli.main import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
heavy = sorted({name for name in sys.modules for root in HEAVY if name == root
                or name.startswith(root + ".")})
print(json.dumps({"code": code, "heavy": heavy}))
"""


def loaded(*args: str) -> dict[str, object]:
    program = f"HEAVY = {HEAVY!r}\n{PROBE}"
    done = subprocess.run(
        [sys.executable, "-c", program, *args], capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize("args", [["--help"], ["get", "--help"], ["status", "--help"]])
def test_help_imports_nothing_heavy(args: list[str]) -> None:
    assert loaded(*args) == {"code": 0, "heavy": []}


def test_get_imports_nothing_heavy(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with memrepl.open(path, node_id="node-a") as store:
        store.working.add("wm-1", {"data": "value"})
    assert loaded("get", "working", "wm-1", "--db", str(path)) == {"code": 0, "heavy": []}
    assert loaded("get", "working", "nothing", "--db", str(path)) == {"code": 1, "heavy": []}


def test_a_command_that_writes_loads_the_storage_layer(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with memrepl.open(path, node_id="node-a"):
        pass
    found = loaded("put", "working", "wm-1", "{}", "--db", str(path))
    assert found["code"] == 0
    assert "sqlalchemy" in found["heavy"]  # type: ignore[operator]
