"""A node's monitor: a long catch-up is visible on the receiving node while it runs (items
applied and still announced, a rate, an ETA), and both sides log its progress at a steady
interval."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

import memrepl
from memrepl.node import Node, NodeSettings
from memrepl.node.monitor import RECEIVE, SEND
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.items import LocalWrite

KEY = b"a-cluster-key-for-the-monitor-tests"
ITEMS = 6000
EPISODIC = MemoryTier.EPISODIC


async def test_a_receiver_shows_how_far_behind_it_is_while_catching_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="memrepl.node.monitor")
    with memrepl.open(tmp_path / "a.db", node_id="a") as store:
        for start in range(0, ITEMS, 1000):
            store.episodic.write_many(
                [LocalWrite.add(f"e{n}", {"n": n}) for n in range(start, start + 1000)]
            )
    settings = NodeSettings(max_batch_items=20, sync_interval_s=60.0, progress_interval_s=0.2)
    seen: list[tuple[int, int]] = []
    async with Node(tmp_path / "a.db", node_id="a", key=KEY, settings=settings) as a:
        b = Node(tmp_path / "b.db", node_id="b", key=KEY, peers={"a": a.address}, settings=settings)
        async with b:
            deadline = time.monotonic() + 120
            while True:
                progress = b.monitor.progress("a", EPISODIC, RECEIVE)
                if progress is not None:
                    seen.append((progress.done, progress.total))
                    report = b.report().peers[0]
                    receiving = report.tiers[1].receiving
                    assert report.tiers[1].tier == "episodic"
                    if receiving is not None:
                        assert receiving["total"] == ITEMS
                        assert receiving["remaining"] == ITEMS - receiving["done"]
                elif seen:
                    break  # caught up: the catch-up is over
                assert time.monotonic() < deadline, "no catch-up seen"
                await asyncio.sleep(0.01)
            assert b.store.episodic.get_by_id("e0") is not None
            flows = b.monitor.flows()
            assert flows[("a", EPISODIC, RECEIVE)].items == ITEMS
            # The sender's round ends when the last ACK reaches it, a moment later.
            while a.monitor.progress("b", EPISODIC, SEND) is not None:
                assert time.monotonic() < deadline, "the sender's round did not end"
                await asyncio.sleep(0.01)
            assert a.monitor.flows()[("b", EPISODIC, SEND)].items == ITEMS
    # Mid-way, the receiver knew the whole size of what it was receiving.
    assert any(0 < done < total == ITEMS for done, total in seen), seen
    messages = [record.getMessage() for record in caplog.records]
    assert any(m.startswith("sending the episodic tier to b: ") for m in messages), messages
    assert any(m.startswith("receiving the episodic tier from a: ") for m in messages), messages
    assert any(
        m.startswith(f"caught up with a on the episodic tier: {ITEMS} items") for m in messages
    )
    assert any(
        m.startswith(f"sent the episodic tier to b: synced, {ITEMS} items") for m in messages
    )
    progress_lines = [r for r in caplog.records if "fields" in r.__dict__]
    fields = progress_lines[0].__dict__["fields"]
    assert {"event", "peer", "tier", "direction", "items_done", "items_total", "eta_s"} <= set(
        fields
    )
