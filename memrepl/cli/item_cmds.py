"""``memrepl put / merge / delete / get / list``: items of any tier, JSON in and out.

Each command is one call of the tier API (:class:`memrepl.storage.Tier`), so it has exactly the
library's semantics (ARCHITECTURE.md, "Item state and the merge"): ``put`` adds (``--update``
replaces a live item), ``merge`` sets the given fields and keeps the others, ``delete`` leaves a
tombstone that replicates. A refused write raises before anything is written: the store is as it
was. Content is a JSON object, given as an argument or as ``-`` for stdin.

Output: a write prints the item's record after the write, ``get`` prints the live record; both
as indented JSON. ``get`` reads the file read-only (:mod:`memrepl.storage.peek`) and counts no
access by default -- an operator looking at an item is not the agent using it, and a read must
not change the file -- ``--count-access`` reads through ``get_by_id``, which counts it.
``list`` prints a table (or ``--json``, ``--nl``, ``--csv``), in ``modified_at`` order -- so
``--since`` with the last ``modified_at`` seen pages through a tier's changes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from memrepl.cli.context import (
    Subparsers,
    add_command,
    add_priority_option,
    connect_readonly,
    db_path,
    open_store,
    parse_tier,
    parse_time_ns,
    positive_int,
    priority_name,
)
from memrepl.cli.output import add_format_flags, emit_json, emit_rows, emit_table, format_ns
from memrepl.errors import InvalidContentError, ItemNotFoundError
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import peek

if TYPE_CHECKING:
    from memrepl.storage.records import Record

ORDER = 20


def read_content(text: str, item_id: str) -> Any:
    """The JSON value of ``text`` (``-``: read stdin); InvalidContentError if it is not JSON.

    Whether it is an object is for the tier API to decide (one rule, one message).
    """
    if text == "-":
        text = sys.stdin.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidContentError(
            f"item {item_id!r}: the content is not valid JSON: {exc}", item_id=item_id
        ) from exc


def printable(record: Record) -> Record:
    """A record as the CLI prints it: the priority by name (``high``), not its wire number."""
    return {**record, "priority": priority_name(record["priority"])}


def run_put(args: argparse.Namespace) -> int:
    """Add an item, or replace a live one with ``--update``."""
    content = read_content(args.content, args.item_id)
    with open_store(args) as store:
        tier = store.tier(args.tier)
        if args.update:
            record = tier.update(args.item_id, content, priority=args.priority)
        else:
            record = tier.add(args.item_id, content, priority=args.priority)
    emit_json(printable(record))
    _note_if_outside_graph(args.tier, record)
    return 0


def _note_if_outside_graph(tier: MemoryTier, record: Record) -> None:
    if tier is MemoryTier.SEMANTIC:
        from memrepl.cli.concept_cmds import note_if_outside_graph

        note_if_outside_graph(record)


def run_merge(args: argparse.Namespace) -> int:
    """Set the given fields of an item (creating it if missing)."""
    content = read_content(args.content, args.item_id)
    with open_store(args) as store:
        record = store.tier(args.tier).merge(args.item_id, content, priority=args.priority)
    emit_json(printable(record))
    _note_if_outside_graph(args.tier, record)
    return 0


def run_delete(args: argparse.Namespace) -> int:
    """Delete a live item, leaving a tombstone."""
    with open_store(args) as store:
        record = store.tier(args.tier).delete(args.item_id, priority=args.priority)
    emit_json(printable(record))
    return 0


def read_live(args: argparse.Namespace) -> Record | None:
    """The live item ``get`` asks for, read-only; or, with ``--count-access``, through the tier
    API, which counts the access as an application's read does."""
    tier: MemoryTier = args.tier
    if args.count_access:
        with open_store(args) as store:
            return store.tier(tier).get_by_id(args.item_id)
    conn = connect_readonly(db_path(args))
    try:
        return peek.read_record(conn, tier, args.item_id, time.time_ns())
    finally:
        conn.close()


def run_get(args: argparse.Namespace) -> int:
    """Print a live item; ItemNotFoundError (exit 1) if it is missing or deleted."""
    tier: MemoryTier = args.tier
    record = read_live(args)
    if record is None:
        raise ItemNotFoundError(
            f"get of item {args.item_id!r}: no live item in the {tier.name.lower()} tier",
            item_id=args.item_id,
        )
    emit_json(printable(record))
    return 0


