"""Filing options (what the vector index embeds, a TTL that replicates), ``LocalWrite.put`` and
``discard``, and expiry on every tier: the storage side, on one node."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memrepl.errors import FilingOptionsError, InvalidNamespaceError, ItemNotFoundError
from memrepl.filing import (
    DEFAULT_OPTIONS,
    MAX_TTL_NS,
    FilingOptions,
    check_options,
    deadline_after_write,
    decode_options,
    embed_texts,
    encode_options,
    path_texts,
)
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import LocalWrite, Store
from memrepl.storage.embedders import HashingEmbedder
from memrepl.sync.vectors import advance_acked_cursor

from ..clocks import S, Wall
from ..files import query

EPISODIC = MemoryTier.EPISODIC


# -- the options, pure -----------------------------------------------------------------------


paths = st.lists(
    st.text(min_size=1, max_size=12).filter(lambda p: "\x00" not in p), max_size=5
).map(tuple)


@given(embed=st.none() | paths, ttl_ns=st.none() | st.integers(1, MAX_TTL_NS))
def test_options_have_one_canonical_text(embed: tuple[str, ...] | None, ttl_ns: int | None) -> None:
    options = FilingOptions(embed, ttl_ns)
    text = encode_options(options)
    assert decode_options(text) == options
    assert (text == "") == (options == DEFAULT_OPTIONS)


@pytest.mark.parametrize(
    "text",
    [
        '{"ttl_ns": 5, "embed": ["a"]}',  # not compact, not sorted
        '{"ttl_ns":0}',
        '{"ttl_ns":true}',
        '{"ttl_ns":1.5}',
        '{"embed":"a"}',
        '{"embed":[""]}',
        '{"embed":[1]}',
        '{"other":1}',
        "{}",
        "[]",
        "not json",
    ],
)
def test_a_text_that_is_not_canonical_options_is_refused(text: str) -> None:
    with pytest.raises(FilingOptionsError):
        decode_options(text)


@pytest.mark.parametrize(
    ("embed", "ttl_s"),
    [("a", None), ([""], None), (["a\x00"], None), ([f"p{n}" for n in range(65)], None),
     (None, 0), (None, -1), (None, float("nan")), (None, True), (None, 1e300), (None, "5")],
)  # fmt: skip
def test_bad_options_are_refused(embed: object, ttl_s: object) -> None:
    with pytest.raises(FilingOptionsError):
        check_options(embed, ttl_s)


def test_false_means_nothing_is_embedded() -> None:
    assert check_options(False).embed == ()
    assert check_options(["a", "b.c"], 1.5) == FilingOptions(("a", "b.c"), 1_500_000_000)


CONTENT = {
    "title": "Trip",
    "n": 3,
    "ok": True,
    "gone": None,
    "meta": {"lang": "fr", "tags": ["a", "b"]},
    "notes": [{"text": "first"}, {"text": "second"}, {"other": 1}],
}


@pytest.mark.parametrize(
    ("path", "texts"),
    [
        ("title", ["Trip"]),
        ("n", ["3"]),
        ("ok", ["True"]),
        ("gone", []),
        ("missing", []),
        ("meta.lang", ["fr"]),
        ("meta.tags", ['["a", "b"]']),
        ("meta.tags[*]", ["a", "b"]),
        ("meta.tags[-1]", ["b"]),
        ("meta.tags[5]", []),
        ("notes[*].text", ["first", "second"]),
        ("notes[0]", ['{"text": "first"}']),
        ("{title,meta.lang}", ["Trip", "fr"]),
        ("meta.*", ["fr", '["a", "b"]']),
    ],
)
def test_paths_select_texts(path: str, texts: list[str]) -> None:
    assert path_texts(CONTENT, path) == texts


def test_the_whole_object_is_one_sorted_json_text() -> None:
    assert path_texts({"b": "é", "a": 1}, "$") == ['{"a": 1, "b": "é"}']
    assert embed_texts(CONTENT, ["title", "notes[*].text"]) == ["Trip", "first", "second"]


def test_a_deadline_runs_from_the_latest_write() -> None:
    minute = encode_options(FilingOptions(ttl_ns=60 * S))
    assert deadline_after_write(minute, 100, None, None) == 100 + 60 * S
    # A write without a TTL takes a replicated one off, and keeps a local one.
    assert deadline_after_write("", 200, minute, 7) is None
    assert deadline_after_write("", 200, "", 7) == 7


# -- put and discard ---------------------------------------------------------------------------


def test_put_creates_replaces_and_resurrects(store: Store, tier: MemoryTier) -> None:
    memory = store.tier(tier)
    first = memory.write_many([LocalWrite.put("a", {"v": 1})])[0]
    assert first["content"] == {"v": 1}
    memory.write_many([LocalWrite.put("a", {"w": 2})])
    assert memory.get_by_id("a") is not None
    assert memory.get_by_id("a")["content"] == {"w": 2}  # type: ignore[index]
    memory.delete("a")
    memory.write_many([LocalWrite.put("a", {"x": 3})])
    assert memory.get_by_id("a")["content"] == {"x": 3}  # type: ignore[index]


def test_discard_leaves_a_tombstone_even_of_nothing(store: Store, db_path: Path) -> None:
    table = "episodic_items"
    store.episodic.write_many([LocalWrite.discard("never")])
    store.episodic.add("live", {"v": 1})
    store.episodic.write_many([LocalWrite.discard("live"), LocalWrite.discard("live")])
    assert query(db_path, f"SELECT item_id, deleted FROM {table} ORDER BY item_id") == [
        ("live", 1),
        ("never", 1),
    ]
    # The strict forms still refuse.
    with pytest.raises(ItemNotFoundError):
        store.episodic.delete("never")
    with pytest.raises(ItemNotFoundError):
        store.episodic.update("never", {"v": 1})


def test_filing_options_need_a_namespace_and_are_checked(store: Store, db_path: Path) -> None:
    before = query(db_path, "SELECT count(*) FROM episodic_items")
    with pytest.raises(InvalidNamespaceError):
        store.episodic.write_many([LocalWrite.put("a", {"v": 1}, expire_after_s=5)])
    with pytest.raises(FilingOptionsError):
        store.episodic.write_many([LocalWrite.put("a", {"v": 1}, namespace=(), embed="text")])
    assert query(db_path, "SELECT count(*) FROM episodic_items") == before
    store.episodic.write_many(
        [LocalWrite.put("a", {"v": 1}, namespace=(), embed=["v"], expire_after_s=5)]
    )
    assert query(db_path, "SELECT namespace, item_options FROM episodic_items") == [
        ("", '{"embed":["v"],"ttl_ns":5000000000}')
    ]


# -- expiry on every tier ----------------------------------------------------------------------


def put(
    store: Store, tier: MemoryTier, item_id: str, ttl_s: float | None, **content: object
) -> None:
    store.tier(tier).write_many(
        [LocalWrite.put(item_id, content, namespace=("n",), expire_after_s=ttl_s)]
    )


def test_an_expired_item_is_absent_then_forgotten(
    opener: Callable[..., Store], tier: MemoryTier, wall: Wall
) -> None:
    store = opener(wall=wall, working_capacity=None)
    put(store, tier, "short", 10, text="apple pie")
    put(store, tier, "long", 1000, text="apple tart")
    put(store, tier, "forever", None, text="apple juice")
    memory = store.tier(tier)
    wall.now += 11 * S
    assert memory.get_by_id("short") is None
    assert memory.get_many(["short", "long"])[0] is None
    assert {hit.item_id for hit in memory.search("apple")} == {"long", "forever"}
    assert {hit.item_id for hit in memory.search(None, namespace=("n",))} == {"long", "forever"}
    assert memory.expire() == ["short"]
    assert [r["item_id"] for r in memory.get_modified_since(0)] == ["long", "forever"]
    wall.now += 1000 * S
    assert memory.expire() == ["long"]
    assert store.list_namespaces(tiers=[tier]) == [("n",)]
    memory.delete("forever")
    assert store.list_namespaces(tiers=[tier]) == []


def test_a_write_restarts_the_clock_and_can_take_the_ttl_off(
    opener: Callable[..., Store], wall: Wall
) -> None:
    store = opener(wall=wall)
    put(store, EPISODIC, "a", 10, v=1)
    wall.now += 8 * S
    put(store, EPISODIC, "a", 10, v=2)
    wall.now += 8 * S
    assert store.episodic.get_by_id("a") is not None
    put(store, EPISODIC, "a", None, v=3)
    wall.now += 10**6 * S
    assert store.episodic.expire() == []
    assert store.episodic.get_by_id("a") is not None


def test_a_read_refreshes_only_when_asked(opener: Callable[..., Store], wall: Wall) -> None:
    store = opener(wall=wall)
    put(store, EPISODIC, "kept", 10, v=1)
    put(store, EPISODIC, "read", 10, v=2)
    put(store, EPISODIC, "plain", None, v=3)
    wall.now += 8 * S
    records = store.episodic.get_many(["kept", "missing", "plain"], refresh_ttl=True)
    assert [r and r["item_id"] for r in records] == ["kept", None, "plain"]
    assert [r and r["access_count"] for r in records] == [1, None, 1]
    assert records[0] is not None and records[0]["expires_at_ns"] == wall.now + 10 * S
    assert records[2] is not None and records[2]["expires_at_ns"] is None
    read = store.episodic.get_many(["read"])[0]  # counts an access, leaves the deadline
    assert read is not None and read["access_count"] == 1
    wall.now += 4 * S
    assert store.episodic.get_by_id("read") is None
    assert store.episodic.get_by_id("kept") is not None
    # refresh_ttl: only items with a replicated TTL whose deadline moves; no access counted.
    assert store.episodic.refresh_ttl(["kept", "plain", "read", "missing"]) == 1
    assert store.episodic.refresh_ttl(["kept"]) == 0
    wall.now += 9 * S
    assert store.episodic.get_many(["kept"])[0] is not None


def test_an_unreplicated_expired_item_is_hidden_but_kept(
    opener: Callable[..., Store], wall: Wall
) -> None:
    store = opener(wall=wall)
    with store.write() as conn:
        advance_acked_cursor(conn, EPISODIC, "peer", 0, wall())
    put(store, EPISODIC, "a", 1, v=1)
    wall.now += 2 * S
    assert store.episodic.expire() == []
    assert store.episodic.get_by_id("a") is None
    assert [r["item_id"] for r in store.episodic.get_modified_since(0)] == ["a"]


def ids(results: object) -> list[str]:
    return [hit.item_id for hit in results]  # type: ignore[attr-defined]


# -- what the vector index embeds ---------------------------------------------------------------


class Recording(HashingEmbedder):
    """The hashing embedder, recording its texts; ``embed_query`` marks the queries it embeds."""

    def __init__(self) -> None:
        super().__init__(64)
        self.texts: list[str] = []
        self.queries: list[str] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.texts.extend(texts)
        return super().embed(texts)

    def embed_query(self, text: str) -> list[float]:
        self.queries.append(text)
        return super().embed([text])[0]


def file(store: Store, item_id: str, content: dict[str, object], embed: object) -> None:
    store.episodic.write_many(
        [LocalWrite.put(item_id, content, namespace=("docs",), embed=embed)]  # type: ignore[arg-type]
    )


def test_filing_options_choose_the_texts_and_each_is_a_vector(store: Store) -> None:
    embedder = Recording()
    store.attach_embedder(embedder, background=False)
    file(store, "default", {"title": "tea", "body": "green"}, None)
    file(store, "title", {"title": "coffee", "body": "black"}, ["title"])
    file(store, "notes", {"notes": [{"t": "paris"}, {"t": "rome"}]}, ["notes[*].t"])
    file(store, "hidden", {"title": "tea"}, False)
    file(store, "blank", {"title": " ", "body": ""}, ["title", "body"])  # nothing to embed
    store.index_vectors()
    assert sorted(embedder.texts) == sorted(["tea green", "coffee", "paris", "rome"])
    # An item scores by its best text: "rome" alone matches the notes' second vector exactly.
    hits = store.search("rome", mode="vector", limit=4)
    assert hits[0].item_id == "notes"
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert embedder.queries == ["rome"]
    # Never embedded, never found by meaning; still by keyword and by listing.
    assert "hidden" not in ids(store.search("tea", mode="vector", limit=10))
    assert "hidden" in ids(store.search("tea", mode="keyword"))
    assert len(store.search(None, namespace=("docs",))) == 5


def test_new_texts_replace_the_old_vectors(store: Store, db_path: Path) -> None:
    store.attach_embedder(Recording(), background=False)
    file(store, "n", {"notes": ["a", "b", "c"]}, ["notes[*]"])
    store.index_vectors()
    blob = query(db_path, "SELECT length(vector) FROM item_vectors")
    assert blob == [(3 * 64 * 4,)]  # three float32 vectors of 64 dimensions, one blob
    file(store, "n", {"notes": ["paris"]}, ["notes[*]"])
    store.index_vectors()
    assert query(db_path, "SELECT length(vector) FROM item_vectors") == [(64 * 4,)]
    assert ids(store.search("a", mode="vector")) == ["n"]  # one item, found once
    file(store, "n", {"notes": []}, ["notes[*]"])  # no text left: its vectors go
    store.index_vectors()
    assert query(db_path, "SELECT count(*) FROM item_vectors") == [(0,)]


def test_a_second_store_on_the_file_reads_several_vectors_per_item(
    store: Store, opener: Callable[..., Store]
) -> None:
    store.attach_embedder(Recording(), background=False)
    file(store, "n", {"notes": ["alpha", "beta"]}, ["notes[*]"])
    file(store, "m", {"notes": ["gamma"]}, ["notes[*]"])
    store.index_vectors()
    other = opener()
    other.attach_embedder(Recording(), background=False)
    hits = other.search("beta", mode="vector", limit=2)
    assert ids(hits) == ["n", "m"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
