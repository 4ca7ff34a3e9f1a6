"""Running ``memrepl sync`` (the heavy half of :mod:`memrepl.cli.sync_cmds`, imported when it
runs): through the node already running on the store, or with a short-lived node of its own;
each tier's round, the anti-entropy check, and the progress line."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

from memrepl.cli import progress
from memrepl.cli.context import tier_name
from memrepl.errors import CommandError
from memrepl.node import Node, NodeConfig, NodeSettings
from memrepl.node.control import request_sync, unreachable
from memrepl.node.lock import STARTING_NODE, LockInfo, holder
from memrepl.node.monitor import SEND
from memrepl.protocol.enums import MemoryTier
from memrepl.sync.antientropy import CheckResult
from memrepl.sync.results import SyncResult

#: How long to wait for a node that holds the lock but has not said where its channel is yet.
STARTING_NODE_WAIT_S = 5.0


def run(
    args: argparse.Namespace, path: Path, node_id: str, tiers: list[MemoryTier]
) -> tuple[list[SyncResult], dict[str, Any] | None]:
    """The rounds (and the check) the command line asks for: the results, the check's."""
    running = _running_node(path)
    if running is not None:
        return asyncio.run(_sync_through(running, args, tiers))
    return _sync_here(args, path, node_id, tiers)


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
    display = progress.Display(peer_id, every_s=args.progress_interval)
    try:
        return await request_sync(
            running.control,
            peer_id=peer_id,
            address=f"{host}:{port}",
            tiers=tiers,
            connect_timeout_s=args.connect_timeout,
            check=not args.no_check,
            progress=display.show,
        )
    finally:
        display.end()


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
        sync(
            node,
            peer_id,
            tiers,
            args.connect_timeout,
            check=not args.no_check,
            progress_every_s=args.progress_interval,
        )
    )
    return results, (None if check is None else check.as_dict())


async def sync(
    node: Node,
    peer_id: str,
    tiers: list[MemoryTier],
    connect_timeout_s: float,
    *,
    check: bool,
    progress_every_s: float,
) -> tuple[list[SyncResult], CheckResult | None]:
    """This command's own node: dial the peer, one round per tier, then the check."""
    async with node:
        try:
            await node.wait_for_peer(peer_id, connect_timeout_s)
        except TimeoutError:
            raise CommandError(unreachable(node, peer_id, connect_timeout_s)) from None
        results = []
        display = progress.Display(peer_id, every_s=progress_every_s)
        for tier in tiers:
            shower = asyncio.create_task(_show_progress(node, peer_id, tier, display))
            try:
                results.extend(await node.sync_now([peer_id], [tier]))
            finally:
                shower.cancel()
                await asyncio.gather(shower, return_exceptions=True)
                display.end()
        return results, (await node.check_now(peer_id) if check else None)


async def _show_progress(
    node: Node, peer_id: str, tier: MemoryTier, display: progress.Display
) -> None:
    """While the round runs (once it has run SHOW_AFTER_S): its progress, from the monitor."""
    await asyncio.sleep(progress.SHOW_AFTER_S)
    while True:
        found = node.monitor.progress(peer_id, tier, SEND)
        if found is not None:
            display.show(tier_name(tier), found.at(time.monotonic()))
        await asyncio.sleep(progress.REDRAW_EVERY_S)
