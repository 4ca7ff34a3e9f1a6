"""Prometheus metrics of a running node: ``memrepl serve --metrics HOST:PORT`` serves ``/metrics``.

What this module owns: the metric names (:data:`METRICS`, stable: they are an interface, listed
in the README, and a test scrapes a real daemon for every one), and the collector that builds
them when Prometheus scrapes.

The rules that keep it right:

- **Nothing on the hot path.** Replication only adds integers to the node's monitor (per batch,
  never per item: :mod:`memrepl.node.monitor`); the metrics are built at scrape time from those
  counters, the node's report (:mod:`memrepl.node.report`) and a few queries on the store.
- **One consistent snapshot, on the node's own thread.** The HTTP server runs in a thread of
  its own (``prometheus_client``); a scrape asks the node's event loop for a snapshot and waits
  for it (at most :data:`SNAPSHOT_TIMEOUT_S`), so the counters and the store are read where they
  are written, never concurrently with a round.
- Labels: ``peer`` (a peer id), ``tier`` (``working``/``episodic``/``semantic``), ``side``
  (``send``: this node sending to the peer; ``receive``: this node receiving from it), ``code``
  (a NACK code), ``status`` (how a round ended), ``state`` (``live``/``tombstone``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from threading import Thread
from typing import TYPE_CHECKING, Any

from memrepl.node.monitor import DURATION_BUCKETS_S, RECEIVE, SEND
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.counts import live_count
from memrepl.sync import tombstones
from memrepl.sync.lag import send_lags

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from memrepl.node.node import Node

__all__ = ["METRICS", "MetricsServer", "NodeCollector"]

#: A scrape waits this long for the node's snapshot, then fails (an HTTP 500 for that scrape).
SNAPSHOT_TIMEOUT_S = 10.0

#: Every metric: name -> (type, labels, help). Counters are named without ``_total`` here;
#: Prometheus exposition adds it (``memrepl_items_sent_total``).
METRICS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "memrepl_node_info": (
        "gauge", ("node_id", "version", "replication_revision"), "Always 1: who this node is."
    ),
    "memrepl_items_sent": (
        "counter", ("peer", "tier"), "Items in batches this node sent and the peer acknowledged."
    ),
    "memrepl_batches_sent": (
        "counter", ("peer", "tier"), "Batches this node sent and the peer acknowledged."
    ),
    "memrepl_items_received": (
        "counter", ("peer", "tier"), "Items in batches from the peer applied here."
    ),
    "memrepl_items_applied": (
        "counter", ("peer", "tier"), "Of those, the items that changed this node's state."
    ),
    "memrepl_batches_applied": (
        "counter", ("peer", "tier"), "Batches from the peer applied here."
    ),
    "memrepl_conflicts": (
        "counter", ("peer", "tier"), "Concurrent versions logged here from the peer's batches."
    ),
    "memrepl_refusals": (
        "counter",
        ("peer", "tier", "side", "code"),
        "Batches refused, by NACK code: side=receive, this node refused the peer's; "
        "side=send, the peer refused this node's.",
    ),
    "memrepl_rounds": (
        "counter", ("peer", "tier", "status"), "Rounds this node sent, by how they ended."
    ),
    "memrepl_round_duration_seconds": (
        "histogram", ("peer", "tier"), "How long the rounds this node sent took."
    ),
    "memrepl_replication_lag_items": (
        "gauge",
        ("peer", "tier", "side"),
        "side=send: changes here the peer has not acknowledged; side=receive: items the peer "
        "announced it still has to send during a catch-up.",
    ),
    "memrepl_replication_lag_seconds": (
        "gauge",
        ("peer", "tier", "side"),
        "side=send: the age of the oldest change the peer has not acknowledged; side=receive: "
        "during a catch-up, the age of the last change applied from the peer.",
    ),
    "memrepl_peer_connected": (
        "gauge", ("peer",), "1 while an authenticated connection to the peer is up."
    ),
    "memrepl_handshake_failures": (
        "counter",
        ("peer",),
        "Failed handshakes with the peer (an empty peer: peers this node does not know).",
    ),
    "memrepl_store_items": (
        "gauge", ("tier", "state"), "Items the store holds per tier: live and tombstones."
    ),
    "memrepl_store_file_bytes": (
        "gauge", (), "Bytes of the store's SQLite file and its write-ahead log."
    ),
}  # fmt: skip


@dataclass(slots=True)
class Snapshot:
    """Everything one scrape reports, read on the node's event loop."""

    node_id: str
    samples: dict[str, list[tuple[tuple[str, ...], Any]]] = field(default_factory=dict)

    def add(self, name: str, labels: tuple[str, ...], value: Any) -> None:
        self.samples.setdefault(name, []).append((labels, value))


