"""Bad input raises its specific MemreplError and leaves the database exactly as it was.

"Exactly" is a dump of every table, node.clock_last_ns included: a refused write must not even
advance the clock.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memrepl.errors import (
    InvalidContentError,
    InvalidItemIdError,
    ItemError,
    ItemTooLargeError,
    MemreplError,
    NodeIdMismatchError,
    StoreError,
)
from memrepl.protocol.enums import MemoryTier, SyncOperation
from memrepl.protocol.limits import MAX_ITEM_PAYLOAD_BYTES
from memrepl.storage import LocalWrite, Store
from memrepl.storage import open as open_store

from ..files import dump, query

# "k" maps to a string of n chars: json.dumps gives '{"k": "' + n chars + '"}', n + 9 bytes.
LIMIT_FILL = MAX_ITEM_PAYLOAD_BYTES - 9


def _circular() -> dict[str, Any]:
    content: dict[str, Any] = {}
    content["self"] = content
    return content


BAD_CONTENT: list[tuple[str, object]] = [
    ("list", [1, 2]),
    ("string", '{"a": 1}'),
    ("none", None),
    ("bytes", b"{}"),
    ("set value", {"a": {1, 2}}),
    ("object value", {"a": object()}),
    ("nan", {"a": math.nan}),
    ("infinity", {"a": [1.0, math.inf]}),
    ("int key", {1: "a"}),
    ("nested int key", {"a": {"b": [{2: "c"}]}}),
    ("none key", {None: 1}),
    ("circular", _circular()),
]

BAD_IDS: list[object] = ["", "x" * 33, "a\x00b", "é" * 17, "\ud800", 123, None, b"abc"]


@pytest.fixture
def seeded(store: Store, tier: MemoryTier) -> Store:
    memory = store.tier(tier)
    memory.add("live", {"v": 1})
    memory.add("dead", {"v": 1})
    memory.delete("dead")
    return store


def refused(path: Path, error: type[MemreplError], call: Callable[[], object]) -> MemreplError:
    before = dump(path)
    with pytest.raises(error) as caught:
        call()
    assert dump(path) == before
    return caught.value


@pytest.mark.parametrize(("name", "content"), BAD_CONTENT, ids=[name for name, _ in BAD_CONTENT])
def test_content_that_is_not_a_json_object(
    seeded: Store, tier: MemoryTier, db_path: Path, name: str, content: Any
) -> None:
    memory = seeded.tier(tier)
    for operation, item_id in (("add", "new"), ("update", "live"), ("merge", "live")):
        call = getattr(memory, operation)
        error = refused(db_path, InvalidContentError, lambda: call(item_id, content))  # noqa: B023
        assert isinstance(error, InvalidContentError)
        assert error.item_id == item_id
        assert item_id in str(error)


def test_empty_merge_is_refused(seeded: Store, tier: MemoryTier, db_path: Path) -> None:
    refused(db_path, InvalidContentError, lambda: seeded.tier(tier).merge("live", {}))


@pytest.mark.parametrize("item_id", BAD_IDS, ids=repr)
def test_ids_that_cannot_travel(
    seeded: Store, tier: MemoryTier, db_path: Path, item_id: Any
) -> None:
    memory = seeded.tier(tier)
    refused(db_path, InvalidItemIdError, lambda: memory.add(item_id, {"v": 1}))
    refused(db_path, InvalidItemIdError, lambda: memory.merge(item_id, {"v": 1}))
    refused(db_path, InvalidItemIdError, lambda: memory.delete(item_id))
    refused(db_path, InvalidItemIdError, lambda: memory.get_by_id(item_id))


def test_longest_id_and_payload_fit(store: Store, tier: MemoryTier) -> None:
    memory = store.tier(tier)
    content = {"k": "x" * LIMIT_FILL}
    assert len(json.dumps(content).encode()) == MAX_ITEM_PAYLOAD_BYTES
    record = memory.add("é" * 16, content)
    assert record["content"] == content
    assert memory.get_by_id("é" * 16) is not None


def test_payload_over_the_limit(seeded: Store, tier: MemoryTier, db_path: Path) -> None:
    memory = seeded.tier(tier)
    content = {"k": "x" * (LIMIT_FILL + 1)}
    error = refused(db_path, ItemTooLargeError, lambda: memory.add("big", content))
    assert isinstance(error, ItemTooLargeError)
    assert (error.limit, error.size, error.item_id) == (65_535, 65_536, "big")
    # Multi-byte characters count as their UTF-8 bytes, not as characters.
    wide = {"k": "€" * (LIMIT_FILL // 3 + 1)}
    refused(db_path, ItemTooLargeError, lambda: memory.update("live", wide))


def test_merge_that_would_grow_past_the_limit(
    seeded: Store, tier: MemoryTier, db_path: Path
) -> None:
    memory = seeded.tier(tier)
    memory.merge("live", {"a": "x" * 40_000})
    error = refused(db_path, ItemTooLargeError, lambda: memory.merge("live", {"b": "y" * 40_000}))
    assert error.item_id == "live"  # type: ignore[attr-defined]


def test_one_bad_write_refuses_the_batch(seeded: Store, tier: MemoryTier, db_path: Path) -> None:
    memory = seeded.tier(tier)
    good = [LocalWrite.add(f"ok{n}", {"n": n}) for n in range(10)]
    refused(
        db_path,
        InvalidContentError,
        lambda: memory.write_many([*good, LocalWrite.add("bad", {"n": math.nan})]),
    )
    refused(
        db_path,
        ItemError,
        lambda: memory.write_many([*good, LocalWrite("r", SyncOperation.REPLICATE, {})]),
    )
    refused(
        db_path,
        ItemError,
        lambda: memory.write_many([*good, LocalWrite("p", SyncOperation.INSERT, {}, 9)]),  # type: ignore[arg-type]
    )
    refused(
        db_path,
        ItemError,
        lambda: memory.write_many(
            [*good, LocalWrite("l", SyncOperation.INSERT, {}, local={"no_such_column": 1})]
        ),
    )


def test_reopen_with_another_node_id(
    opener: Callable[..., Store], db_path: Path, tier: MemoryTier
) -> None:
    with opener("node-a") as store:
        store.tier(tier).add("x", {"v": 1})
    error = refused(db_path, NodeIdMismatchError, lambda: opener("node-b"))
    assert isinstance(error, NodeIdMismatchError)
    assert (error.stored, error.requested) == ("node-a", "node-b")
    assert "node-a" in str(error)
    assert "node-b" in str(error)


@pytest.mark.parametrize("node_id", ["", "n" * 33, "a\x00b", 7], ids=repr)
def test_invalid_node_id_creates_nothing(tmp_path: Path, node_id: Any) -> None:
    path = tmp_path / "never.db"
    with pytest.raises(StoreError):
        open_store(path, node_id=node_id)
    assert not path.exists()


@pytest.mark.parametrize(
    "options",
    [{"synchronous": "SOMETIMES"}, {"busy_timeout_ms": -1}, {"working_capacity": 0}],
    ids=repr,
)
def test_bad_options_create_nothing(tmp_path: Path, options: dict[str, Any]) -> None:
    path = tmp_path / "never.db"
    with pytest.raises(StoreError):
        open_store(path, node_id="node-a", **options)
    assert not path.exists()


def test_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not an SQLite file, not even close" * 100)
    with pytest.raises(StoreError, match=r"garbage\.db"):
        open_store(path, node_id="node-a")
    assert path.read_bytes().startswith(b"this is not")


def test_clock_is_untouched_by_refusals(seeded: Store, tier: MemoryTier, db_path: Path) -> None:
    (clock_before,) = query(db_path, "SELECT clock_last_ns FROM node")[0]
    memory = seeded.tier(tier)
    for call in (
        lambda: memory.add("live", {"v": 2}),
        lambda: memory.update("dead", {"v": 2}),
        lambda: memory.delete("missing"),
        lambda: memory.add("x", {"v": math.nan}),
    ):
        with pytest.raises(ItemError):
            call()
    assert query(db_path, "SELECT clock_last_ns FROM node")[0] == (clock_before,)
    assert memory.add("after", {"v": 1})["modified_at"] > clock_before
