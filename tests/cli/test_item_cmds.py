"""``memrepl put / merge / delete / get / list``, and the shared behaviour of every command."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from memrepl.protocol.enums import SyncPriority

from ..files import dump, query
from .conftest import Cli


def test_put_prints_the_record_and_get_reads_it_back(db: Path, cli: Cli) -> None:
    put = cli("put", "working", "wm-1", '{"data": "value", "n": [1, 2]}', "--db", db)
    assert put.code == 0, put.err
    record = put.json()
    assert record["item_id"] == "wm-1"
    assert record["content"] == {"data": "value", "n": [1, 2]}
    assert record["origin_node"] == "node-a"
    assert record["priority"] == "normal"
    assert record["deleted"] is False

    before = dump(db)
    got = cli("get", "working", "wm-1", "--db", db).json()
    assert got["content"] == {"data": "value", "n": [1, 2]}
    assert got["modified_at"] == record["modified_at"]
    # A read from the command line counts no access: the file is as it was.
    assert got["access_count"] == 0
    assert dump(db) == before

    counted = cli("get", "working", "wm-1", "--count-access", "--db", db).json()
    assert counted["access_count"] == 1
    assert query(db, "SELECT access_count FROM working_items") == [(1,)]
    assert cli("get", "working", "wm-1", "--db", db).json()["access_count"] == 1


@pytest.mark.parametrize(
    ("tier", "table"),
    [
        ("working", "working_items"),
        ("L1", "working_items"),
        ("1", "working_items"),
        ("episodic", "episodic_items"),
        ("l2", "episodic_items"),
        ("2", "episodic_items"),
        ("Semantic", "semantic_items"),
        ("L3", "semantic_items"),
        ("3", "semantic_items"),
    ],
)
def test_tier_names(db: Path, cli: Cli, tier: str, table: str) -> None:
    assert cli("put", tier, "x", '{"k": 1}', "--db", db).code == 0
    assert query(db, f"SELECT item_id FROM {table}") == [("x",)]


def test_put_from_stdin_with_a_priority(
    db: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO('{"episode_id": "ep-1", "occurred_at_ns": 5}'))
    result = cli("put", "episodic", "ev-1", "-", "--priority", "urgent", "--db", db)
    assert result.code == 0, result.err
    assert result.json()["priority"] == "urgent"
    assert query(db, "SELECT episode_id, occurred_at_ns, priority FROM episodic_items") == [
        ("ep-1", 5, int(SyncPriority.URGENT))
    ]


def test_put_update_replaces_and_merge_keeps_other_fields(db: Path, cli: Cli) -> None:
    cli("put", "working", "a", '{"x": 1, "y": 2}', "--db", db)
    updated = cli("put", "working", "a", '{"x": 10}', "--update", "--db", db)
    assert updated.json()["content"] == {"x": 10}
    merged = cli("merge", "working", "a", '{"z": 3}', "--priority", "high", "--db", db)
    assert merged.json()["content"] == {"x": 10, "z": 3}
    assert merged.json()["priority"] == "high"
    created = cli("merge", "semantic", "new", '{"kind": "concept"}', "--db", db)
    assert created.code == 0
    assert created.json()["kind"] == "concept"


def test_delete_leaves_a_tombstone(db: Path, cli: Cli) -> None:
    cli("put", "working", "a", '{"x": 1}', "--db", db)
    deleted = cli("delete", "working", "a", "--db", db)
    assert deleted.code == 0
    assert deleted.json()["deleted"] is True
    missing = cli("get", "working", "a", "--db", db)
    assert missing.code == 1
    assert missing.out == ""
    assert missing.error_lines == [
        "memrepl: error: get of item 'a': no live item in the working tier"
    ]
    again = cli("delete", "working", "a", "--db", db)
    assert again.code == 1
    assert again.error_lines == ["memrepl: error: delete of item 'a': it is deleted"]


def test_list_in_change_order_with_filters(db: Path, cli: Cli) -> None:
    stamps = {}
    for item_id in ("c", "a", "b"):
        stamps[item_id] = cli("put", "L1", item_id, f'{{"id": "{item_id}"}}', "--db", db).json()[
            "modified_at"
        ]
    cli("delete", "L1", "a", "--db", db)

    live = cli("list", "working", "--nl", "--db", db).json_lines()
    assert [r["item_id"] for r in live] == ["c", "b"]
    everything = cli("list", "working", "--nl", "--include-deleted", "--db", db).json_lines()
    assert [(r["item_id"], r["deleted"]) for r in everything] == [
        ("c", False),
        ("b", False),
        ("a", True),
    ]
    since = cli("list", "working", "--nl", "--since", stamps["c"], "--db", db).json_lines()
    assert [r["item_id"] for r in since] == ["b"]
    limited = cli("list", "working", "--nl", "--limit", "1", "--db", db).json_lines()
    assert [r["item_id"] for r in limited] == ["c"]
    assert cli("list", "working", "--nl", "--since", "1m", "--db", db).json_lines() == live
    assert cli("list", "episodic", "--json", "--db", db).out == "[]\n"
    assert cli("list", "episodic", "--nl", "--db", db).out == ""
    # The limit counts the rows listed: a's tombstone, now between b and c, is not one of them.
    cli("put", "L1", "c", '{"id": "c", "again": true}', "--update", "--db", db)
    limited = cli("list", "working", "--nl", "--limit", "2", "--db", db).json_lines()
    assert [r["item_id"] for r in limited] == ["b", "c"]


def test_list_as_a_table(db: Path, cli: Cli) -> None:
    cli("put", "working", "short", '{"x": 1}', "--db", db)
    cli("put", "working", "long-one", '{"text": "' + "y" * 200 + '"}', "--db", db)
    lines = cli("list", "working", "--db", db).out.splitlines()
    assert lines[0].split() == ["item_id", "modified_at", "origin", "priority", "content"]
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].split()[0] == "short"
    assert lines[2].split()[-1] == '{"x":1}'
    assert lines[3].split()[0] == "long-one"
    assert lines[3].endswith("...")
    assert "node-a" in lines[3] and "normal" in lines[3]
    # Columns line up: each content cell starts where the header says.
    start = lines[0].index("content")
    assert lines[2][start:].startswith('{"x"') and lines[3][start:].startswith('{"text"')
    with_deleted = cli("list", "working", "--include-deleted", "--db", db).out.splitlines()
    assert with_deleted[0].split()[:2] == ["item_id", "deleted"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["put", "working", "dup", '{"v": 2}'],
            "add of item 'dup': it exists (use update or merge) ('memrepl put --update' "
            "replaces it, 'memrepl merge' sets fields)",
        ),
        (
            ["put", "working", "new", "{not json"],
            "item 'new': the content is not valid JSON: Expecting property name enclosed in "
            "double quotes: line 1 column 2 (char 1)",
        ),
        (
            ["put", "working", "new", "[1, 2]"],
            "item 'new': content must be a JSON object (a dict), not list",
        ),
        (
            ["put", "working", "x" * 33, "{}"],
            f"item id '{'x' * 33}' cannot travel: it must be 1 to 32 bytes of UTF-8 without NUL "
            "(33 bytes)",
        ),
        (
            ["put", "working", "new", '{"v": 1}', "--update"],
            "update of item 'new': it does not exist",
        ),
        (
            ["merge", "working", "new", "{}"],
            "merge of item 'new': give at least one field to merge",
        ),
        (
            ["put", "working", "new", '{"v": NaN}'],
            "item 'new': content is not JSON: Out of range float values are not JSON compliant",
        ),
    ],
)
def test_a_refused_write_is_one_line_exit_1_and_writes_nothing(
    db: Path, cli: Cli, args: list[str], message: str
) -> None:
    cli("put", "working", "dup", '{"v": 1}', "--db", db)
    before = dump(db)
    result = cli(*args, "--db", db)
    assert result.code == 1
    assert result.out == ""
    assert result.error_lines == [f"memrepl: error: {message}"]
    assert dump(db) == before


@pytest.mark.parametrize(
    ("args", "start"),
    [
        (["put", "bogus", "x", "{}"], "argument TIER: unknown tier 'bogus'"),
        (["put", "working", "x", "{}", "--priority", "asap"], "argument --priority: unknown"),
        (["list", "working", "--limit", "0"], "argument --limit: expected a positive integer"),
        (["list", "working", "--since", "yesterday"], "argument --since: not a time"),
        (["get", "working"], "the following arguments are required: ID"),
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: COMMAND"),
        (["db"], "the following arguments are required: DB_COMMAND"),
    ],
)
def test_usage_errors_are_one_line_exit_2(db: Path, cli: Cli, args: list[str], start: str) -> None:
    before = dump(db)
    result = cli(*args, "--db", db) if args else cli()
    assert result.code == 2
    assert result.out == ""
    assert len(result.error_lines) == 1
    assert result.error_lines[0].startswith(f"memrepl: error: {start}")
    assert result.error_lines[0].endswith("--help')")
    assert dump(db) == before


def test_traceback_only_when_asked(db: Path, cli: Cli) -> None:
    plain = cli("get", "working", "missing", "--db", db)
    assert "Traceback" not in plain.err
    verbose = cli("get", "working", "missing", "--db", db, "--traceback")
    assert verbose.code == 1
    assert verbose.err.startswith("Traceback (most recent call last):")
    assert "ItemNotFoundError" in verbose.err
    assert verbose.error_lines[-1] == plain.error_lines[0]


def test_common_options_before_or_after_the_command(db: Path, cli: Cli) -> None:
    assert cli("--db", db, "put", "working", "a", "{}").code == 0
    assert cli("get", "working", "a", "--db", db).code == 0
    assert cli("--db", "elsewhere.db", "get", "working", "a", "--db", db).code == 0


def test_the_store_from_the_environment_and_the_stored_node_id(
    tmp_path: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "env.db"
    monkeypatch.setenv("MEMREPL_DB", str(path))
    assert cli("init", "--node-id", "node-env").code == 0
    assert cli("put", "working", "a", "{}").json()["origin_node"] == "node-env"
    assert cli("put", "working", "b", "{}", "--node-id", "node-env").code == 0
    refused = cli("put", "working", "c", "{}", "--node-id", "node-other")
    assert refused.code == 1
    assert "belongs to node 'node-env'" in refused.err
    assert query(path, "SELECT item_id FROM working_items ORDER BY item_id") == [("a",), ("b",)]
    assert not (tmp_path / "memrepl.db").exists()


def test_help_and_version(cli: Cli) -> None:
    helped = cli("--help")
    assert helped.code == 0
    commands = [
        "init",
        "db",
        "put",
        "merge",
        "delete",
        "get",
        "list",
        "concept",
        "relation",
        "status",
        "conflicts",
        "sql",
        "graph",
        "search",
        "namespaces",
        "index",
    ]
    listed = re.findall(r"^    ([a-z]+)  ", helped.out, flags=re.MULTILINE)
    assert listed[: len(commands)] == commands
    version = cli("--version")
    assert version.code == 0
    assert version.out.startswith("memrepl ")
