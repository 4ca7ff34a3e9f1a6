"""The documentation runs as written: every code block of the README and of ``docs/``.

Like sqlite-utils' ``tests/test_docs.py``, the blocks are extracted from the Markdown and run:

- ``python`` blocks run unmodified, each in a fresh interpreter and a fresh directory that holds
  what a reader would have made by then (``cluster.key``, as ``openssl rand -hex 32`` makes it);
- ``sh`` blocks run with bash (``set -e``: a failing command fails the test) in a fresh directory
  with this interpreter's ``memrepl`` first on the PATH. The one change made to their text: the
  fixed ports they show (74xx) become free ports picked for the run -- fixed ports would collide
  on a shared test machine. Every process a block leaves behind is killed afterwards. Lines that
  run ``make`` (the repository's own two commands) are checked against the Makefile, not run:
  ``make test`` is this very run, and ``tests/test_demo.py`` runs the demo;
- ``sql`` blocks run, statement by statement, on a store with a conflict log (two nodes that
  wrote the same items concurrently);
- other blocks (no language, ``text``, ``json``) show output or formats and are not run.

The blocks of the README's PostgreSQL section run against the test session's PostgreSQL server
(:mod:`tests.pgserver`), found the way the README says libpq finds it: the ``PGHOST``,
``PGPORT`` and ``PGUSER`` variables. The database they name, ``memrepl_hub``, is made empty
before each block (a block that runs ``createdb`` makes it itself), and their ``sql`` blocks run
on a hub database with a conflict log.

So every CLI command the README shows is exercised, and a change that breaks a documented
behaviour breaks the build. A block that cannot run alone is a documentation bug.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import memrepl
from memrepl.protocol.enums import MemoryTier
from memrepl.sync.manager import MemorySyncManager

from .files import query
from .pgserver import Databases

REPO = Path(__file__).resolve().parents[1]
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent
TIMEOUT_S = 180
#: The ports documentation uses; each becomes a free port when a block runs.
DOC_PORT = re.compile(r"\b74\d\d\b")


#: The README section whose blocks run on PostgreSQL, and the database they name.
POSTGRESQL_SECTION = "PostgreSQL: a hub on a database server"
POSTGRESQL_DATABASE = "memrepl_hub"


@dataclass(frozen=True)
class Block:
    document: Path
    line: int
    language: str
    text: str
    #: The ``##`` heading the block is under.
    section: str = ""

    @property
    def on_postgresql(self) -> bool:
        return self.section == POSTGRESQL_SECTION

    @property
    def name(self) -> str:
        return f"{self.document.relative_to(REPO)}:{self.line}:{self.language or 'plain'}"


def blocks() -> list[Block]:
    found = []
    for document in DOCUMENTS:
        lines = document.read_text().splitlines()
        start = None
        language = section = ""
        for number, line in enumerate(lines, start=1):
            if line.startswith("## ") and start is None:
                section = line[3:].strip()
            elif line.startswith("```") and start is None:
                start, language = number, line[3:].strip()
            elif line.startswith("```"):
                assert start is not None
                text = "\n".join(lines[start : number - 1])
                found.append(Block(document, start, language, text, section))
                start = None
    return found


ALL = blocks()


def of(language: str) -> list[Block]:
    return [block for block in ALL if block.language == language]


def test_the_documents_have_blocks_of_every_kind() -> None:
    assert {block.language for block in ALL} >= {"python", "sh", "sql"}
    shown = ("", "text", "json")  # output and formats, not run
    assert not [b.name for b in ALL if b.language not in ("python", "sh", "sql", *shown)]


def environment(directory: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env.pop("MEMREPL_DB", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def postgresql_for(block: Block, request: pytest.FixtureRequest) -> dict[str, str]:
    """For a block of the PostgreSQL section: its database made anew (empty, unless the block
    runs ``createdb``), and the libpq variables that find the server; else nothing."""
    if not block.on_postgresql:
        return {}
    databases: Databases = request.getfixturevalue("postgres")
    server = databases.server
    server.drop_database(POSTGRESQL_DATABASE)
    if "createdb" not in block.text:
        server.create_database(POSTGRESQL_DATABASE)
    return {"PGHOST": "127.0.0.1", "PGPORT": str(server.port), "PGUSER": "postgres"}


def fresh(tmp_path: Path) -> Path:
    """A directory holding what a reader has made before a block: the cluster key."""
    (tmp_path / "cluster.key").write_text(secrets.token_hex(32) + "\n")
    return tmp_path


@pytest.mark.parametrize("block", of("python"), ids=lambda block: block.name)
def test_a_python_block_runs_as_written(
    block: Block, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    extra = postgresql_for(block, request)
    script = fresh(tmp_path) / "block.py"
    script.write_text(block.text + "\n")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, env=environment(tmp_path, extra),
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{block.name}\n{done.stdout}\n{done.stderr}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def make_targets() -> set[str]:
    text = (REPO / "Makefile").read_text()
    return set(re.findall(r"^([a-z][a-z-]*):", text, flags=re.MULTILINE))


@pytest.mark.parametrize("block", of("sh"), ids=lambda block: block.name)
def test_a_shell_block_runs_as_written(
    block: Block, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    extra = postgresql_for(block, request)
    lines = block.text.splitlines()
    made = [line.split("#")[0].split() for line in lines if line.startswith("make ")]
    for words in made:
        assert words[1] in make_targets(), f"{block.name}: no make target {words[1]!r}"
    script_lines = [line for line in lines if not line.startswith("make ")]
    if made and any(line.startswith("source .venv/") for line in script_lines):
        # The repository's own set-up: it runs in the checkout, with the .venv `make` made.
        if not (REPO / ".venv" / "bin" / "activate").exists():
            pytest.skip("no .venv in the checkout (run through make test)")
        directory = REPO
    else:
        directory = fresh(tmp_path)
    ports: dict[str, str] = {}
    text = DOC_PORT.sub(lambda m: ports.setdefault(m[0], str(free_port())), "\n".join(script_lines))
    out_path, err_path = tmp_path / "block.out", tmp_path / "block.err"
    with out_path.open("w") as out, err_path.open("w") as err:
        # Files, not pipes: a server the block leaves running would hold a pipe open forever.
        process = subprocess.Popen(
            ["bash", "-e", "-c", text], cwd=directory, env=environment(directory, extra),
            stdout=out, stderr=err, start_new_session=True,
        )  # fmt: skip
        try:
            process.wait(timeout=TIMEOUT_S)
        finally:
            # Anything the block left running (a server it started) goes with the session.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    logs = "".join(f"\n== {log.name}\n{log.read_text()}" for log in directory.glob("*.log"))
    out_text, err_text = out_path.read_text(), err_path.read_text()
    assert process.returncode == 0, f"{block.name}\n{out_text}\n{err_text}{logs}"


def write_conflicts(location_a: Path | str, location_b: Path) -> None:
    """node-a and node-b write the same items concurrently and swap their changes."""
    stores = {"node-a": memrepl.open(location_a, node_id="node-a")}
    stores["node-b"] = memrepl.open(location_b, node_id="node-b")
    managers = {}
    try:
        for node_id, store in stores.items():
            managers[node_id] = MemorySyncManager(node_id=node_id)
            for tier in MemoryTier:
                managers[node_id].register_memory_tier(tier, store.tier(tier))
            store.working.merge("shared", {"by": node_id})
            store.episodic.add("event", {"episode_id": "e", "occurred_at_ns": 1, "by": node_id})
        # Both deltas read before either is applied: each side sees the other's write as
        # concurrent, and logs it.
        batches = [
            (target, managers[source].create_delta_batch(tier, target))
            for source, target in (("node-a", "node-b"), ("node-b", "node-a"))
            for tier in MemoryTier
        ]
        for target, batch in batches:
            managers[target].apply_sync_batch(batch)
    finally:
        for store in stores.values():
            store.close()


@pytest.fixture(scope="module")
def conflicted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """node-a's store after node-a and node-b wrote the same items concurrently and swapped."""
    directory = tmp_path_factory.mktemp("conflicts")
    write_conflicts(directory / "node-a.db", directory / "node-b.db")
    return directory / "node-a.db"


@pytest.mark.parametrize("block", of("sql"), ids=lambda block: block.name)
def test_a_sql_block_runs_on_a_store_with_conflicts(
    block: Block, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    statements = [s for s in block.text.split(";") if s.strip() and not _comment(s)]
    assert statements, block.name
    if block.on_postgresql:
        # The hub's side of the same conflicts, in PostgreSQL's SQL.
        postgresql_for(block, request)
        url = request.getfixturevalue("postgres").server.url(POSTGRESQL_DATABASE)
        write_conflicts(url, tmp_path / "node-b.db")
        for statement in statements:
            query(url, statement)
        assert query(url, "SELECT count(*) FROM conflicts")[0][0] >= 1
        return
    conn = sqlite3.connect(f"file:{request.getfixturevalue('conflicted')}?mode=ro", uri=True)
    try:
        for statement in statements:
            conn.execute(statement).fetchall()
        assert conn.execute("SELECT count(*) FROM conflicts").fetchone()[0] >= 1
    finally:
        conn.close()


def _comment(statement: str) -> bool:
    return all(line.strip().startswith("--") or not line.strip() for line in statement.splitlines())
