"""``memrepl status``: per tier, what the store holds; per tier and peer, where replication is.

Everything is read in ONE read transaction (a consistent snapshot) from the tables
ARCHITECTURE.md calls plain and queryable: the tier tables, ``sync_vectors``,
``inbound_cursors``, ``tombstone_horizons`` and ``conflicts``. What each column means is
:data:`DEFINITIONS` (also the text of ``memrepl status --help``): in particular "behind (s)" is
``(latest change - acked cursor) / 1e9``, in seconds of this node's clock.

There is no "last error" column: no table records sync errors (the node daemon logs them).
Refused batches are counted (``sync_refusals``), and with the clock and forgotten items they
are shown by :mod:`memrepl.cli.trust_status` when there is something to see.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from memrepl.cli.context import (
    Subparsers,
    add_command,
    add_json_flag,
    db_path,
    open_store,
)
from memrepl.cli.output import emit, emit_json, emit_table, format_ns
from memrepl.protocol.enums import MemoryTier

ORDER = 30

#: The meaning of every column (shown by ``memrepl status --help``).
DEFINITIONS = """\
Per tier:
  items            live items
  tombstones       deleted items still kept (pending collection)
  conflicts        rows of the conflict log for the tier
  latest change    the tier's highest modified_at: this node's clock when it last changed
                   a row of the tier (local write or applied batch)
  purged through   the highest modified_at of a collected tombstone (a peer acked below it
                   is brought back with a snapshot)

Per tier and peer (every peer in sync_vectors or inbound_cursors):
  acked            the peer's sync vector entry: the highest local modified_at it
                   acknowledged (empty: it never acknowledged anything)
  behind (items)   rows changed here after "acked" that a delta would send the peer (rows
                   whose state came as is from that peer are never sent back)
  behind (s)       (latest change - acked) / 1e9 when behind by at least one item, else 0:
                   how much of this node's change history, in seconds of its clock, the peer
                   has not acknowledged (empty / null: it never acknowledged anything)
  inbound          the highest cursor of the peer's own batches applied here, a stamp of the
                   peer's clock (empty: nothing came from it)

  last error       the last sync error towards that peer, as the running node reported it in
                   its --status-file (`memrepl serve --status-file F`, read with
                   `memrepl status --node-status F`); empty without one
"""


def auth_line(auth: dict[str, Any]) -> str:
    """One line: the mode, the handshakes refused by code, the revocation list, the last one."""
    refused = auth.get("refused") or {}
    total = sum(refused.values())
    line = f"authentication: {auth.get('mode')}, {total} refused"
    if refused:
        line += " (" + ", ".join(f"{code} {n}" for code, n in sorted(refused.items())) + ")"
    if auth.get("revoked_entries") is not None:
        line += f", {auth['revoked_entries']} revoked"
    if auth.get("revocation_error"):
        line += f", revocation list: {auth['revocation_error']}"
    if auth.get("last_refusal"):
        line += f"; last: {auth['last_refusal']}"
    return line


def run_status(args: argparse.Namespace) -> int:
    """Print the status of every tier and peer."""
    from memrepl.cli.status_report import (
        node_antientropy,
        node_errors,
        node_section,
        peer_statuses,
        tier_status,
    )
    from memrepl.cli.trust_status import emit_trust, trust_json, trust_status
    from memrepl.storage import migrate
    from memrepl.storage.schema import TIER_SPECS

    path = db_path(args)
    errors = node_errors(args.node_status)
    repairs = node_antientropy(args.node_status)
    # From --node-status: how the node authenticates and what it refused.
    auth = node_section(args.node_status, "auth")
    with open_store(args) as store, store.read() as conn:
        node_id = store.node_id
        revision = migrate.current_revision(conn)
        tiers = [tier_status(conn, TIER_SPECS[tier]) for tier in MemoryTier]
        peers = [
            replace(peer, last_error=errors.get((peer.tier, peer.peer_id)))
            for tier, status in zip(MemoryTier, tiers, strict=True)
            for peer in peer_statuses(conn, TIER_SPECS[tier], status.latest_modified_at)
        ]
        trust = trust_status(conn, time.time_ns())
        tolerance_ns = store.clock_settings.max_skew_ns
    if args.json:
        emit_json(
            {
                "node_id": node_id,
                "path": str(path),
                "revision": revision,
                # What the handshake compares: peers must share it, not the head revision.
                "replication_revision": migrate.REPLICATION_REVISION,
                # From --node-status: how the node authenticates and what it refused.
                "auth": auth,
                "tiers": [asdict(status) for status in tiers],
                "peers": [asdict(peer) for peer in peers],
                "antientropy": repairs,
                **trust_json(trust),
            }
        )
        return 0
    emit(
        f"node {node_id}  store {path}  schema {revision}  "
        f"replication {migrate.REPLICATION_REVISION}"
    )
    if auth is not None:
        emit(auth_line(auth))
    emit()
    emit_table(
        ["tier", "items", "tombstones", "conflicts", "latest change", "purged through"],
        [
            [
                s.tier,
                s.items,
                s.tombstones,
                s.conflicts,
                format_ns(s.latest_modified_at),
                format_ns(s.purged_through),
            ]
            for s in tiers
        ],
        right=(1, 2, 3),
    )
    emit_trust(trust, tolerance_ns=tolerance_ns)
    emit()
    if repairs is not None and repairs.get("checks"):
        emit_table(
            [
                "anti-entropy peer",
                "last check",
                "ranges",
                "differing",
                "sent",
                "fetched",
                "repaired",
                "error",
            ],
            [
                [
                    c.get("peer_id"),
                    format_ns(c.get("started_ns")),
                    c.get("ranges_compared"),
                    c.get("items_differing"),
                    c.get("items_sent"),
                    c.get("items_fetched"),
                    c.get("repaired"),
                    c.get("error") or "",
                ]
                for c in repairs["checks"]
            ],
            right=(2, 3, 4, 5, 6),
        )
        emit()
    if not peers:
        emit("no peers yet: nothing was synced with this store")
        return 0
    emit_table(
        ["tier", "peer", "acked", "behind (items)", "behind (s)", "inbound", "last error"],
        [
            [
                p.tier,
                p.peer_id,
                format_ns(p.acked_cursor),
                p.items_behind,
                "" if p.seconds_behind is None else f"{p.seconds_behind:.3f}",
                format_ns(p.inbound_cursor),
                p.last_error or "",
            ]
            for p in peers
        ],
        right=(3, 4),
    )
    return 0


def add_parsers(subparsers: Subparsers) -> None:
    """``status``."""
    status = add_command(
        subparsers,
        "status",
        help="items, tombstones and replication state per tier and peer",
        description=(
            "Print, per tier, what the store holds and, per tier and peer, where "
            "replication stands.\n\n" + DEFINITIONS
        ),
        run=run_status,
    )
    add_json_flag(status, "print the status as one JSON document")
    status.add_argument(
        "--node-status",
        type=Path,
        metavar="FILE",
        help="the --status-file of the node serving this store, for the last error per peer",
    )
