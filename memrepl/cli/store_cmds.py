"""``memrepl init``, ``memrepl db upgrade`` and ``memrepl db current``: creating and migrating.

The rule that keeps it right: these commands say what they did, and only ``init`` and
``db upgrade`` write. Each first looks at the file through a read-only connection (its schema
revision and node id), then -- for the two that write -- opens it with :func:`memrepl.open`,
which runs the migrations shipped with memrepl in one ``BEGIN IMMEDIATE`` transaction
(ARCHITECTURE.md, "Storage"). ``db current`` never writes, so it can inspect a store written by
a newer memrepl, or one another process is using.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from memrepl.cli.context import (
    Subparsers,
    add_command,
    add_json_flag,
    db_path,
    no_node_id,
    readonly_engine,
    require_existing,
)
from memrepl.cli.output import emit, emit_json
from memrepl.errors import StoreError, UsageError

# The storage layer (SQLAlchemy, Alembic) is imported inside the commands that use it, so that
# building the parser stays cheap (memrepl --help, and every other command).

ORDER = 10


@dataclass(frozen=True, slots=True)
class StoreFacts:
    """What a store file says about itself, read without writing."""

    revision: str | None
    node_id: str | None


def inspect(path: Path) -> StoreFacts:
    """The schema revision and node id of the existing file ``path`` (read-only)."""
    from sqlalchemy.exc import DBAPIError

    from memrepl.storage import migrate
    from memrepl.storage.node import stored_node_id

    engine = readonly_engine(path)
    try:
        with engine.connect() as conn:
            revision = migrate.current_revision(conn)
            node_id = stored_node_id(conn) if revision is not None else None
    except DBAPIError as exc:
        raise StoreError(f"reading the schema revision of {str(path)!r}: {exc.orig}") from exc
    finally:
        engine.dispose()
    return StoreFacts(revision, node_id)


def run_init(args: argparse.Namespace) -> int:
    """Create a store (or bring an existing one of this node to head)."""
    import memrepl
    from memrepl.storage import migrate

    path = db_path(args)
    node_id: str | None = args.node_id
    if not node_id:
        raise UsageError("init needs --node-id ID: the id this node is known by to its peers")
    before = inspect(path) if path.is_file() and path.stat().st_size > 0 else None
    with memrepl.open(path, node_id=node_id):
        pass
    head = migrate.HEAD_REVISION
    if before is None:
        emit(f"created store {path} for node {node_id!r} (schema revision {head})")
    elif before.revision == head and before.node_id == node_id:
        emit(f"store {path} already belongs to node {node_id!r} at revision {head}: nothing to do")
    else:
        emit(
            f"initialised existing store {path} for node {node_id!r}: "
            f"schema revision {before.revision or 'none'} -> {head}"
        )
    return 0


def run_upgrade(args: argparse.Namespace) -> int:
    """Run the migrations up to the head revision."""
    import memrepl
    from memrepl.storage import migrate

    path = db_path(args)
    require_existing(path)
    before = inspect(path)
    node_id: str | None = args.node_id or before.node_id
    if node_id is None:
        raise no_node_id(path)
    with memrepl.open(path, node_id=node_id):
        pass
    head = migrate.HEAD_REVISION
    if before.revision == head:
        emit(f"store {path} is already at the head revision {head}: nothing to do")
    else:
        emit(f"upgraded store {path} from revision {before.revision or 'none'} to {head}")
    return 0


def _verdict(revision: str | None) -> tuple[str, bool]:
    """A sentence about ``revision`` compared with the head, and whether it is the head."""
    from memrepl.storage import migrate

    head = migrate.HEAD_REVISION
    if revision == head:
        return "up to date", True
    if revision is None:
        return "not a memrepl store yet: run 'memrepl init --node-id ID'", False
    if revision in migrate.known_revisions():
        return "behind the head: run 'memrepl db upgrade'", False
    return "written by a newer memrepl: upgrade memrepl to use it", False


def run_current(args: argparse.Namespace) -> int:
    """Print the store's revision and the head (read-only)."""
    from memrepl.storage import migrate

    path = db_path(args)
    facts = inspect(path)
    verdict, up_to_date = _verdict(facts.revision)
    if args.json:
        emit_json(
            {
                "path": str(path),
                "node_id": facts.node_id,
                "revision": facts.revision,
                "head": migrate.HEAD_REVISION,
                "up_to_date": up_to_date,
            }
        )
    else:
        emit(
            f"{path}: schema revision {facts.revision or 'none'} "
            f"(head {migrate.HEAD_REVISION}): {verdict}"
        )
    return 0


def add_parsers(subparsers: Subparsers) -> None:
    """``init`` and the ``db`` group."""
    add_command(
        subparsers,
        "init",
        help="create a store (runs the migrations)",
        description=(
            "Create the store named by --db for the node --node-id (both required the first "
            "time; later commands read the node id from the store). On an existing store of "
            "the same node it only brings the schema to head."
        ),
        run=run_init,
    )
    db = add_command(subparsers, "db", help="the store's schema: upgrade, current revision")
    db_commands: Subparsers = db.add_subparsers(
        title="db commands", dest="db_command", metavar="DB_COMMAND", required=True
    )
    add_command(
        db_commands,
        "upgrade",
        help="run the migrations up to the head revision",
        run=run_upgrade,
    )
    current = add_command(
        db_commands,
        "current",
        help="print the store's schema revision and the head (read-only)",
        run=run_current,
    )
    add_json_flag(current, "print the revisions as one JSON document")
