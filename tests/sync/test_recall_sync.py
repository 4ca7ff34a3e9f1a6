"""Recall on replicated memory: what one node remembers another finds after a real sync, in the
right namespace only; updates, deletes and merged conflicts show at once on both; and, for any
sequence of local writes and applied batches, keyword search returns exactly the live items that
contain the word (checked against a brute-force scan)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memrepl
from memrepl.errors import ItemExistsError, ItemNotFoundError
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.store import Store
from memrepl.sync.manager import MemorySyncManager
from memrepl.sync.results import SyncStatus

from .conftest import Cluster, FreshStores, examples

WORKING, EPISODIC = MemoryTier.WORKING, MemoryTier.EPISODIC


def ids(results: object) -> list[str]:
    return [hit.item_id for hit in results]  # type: ignore[attr-defined]


async def sync_both(cluster: Cluster, tier: MemoryTier) -> None:
    for source, target in (("a", "b"), ("b", "a")):
        result = await cluster.managers[source].sync_with_peer(target, tier)
        assert result.status in (SyncStatus.SYNCED, SyncStatus.UP_TO_DATE), result


async def test_a_memory_from_a_is_found_on_b_in_its_namespace_only(cluster: Cluster) -> None:
    cluster.add("a")
    cluster.add("b")
    a, b = cluster.stores["a"], cluster.stores["b"]
    a.episodic.add("m1", {"fact": "Alice is allergic to peanuts"}, namespace=("users", "alice"))
    a.episodic.add("m2", {"fact": "Bob likes peanuts"}, namespace=("users", "bob"))
    assert ids(b.search("peanuts")) == []
    await sync_both(cluster, EPISODIC)
    assert ids(b.search("allergic peanuts", namespace=("users", "alice"))) == ["m1"]
    assert ids(b.search("allergic", namespace=("users", "bob"))) == []
    assert b.list_namespaces() == [("users", "alice"), ("users", "bob")]

    # An update re-ranks on both nodes once it has replicated.
    a.episodic.update("m2", {"fact": "Bob is allergic, allergic, allergic to peanuts"})
    await sync_both(cluster, EPISODIC)
    for store in (a, b):
        assert ids(store.search("allergic")) == ["m2", "m1"]

    # A delete is gone from both at once.
    b.episodic.delete("m2")
    await sync_both(cluster, EPISODIC)
    for store in (a, b):
        assert ids(store.search("allergic")) == ["m1"]


async def test_a_merge_resolved_conflict_is_found_by_both_sides_words(cluster: Cluster) -> None:
    cluster.add("a")
    cluster.add("b")
    a, b = cluster.stores["a"], cluster.stores["b"]
    a.working.add("trip", {"plan": "fly"}, namespace=("agents", "planner"))
    await sync_both(cluster, WORKING)
    # Concurrent merges of different fields: both survive (field-merge), on both nodes.
    a.working.merge("trip", {"hotel": "Ritz"})
    b.working.merge("trip", {"dinner": "bistro"})
    await sync_both(cluster, WORKING)
    for store in (a, b):
        assert ids(store.search("ritz", namespace=("agents",))) == ["trip"]
        assert ids(store.search("bistro")) == ["trip"]
    # Concurrent whole writes: LWW keeps one; the loser's words are gone from both indexes.
    a.working.update("trip", {"plan": "train"})
    b.working.update("trip", {"plan": "boat"})
    await sync_both(cluster, WORKING)
    kept = [store.working.get_by_id("trip") for store in (a, b)]
    assert kept[0] is not None and kept[1] is not None
    assert kept[0]["content"] == kept[1]["content"]
    plan = kept[0]["content"]["plan"]
    loser = "boat" if plan == "train" else "train"
    for store in (a, b):
        assert ids(store.search(plan)) == ["trip"]
        assert ids(store.search(loser)) == []
        assert ids(store.search("ritz")) == []


# -- the property: search == brute force, after anything --------------------------------------

WORDS = ["apple", "berry", "cherry", "date", "elder"]
TIERS = [WORKING, EPISODIC]


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for inner in value.values():
            yield from strings_in(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from strings_in(inner)


def fold(word: str) -> str:
    """A word as the index compares it: lower case, accents removed."""
    decomposed = unicodedata.normalize("NFKD", word.lower())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def brute_force(store: Store, tier: MemoryTier, word: str) -> set[str]:
    found = set()
    for record in store.tier(tier).get_modified_since(0):
        if record["deleted"]:
            continue
        words = {
            fold(w) for text in strings_in(record["content"]) for w in re.findall(r"\w+", text)
        }
        if word in words:
            found.add(record["item_id"])
    return found


contents = st.dictionaries(
    st.sampled_from([*WORDS, "k1", "k2"]),  # a key named like a word must not be found
    st.one_of(
        st.lists(st.sampled_from([*WORDS, "Apple", "ÉLDER"]), max_size=3).map(" ".join),
        st.integers(0, 3),
        st.lists(st.sampled_from(WORDS), max_size=2),
    ),
    max_size=3,
)
write = st.tuples(
    st.just("write"),
    st.sampled_from(["a", "b"]),
    st.sampled_from(TIERS),
    st.sampled_from(["i1", "i2", "i3", "i4", "i5"]),
    st.sampled_from(["add", "update", "merge", "delete"]),
    contents,
)
sync = st.tuples(st.just("sync"), st.sampled_from(["a", "b"]), st.sampled_from(TIERS))


EXAMPLES = 40


def test_keyword_search_is_exactly_the_live_items_containing_the_word(
    fresh_stores: FreshStores, backend: str
) -> None:
    @settings(
        max_examples=examples(backend, EXAMPLES),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(st.lists(st.one_of(write, sync), min_size=1, max_size=25))
    def run(steps: list[tuple[Any, ...]]) -> None:
        search_follows_the_rows(fresh_stores, steps)

    run()


def search_follows_the_rows(fresh_stores: FreshStores, steps: list[tuple[Any, ...]]) -> None:
    stores: dict[str, Store] = {}
    managers: dict[str, MemorySyncManager] = {}
    try:
        for node in ("a", "b"):
            path = fresh_stores.new(node)
            # A small working tier: eviction (local forgetting) happens too.
            stores[node] = memrepl.open(path, node_id=node, working_capacity=3)
            managers[node] = MemorySyncManager(node_id=node)
            for tier in TIERS:
                managers[node].register_memory_tier(tier, stores[node].tier(tier))  # type: ignore[arg-type]
        for step in steps:
            if step[0] == "write":
                _, node, tier, item_id, kind, content = step
                memory = stores[node].tier(tier)
                try:
                    if kind == "delete":
                        memory.delete(item_id)
                    elif kind == "merge" and content:
                        memory.merge(item_id, content)
                    else:
                        getattr(memory, "add" if kind == "merge" else kind)(item_id, content)
                except (ItemExistsError, ItemNotFoundError):
                    pass
            else:
                _, source, tier = step
                target = "b" if source == "a" else "a"
                batch = managers[source].create_delta_batch(tier, target, since_timestamp=0)
                managers[target].apply_sync_batch(batch)
            for node, store in stores.items():
                for tier in TIERS:
                    for word in WORDS:
                        found = set(ids(store.tier(tier).search(word, limit=100)))
                        assert found == brute_force(store, tier, word), (node, tier, word)
        for store in stores.values():
            # And a rebuild from the rows gives the same results.
            before = {w: ids(store.search(w, tiers=TIERS, limit=100)) for w in WORDS}
            store.rebuild_indexes(TIERS)
            assert {w: ids(store.search(w, tiers=TIERS, limit=100)) for w in WORDS} == before
    finally:
        for store in stores.values():
            store.close()
        fresh_stores.release()
