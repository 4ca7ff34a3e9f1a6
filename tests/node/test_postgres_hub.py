"""A mixed cluster over real TCP: SQLite nodes syncing through a hub whose store is PostgreSQL.

Every node is a ``memrepl serve`` child process; the hub's ``--db`` is a database on the test
session's PostgreSQL server. While the nodes run, writer threads (an application beside each
node) make random concurrent writes on every tier of every store, the hub's included; the hub is
SIGKILLed in the middle of a large transfer and started again. Afterwards every store holds the
same state, and the hub's conflict log answers the README's questions in PostgreSQL's SQL.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import memrepl
from memrepl.errors import ItemExistsError, ItemNotFoundError
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.items import LocalWrite

from ..files import intact
from ..pgserver import Databases
from .helpers import KEY, Processes, converged, count, rows

FAST = ("--sync-interval", "0.5", "--high-delay", "0.1", "--ack-timeout", "5")
#: Ids every writer picks from: writes to them on several nodes at once are concurrent.
SHARED_IDS = [f"s{i}" for i in range(12)]
#: Items node a holds before the cluster starts: the transfer the hub is killed in.
PRELOADED = 8_000

#: The README's conflict-log questions in PostgreSQL's dialect ("The conflict log, with SQL").
WHICH_OF_MY_WRITES_LOST = """
SELECT item_id, loser_content, winner_origin, winner_content
FROM conflicts WHERE loser_origin = 'a' ORDER BY item_id
"""
PER_TIER_AND_RULE_LAST_HOUR = """
SELECT tier, rule, count(*) FROM conflicts
WHERE detected_at_ns > (extract(epoch FROM now())::bigint - 3600) * 1000000000
GROUP BY tier, rule
"""
FOUGHT_OVER_MOST = """
SELECT item_id, count(*) AS n, string_agg(DISTINCT peer_id, ',') FROM conflicts
GROUP BY item_id ORDER BY n DESC LIMIT 10
"""


@pytest.fixture
def hub_database(postgres: Databases) -> Iterator[str]:
    url = postgres.create()
    yield url
    postgres.release_created()


class Writers:
    """One thread per store writing random adds, updates, merges and deletes on every tier,
    through ``memrepl.open`` (an application beside the node), until stopped."""

    def __init__(self, stores: dict[str, Path | str], seed: int) -> None:
        self.stop_event = threading.Event()
        self.errors: list[BaseException] = []
        self.writes = 0
        self.threads = [
            threading.Thread(target=self._run, args=(node_id, db, seed + n), daemon=True)
            for n, (node_id, db) in enumerate(stores.items())
        ]

    def __enter__(self) -> Writers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_event.set()
        for thread in self.threads:
            thread.join(30)
        assert not self.errors, self.errors

    def _run(self, node_id: str, db: Path | str, seed: int) -> None:
        rng = random.Random(seed)
        try:
            with memrepl.open(db, node_id=node_id) as store:
                while not self.stop_event.wait(rng.uniform(0.005, 0.03)):
                    self._one(store, node_id, rng)
        except BaseException as exc:
            self.errors.append(exc)

    def _one(self, store: memrepl.Store, node_id: str, rng: random.Random) -> None:
        which = rng.choice(list(MemoryTier))
        tier = store.tier(which)
        item_id = rng.choice(SHARED_IDS)
        content: dict[str, object] = {"by": node_id, rng.choice("xyz"): rng.randrange(1000)}
        if which == MemoryTier.SEMANTIC:
            content.update(kind="concept", name=item_id)
        if which == MemoryTier.EPISODIC:
            content["episode_id"] = "ep"
        action = rng.random()
        try:
            if action < 0.4:
                tier.write_many([LocalWrite.add(item_id, content)])
            elif action < 0.75:
                tier.merge(item_id, content)
            elif action < 0.9:
                tier.update(item_id, content)
            elif action < 0.95:
                tier.delete(item_id)
            else:
                tier.add(f"{node_id}-{rng.randrange(10**9)}", content)
        except (ItemExistsError, ItemNotFoundError):
            return  # what an application meets when another node wrote first
        self.writes += 1


def test_sqlite_nodes_and_a_postgresql_hub_converge_through_a_sigkill(
    processes: Processes, hub_database: str
) -> None:
    hub = processes.node("hub", *FAST, db=hub_database)
    a = processes.node("a", *FAST)
    b = processes.node("b", *FAST)
    with memrepl.open(a.db, node_id="a") as store:
        store.episodic.write_many(
            [LocalWrite.add(f"pre-{i:05d}", {"n": i, "text": "x" * 40}) for i in range(PRELOADED)]
        )
    for node in (hub, b):
        memrepl.open(node.db, node_id=node.node_id).close()
    hub.start()
    stores = {"hub": hub.db, "a": a.db, "b": b.db}
    with Writers(stores, seed=17) as writers:
        a.start("--peer", hub.address)
        b.start("--peer", hub.address)
        processes.wait(
            lambda: count(hub.db, MemoryTier.EPISODIC) > PRELOADED // 8, 60, "the transfer starts"
        )
        hub.kill()
        received = count(hub.db, MemoryTier.EPISODIC)
        assert received < PRELOADED, "the transfer finished before the kill: make it longer"
        assert intact(hub.db)
        hub.start(port=hub.port)
        processes.wait(
            lambda: count(hub.db, MemoryTier.EPISODIC) >= PRELOADED, 90, "the hub catches up"
        )
    assert writers.writes > 100, writers.writes
    dbs = [hub.db, a.db, b.db]
    processes.wait(converged(dbs), 120, "the SQLite nodes and the PostgreSQL hub converge")
    for tier in MemoryTier:
        assert count(hub.db, tier) > 0

    # The hub's conflict log: one row per concurrent pair, redeliveries after the kill included.
    ((total, distinct),) = rows(
        hub.db,
        "SELECT count(*), count(DISTINCT (tier, item_id, winner_ts, winner_origin, loser_ts, "
        "loser_origin)) FROM conflicts",
    )
    assert total == distinct > 0
    lost = rows(hub.db, WHICH_OF_MY_WRITES_LOST)
    assert lost, "a's writes to the shared ids lost somewhere on the hub"
    for item_id, loser_content, winner_origin, winner_content in lost:
        assert item_id in SHARED_IDS
        assert winner_origin in {"hub", "b", "a"}
        json.loads(loser_content), json.loads(winner_content)
    per_rule = rows(hub.db, PER_TIER_AND_RULE_LAST_HOUR)
    assert sum(n for _, _, n in per_rule) == total
    assert {rule for _, rule, _ in per_rule} <= {"lww", "field-merge"}
    most = rows(hub.db, FOUGHT_OVER_MOST)
    assert most[0][0] in SHARED_IDS and set(most[0][2].split(",")) <= {"a", "b"}
    assert [node.stop() for node in (hub, a, b)] == [0, 0, 0]


def test_a_second_node_process_on_a_postgresql_store_is_refused(
    processes: Processes, hub_database: str
) -> None:
    hub = processes.node("hub", db=hub_database).start()
    second = subprocess.run(
        [
            sys.executable,
            "-m",
            "memrepl",
            "serve",
            "--db",
            hub_database,
            "--node-id",
            "hub",
            "--key-file",
            str(processes.directory / "cluster.key"),
            "--listen",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert second.returncode == 1, second
    assert "is already in use by a running node (pid " in second.stderr, second.stderr
    assert f"listening on 127.0.0.1:{hub.port}" in second.stderr, second.stderr
    assert KEY not in second.stderr
    # The first one is untouched, and once it is gone the store is free again.
    assert hub.running
    hub.kill()
    assert hub.start().stop() == 0
