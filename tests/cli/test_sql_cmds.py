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
    lines = cli("sql", query, "--nl", "--db", filled).json_lines()
    assert lines == [
        {"item_id": "a", "x": 1, "empty": None},
        {"item_id": "b", "x": 22, "empty": None},
    ]


def test_json_is_one_array_nl_is_lines_csv_has_a_header(filled: Path, cli: Cli) -> None:
    query = "SELECT item_id, json_extract(content, '$.x') AS x FROM working_items ORDER BY 1"
    array = cli("sql", query, "--json", "--db", filled)
    # sqlite-utils' layout: one valid JSON document, one object per line.
    assert array.out == '[{"item_id": "a", "x": 1},\n {"item_id": "b", "x": 22}]\n'
    assert array.json() == [{"item_id": "a", "x": 1}, {"item_id": "b", "x": 22}]
    assert cli("sql", query, "--nl", "--db", filled).out.splitlines() == [
        '{"item_id": "a", "x": 1}',
        '{"item_id": "b", "x": 22}',
    ]
    assert cli("sql", query, "--csv", "--db", filled).out == "item_id,x\na,1\nb,22\n"
    both = cli("sql", query, "--json", "--csv", "--db", filled)
    assert both.code == 2
    assert "not allowed with argument" in both.err


def test_named_parameters(filled: Path, cli: Cli) -> None:
    query = "SELECT item_id FROM working_items WHERE item_id = :wanted OR content = :content"
    found = cli("sql", query, "-p", "wanted", "b", "--param", "content", '{"x": 1}', "--db", filled)
    assert found.code == 0, found.err
    assert sorted(
        row["item_id"]
        for row in cli(
            "sql", query, "-p", "wanted", "b", "-p", "content", '{"x": 1}', "--json", "--db", filled
        ).json()
    ) == ["a", "b"]
    # A value is bound, never pasted into the SQL.
    injected = cli("sql", query, "-p", "wanted", "' OR 1=1 --", "-p", "content", "", "--json",
                   "--db", filled)  # fmt: skip
    assert injected.json() == []
    missing = cli("sql", query, "--db", filled)
    assert missing.code == 1
    assert "sql: " in missing.err


def test_tier_and_priority_names(filled: Path, cli: Cli) -> None:
    query = (
        "SELECT tier_name(1) AS t1, tier_name(3) AS t3, tier_name(9) AS t9, "
        "priority_name(priority) AS p, tier_name('x') AS odd FROM working_items LIMIT 1"
    )
    assert cli("sql", query, "--json", "--db", filled).json() == [
        {"t1": "working", "t3": "semantic", "t9": "9", "p": "normal", "odd": "x"}
    ]


def test_blobs_and_empty_results(filled: Path, cli: Cli) -> None:
    assert cli("sql", "SELECT x'00ff' AS raw", "--nl", "--db", filled).json_lines() == [
        {"raw": "00ff"}
    ]
    assert "x'00ff'" in cli("sql", "SELECT x'00ff' AS raw", "--db", filled).out
    empty = cli("sql", "SELECT item_id FROM working_items WHERE 0", "--db", filled)
    assert empty.out.splitlines() == ["item_id", "-------"]
    assert cli("sql", "SELECT 1 WHERE 0", "--json", "--db", filled).out == "[]\n"
    assert cli("sql", "SELECT 1 WHERE 0", "--csv", "--db", filled).out == "1\n"


def test_the_statement_from_stdin(filled: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("SELECT count(*) AS n FROM working_items"))
    assert cli("sql", "-", "--nl", "--db", filled).json_lines() == [{"n": 2}]


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
    columns = cli("sql", "PRAGMA table_info(node)", "--nl", "--db", filled).json_lines()
    assert [c["name"] for c in columns][:2] == ["id", "node_id"]
    bad = cli("sql", "SELEKT 1", "--db", filled)
    assert bad.code == 1
    assert bad.error_lines == ['memrepl: error: sql: near "SELEKT": syntax error']
    two = cli("sql", "SELECT 1; SELECT 2", "--db", filled)
    assert two.code == 1
    assert two.error_lines == ["memrepl: error: sql: You can only execute one statement at a time."]
    missing = cli("sql", "SELECT * FROM nowhere", "--db", filled)
    assert missing.error_lines == ["memrepl: error: sql: no such table: nowhere"]