def list_records(
    args: argparse.Namespace, tier: MemoryTier, since: int, limit: int | None
) -> list[Record]:
    """Rows of ``tier`` changed after ``since``, in ``modified_at`` order: storage's own index
    scan (:func:`~memrepl.storage.items.modified_since`), tombstones only if asked for."""
    from memrepl.storage.items import modified_since

    with open_store(args) as store, store.read() as conn:
        rows = modified_since(
            conn, store.tier(tier).spec, since, limit=limit, live_only=not args.include_deleted
        )
    return [printable(row.to_record()) for row in rows]


def run_list(args: argparse.Namespace) -> int:
    """List a tier's items."""
    records = list_records(args, args.tier, args.since, args.limit)
    if emit_rows(args.format, records):
        return 0
    headers = ["item_id", "modified_at", "origin", "priority", "content"]
    if args.include_deleted:
        headers.insert(1, "deleted")
    rows = []
    for record in records:
        row = [
            record["item_id"],
            format_ns(record["modified_at"]),
            record["origin_node"],
            record["priority"],
            record["content"],
        ]
        if args.include_deleted:
            row.insert(1, record["deleted"])
        rows.append(row)
    emit_table(headers, rows)
    return 0


def _tier_and_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "tier", type=parse_tier, metavar="TIER", help="working, episodic or semantic (L1-L3, 1-3)"
    )
    parser.add_argument("item_id", metavar="ID", help="the item's id (1-32 bytes of UTF-8)")


def _content(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("content", metavar="JSON", help="a JSON object, or - to read stdin")


def _priority(parser: argparse.ArgumentParser) -> None:
    add_priority_option(
        parser,
        "how urgently the write replicates, and the item's eviction weight (default: keep "
        "the item's; normal for a new item)",
    )


def add_parsers(subparsers: Subparsers) -> None:
    """``put``, ``merge``, ``delete``, ``get`` and ``list``."""
    put = add_command(
        subparsers,
        "put",
        help="add an item (or replace one with --update)",
        description=(
            "Add an item to a tier; with --update, replace the content of a live item. "
            "Prints the item as JSON."
        ),
        run=run_put,
    )
    _tier_and_id(put)
    _content(put)
    _priority(put)
    put.add_argument(
        "--update", action="store_true", help="replace a live item instead of adding one"
    )

    merge = add_command(
        subparsers,
        "merge",
        help="set some fields of an item, keeping the others",
        description=(
            "Merge fields into an item (each field keeps its latest write); creates the item "
            "if missing. Prints the item as JSON."
        ),
        run=run_merge,
    )
    _tier_and_id(merge)
    _content(merge)
    _priority(merge)

    delete = add_command(
        subparsers, "delete", help="delete an item (leaves a tombstone)", run=run_delete
    )
    _tier_and_id(delete)
    _priority(delete)

    get = add_command(
        subparsers,
        "get",
        help="print a live item as JSON",
        description=(
            "Print a live item as JSON; exit 1 if it is missing, deleted or expired. Reads the "
            "file read-only and counts no access: looking at an item from the command line is "
            "not the agent using it, so it leaves eviction scores and promotion alone (and works "
            "beside a running node). --count-access reads it as the library's get_by_id does."
        ),
        run=run_get,
    )
    _tier_and_id(get)
    get.add_argument(
        "--count-access",
        action="store_true",
        help="count this read as an access (local: raises the item's eviction score and "
        "counts towards promotion), as get_by_id in an application does",
    )

    listing = add_command(
        subparsers,
        "list",
        help="list a tier's items in change order",
        description=(
            "List the items of a tier in modified_at order (the order this node changed "
            "them), as a table, a JSON array (--json), JSON lines (--nl) or CSV (--csv)."
        ),
        run=run_list,
    )
    listing.add_argument(
        "tier", type=parse_tier, metavar="TIER", help="working, episodic or semantic (L1-L3, 1-3)"
    )
    listing.add_argument(
        "--since",
        type=parse_time_ns,
        default=0,
        metavar="STAMP",
        help="only items changed after this modified_at (ns, ISO 8601, or e.g. 10m ago)",
    )
    listing.add_argument("--limit", type=positive_int, metavar="N", help="at most N items")
    listing.add_argument(
        "--include-deleted", action="store_true", help="include tombstones (deleted items)"
    )
    add_format_flags(listing)
