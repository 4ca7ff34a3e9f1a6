"""What every ``memrepl`` subcommand shares: common options, the store, and argument types.

The rules that keep it right:

- **Finding the store.** ``--db PATH``, else the environment variable ``MEMREPL_DB``, else
  ``./memrepl.db``. Only ``memrepl init`` creates a file; every other command refuses a path where
  there is no file, so a typo never leaves an empty store behind.
- **The node id is stored, not repeated.** ``--node-id`` is needed to create a store; after that
  :func:`open_store` reads it from the database's ``node`` table (a read-only connection) and
  opens the store with it. A ``--node-id`` that differs from the stored one is refused by
  :func:`memrepl.open` (``NodeIdMismatchError``).
- **Read-only means read-only.** :func:`connect_readonly` opens the SQLite file with the
  ``mode=ro`` URI and ``PRAGMA query_only``; commands that only inspect (``db current``,
  ``sql``) use it and can never migrate, stamp or write anything.
- **Common options work before or after the subcommand** (``memrepl --db x get ...`` and
  ``memrepl get ... --db x``): subcommand parsers declare them with ``default=SUPPRESS`` so
  they only override the top-level value when given.
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeAlias

from memrepl.errors import CommandError, UsageError
from memrepl.protocol.enums import MemoryTier, SyncPriority
from memrepl.storage import peek

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from memrepl.storage.store import Store

#: The environment variable naming the default store.
ENV_DB = "MEMREPL_DB"
#: The store used when neither ``--db`` nor ``MEMREPL_DB`` names one (relative to the cwd).
DEFAULT_DB = "memrepl.db"
#: ``memrepl serve`` keeps its report next to the store, in ``<db><STATUS_SUFFIX>``, where
#: ``memrepl status`` looks for it.
STATUS_SUFFIX = ".status.json"

#: What a leaf subcommand's ``run`` is: the parsed arguments in, the exit code out.
Runner = Callable[[argparse.Namespace], int]
if TYPE_CHECKING:
    #: The object ``add_subparsers()`` returns (generic only for the type checker).
    Subparsers: TypeAlias = argparse._SubParsersAction["Parser"]
else:
    Subparsers = argparse._SubParsersAction


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors raise :class:`UsageError` instead of exiting.

    So that :mod:`memrepl.cli.main` prints every error as one line, usage errors included.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def add_common_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """``--db``, ``--node-id`` and ``--traceback`` (defaults only on the top-level parser)."""

    def default(value: object) -> object:
        return value if top_level else argparse.SUPPRESS

    group = parser.add_argument_group("common options")
    group.add_argument(
        "--db",
        metavar="PATH",
        default=default(None),
        help=f"the store's SQLite file (default: ${ENV_DB}, else ./{DEFAULT_DB})",
    )
    group.add_argument(
        "--node-id",
        metavar="ID",
        default=default(None),
        help="this node's id: needed to create a store, read from the store afterwards",
    )
    group.add_argument(
        "--traceback",
        action="store_true",
        default=default(False),
        help="on error, print the full traceback too",
    )


def add_command(
    subparsers: Subparsers,
    name: str,
    *,
    help: str,
    description: str | None = None,
    run: Runner | None = None,
) -> Parser:
    """Add subcommand ``name`` with the common options; ``run`` handles it (None for a group)."""
    parser = subparsers.add_parser(
        name,
        help=help,
        description=description or help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common_options(parser, top_level=False)
    if run is not None:
        parser.set_defaults(run=run)
    return parser


def add_json_flag(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """``--json`` for a command that prints ONE document (commands that print rows take
    :func:`memrepl.cli.output.add_format_flags`)."""
    parser.add_argument(
        "--json", action="store_true", help=help or "print one JSON document instead of text"
    )


# -- the store ---------------------------------------------------------------------------------


def db_path(args: argparse.Namespace) -> Path:
    """The store's path: ``--db``, else ``$MEMREPL_DB``, else ``./memrepl.db``.

    The commands other than ``serve`` read and write SQLite files (several read the file with
    sqlite3 itself): a database URL is refused here, saying what works on PostgreSQL.
    """
    chosen: str = args.db or os.environ.get(ENV_DB) or DEFAULT_DB
    if "://" in chosen:
        raise CommandError(
            "this command works on SQLite store files; a store on PostgreSQL is run with "
            "'memrepl serve --db postgresql+psycopg://...' and used from Python with "
            "memrepl.open(url, node_id=...) (see the README, PostgreSQL)"
        )
    return Path(chosen)


def default_status_file(db: Path) -> Path:
    """Where ``memrepl serve`` writes, and ``memrepl status`` reads, a node's report."""
    return db.with_name(db.name + STATUS_SUFFIX)


