"""Alembic owns the schema: upgrade on open, no-op reopen, one head, metadata == migrations,
the alembic CLI from the repository root, and a database from a newer memrepl refused."""

from __future__ import annotations

import sqlite3
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from memrepl.errors import SchemaTooNewError
from memrepl.storage import Store
from memrepl.storage import open as open_store
from memrepl.storage.engine import create_engine
from memrepl.storage.keyword import FTS_TABLES
from memrepl.storage.migrate import (
    HEAD_REVISION,
    REPLICATION_REVISION,
    alembic_config,
    current_revision,
    include_name,
    known_revisions,
    migrations_location,
)
from memrepl.storage.schema import metadata

from ..conftest import Locator
from ..files import dump, query, table_names
from .conftest import alembic_cli, run_python

#: The keyword indexes (migration 0006): FTS5 tables and their shadow tables, outside the metadata.
INDEX_TABLES = {
    fts + shadow for fts in FTS_TABLES for shadow in ("", "_config", "_data", "_docsize", "_idx")
}
TABLES = {*metadata.tables, "alembic_version", *INDEX_TABLES}
#: On PostgreSQL the keyword indexes are plain tables (with a GIN index each): no shadows.
POSTGRESQL_TABLES = {*metadata.tables, "alembic_version", *FTS_TABLES}


def tables(path: Path | str) -> set[str]:
    return table_names(path)


def all_tables(backend: str) -> set[str]:
    return TABLES if backend == "sqlite" else POSTGRESQL_TABLES