def take_snapshot(node: Node) -> Snapshot:
    """Read the node's counters, report and store (run it on the node's event loop)."""
    from memrepl import __version__
    from memrepl.storage import migrate

    snap = Snapshot(node.node_id)
    snap.add("memrepl_node_info", (node.node_id, __version__, migrate.REPLICATION_REVISION), 1)
    now_ns = time.time_ns()
    for (peer, tier, side), flow in node.monitor.flows().items():
        labels = (peer, tier.name.lower())
        if side == SEND:
            snap.add("memrepl_items_sent", labels, flow.items)
            snap.add("memrepl_batches_sent", labels, flow.batches)
            for status, count in flow.rounds.items():
                snap.add("memrepl_rounds", (*labels, status), count)
            buckets = [*flow.duration_buckets, sum(flow.rounds.values())]
            snap.add("memrepl_round_duration_seconds", labels, (buckets, flow.duration_sum_s))
        else:
            snap.add("memrepl_items_received", labels, flow.items)
            snap.add("memrepl_items_applied", labels, flow.applied)
            snap.add("memrepl_batches_applied", labels, flow.batches)
            snap.add("memrepl_conflicts", labels, flow.conflicts)
            progress = flow.progress
            pending = 0 if progress is None else progress.remaining()
            snap.add("memrepl_replication_lag_items", (*labels, RECEIVE), pending)
            age = 0.0
            if progress is not None and progress.cursor is not None and pending:
                age = max(0.0, (now_ns - progress.cursor) / 1e9)
            snap.add("memrepl_replication_lag_seconds", (*labels, RECEIVE), age)
        for code, count in flow.refusals.items():
            snap.add("memrepl_refusals", (*labels, side, code), count)
    report = node.report()
    for peer_report in report.peers:
        peer_labels = (peer_report.peer_id,)
        connected = 1 if peer_report.connection == "connected" else 0
        snap.add("memrepl_peer_connected", peer_labels, connected)
        snap.add("memrepl_handshake_failures", peer_labels, peer_report.handshake_failures)
    snap.add("memrepl_handshake_failures", ("",), report.refused_connections)
    store = node.store
    with store.read() as conn:
        for tier in MemoryTier:
            spec = store.tier(tier).spec
            name = tier.name.lower()
            snap.add("memrepl_store_items", (name, "live"), live_count(conn, spec))
            kept = tombstones.pending_tombstones(conn, spec)
            snap.add("memrepl_store_items", (name, "tombstone"), kept)
            for lag in send_lags(conn, spec):
                sent = (lag.peer_id, name, SEND)
                snap.add("memrepl_replication_lag_items", sent, lag.items)
                snap.add("memrepl_replication_lag_seconds", sent, lag.seconds(now_ns))
    size = 0
    if store.path is not None:
        for suffix in ("", "-wal"):
            with contextlib.suppress(OSError):  # no WAL file yet
                size += os.path.getsize(f"{store.path}{suffix}")
    snap.add("memrepl_store_file_bytes", (), size)
    return snap


class NodeCollector:
    """A ``prometheus_client`` collector of one running node (see the module docstring)."""

    def __init__(self, node: Node, loop: asyncio.AbstractEventLoop) -> None:
        self.node = node
        self.loop = loop

    def describe(self) -> list[Metric]:
        # Registering must not take a snapshot (the loop may be busy): nothing to describe.
        return []

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )

        async def snapshot() -> Snapshot:
            return take_snapshot(self.node)

        snap = asyncio.run_coroutine_threadsafe(snapshot(), self.loop).result(
            timeout=SNAPSHOT_TIMEOUT_S
        )
        bounds = [*(f"{bound:g}" for bound in DURATION_BUCKETS_S), "+Inf"]
        for name, (kind, labels, text) in METRICS.items():
            family: Any
            if kind == "counter":
                family = CounterMetricFamily(name, text, labels=labels)
            elif kind == "gauge":
                family = GaugeMetricFamily(name, text, labels=labels)
            else:
                family = HistogramMetricFamily(name, text, labels=labels)
            for label_values, value in snap.samples.get(name, []):
                if kind == "histogram":
                    counts, total = value
                    buckets = list(zip(bounds, counts, strict=True))
                    family.add_metric(list(label_values), buckets, total)
                else:
                    family.add_metric(list(label_values), value)
            yield family


class MetricsServer:
    """The ``/metrics`` HTTP endpoint of a node, in a thread of its own."""

    def __init__(self, node: Node, host: str, port: int) -> None:
        from prometheus_client import CollectorRegistry, start_http_server

        self.registry = CollectorRegistry()
        self.registry.register(NodeCollector(node, asyncio.get_running_loop()))
        self._server, self._thread = start_http_server(port, host, registry=self.registry)
        self.address: tuple[str, int] = (host, int(self._server.server_port))

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}/metrics"

    def close(self) -> None:
        """Stop serving (waits for the server's thread)."""
        self._server.shutdown()
        self._server.server_close()
        thread: Thread = self._thread
        thread.join(timeout=5)
