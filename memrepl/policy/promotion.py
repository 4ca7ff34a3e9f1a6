"""Working -> episodic promotion: a working item that has proved itself becomes an event.

What this module owns: :func:`promotion_score`, :func:`qualifies`, :func:`promoted_id` and
:func:`promote`.

A live, unexpired working item qualifies when it has at least ``promote_min_accesses`` local
reads and a score of at least ``promote_min_score``; the score is the working tier's eviction
score (``memrepl.storage.working``: priority, access frequency, recency), computed here from the
record's stamps. Its access counts stay local (they never replicate).

The rules that keep it right:

- **One id per source.** The event's id is :func:`promoted_id` of the working item's id alone,
  and it is written with MERGE, so two nodes promoting the same item write the same fields of one
  item and converge on it (the field-wise LWW of ``memrepl.merge``).
- **Never twice.** The working item gets the field ``promoted_to`` (the event id), written with
  MERGE so the mark replicates too: a node that receives it never promotes the item again.
  A marked item stays in L1; whether it leaves follows memory pressure (eviction), as any other.
  An ``update`` replaces the whole content and so drops the mark: if the item qualifies again it
  is promoted again into the same event id (its fields refreshed), never into a second event.

The event's content is the working item's content plus ``promoted_from`` (the working id),
``episode_id`` (the item's own if it has a str one, else :data:`PROMOTED_EPISODE`) and
``occurred_at_ns`` (its own int, else the version stamp of its latest write -- replicated, so the
same on every node). The event is filed in the working item's namespace (not under its key: the
event's id is not a keyed id), so an agent's memories of one user stay that user's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from memrepl.errors import ItemTooLargeError
from memrepl.policy.presets import PolicyConfig
from memrepl.storage import working
from memrepl.storage.fastjson import encode_content
from memrepl.storage.items import LocalWrite
from memrepl.storage.records import Record
from memrepl.storage.store import Store
from memrepl.storage.validation import check_size

#: Prefix of the hashed key of a promoted event's id (a new layout needs a new version).
PROMOTED_KEY_PREFIX = "memrepl/policy/promoted/v1"
#: The content field marking a promoted working item.
PROMOTED_MARK = "promoted_to"
#: The episode of promoted items that name none.
PROMOTED_EPISODE = "promoted"
_MAX_PRIORITY = 4


def promoted_id(working_item_id: str) -> str:
    """The episodic id of the working item ``working_item_id`` once promoted (32 hex chars)."""
    key = f"{PROMOTED_KEY_PREFIX}\x00{working_item_id}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def promotion_score(record: Mapping[str, Any], now_ns: int) -> float:
    """The working score of ``record`` at ``now_ns``, in [0, 1] (``working.score_expression``
    in Python, from the record's stamps)."""
    last = max(record.get("last_accessed_ns") or 0, int(record["modified_at"]))
    age = max(0, now_ns - last)
    half_life = float(working.RECENCY_HALF_LIFE_NS)
    accesses = min(int(record["access_count"]), working.ACCESS_SATURATION)
    return (
        working.PRIORITY_WEIGHT * int(record["priority"]) / _MAX_PRIORITY
        + working.ACCESS_WEIGHT * accesses / working.ACCESS_SATURATION
        + working.RECENCY_WEIGHT * half_life / (half_life + age)
    )


def qualifies(record: Mapping[str, Any], config: PolicyConfig, now_ns: int) -> bool:
    """Whether the working ``record`` is due for promotion (live, unexpired, unmarked,
    enough accesses and score)."""
    if record["deleted"] or PROMOTED_MARK in record["content"]:
        return False
    expires = record.get("expires_at_ns")
    if expires is not None and expires <= now_ns:
        return False
    return (
        int(record["access_count"]) >= config.promote_min_accesses
        and promotion_score(record, now_ns) >= config.promote_min_score
    )


def event_content(record: Mapping[str, Any]) -> dict[str, Any]:
    """The content of the episodic event promoted from the working ``record``."""
    content: dict[str, Any] = dict(record["content"])
    episode = content.get("episode_id")
    occurred = content.get("occurred_at_ns")
    content["episode_id"] = episode if isinstance(episode, str) else PROMOTED_EPISODE
    if isinstance(occurred, bool) or not isinstance(occurred, int):
        content["occurred_at_ns"] = int(record["timestamp_ns"])
    content["promoted_from"] = record["item_id"]
    return content


def promote(store: Store, config: PolicyConfig, now_ns: int) -> tuple[list[str], list[str]]:
    """Promote every qualifying working item of ``store``: (promoted working ids, skipped ids).

    Skipped: items whose event would exceed the payload limit. The events and the marks are
    written in two transactions (episodic first): a crash between them leaves items unmarked,
    and the next run merges the same fields again -- harmless, the id is the same.
    """
    records: list[Record] = store.working.get_modified_since(0)
    promoted: list[str] = []
    skipped: list[str] = []
    events: list[LocalWrite] = []
    marks: list[LocalWrite] = []
    for record in records:
        if not qualifies(record, config, now_ns):
            continue
        item_id = str(record["item_id"])
        content = event_content(record)
        try:
            check_size(encode_content(content), item_id)
        except ItemTooLargeError:
            skipped.append(item_id)
            continue
        event_id = promoted_id(item_id)
        namespace = record["namespace"] or None
        events.append(LocalWrite.merge(event_id, content, record["priority"], namespace=namespace))
        marks.append(LocalWrite.merge(item_id, {PROMOTED_MARK: event_id}, record["priority"]))
        promoted.append(item_id)
    if events:
        store.episodic.write_many(events)
        store.working.write_many(marks)
    return promoted, skipped
