"""``memrepl serve --metrics``: a real daemon's ``/metrics``, scraped over HTTP, has every series
the README names (and the README names every one the node serves); ``--log-format json``."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

import memrepl
from memrepl.node.metrics import METRICS
from memrepl.protocol.enums import SyncPriority
from memrepl.storage.items import LocalWrite

from .helpers import Processes

README = Path(__file__).resolve().parents[2] / "README.md"
FAST = ("--sync-interval", "0.5", "--high-delay", "0.1")


def readme_metrics() -> set[str]:
    """The metric names of the README's table (its first column)."""
    text = README.read_text()
    section = text[text.index("## Metrics and logs") :]
    section = section[: section.index("\n## ", 1)]
    return set(re.findall(r"^\| `(memrepl_[a-z_]+)` \|", section, flags=re.MULTILINE))


def exposed_name(name: str) -> str:
    """The name a metric has in the exposition (counters get ``_total``)."""
    return f"{name}_total" if METRICS[name][0] == "counter" else name


def scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """``{family: [(labels, value), ...]}`` of one scrape (histograms by their family name)."""
    with urllib.request.urlopen(url, timeout=30) as answer:
        assert answer.status == 200
        text = answer.read().decode()
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        name = exposed_name(family.name) if family.name in METRICS else family.name
        for sample in family.samples:
            found.setdefault(name, []).append((dict(sample.labels), sample.value))
    return found


def metrics_url(log: str) -> str | None:
    match = re.search(r"memrepl: metrics on (http://\S+/metrics)", log)
    return None if match is None else match[1]


def test_the_readme_names_exactly_the_metrics_served() -> None:
    assert readme_metrics() == {exposed_name(name) for name in METRICS}


def test_a_running_daemon_serves_every_series_the_readme_names(processes: Processes) -> None:
    a = processes.node("a", *FAST, "--metrics", "127.0.0.1:0", "--log-format", "json")
    b = processes.node("b", *FAST)
    with memrepl.open(a.db, node_id="a") as store:
        store.working.add("from-a", {"n": 1}, priority=SyncPriority.HIGH)
        store.working.add("gone", {"n": 2})
        store.working.delete("gone")
    with memrepl.open(b.db, node_id="b") as store:
        store.episodic.write_many([LocalWrite.add(f"e{n}", {"n": n}) for n in range(30)])
    a.start()
    b.start("--peer", a.address)
    url = metrics_url(a.log_text())
    assert url is not None, a.log_text()
    # One write on b stamped 5 minutes ahead: a refuses that batch (a NACK with its code).
    with memrepl.open(b.db, wall=lambda: time.time_ns() + 300 * 10**9) as store:
        store.semantic.add("ahead", {"kind": "concept", "name": "ahead"})

    def everything_happened() -> bool:
        found = scrape(url)
        return (
            any(v > 0 for labels, v in found.get("memrepl_items_sent_total", []))
            and any(v >= 30 for labels, v in found.get("memrepl_items_received_total", []))
            and any(
                labels["side"] == "receive" and v > 0
                for labels, v in found.get("memrepl_refusals_total", [])
            )
        )

    processes.wait(everything_happened, 60, "a's metrics show traffic both ways and a refusal")
    found = scrape(url)
    for name in readme_metrics():
        assert found.get(name), f"{name} has no sample in the scrape"
    labels = {(s["peer"], s["tier"]): v for s, v in found["memrepl_items_received_total"]}
    assert labels[("b", "episodic")] == 30
    assert ({"peer": "b"}, 1.0) in found["memrepl_peer_connected"]
    live = {s["tier"]: v for s, v in found["memrepl_store_items"] if s["state"] == "live"}
    assert live["working"] == 1 and live["episodic"] == 30
    tombstones = {
        s["tier"]: v for s, v in found["memrepl_store_items"] if s["state"] == "tombstone"
    }
    assert tombstones["working"] == 1
    (info,) = found["memrepl_node_info"]
    assert info[0]["node_id"] == "a"
    durations = [s for s in found["memrepl_round_duration_seconds"] if s[0].get("le") == "+Inf"]
    assert any(v >= 1 for _, v in durations)
    assert a.stop() == 0
    assert b.stop() == 0

    # --log-format json: every line a JSON object with the stable fields (the two plain
    # 'memrepl: ...' start-up lines aside).
    lines = [line for line in a.log_text().splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert records
    for record in records:
        assert list(record)[:5] == ["time", "level", "logger", "node", "message"]
        assert record["node"] == "a"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
    assert any("refused batch" in record["message"] for record in records)