def test_open_upgrades_an_empty_file(
    locate: Locator, opener: Callable[..., Store], backend: str
) -> None:
    db_path = locate("empty", migrated=False)
    if backend == "sqlite":
        assert isinstance(db_path, Path)
        db_path.touch()
    assert tables(db_path) == set()
    store = opener(node_id="node-a", path=db_path)
    assert tables(db_path) == all_tables(backend)
    assert query(db_path, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    ((node_id, clock, created, version),) = query(
        db_path, "SELECT node_id, clock_last_ns, created_at_ns, created_by_version FROM node"
    )
    assert (node_id, clock) == ("node-a", 0)
    assert created > 0
    assert version
    with store.read() as conn:
        assert current_revision(conn) == HEAD_REVISION


def test_reopen_is_a_no_op_that_never_loads_alembic(
    db_path: Path, opener: Callable[..., Store]
) -> None:
    opener().close()
    before = dump(db_path)
    script = """
        import sys
        import memrepl.storage
        with memrepl.storage.open(sys.argv[1], node_id="node-a") as store:
            pass
        loaded = sorted(name for name in sys.modules if name.split(".")[0] == "alembic")
        assert not loaded, loaded
    """
    done = run_python("-c", textwrap.dedent(script), str(db_path))
    assert done.returncode == 0, done.stderr
    assert dump(db_path) == before


def test_exactly_one_head_and_it_is_head_revision() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert script.get_heads() == [HEAD_REVISION]
    assert HEAD_REVISION in known_revisions()
    assert migrations_location().joinpath("env.py").is_file()


def test_every_migration_says_whether_peers_must_upgrade_with_it() -> None:
    """The handshake compares REPLICATION_REVISION: adding a migration means deciding which kind
    it is, and the constant follows the decision."""
    script = ScriptDirectory.from_config(alembic_config())
    newest_first = list(script.walk_revisions())
    says = {r.revision: getattr(r.module, "changes_replication", None) for r in newest_first}
    assert all(isinstance(flag, bool) for flag in says.values()), says
    assert next(r for r in says if says[r]) == REPLICATION_REVISION
    # 0003 only drops a redundant index: a rolling upgrade from 0002. 0008 (the receiver asks
    # for snapshots) changes replication: nodes on either side of it refuse each other.
    assert says["0003"] is False
    assert says["0008"] is True


def test_upgrade_from_0002_keeps_the_conflict_log_and_drops_the_redundant_index(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    done = alembic_cli("-x", f"db={path}", "upgrade", "0002")
    assert done.returncode == 0, done.stderr
    index = "SELECT name FROM sqlite_master WHERE name = 'ix_conflicts_tier_item'"
    assert query(path, index) == [("ix_conflicts_tier_item",)]
    conn = sqlite3.connect(path)
    conn.execute(
        "INSERT INTO conflicts (tier, item_id, winner_ts, winner_origin, winner_content, "
        "winner_deleted, winner_context, loser_ts, loser_origin, loser_content, loser_deleted, "
        "loser_context, resolved_content, rule, peer_id, batch_id, detected_at_ns) VALUES "
        "(1, 'x', 2, 'b', '{}', 0, '{}', 1, 'a', '{}', 0, '{}', '{}', 'lww', 'b', 'b1', 3)"
    )
    conn.commit()
    conn.close()
    logged = query(path, "SELECT * FROM conflicts")
    with open_store(path, node_id="node-a") as store, store.read() as conn:
        assert current_revision(conn) == HEAD_REVISION
        assert (
            compare_metadata(
                MigrationContext.configure(conn, opts={"include_name": include_name}), metadata
            )
            == []
        )
    assert query(path, "SELECT * FROM conflicts") == logged
    assert query(path, index) == []
    assert query(path, "PRAGMA integrity_check") == [("ok",)]
    # And back: the downgrade restores the index.
    done = alembic_cli("-x", f"db={path}", "downgrade", "0002")
    assert done.returncode == 0, done.stderr
    assert query(path, index) == [("ix_conflicts_tier_item",)]


def test_metadata_equals_the_migrated_database(store: Store) -> None:
    with store.read() as conn:
        context = MigrationContext.configure(
            conn,
            opts={
                "compare_type": True,
                "compare_server_default": True,
                "include_name": include_name,
            },
        )
        assert compare_metadata(context, metadata) == []


def test_unknown_revision_is_refused(db_path: Path, opener: Callable[..., Store]) -> None:
    with opener() as store:
        store.working.add("x", {"v": 1})
    query(db_path, "UPDATE alembic_version SET version_num = '0042_from_the_future'")
    before = dump(db_path)
    with pytest.raises(SchemaTooNewError) as caught:
        open_store(db_path, node_id="node-a")
    assert caught.value.revision == "0042_from_the_future"
    message = str(caught.value)
    assert "0042_from_the_future" in message
    assert "newer memrepl" in message
    assert "upgrade memrepl" in message
    assert dump(db_path) == before


def test_alembic_cli_from_the_repository_root(tmp_path: Path) -> None:
    path = tmp_path / "cli.db"
    done = alembic_cli("-x", f"db={path}", "upgrade", "head")
    assert done.returncode == 0, done.stderr
    assert tables(path) == TABLES
    assert query(path, "PRAGMA journal_mode") == [("wal",)]
    current = alembic_cli("-x", f"db={path}", "current")
    assert current.returncode == 0, current.stderr
    assert HEAD_REVISION in current.stdout
    # A file the CLI migrated opens as is, and matches the metadata.
    with open_store(path, node_id="node-cli") as store:
        store.semantic.add("c", {"kind": "concept"})
        with store.read() as conn:
            assert (
                compare_metadata(
                    MigrationContext.configure(conn, opts={"include_name": include_name}), metadata
                )
                == []
            )


def test_alembic_cli_prints_the_ddl(tmp_path: Path) -> None:
    done = alembic_cli("-x", f"db={tmp_path / 'unused.db'}", "upgrade", "head", "--sql")
    assert done.returncode == 0, done.stderr
    assert "CREATE TABLE working_items" in done.stdout
    assert "CREATE UNIQUE INDEX ix_working_items_modified_at" in done.stdout
    assert not (tmp_path / "unused.db").exists()


def test_migration_runs_in_the_callers_transaction(locate: Locator) -> None:
    from memrepl.storage.migrate import upgrade

    path = locate("rollback", migrated=False)
    engine = create_engine(path)
    try:
        with pytest.raises(RuntimeError), engine.begin() as conn:
            upgrade(conn)
            raise RuntimeError("crash after migrating, before commit")
        with engine.connect() as conn:
            assert current_revision(conn) is None
    finally:
        engine.dispose()
    assert tables(path) == set()


@pytest.mark.backends("postgresql")
def test_alembic_cli_on_postgresql(locate: Locator) -> None:
    """The same scripts from the repository root on a PostgreSQL database: up to head, down to
    nothing, and up again -- one history, both databases."""
    url = locate("cli", migrated=False)
    done = alembic_cli("-x", f"db={url}", "upgrade", "head")
    assert done.returncode == 0, done.stderr
    assert tables(url) == POSTGRESQL_TABLES
    current = alembic_cli("-x", f"db={url}", "current")
    assert HEAD_REVISION in current.stdout, current.stderr
    done = alembic_cli("-x", f"db={url}", "downgrade", "base")
    assert done.returncode == 0, done.stderr
    assert tables(url) == {"alembic_version"}
    done = alembic_cli("-x", f"db={url}", "upgrade", "head")
    assert done.returncode == 0, done.stderr
    with open_store(url, node_id="node-cli") as store:
        store.semantic.add("c", {"kind": "concept", "name": "cli"})
        assert [hit.item_id for hit in store.search("cli")] == ["c"]
