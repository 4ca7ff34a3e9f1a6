"""``memrepl init``, ``db upgrade`` and ``db current``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from memrepl.storage.migrate import HEAD_REVISION

from ..files import dump, query
from .conftest import Cli


def test_init_creates_a_store_and_says_so(tmp_path: Path, cli: Cli) -> None:
    result = cli("init", "--node-id", "node-a")
    assert result.code == 0, result.err
    assert (
        result.out
        == f"created store memrepl.db for node 'node-a' (schema revision {HEAD_REVISION})\n"
    )
    assert result.err == ""
    path = tmp_path / "memrepl.db"
    assert query(path, "SELECT node_id FROM node") == [("node-a",)]
    assert query(path, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]


def test_init_again_does_nothing_and_another_node_is_refused(db: Path, cli: Cli) -> None:
    before = dump(db)
    again = cli("init", "--node-id", "node-a", "--db", db)
    assert again.code == 0
    assert "nothing to do" in again.out
    other = cli("init", "--node-id", "node-b", "--db", db)
    assert other.code == 1
    assert other.out == ""
    assert other.error_lines == [
        "memrepl: error: opening a store as node 'node-b': the database belongs to node "
        "'node-a' (leave --node-id out to use the store's own)"
    ]
    assert dump(db) == before


def test_init_needs_a_node_id(tmp_path: Path, cli: Cli) -> None:
    result = cli("init")
    assert result.code == 2
    assert result.error_lines[0].startswith("memrepl: error: init needs --node-id ID")
    assert not (tmp_path / "memrepl.db").exists()


def test_init_refuses_a_file_that_is_not_sqlite(tmp_path: Path, cli: Cli) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, just notes" * 100)
    result = cli("init", "--node-id", "node-a", "--db", path)
    assert result.code == 1
    assert len(result.error_lines) == 1
    assert "not a database" in result.err
    assert path.read_text() == "not a database, just notes" * 100


def test_db_current_on_a_store_at_head(db: Path, cli: Cli) -> None:
    text = cli("db", "current", "--db", db)
    assert text.code == 0
    assert text.out == f"{db}: schema revision {HEAD_REVISION} (head {HEAD_REVISION}): up to date\n"
    data = cli("db", "current", "--db", db, "--json").json()
    assert data == {
        "path": str(db),
        "node_id": "node-a",
        "revision": HEAD_REVISION,
        "head": HEAD_REVISION,
        "up_to_date": True,
    }


def _set_revision(path: Path, revision: str) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    conn.close()


def test_db_current_says_what_to_do(tmp_path: Path, db: Path, cli: Cli) -> None:
    _set_revision(db, "9999")
    newer = cli("db", "current", "--db", db)
    assert newer.code == 0
    assert "written by a newer memrepl" in newer.out
    assert cli("db", "current", "--db", db, "--json").json()["up_to_date"] is False

    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    assert "not a memrepl store yet" in cli("db", "current", "--db", empty).out
    assert empty.stat().st_size == 0


def test_db_current_never_writes(db: Path, cli: Cli) -> None:
    before = dump(db)
    assert cli("db", "current", "--db", db).code == 0
    assert dump(db) == before


def test_db_upgrade_from_an_older_revision(db: Path, cli: Cli) -> None:
    # Take the store back to 0001 by hand: 0010 a unique index on each tier table (and keyword
    # index settings), 0009 added a column to each tier table and an expiry column (and index)
    # to two, 0008 two tables, 0007 the vector tables and a trigger per tier
    # table, 0006 the keyword indexes, 0005 columns and an index on each tier table; 0004 and
    # 0002 added a table each, 0003 dropped an index 0001 had.
    conn = sqlite3.connect(db)
    with conn:
        for table in ("episodic_items", "semantic_items"):
            conn.execute(f"DROP INDEX ix_{table}_expires_at_ns")
            conn.execute(f"ALTER TABLE {table} DROP COLUMN expires_at_ns")
        for table in ("working_items", "episodic_items", "semantic_items"):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN item_options")
        conn.execute("DROP TABLE forgotten_items")
        conn.execute("DROP TABLE sync_refusals")
        for table in ("working_items", "episodic_items", "semantic_items"):
            conn.execute(f"DROP TRIGGER {table}_vectors_delete")
        conn.execute("DROP TABLE item_vectors")
        conn.execute("DROP TABLE vector_indexes")
        for table in ("working_items", "episodic_items", "semantic_items"):
            conn.execute(f"DROP INDEX ix_{table}_created_at_ns")
            conn.execute(f"DROP TABLE {table}_fts")
            conn.execute(f"DROP INDEX ix_{table}_namespace")
            for column in ("namespace", "namespace_origin", "namespace_ts", "item_key"):
                conn.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
        conn.execute("CREATE INDEX ix_conflicts_tier_item ON conflicts (tier, item_id)")
        conn.execute("DROP TABLE tombstone_horizons")
        conn.execute("DROP TABLE tier_digests")  # 0004 adds it
        conn.execute("UPDATE alembic_version SET version_num = '0001'")
    conn.close()
    assert "behind the head" in cli("db", "current", "--db", db).out

    result = cli("db", "upgrade", "--db", db)
    assert result.code == 0, result.err
    assert result.out == f"upgraded store {db} from revision 0001 to {HEAD_REVISION}\n"
    assert query(db, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    assert query(db, "SELECT count(*) FROM tombstone_horizons") == [(0,)]

    again = cli("db", "upgrade", "--db", db)
    assert (
        again.out == f"store {db} is already at the head revision {HEAD_REVISION}: nothing to do\n"
    )


def test_db_upgrade_refuses_a_newer_schema(db: Path, cli: Cli) -> None:
    _set_revision(db, "9999")
    before = dump(db)
    result = cli("db", "upgrade", "--db", db)
    assert result.code == 1
    assert len(result.error_lines) == 1
    assert "'9999'" in result.err and "newer memrepl" in result.err
    assert dump(db) == before


def test_commands_refuse_a_missing_store_and_create_nothing(tmp_path: Path, cli: Cli) -> None:
    for command in (
        ["db", "upgrade"],
        ["db", "current"],
        ["get", "working", "x"],
        ["put", "working", "x", "{}"],
        ["status"],
        ["sql", "SELECT 1"],
    ):
        result = cli(*command, "--db", tmp_path / "nothere.db")
        assert result.code == 1, command
        assert result.error_lines == [
            f"memrepl: error: no memrepl store at '{tmp_path / 'nothere.db'}': create one with "
            f"'memrepl init --node-id ID --db {tmp_path / 'nothere.db'}', or pass --db or set "
            "$MEMREPL_DB"
        ]
    assert list(tmp_path.iterdir()) == []
