"""What ``memrepl status`` reads and how it puts it together (the heavy half of
:mod:`memrepl.cli.status_cmds`, imported when it runs).

Two sources, each for what only it can know:

- **the store's tables**, read in ONE read-only transaction (a consistent snapshot; nothing is
  written, migrated or stamped, so it works on a store in use, or one that has no node id yet):
  per tier what it holds; per tier and known peer what the peer lacks (:mod:`memrepl.sync.lag`);
- **the running node's report** (:mod:`memrepl.node.report`), which ``memrepl serve`` keeps in
  its status file next to the store: every configured or connected peer, its connection and last
  error with what to do about it, the rounds and their progress -- including how far behind this
  node is while it receives a catch-up, which only the receiving node knows (its sender
  announces what is left with each batch).

The report is trusted as *live* only while its process runs and rewrites it
(:func:`daemon_state`); otherwise its facts are shown as of when it was written.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from memrepl.cli.context import readonly_engine
from memrepl.cli.trust_status import TrustStatus, trust_status
from memrepl.errors import CommandError, StoreError
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import migrate
from memrepl.storage.counts import live_count
from memrepl.storage.items import max_modified_at
from memrepl.storage.node import stored_node_id
from memrepl.storage.schema import TIER_SPECS, TierSpec
from memrepl.sync import tombstones
from memrepl.sync.conflicts import conflict_count
from memrepl.sync.lag import send_lags

#: A running node's report older than this many of its own intervals (plus a margin) is stale.
STALE_AFTER_INTERVALS = 3
STALE_MARGIN_S = 5.0


@dataclass(frozen=True, slots=True)
class TierStatus:
    """What one tier holds."""

    tier: str
    items: int
    tombstones: int
    conflicts: int
    latest_modified_at: int
    purged_through: int


@dataclass(slots=True)
class PeerTierStatus:
    """Replication with one peer for one tier: the tables' facts, then the node's."""

    tier: str
    #: From the tables (None / 0 when the peer is not in them for this tier).
    acked_cursor: int | None = None
    items_behind: int = 0
    lag_s: float = 0.0
    inbound_cursor: int | None = None
    #: From the running node's report (see memrepl.node.report.PeerTierReport).
    last_status: str | None = None
    last_success_ns: int | None = None
    last_error: str | None = None
    last_error_ns: int | None = None
    sending: dict[str, Any] | None = None
    receiving: dict[str, Any] | None = None


@dataclass(slots=True)
class PeerStatus:
    """One peer: known from the tables, the node's configuration, or its connections."""

    peer_id: str
    address: str | None = None
    #: ``connected``, ``not connected``, or ``unknown`` (no running node to ask).
    connection: str = "unknown"
    dialled_by: str | None = None
    tls: bool = False
    last_error: str | None = None
    last_error_code: str | None = None
    last_error_ns: int | None = None
    advice: str | None = None
    handshake_failures: int = 0
    tiers: list[PeerTierStatus] = field(default_factory=list)

    def tier(self, name: str) -> PeerTierStatus:
        for found in self.tiers:
            if found.tier == name:
                return found
        added = PeerTierStatus(name)
        self.tiers.append(added)
        self.tiers.sort(key=lambda t: MemoryTier[t.tier.upper()])
        return added


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    """The node serving this store, as its status file tells."""

    #: ``running``, ``stopped`` (it said so), ``not running`` (it did not say), ``not
    #: responding`` (running, but the file is stale) or ``none`` (no status file).
    state: str
    status_file: str
    pid: int | None = None
    listening: str | None = None
    written_at_ns: int | None = None
    refused_connections: int = 0
    last_refused: str | None = None
    last_refused_code: str | None = None
    last_refused_advice: str | None = None


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """Everything ``memrepl status`` prints."""

    node_id: str | None
    path: str
    revision: str | None
    replication_revision: str
    daemon: DaemonStatus
    tiers: list[TierStatus]
    peers: list[PeerStatus]
    #: This node's clock against wall time, refusals and forgotten items (from the tables:
    #: memrepl.cli.trust_status).
    trust: TrustStatus
    #: The node's last anti-entropy check with each peer and its last verification, as its
    #: report has it (memrepl.node.node.Node.antientropy_status); None without a report.
    antientropy: dict[str, Any] | None = None
    #: How the node authenticates and what its gate refused (memrepl.node.report.auth_summary);
    #: None without a report.
    auth: dict[str, Any] | None = None


def _count(conn: Connection, query: Any) -> int:
    return int(conn.execute(query).scalar_one())


def tier_status(conn: Connection, spec: TierSpec) -> TierStatus:
    """The :class:`TierStatus` of one tier."""
    return TierStatus(
        tier=spec.tier.name.lower(),
        items=live_count(conn, spec),
        tombstones=tombstones.pending_tombstones(conn, spec),
        conflicts=conflict_count(conn, spec.tier),
        latest_modified_at=max_modified_at(conn, spec),
        purged_through=tombstones.purged_through(conn, spec.tier),
    )


def _readable(path: Path, revision: str | None) -> None:
    """Refuse a store whose tables this memrepl cannot read as they are (read-only: no
    migration), saying what to run."""
    if revision == migrate.HEAD_REVISION:
        return
    if revision is None:
        raise CommandError(
            f"{str(path)!r} is not a memrepl store yet: run 'memrepl init --node-id ID --db {path}'"
        )
    if revision in migrate.known_revisions():
        raise CommandError(
            f"the store at {str(path)!r} is at schema revision {revision}, behind this memrepl's "
            f"{migrate.HEAD_REVISION}: run 'memrepl db upgrade --db {path}' (status never writes)"
        )
    raise CommandError(
        f"the store at {str(path)!r} was written by a newer memrepl (schema revision "
        f"{revision}): upgrade memrepl to read it"
    )


