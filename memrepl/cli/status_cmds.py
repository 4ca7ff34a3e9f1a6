"""``memrepl status``: what the store holds, every peer, and where replication stands with each.

It reads the store's tables read-only (it never writes, migrates or stamps: it works beside a
running node and on a store that has no node id yet) and the running node's report, which
``memrepl serve`` keeps next to the store (:mod:`memrepl.cli.status_report` puts them together).
What each column means is :data:`DEFINITIONS` (also the text of ``memrepl status --help``).
This node's clock against wall time, refused batches and forgotten items are shown by
:mod:`memrepl.cli.trust_status` when there is something to see.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memrepl.cli.context import Subparsers, add_command, add_json_flag, db_path, default_status_file
from memrepl.cli.output import emit, emit_json, emit_table, format_ns

if TYPE_CHECKING:
    from memrepl.cli.status_report import PeerStatus, PeerTierStatus, StoreStatus

ORDER = 30

#: The meaning of every column (shown by ``memrepl status --help``).
DEFINITIONS = """\
The node: whether the 'memrepl serve' of this store runs (from the report it keeps next to the
store, DB.status.json; --node-status names another file), where it listens, and connections it
refused from peers it does not know.

Per tier:
  items            live items
  tombstones       deleted items still kept (pending collection)
  conflicts        rows of the conflict log for the tier
  latest change    the tier's highest modified_at: this node's clock when it last changed
                   a row of the tier (local write or applied batch)
  purged through   the highest modified_at of a collected tombstone (a peer acked below it
                   is brought back with a snapshot)

Per peer (configured, connected, or in the tables):
  address          where this node dials it (empty: it dials this node)
  connection       connected / not connected (unknown when the node does not run)
  last error       the last connection error, with what to do about it (a failed handshake
                   says whether the cluster credentials differ)

Per peer and tier:
  acked            the highest local modified_at the peer acknowledged (empty: nothing yet)
  behind (items)   rows changed here that the peer has not acknowledged and a delta would
                   send it (rows whose state came as is from the peer are never sent back)
  lag (s)          the age of the oldest of those changes: how stale the peer's copy is
                   (0 when it lacks nothing)
  inbound          the highest cursor of the peer's own batches applied here
  receiving        while the peer sends this node a catch-up: items applied / expected (the
                   peer announces what is left with each batch), rate and ETA
  sending          while this node sends the peer a round: items sent / to send, ETA
  last round       how the last round this node sent ended, and when (with its error)
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


def _age(stamp: int | None, now_ns: int) -> str:
    if not stamp:
        return ""
    seconds = max(0.0, (now_ns - stamp) / 1e9)
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


def _progress(progress: dict[str, Any] | None) -> str:
    if not progress:
        return ""
    text = f"{progress['done']:,}/{progress['total']:,}"
    if progress.get("stalled"):
        return text + " stalled"
    eta = progress.get("eta_s")
    return text + ("" if eta is None else f", ETA {eta:.0f} s")


def _last_round(tier: PeerTierStatus, now_ns: int) -> str:
    if tier.last_error and (tier.last_error_ns or 0) >= (tier.last_success_ns or 0):
        return f"{tier.last_error} ({_age(tier.last_error_ns, now_ns)})"
    if tier.last_status:
        return f"{tier.last_status} {_age(tier.last_success_ns, now_ns)}".strip()
    return ""


def _peer_error(peer: PeerStatus, now_ns: int) -> str:
    if not peer.last_error_code and not peer.last_error:
        return ""
    times = f", {peer.handshake_failures} failed handshakes" if peer.handshake_failures else ""
    head = f"{peer.last_error_code or 'error'} ({_age(peer.last_error_ns, now_ns)}{times})"
    return f"{head}: {peer.advice or peer.last_error}"


