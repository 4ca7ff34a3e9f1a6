"""The real ``memrepl`` command in child processes: the console script and ``python -m memrepl``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "memrepl"

pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason="the console script is not installed")


def run(
    *args: str | Path, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(SCRIPT)] if args[0] != "-m" else [sys.executable]
    return subprocess.run(
        [*command, *map(str, args)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_end_to_end(tmp_path: Path) -> None:
    db = tmp_path / "e2e.db"
    created = run("init", "--node-id", "node-e2e", "--db", db)
    assert (created.returncode, created.stderr) == (0, "")
    assert created.stdout.startswith(f"created store {db} for node 'node-e2e'")

    put = run(
        "put", "episodic", "ev-1", "-", "--priority", "high", "--db", db, stdin='{"what": "hello"}'
    )
    assert put.returncode == 0, put.stderr
    assert json.loads(put.stdout)["content"] == {"what": "hello"}

    got = run("-m", "memrepl", "get", "L2", "ev-1", env={"MEMREPL_DB": str(db)})
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["origin_node"] == "node-e2e"

    listed = run("list", "episodic", "--nl", "--db", db)
    assert [json.loads(line)["item_id"] for line in listed.stdout.splitlines()] == ["ev-1"]

    missing = run("-m", "memrepl", "get", "episodic", "nope", "--db", db)
    assert missing.returncode == 1
    assert missing.stdout == ""
    assert (
        missing.stderr == "memrepl: error: get of item 'nope': no live item in the episodic tier\n"
    )

    usage = run("put", "episodic", "--db", db)
    assert usage.returncode == 2
    assert usage.stderr.count("\n") == 1 and usage.stderr.startswith("memrepl: error: ")

    refused = run("sql", "DELETE FROM episodic_items", "--db", db)
    assert refused.returncode == 1
    assert "read-only" in refused.stderr and refused.stderr.count("\n") == 1
    counted = run("sql", "SELECT count(*) AS n FROM episodic_items", "--json", "--db", db)
    assert json.loads(counted.stdout) == [{"n": 1}]

    status = run("status", "--json", "--db", db)
    assert json.loads(status.stdout)["tiers"][1]["items"] == 1
    assert run("db", "current", "--db", db).stdout.endswith("up to date\n")
    assert run("conflicts", "--json", "--db", db).stdout == "[]\n"
    assert "<graphml" in run("graph", "export", "--db", db).stdout


def test_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    db = tmp_path / "pipe.db"
    assert run("-m", "memrepl", "init", "--node-id", "n", "--db", db).returncode == 0
    # `memrepl sql ... | head -1`: the reader goes away while the command is still writing.
    many = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000) "
    child = subprocess.Popen(
        [str(SCRIPT), "sql", many + "SELECT x FROM c", "--nl", "--db", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None and child.stderr is not None
    assert child.stdout.readline() == b'{"x": 1}\n'
    child.stdout.close()
    assert child.wait(timeout=60) == 1
    assert child.stderr.read() == b""
    child.stderr.close()