def require_existing(path: Path) -> None:
    """Refuse a path without a file (CommandError naming ``memrepl init``)."""
    if not path.is_file():
        raise CommandError(
            f"no memrepl store at {str(path)!r}: create one with "
            f"'memrepl init --node-id ID --db {path}', or pass --db or set ${ENV_DB}"
        )


def connect_readonly(path: Path) -> sqlite3.Connection:
    """A read-only sqlite3 connection to an existing file (``mode=ro``, ``query_only``)."""
    require_existing(path)
    return peek.connect_readonly(path)


def readonly_engine(path: Path) -> Engine:
    """A SQLAlchemy engine over :func:`connect_readonly` connections (dispose it when done)."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    require_existing(path)
    return create_engine("sqlite://", creator=lambda: connect_readonly(path), poolclass=NullPool)


def read_stored_node_id(path: Path) -> str | None:
    """The node id recorded in the store at ``path``, None if it has none (read-only)."""
    conn = connect_readonly(path)
    try:
        return peek.stored_node_id(conn)
    finally:
        conn.close()


def no_node_id(path: Path) -> CommandError:
    """The error for a store without a node id (made by ``alembic upgrade head``, say)."""
    return CommandError(
        f"the store at {str(path)!r} has no node id yet (it was not created by 'memrepl "
        f"init'): give it one with 'memrepl init --node-id ID --db {path}', or pass --node-id ID"
    )


def open_store(args: argparse.Namespace) -> Store:
    """Open the existing store named by the arguments, with its stored node id.

    Raises CommandError when there is no file or no node id to open it with, and whatever
    :func:`memrepl.open` raises (a mismatched ``--node-id``, a schema from a newer memrepl).
    Imports the storage layer (SQLAlchemy): commands call it only when they write.
    """
    import memrepl

    path = db_path(args)
    require_existing(path)
    node_id: str | None = args.node_id or read_stored_node_id(path)
    if node_id is None:
        raise no_node_id(path)
    return memrepl.open(path, node_id=node_id)


# -- argument types ----------------------------------------------------------------------------

_TIER_NAMES: dict[str, MemoryTier] = {}
for _tier in MemoryTier:
    _TIER_NAMES.update(
        {_tier.name.lower(): _tier, f"l{_tier.value}": _tier, str(_tier.value): _tier}
    )


def parse_tier(text: str) -> MemoryTier:
    """An argparse type: ``working``/``episodic``/``semantic``, ``L1``-``L3`` or ``1``-``3``."""
    try:
        return _TIER_NAMES[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"unknown tier {text!r}: expected working, episodic or semantic (or L1-L3, 1-3)"
        ) from None


def priority_name(priority: int) -> str:
    """``urgent``/``high``/``normal``/``low``/``background`` (the number if unknown)."""
    try:
        return SyncPriority(priority).name.lower()
    except ValueError:
        return str(priority)


def tier_name(tier: int) -> str:
    """``working``/``episodic``/``semantic`` for a tier number (the number if unknown)."""
    try:
        return MemoryTier(tier).name.lower()
    except ValueError:
        return str(tier)


PRIORITY_NAMES = [p.name.lower() for p in sorted(SyncPriority, reverse=True)]


def parse_priority(text: str) -> SyncPriority:
    """An argparse type: ``urgent``, ``high``, ``normal``, ``low`` or ``background``."""
    try:
        return SyncPriority[text.strip().upper()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"unknown priority {text!r}: expected one of {', '.join(PRIORITY_NAMES)}"
        ) from None


def add_priority_option(parser: argparse.ArgumentParser, help: str) -> None:
    """``--priority NAME`` (:func:`parse_priority`), None when not given: keep the item's."""
    parser.add_argument(
        "--priority",
        type=parse_priority,
        default=None,
        metavar="{urgent,high,normal,low,background}",
        help=help,
    )


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_FRACTION = re.compile(r"\.(\d{1,9})")


def parse_time_ns(text: str, *, now_ns: Callable[[], int] = time.time_ns) -> int:
    """An argparse type for a point in time, as nanoseconds since the epoch (HLC stamps).

    Accepts a stamp (an integer of nanoseconds), an ISO 8601 time (``2026-05-09T07:35:25.5Z``;
    up to 9 fraction digits; no zone means UTC), or a duration ago (``90s``, ``10m``, ``2h``,
    ``1d``).
    """
    text = text.strip()
    if text.isdigit():
        return int(text)
    duration = _DURATION.match(text)
    if duration:
        return now_ns() - int(float(duration[1]) * _UNIT_S[duration[2]] * 1_000_000_000)
    fraction_ns = 0
    fraction = _FRACTION.search(text)
    if fraction:
        fraction_ns = int(fraction[1].ljust(9, "0"))
        text = text[: fraction.start()] + text[fraction.end() :]
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r} (expected nanoseconds, ISO 8601 such as "
            "2026-05-09T07:35:25Z, or a duration ago such as 10m)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000 + fraction_ns


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, not {text!r}")
    return value
