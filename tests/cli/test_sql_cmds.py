"""``memrepl sql``: read-only queries; writes refused before they run."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from ..files import dump
from .conftest import Cli


@pytest.fixture
def filled(db: Path, cli: Cli) -> Path:
    cli("put", "working", "a", '{"x": 1}', "--db", db)
    cli("put", "working", "b", '{"x": 22}', "--db", db)
    return db


def test_a_select_as_a_table_and_as_json(filled: Path, cli: Cli) -> None:
    query = (
        "SELECT item_id, json_extract(content, '$.x') AS x, NULL AS empty "
        "FROM working_items ORDER BY item_id"
    )
    table = cli("sql", query, "--db", filled)
    assert table.code == 0, table.err
    assert table.out.splitlines() == [
        "item_id   x  empty",
        "-------  --  -----",
        "a         1",
        "b        22",
    ]
    lines = cli("sql", query, "--json", "--db", filled).json_lines()
    assert lines == [
        {"item_id": "a", "x": 1, "empty": None},
        {"item_id": "b", "x": 22, "empty": None},
    ]


def test_blobs_and_empty_results(filled: Path, cli: Cli) -> None:
    assert cli("sql", "SELECT x'00ff' AS raw", "--json", "--db", filled).json_lines() == [
        {"raw": "00ff"}
    ]
    assert "x'00ff'" in cli("sql", "SELECT x'00ff' AS raw", "--db", filled).out
    empty = cli("sql", "SELECT item_id FROM working_items WHERE 0", "--db", filled)
    assert empty.out.splitlines() == ["item_id", "-------"]
    assert cli("sql", "SELECT 1 WHERE 0", "--json", "--db", filled).out == ""


def test_the_statement_from_stdin(filled: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("SELECT count(*) AS n FROM working_items"))
    assert cli("sql", "-", "--json", "--db", filled).json_lines() == [{"n": 2}]


@pytest.mark.parametrize(
    ("statement", "what"),
    [
        ("INSERT INTO node VALUES (2, 'x', 0, 0, 'v')", " (it would INSERT into node)"),
        ("UPDATE working_items SET deleted = 1", " (it would UPDATE working_items)"),
        ("DELETE FROM conflicts", " (it would DELETE from conflicts)"),
        ("DROP TABLE sync_vectors", " (it would DROP TABLE sync_vectors)"),
        ("CREATE TABLE mine (x)", " (it would CREATE TABLE mine)"),
        ("CREATE TEMP TABLE mine (x)", " (it would CREATE TEMP TABLE mine)"),
        ("ALTER TABLE node ADD COLUMN y", " (it would ALTER TABLE main)"),
        ("ATTACH 'other.db' AS other", " (it would ATTACH other.db)"),
        ("PRAGMA query_only = OFF", " (it would set PRAGMA query_only)"),
        ("PRAGMA user_version = 7", " (it would set PRAGMA user_version)"),
        ("VACUUM", ""),
    ],
)
def test_writes_are_refused_and_change_nothing(
    tmp_path: Path, filled: Path, cli: Cli, statement: str, what: str
) -> None:
    before = dump(filled)
    result = cli("sql", statement, "--db", filled)
    assert result.code == 1
    assert result.out == ""
    assert result.error_lines == [
        f"memrepl: error: sql: refused: memrepl sql is read-only{what}; change a store with "
        "memrepl put/merge/delete or the library"
    ]
    assert dump(filled) == before
    assert not (tmp_path / "other.db").exists()


def test_read_only_pragmas_and_bad_sql(filled: Path, cli: Cli) -> None:
    columns = cli("sql", "PRAGMA table_info(node)", "--json", "--db", filled).json_lines()
    assert [c["name"] for c in columns][:2] == ["id", "node_id"]
    bad = cli("sql", "SELEKT 1", "--db", filled)
    assert bad.code == 1
    assert bad.error_lines == ['memrepl: error: sql: near "SELEKT": syntax error']
    two = cli("sql", "SELECT 1; SELECT 2", "--db", filled)
    assert two.code == 1
    assert two.error_lines == ["memrepl: error: sql: You can only execute one statement at a time."]
    missing = cli("sql", "SELECT * FROM nowhere", "--db", filled)
    assert missing.error_lines == ["memrepl: error: sql: no such table: nowhere"]