def read_tables(
    path: Path, now_ns: int
) -> tuple[str | None, str, list[TierStatus], list[PeerStatus], TrustStatus]:
    """Node id, revision, tiers and per-peer table facts, in one read-only transaction."""
    engine = readonly_engine(path)
    peers: dict[str, PeerStatus] = {}
    try:
        with engine.begin() as conn:
            revision = migrate.current_revision(conn)
            _readable(path, revision)
            node_id = stored_node_id(conn)
            tiers = [tier_status(conn, TIER_SPECS[tier]) for tier in MemoryTier]
            for tier in MemoryTier:
                for lag in send_lags(conn, TIER_SPECS[tier]):
                    peer = peers.setdefault(lag.peer_id, PeerStatus(lag.peer_id))
                    found = peer.tier(tier.name.lower())
                    found.acked_cursor = lag.acked_cursor
                    found.items_behind = lag.items
                    found.lag_s = round(lag.seconds(now_ns), 3)
                    found.inbound_cursor = lag.inbound_cursor
            trust = trust_status(conn, now_ns)
    except DBAPIError as exc:
        raise StoreError(f"reading the status of {str(path)!r}: {exc.orig}") from exc
    finally:
        engine.dispose()
    assert revision is not None
    return node_id, revision, tiers, [peers[name] for name in sorted(peers)], trust


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True


def read_report(path: Path, *, required: bool) -> dict[str, Any] | None:
    """The node report in ``path``; None when there is none and it was not asked for by name.
    CommandError for a file that cannot be read or is not a node report."""
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        if not required:
            return None
        raise CommandError(f"reading the node status file {str(path)!r}: no such file") from None
    except (OSError, ValueError) as exc:
        raise CommandError(f"reading the node status file {str(path)!r}: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("peers"), list):
        raise CommandError(
            f"reading the node status file {str(path)!r}: not a report of 'memrepl serve'"
        )
    return document


def daemon_state(report: dict[str, Any], now_ns: int) -> str:
    """Whether the node that wrote ``report`` runs now (see :class:`DaemonStatus`)."""
    if report.get("stopped_at_ns"):
        return "stopped"
    pid = report.get("pid")
    if isinstance(pid, int) and not _process_alive(pid):
        return "not running"
    every_s = float(report.get("every_s") or 0.0)
    age_s = (now_ns - int(report.get("written_at_ns") or 0)) / 1e9
    if age_s > STALE_AFTER_INTERVALS * every_s + STALE_MARGIN_S:
        return "not responding"
    return "running"


_PEER_KEYS = (
    "address",
    "dialled_by",
    "tls",
    "last_error",
    "last_error_code",
    "last_error_ns",
    "advice",
    "handshake_failures",
)
_TIER_KEYS = (
    "last_status",
    "last_success_ns",
    "last_error",
    "last_error_ns",
    "sending",
    "receiving",
)


def merge_report(peers: list[PeerStatus], report: dict[str, Any], live: bool) -> list[PeerStatus]:
    """``peers`` (the tables' facts) with the node report's facts added, every peer either
    names; connection states only from a live report."""
    found = {peer.peer_id: peer for peer in peers}
    for entry in report.get("peers", []):
        peer = found.setdefault(entry["peer_id"], PeerStatus(entry["peer_id"]))
        for key in _PEER_KEYS:
            if key in entry:
                setattr(peer, key, entry[key])
        peer.connection = entry.get("connection", "unknown") if live else "unknown"
        for tier_entry in entry.get("tiers", []):
            tier = peer.tier(tier_entry["tier"])
            for key in _TIER_KEYS:
                if key in tier_entry:
                    setattr(tier, key, tier_entry[key])
            if not live:
                tier.sending = tier.receiving = None
    return [found[name] for name in sorted(found)]


def gather(path: Path, status_file: Path, *, named: bool) -> StoreStatus:
    """The store's status; ``named``: the status file was given by the user (it must exist)."""
    now_ns = time.time_ns()
    node_id, revision, tiers, peers, trust = read_tables(path, now_ns)
    report = read_report(status_file, required=named)
    repairs = auth = None
    if report is None:
        daemon = DaemonStatus("none", str(status_file))
    else:
        repairs = _section(report, "antientropy")
        auth = _section(report, "auth")
        state = daemon_state(report, now_ns)
        daemon = DaemonStatus(
            state=state,
            status_file=str(status_file),
            pid=report.get("pid"),
            listening=report.get("listening"),
            written_at_ns=report.get("written_at_ns"),
            refused_connections=int(report.get("refused_connections") or 0),
            last_refused=report.get("last_refused"),
            last_refused_code=report.get("last_refused_code"),
            last_refused_advice=report.get("last_refused_advice"),
        )
        peers = merge_report(peers, report, live=state == "running")
    return StoreStatus(
        node_id=node_id,
        path=str(path),
        revision=revision,
        replication_revision=migrate.REPLICATION_REVISION,
        daemon=daemon,
        tiers=tiers,
        peers=peers,
        antientropy=repairs,
        auth=auth,
        trust=trust,
    )


def _section(report: dict[str, Any], name: str) -> dict[str, Any] | None:
    found = report.get(name)
    return found if isinstance(found, dict) else None
