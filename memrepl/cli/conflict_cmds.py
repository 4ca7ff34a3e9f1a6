"""``memrepl conflicts``: the conflict log, filtered, as a table, JSON, JSON lines or CSV.

The log is the ``conflicts`` table (ARCHITECTURE.md, "Item state and the merge"): one row per
pair of concurrent versions detected while applying a peer's batch, with both sides whole, the
state kept and the rule that decided. The filters map to indexed columns where there is one:

- ``--tier``, ``--item``: ``tier`` and ``item_id``;
- ``--peer``: the peer whose batch brought the conflict (``peer_id``);
- ``--lost-by NODE`` / ``--won-by NODE``: the node that wrote the losing / winning version;
- ``--since`` / ``--until``: when it was detected here (``detected_at_ns``), a half-open window:
  at or after ``--since``, before ``--until``;
- ``--limit N``: the N most recently logged rows (by ``id``), still printed oldest first.

JSON (``--json``, ``--nl``) carries every column, with both sides nested (``winner``,
``loser``: stamp, origin, content, deleted, causal context) and the JSON columns decoded; CSV
writes the nested values as their JSON text.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from memrepl.cli.context import (
    Subparsers,
    add_command,
    open_store,
    parse_tier,
    parse_time_ns,
    positive_int,
    tier_name,
)
from memrepl.cli.output import add_format_flags, emit_rows, emit_table, format_ns

if TYPE_CHECKING:
    from sqlalchemy import RowMapping, Select

ORDER = 40


def conflict_query(args: argparse.Namespace) -> Select[Any]:
    """The SELECT on ``conflicts`` for the filters in ``args`` (newest first when limited)."""
    from sqlalchemy import select

    from memrepl.storage.schema import conflicts

    table = conflicts
    query = select(table)
    if args.tier is not None:
        query = query.where(table.c.tier == int(args.tier))
    if args.item is not None:
        query = query.where(table.c.item_id == args.item)
    if args.peer is not None:
        query = query.where(table.c.peer_id == args.peer)
    if args.lost_by is not None:
        query = query.where(table.c.loser_origin == args.lost_by)
    if args.won_by is not None:
        query = query.where(table.c.winner_origin == args.won_by)
    if args.since is not None:
        query = query.where(table.c.detected_at_ns >= args.since)
    if args.until is not None:
        query = query.where(table.c.detected_at_ns < args.until)
    if args.limit is not None:
        return query.order_by(table.c.id.desc()).limit(args.limit)
    return query.order_by(table.c.id)


def _side(row: RowMapping, prefix: str) -> dict[str, Any]:
    return {
        "timestamp_ns": row[f"{prefix}_ts"],
        "origin": row[f"{prefix}_origin"],
        "content": json.loads(row[f"{prefix}_content"]),
        "deleted": bool(row[f"{prefix}_deleted"]),
        "context": json.loads(row[f"{prefix}_context"]),
    }


def conflict_record(row: RowMapping) -> dict[str, Any]:
    """One row of the log as a JSON-ready dict (see the module docstring)."""
    return {
        "id": row["id"],
        "tier": tier_name(row["tier"]),
        "item_id": row["item_id"],
        "winner": _side(row, "winner"),
        "loser": _side(row, "loser"),
        "resolved_content": json.loads(row["resolved_content"]),
        "rule": row["rule"],
        "peer_id": row["peer_id"],
        "batch_id": row["batch_id"],
        "detected_at_ns": row["detected_at_ns"],
    }


def _version(side: dict[str, Any]) -> str:
    label = f"{side['origin']} {format_ns(side['timestamp_ns'])}"
    return label + (" (delete)" if side["deleted"] else "")


def run_conflicts(args: argparse.Namespace) -> int:
    """Print the conflict log."""
    with open_store(args) as store, store.read() as conn:
        records = [conflict_record(row) for row in conn.execute(conflict_query(args)).mappings()]
    records.sort(key=lambda record: int(record["id"]))
    if emit_rows(args.format, records):
        return 0
    emit_table(
        ["id", "detected", "tier", "item", "peer", "rule", "winner", "loser", "lost content"],
        [
            [
                r["id"],
                format_ns(r["detected_at_ns"]),
                r["tier"],
                r["item_id"],
                r["peer_id"],
                r["rule"],
                _version(r["winner"]),
                _version(r["loser"]),
                r["loser"]["content"],
            ]
            for r in records
        ],
        right=(0,),
    )
    return 0


def add_parsers(subparsers: Subparsers) -> None:
    """``conflicts``."""
    parser = add_command(
        subparsers,
        "conflicts",
        help="the conflict log: concurrent writes and which one won",
        description=(
            "Print the conflict log (the conflicts table): one row per pair of concurrent "
            "versions detected while applying a peer's batch, with the winner, the loser and "
            "the rule that decided. Times are when the conflict was detected on this node: "
            "at or after --since, before --until."
        ),
        run=run_conflicts,
    )
    parser.add_argument("--tier", type=parse_tier, metavar="TIER", help="only this tier")
    parser.add_argument("--item", metavar="ID", help="only this item id")
    parser.add_argument("--peer", metavar="PEER", help="only conflicts a batch of PEER brought")
    parser.add_argument(
        "--lost-by", metavar="NODE", help="only where NODE wrote the losing version"
    )
    parser.add_argument(
        "--won-by", metavar="NODE", help="only where NODE wrote the winning version"
    )
    time_help = "(ns, ISO 8601 such as 2026-05-09T07:35:25Z, or a duration ago such as 10m)"
    parser.add_argument(
        "--since", type=parse_time_ns, metavar="TIME", help=f"detected at or after {time_help}"
    )
    parser.add_argument(
        "--until", type=parse_time_ns, metavar="TIME", help=f"detected before {time_help}"
    )
    parser.add_argument(
        "--limit", type=positive_int, metavar="N", help="only the N most recently logged"
    )
    add_format_flags(parser)
