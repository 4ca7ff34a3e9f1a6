"""``memrepl sync``: one sync round with one peer -- dial it, push each tier, print the results.

The store named by ``--db`` pushes its changes to the peer (a ``memrepl serve`` node): for each
tier (or the one ``--tier`` names), :meth:`MemorySyncManager.sync_with_peer` sends what the peer
has not acknowledged -- a delta, or a snapshot when the peer's cursor is below this store's purge
horizon. While connected, the peer's own changes may come back too (a serving node pushes to
whoever connects), but this command waits only for its own round. During a long transfer a
progress line on stderr counts the batches and items sent so far.

The rule that keeps it right: the exit code is 0 only if every tier's round ended with the peer
caught up (``SyncResult.ok``) and the anti-entropy check ended without an error; otherwise 1,
with each result printed, so a script can retry.

After the rounds, one anti-entropy check (:mod:`memrepl.sync.antientropy`): this store's digests
are recomputed from its rows (finding rows changed by hand), compared with the peer's, and what
differs is repaired both ways. ``--no-check`` skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
from dataclasses import asdict
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
from memrepl.protocol.enums import MemoryTier
from memrepl.sync.antientropy import CheckResult
from memrepl.sync.results import SyncResult

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


def run_sync(args: argparse.Namespace) -> int:
    path = db_path(args)
    require_existing(path)
    node_id = args.node_id or read_stored_node_id(path)
    if node_id is None:
        raise CommandError(f"the store at {str(path)!r} has no node id: pass --node-id ID")
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
    node = Node.from_config(dataclasses.replace(config, settings=settings))
    tiers = [args.tier] if args.tier is not None else list(MemoryTier)
    results, check = asyncio.run(
        _sync(node, peer_id, tiers, args.connect_timeout, check=not args.no_check)
    )
    if args.json:
        lines = [_as_json(result) for result in results]
        if check is not None:
            lines.append({"antientropy": check.as_dict()})
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
                f"anti-entropy: {check.tiers_differing} of {check.tiers_compared} tiers differed, "
                f"{check.items_differing} items; {check.items_sent} sent, {check.items_fetched} "
                f"fetched, {check.repaired} repaired, {check.skipped} skipped"
                + (f"; error: {check.error}" if check.error else "")
            )
    checked = check is None or check.ok
    return 0 if checked and all(result.ok for result in results) else 1


def _as_json(result: SyncResult) -> dict[str, Any]:
    data = asdict(result)
    data["tier"] = tier_name(result.tier)
    data["status"] = result.status.value
    data["ok"] = result.ok
    return data


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


async def _show_progress(link: NodeLink, peer_id: str, tier: MemoryTier) -> None:
    """After PROGRESS_AFTER_S, a line on stderr with the batches and items sent so far."""
    started = time.monotonic()
    batches0, items0 = link.batches_sent[peer_id], link.items_sent[peer_id]
    interactive = sys.stderr.isatty()
    shown = False
    try:
        await asyncio.sleep(PROGRESS_AFTER_S)
        while True:
            batches = link.batches_sent[peer_id] - batches0
            items = link.items_sent[peer_id] - items0
            elapsed = time.monotonic() - started
            line = (
                f"memrepl: sync {tier_name(tier)} -> {peer_id}: {batches:,} batches, "
                f"{items:,} items sent ({items / elapsed:,.0f} items/s)"
            )
            sys.stderr.write(("\r" + line) if interactive else (line + "\n"))
            sys.stderr.flush()
            shown = True
            await asyncio.sleep(PROGRESS_EVERY_S if interactive else 5 * PROGRESS_EVERY_S)
    finally:
        if shown and interactive:
            sys.stderr.write("\n")
            sys.stderr.flush()