def render(status: StoreStatus) -> None:
    """Print the status as text."""
    now_ns = time.time_ns()
    emit(
        f"node {status.node_id or '(none yet: memrepl init --node-id ID)'}  store {status.path}  "
        f"schema {status.revision}  replication {status.replication_revision}"
    )
    daemon = status.daemon
    if daemon.state == "none":
        emit(f"daemon: no report at {daemon.status_file} (memrepl serve writes one)")
    else:
        where = f", pid {daemon.pid}, listening on {daemon.listening}" if daemon.listening else ""
        emit(f"daemon: {daemon.state}{where} (report {_age(daemon.written_at_ns, now_ns)})")
        if daemon.refused_connections:
            emit(
                f"  refused {daemon.refused_connections} connections from unknown peers; last: "
                f"{daemon.last_refused}"
                + (f" -- {daemon.last_refused_advice}" if daemon.last_refused_advice else "")
            )
    if status.auth is not None:
        emit(auth_line(status.auth))
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
            for s in status.tiers
        ],
        right=(1, 2, 3),
    )
    from memrepl.cli.trust_status import emit_trust
    from memrepl.clock import DEFAULT_MAX_CLOCK_SKEW_NS

    emit_trust(status.trust, tolerance_ns=DEFAULT_MAX_CLOCK_SKEW_NS)
    emit()
    _antientropy(status.antientropy)
    if not status.peers:
        emit("no peers: none configured, connected, or synced with this store")
        return
    # The error column is last and never cut: it is the sentence an operator acts on.
    for line in _peer_lines(status.peers, now_ns):
        emit(line)
    emit()
    emit_table(
        ["tier", "peer", "acked", "behind (items)", "lag (s)", "inbound", "receiving", "sending",
         "last round"],
        [
            [
                tier.tier,
                peer.peer_id,
                format_ns(tier.acked_cursor),
                tier.items_behind,
                f"{tier.lag_s:.1f}",
                format_ns(tier.inbound_cursor),
                _progress(tier.receiving),
                _progress(tier.sending),
                _last_round(tier, now_ns),
            ]
            for peer in status.peers
            for tier in peer.tiers
        ],
        right=(3, 4),
    )  # fmt: skip


def _antientropy(repairs: dict[str, Any] | None) -> None:
    """The last anti-entropy check with each peer (memrepl.node.repair), when there was one."""
    if repairs is None or not repairs.get("checks"):
        return
    emit_table(
        ["anti-entropy peer", "last check", "ranges", "differing", "sent", "fetched",
         "repaired", "error"],
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
    )  # fmt: skip
    emit()


def _peer_lines(peers: list[PeerStatus], now_ns: int) -> list[str]:
    from memrepl.cli.output import format_table

    rows = [[peer.peer_id, peer.address, _connection(peer)] for peer in peers]
    table = format_table(["peer", "address", "connection"], rows).splitlines()
    width = max(len(line) for line in table)
    lines = [table[0].ljust(width) + "  last error", table[1].ljust(width) + "  " + "-" * 10]
    for peer, line in zip(peers, table[2:], strict=True):
        lines.append((line.ljust(width) + "  " + _peer_error(peer, now_ns)).rstrip())
    return lines


def _connection(peer: PeerStatus) -> str:
    if peer.connection != "connected":
        return peer.connection
    return f"connected (dialled by {peer.dialled_by}{', TLS' if peer.tls else ''})"


def run_status(args: argparse.Namespace) -> int:
    """Print the status of the store, its node and every peer."""
    from memrepl.cli.status_report import gather

    path = db_path(args)
    named = args.node_status is not None
    status = gather(path, args.node_status or default_status_file(path), named=named)
    if args.json:
        from memrepl.cli.trust_status import trust_json

        document = asdict(status)
        document.pop("trust")
        emit_json({**document, **trust_json(status.trust)})
    else:
        render(status)
    return 0


def add_parsers(subparsers: Subparsers) -> None:
    """``status``."""
    status = add_command(
        subparsers,
        "status",
        help="what the store holds, every peer, and where replication stands",
        description=(
            "Print what the store holds, whether its node runs, every peer with its connection "
            "and last error, and per tier and peer where replication stands. Never writes.\n\n"
            + DEFINITIONS
        ),
        run=run_status,
    )
    add_json_flag(status, "print the status as one JSON document")
    status.add_argument(
        "--node-status",
        type=Path,
        metavar="FILE",
        help="the report of the node serving this store, if not at DB.status.json "
        "(memrepl serve --status-file)",
    )
