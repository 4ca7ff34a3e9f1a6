"""``memrepl sync``: one sync round with one peer -- dial it, push each tier, print the results.

The store named by ``--db`` pushes its changes to the peer (a ``memrepl serve`` node): for each
tier (or the one ``--tier`` names), :meth:`MemorySyncManager.sync_with_peer` sends what the peer
has not acknowledged -- a delta, or the snapshot the peer asks for when its cursor is below this
store's purge horizon. While connected, the peer's own changes may come back too (a serving node
pushes to whoever connects), but this command waits only for its own round. A long round shows
its progress on stderr (:mod:`memrepl.cli.progress`): a bar with the total the round counted when
it began, the rate and the ETA on a terminal; a plain line every ``--progress-interval`` seconds
otherwise.

Who does the round: if a node already runs on the store (``memrepl serve``: it holds the store's
node lock, memrepl.node.lock), that node does it, asked through its control channel
(memrepl.node.control) -- a second process claiming the same node id would displace the daemon's
connection to the peer. Otherwise this command runs a short-lived node itself, holding the lock
while it does (it needs ``--key-file`` then).

The rule that keeps it right: the exit code is 0 only if every tier's round ended with the peer
caught up (``SyncResult.ok``) and the anti-entropy check ended without an error; otherwise 1,
with each result printed, so a script can retry.

After the rounds, one anti-entropy check (:mod:`memrepl.sync.antientropy`): this store's digests
are recomputed from its rows (finding rows changed by hand), compared with the peer's, and what
differs is repaired both ways. ``--no-check`` skips it. A running node asked to do the round does
the check too.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from memrepl.cli.context import (
    Subparsers,
    add_command,
    db_path,
    parse_tier,
    read_stored_node_id,
    require_existing,
    tier_name,
)
from memrepl.cli.output import CSV, TABLE, add_format_flags, emit, emit_rows, emit_table, note
from memrepl.cli.serve_cmds import add_mesh_options, peer_arg
from memrepl.errors import CommandError
from memrepl.protocol.enums import MemoryTier

if TYPE_CHECKING:
    from memrepl.sync.results import SyncResult

ORDER = 71


def add_parsers(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "sync",
        help="one sync round: push this store's changes to a peer and print the results",
        description=(
            "Dial a peer (a 'memrepl serve' node), push this store's changes for each tier (a "
            "delta,\nor a snapshot when needed) and print the results; exit 1 unless every "
            "tier is caught up.\nA long transfer shows its progress on stderr. Then one "
            "anti-entropy check\n(digests compared, differences repaired both ways)."
        ),
        run=run_sync,
    )
    parser.add_argument(
        "--peer", type=peer_arg, required=True, metavar="ID=HOST:PORT", help="the peer to sync with"
    )
    parser.add_argument(
        "--tier", type=parse_tier, help="only this tier: working, episodic or semantic"
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="give up if the peer cannot be reached and authenticated within S seconds (10)",
    )
    parser.add_argument(
        "--ack-timeout", type=float, default=30.0, metavar="S", help="wait for an ACK (30)"
    )
    parser.add_argument(
        "--progress-interval",
        type=float,
        default=5.0,
        metavar="S",
        help="when stderr is not a terminal, a progress line every S seconds (5); on a "
        "terminal, a bar with the total, the rate and the ETA",
    )
    parser.add_argument(
        "--no-check",
        action="store_true",
        help="skip the anti-entropy check that follows the rounds (verify this store's digests, "
        "compare them with the peer's, repair what differs)",
    )
    add_mesh_options(parser)
    add_format_flags(parser)


def run_sync(args: argparse.Namespace) -> int:
    from memrepl.cli import syncing

    path = db_path(args)
    require_existing(path)
    node_id = args.node_id or read_stored_node_id(path)
    if node_id is None:
        raise CommandError(f"the store at {str(path)!r} has no node id: pass --node-id ID")
    tiers = [args.tier] if args.tier is not None else list(MemoryTier)
    results, check = syncing.run(args, path, node_id, tiers)
    _print(results, check, fmt=args.format)
    checked = check is None or check.get("error") is None
    return 0 if checked and all(result.ok for result in results) else 1


def _print(results: list[SyncResult], check: dict[str, Any] | None, *, fmt: str) -> None:
    from memrepl.sync.results import result_to_json

    rows = [result_to_json(result) for result in results]
    if check is not None and fmt not in (TABLE, CSV):
        # JSON: the check follows the tiers as one more object (CSV has no room for it).
        rows.append({"antientropy": check})
    if not emit_rows(fmt, rows):
        emit_table(
            ["tier", "status", "batches", "items", "applied", "conflicts", "snapshot", "error"],
            (
                [
                    tier_name(r.tier),
                    r.status.value,
                    r.batches,
                    r.items,
                    r.applied,
                    r.conflicts,
                    r.snapshot,
                    r.error,
                ]
                for r in results
            ),
            right=(2, 3, 4, 5),
        )
    if check is not None and fmt in (TABLE, CSV):
        summary = (
            f"anti-entropy: {check['tiers_differing']} of {check['tiers_compared']} tiers "
            f"differed, {check['items_differing']} items; {check['items_sent']} sent, "
            f"{check['items_fetched']} fetched, {check['repaired']} repaired, "
            f"{check['skipped']} skipped" + (f"; error: {check['error']}" if check["error"] else "")
        )
        if fmt == TABLE:
            emit(summary)
        else:
            note(summary)
