"""The command's frame: subcommands found as modules, and errors mapped in one place."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import memrepl.cli
from memrepl.cli import main as cli_main
from memrepl.cli.context import parse_time_ns
from memrepl.errors import MemreplError

from .conftest import Cli

EXTRA = '''
"""A subcommand module dropped into the package, as serve/sync will be."""

import argparse

from memrepl.cli.context import Subparsers, add_command
from memrepl.cli.output import emit

ORDER = 5


def run_hello(args: argparse.Namespace) -> int:
    emit(f"hello {args.name} from {args.db}")
    return 7


def add_parsers(subparsers: Subparsers) -> None:
    hello = add_command(subparsers, "hello", help="say hello", run=run_hello)
    hello.add_argument("name")
'''


@pytest.fixture
def extra_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "hello_cmds.py").write_text(EXTRA)
    (folder / "hello_helpers.py").write_text("raise AssertionError('not a command module')\n")
    monkeypatch.setattr(memrepl.cli, "__path__", [*memrepl.cli.__path__, str(folder)])
    yield
    sys.modules.pop("memrepl.cli.hello_cmds", None)


def test_a_new_command_module_needs_no_change_elsewhere(extra_module: None, cli: Cli) -> None:
    result = cli("hello", "world", "--db", "x.db")
    assert (result.code, result.out, result.err) == (7, "hello world from x.db\n", "")
    helped = cli("--help").out
    assert helped.index("    hello ") < helped.index("    init ")


def test_the_shipped_command_modules() -> None:
    names = [module.__name__.rsplit(".", 1)[1] for module in cli_main.command_modules()]
    assert names == [
        "store_cmds",
        "item_cmds",
        "concept_cmds",
        "status_cmds",
        "conflict_cmds",
        "sql_cmds",
        "graph_cmds",
        "recall_cmds",
        "serve_cmds",
        "sync_cmds",
        "cert_cmds",
        "clock_cmds",
    ]


def test_an_internal_error_is_one_line_exit_3(
    db: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("memrepl.cli.item_cmds.read_live", broken)
    result = cli("get", "working", "x", "--db", db)
    assert result.code == 3
    assert result.error_lines == [
        "memrepl: error: internal error: ZeroDivisionError: a bug "
        "(rerun with --traceback and report it)"
    ]
    verbose = cli("get", "working", "x", "--db", db, "--traceback")
    assert verbose.code == 3
    assert "Traceback" in verbose.err
    assert verbose.error_lines[-1] == "memrepl: error: internal error: ZeroDivisionError: a bug"


@pytest.mark.parametrize(
    ("raised", "code"),
    [
        (MemreplError("broken store"), 1),
        (PermissionError(13, "Permission denied"), 1),
        (KeyboardInterrupt(), 130),
    ],
)
def test_exit_codes(
    db: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch, raised: BaseException, code: int
) -> None:
    def failing(*args: object, **kwargs: object) -> None:
        raise raised

    monkeypatch.setattr("memrepl.cli.item_cmds.read_live", failing)
    result = cli("get", "working", "x", "--db", db)
    assert result.code == code
    assert len(result.error_lines) == 1
    assert result.error_lines[0].startswith("memrepl: error: ")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1795638028676885163", 1795638028676885163),
        ("1970-01-01T00:00:01Z", 1_000_000_000),
        ("1970-01-01T00:00:01", 1_000_000_000),
        ("1970-01-01T00:00:01.5Z", 1_500_000_000),
        ("1970-01-01T00:00:01.000000007Z", 1_000_000_007),
        ("1970-01-01T01:00:01+01:00", 1_000_000_000),
        ("1970-01-01", 0),
        ("90s", 10_000_000_000 - 90_000_000_000),
        ("2m", 10_000_000_000 - 120_000_000_000),
        ("1.5h", 10_000_000_000 - 5400 * 1_000_000_000),
        ("1d", 10_000_000_000 - 86400 * 1_000_000_000),
    ],
)
def test_times(text: str, expected: int) -> None:
    assert parse_time_ns(text, now_ns=lambda: 10_000_000_000) == expected


@pytest.mark.parametrize(
    "args", [("get", "working", "x"), ("search", "tea"), ("conflicts",), ("status",)]
)
def test_a_postgresql_url_is_refused_by_the_file_commands(cli: Cli, args: tuple[str, ...]) -> None:
    url = "postgresql+psycopg://memrepl@127.0.0.1:1/hub"
    result = cli("--db", url, *args)
    assert result.code == 1
    assert result.error_lines == [
        "memrepl: error: this command works on SQLite store files; a store on PostgreSQL is run "
        "with 'memrepl serve --db postgresql+psycopg://...' and used from Python with "
        "memrepl.open(url, node_id=...) (see the README, PostgreSQL)"
    ]
