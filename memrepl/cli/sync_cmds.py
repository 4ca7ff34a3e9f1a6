"""``memrepl sync``: one sync round with one peer -- dial it, push each tier, print the results.

The store named by ``--db`` pushes its changes to the peer (a ``memrepl serve`` node): for each
tier (or the one ``--tier`` names), :meth:`MemorySyncManager.sync_with_peer` sends what the peer
has not acknowledged -- a delta, or the snapshot the peer asks for when its cursor is below this
store's purge horizon. While connected, the peer's own changes may come back too (a serving node
pushes to whoever connects), but this command waits only for its own round. During a long
transfer a progress line on stderr counts the batches and items sent so far.

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
import asyncio
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from memrepl.cli.context import (
    Subparsers,
    add_command,
    add_json_flag,
    db_path,
    parse_tier,
    read_stored_node_id,
    require_existing,
    tier_name,
)
from memrepl.cli.output import emit, emit_json_lines, emit_table
from memrepl.cli.serve_cmds import add_mesh_options, peer_arg
from memrepl.errors import CommandError
from memrepl.node import Node, NodeConfig, NodeLink, NodeSettings
from memrepl.node.control import request_sync
from memrepl.node.lock import STARTING_NODE, LockInfo, holder
from memrepl.protocol.enums import MemoryTier
from memrepl.sync.antientropy import CheckResult
from memrepl.sync.results import SyncResult, result_to_json

ORDER = 71

#: Seconds before the progress line appears, and between its updates.
PROGRESS_AFTER_S = 1.0
PROGRESS_EVERY_S = 0.5


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
        "--no-check",
        action="store_true",
        help="skip the anti-entropy check that follows the rounds (verify this store's digests, "
        "compare them with the peer's, repair what differs)",
    )
    add_mesh_options(parser)
    add_json_flag(parser, "print one JSON object per tier instead of a table")


#: How long to wait for a node that holds the lock but has not said where its channel is yet.
STARTING_NODE_WAIT_S = 5.0


def run_sync(args: argparse.Namespace) -> int:
    path = db_path(args)
    require_existing(path)
    node_id = args.node_id or read_stored_node_id(path)
    if node_id is None:
        raise CommandError(f"the store at {str(path)!r} has no node id: pass --node-id ID")
    tiers = [args.tier] if args.tier is not None else list(MemoryTier)
    running = _running_node(path)
    if running is not None:
        results, check = asyncio.run(_sync_through(running, args, tiers))
    else:
        results, check = _sync_here(args, path, node_id, tiers)
    _print(results, check, as_json=args.json)
    checked = check is None or check.get("error") is None
    return 0 if checked and all(result.ok for result in results) else 1


def _running_node(path: Path) -> LockInfo | None:
    """The node running on the store, once it says where its control channel is."""
    deadline = time.monotonic() + STARTING_NODE_WAIT_S
    while True:
        running = holder(path)
        if running is None or running.control is not None:
            return running
        starting = running.command in ("memrepl serve", STARTING_NODE)
        if not starting or time.monotonic() > deadline:
            raise CommandError(
                f"{path} is in use by a node without a control channel ({running.describe()}): "
                "try again when it has stopped"
            )
        time.sleep(0.05)


async def _sync_through(
    running: LockInfo, args: argparse.Namespace, tiers: list[MemoryTier]
) -> tuple[list[SyncResult], dict[str, Any] | None]:
    assert running.control is not None
    peer_id, (host, port) = args.peer
    shower = _ProgressLine(peer_id)
    try:
        return await request_sync(
            running.control,
            peer_id=peer_id,
            address=f"{host}:{port}",
            tiers=tiers,
            connect_timeout_s=args.connect_timeout,
            check=not args.no_check,
            progress=shower.show,
        )
    finally:
        shower.end()


def _sync_here(
    args: argparse.Namespace, path: Path, node_id: str, tiers: list[MemoryTier]
) -> tuple[list[SyncResult], dict[str, Any] | None]:
    peer_id, address = args.peer
    flags = {
        "db": path,
        "node_id": node_id,
        "peers": {peer_id: address},
        "key_file": args.key_file,
        "tls_cert": args.tls_cert,
        "tls_key": args.tls_key,
        "tls_ca": args.tls_ca,
        "tls_server_hostname": args.tls_server_hostname,
        "certs_dir": args.certs_dir,
    }
    config = NodeConfig.from_sources({}, flags)
    if config.key_file is None and config.tls_cert is None:
        raise CommandError(
            "memrepl sync needs credentials: --certs-dir DIR (certificate mode) or "
            "--key-file PATH (shared-key mode)"
        )
    settings = NodeSettings(
        scheduler=False, bootstrap_replicate=False, ack_timeout_s=args.ack_timeout
    )
    node = Node.from_config(dataclasses.replace(config, settings=settings), command="memrepl sync")
    results, check = asyncio.run(
        _sync(node, peer_id, tiers, args.connect_timeout, check=not args.no_check)
    )
    return results, (None if check is None else check.as_dict())


def _print(results: list[SyncResult], check: dict[str, Any] | None, *, as_json: bool) -> None:
    if as_json:
        lines = [result_to_json(result) for result in results]
        if check is not None:
            lines.append({"antientropy": check})
        emit_json_lines(lines)
    else:
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
        if check is not None:
            emit(
                f"anti-entropy: {check['tiers_differing']} of {check['tiers_compared']} tiers "
                f"differed, {check['items_differing']} items; {check['items_sent']} sent, "
                f"{check['items_fetched']} fetched, {check['repaired']} repaired, "
                f"{check['skipped']} skipped"
                + (f"; error: {check['error']}" if check["error"] else "")
            )


async def _sync(
    node: Node,
    peer_id: str,
    tiers: list[MemoryTier],
    connect_timeout_s: float,
    *,
    check: bool,
) -> tuple[list[SyncResult], CheckResult | None]:
    async with node:
        try:
            await node.wait_for_peer(peer_id, connect_timeout_s)
        except TimeoutError:
            raise CommandError(
                f"could not connect to {peer_id!r} within {connect_timeout_s:g} s"
                + _last_error(node, peer_id)
            ) from None
        results = []
        for tier in tiers:
            progress = asyncio.create_task(_show_progress(node.link, peer_id, tier))
            try:
                results.extend(await node.sync_now([peer_id], [tier]))
            finally:
                progress.cancel()
                await asyncio.gather(progress, return_exceptions=True)
        return results, (await node.check_now(peer_id) if check else None)


def _last_error(node: Node, peer_id: str) -> str:
    stats = getattr(node.mesh, "stats", None)
    if stats is None:
        return ""
    peer = stats().peers.get(peer_id)
    error = peer.traffic.last_error if peer is not None else None
    return f" (last error: {error})" if error else ""


class _ProgressLine:
    """The progress line on stderr: rewritten in place on a terminal, else every few seconds."""

    def __init__(self, peer_id: str) -> None:
        self.peer_id = peer_id
        self.interactive = sys.stderr.isatty()
        self.started = time.monotonic()
        self.last_shown = 0.0
        self.shown = False

    def show(self, tier: str, batches: int, items: int) -> None:
        now = time.monotonic()
        if not self.interactive and now - self.last_shown < 5 * PROGRESS_EVERY_S:
            return
        elapsed = max(now - self.started, 1e-9)
        line = (
            f"memrepl: sync {tier} -> {self.peer_id}: {batches:,} batches, "
            f"{items:,} items sent ({items / elapsed:,.0f} items/s)"
        )
        sys.stderr.write(("\r" + line) if self.interactive else (line + "\n"))
        sys.stderr.flush()
        self.shown = True
        self.last_shown = now

    def end(self) -> None:
        if self.shown and self.interactive:
            sys.stderr.write("\n")
            sys.stderr.flush()


async def _show_progress(link: NodeLink, peer_id: str, tier: MemoryTier) -> None:
    """After PROGRESS_AFTER_S, the progress line with the batches and items sent so far."""
    batches0, items0 = link.batches_sent[peer_id], link.items_sent[peer_id]
    shower = _ProgressLine(peer_id)
    try:
        await asyncio.sleep(PROGRESS_AFTER_S)
        while True:
            batches = link.batches_sent[peer_id] - batches0
            items = link.items_sent[peer_id] - items0
            shower.show(tier_name(tier), batches, items)
            await asyncio.sleep(PROGRESS_EVERY_S)
    finally:
        shower.end()
