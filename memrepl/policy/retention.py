"""Retention: semantic concepts decay from their last reinforcement and are forgotten when weak.

What this module owns: :func:`strength` and :func:`forget_weak`.

The formula, computed on read from stored stamps (never compounded, never written back)::

    strength = base * 0.5 ** (age / decay_half_life_ns)          # a factor in (0, 1]
    age      = max(0, now_ns - reinforced_at)
    base     = confidence(content)       if the concept has evidence fields (consolidation.py)
             = content["confidence"]     if it is a number (clamped to [0, 1])
             = 1.0                       otherwise
    reinforced_at = content["reinforced_at_ns"] if an int, else the version stamp of the
                    concept's latest write (``timestamp_ns``: replicated, the same everywhere)

so reading it any number of times at one ``now_ns`` gives one value, on every node.

A live concept whose strength is below ``forget_threshold`` is forgotten unless its content says
``"pinned": true``. The rule that keeps it right: **forgetting is a replicated delete** (a
tombstone, ``Tier.delete`` semantics), and **its edges go with it**: every live relation with the
concept as source or target is deleted in the same transaction. Relations whose endpoint is
already a tombstone (for example an edge a peer added to a concept this node had forgotten,
arriving after the delete) are deleted by the next run too, so every node ends with no live
relation to a forgotten concept.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import or_, select

from memrepl.policy.consolidation import EVIDENCE_PREFIX, REINFORCED_AT, confidence
from memrepl.policy.presets import PolicyConfig
from memrepl.storage.items import LocalWrite
from memrepl.storage.records import StoredItem, item_from_row
from memrepl.storage.schema import SEMANTIC
from memrepl.storage.store import Store


def _base(content: Mapping[str, Any], config: PolicyConfig) -> float:
    if any(key.startswith(EVIDENCE_PREFIX) for key in content):
        return confidence(content, config)
    value = content.get("confidence")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return min(1.0, max(0.0, float(value)))
    return 1.0


def strength(
    content: Mapping[str, Any], version_ns: int, config: PolicyConfig, now_ns: int
) -> float:
    """The strength of a concept with ``content`` whose latest write is stamped
    ``version_ns``, at ``now_ns`` (module docstring)."""
    stored = content.get(REINFORCED_AT)
    stamp = stored if isinstance(stored, int) and not isinstance(stored, bool) else version_ns
    age = max(0, now_ns - stamp)
    factor: float = 0.5 ** (age / config.decay_half_life_ns)
    return _base(content, config) * factor


def record_strength(record: Mapping[str, Any], config: PolicyConfig, now_ns: int) -> float:
    """:func:`strength` of a semantic tier record (``get_by_id``/``get_modified_since``)."""
    return strength(record["content"], int(record["timestamp_ns"]), config, now_ns)


@dataclass(slots=True)
class RetentionOutcome:
    """What :func:`forget_weak` deleted."""

    forgotten: list[str] = field(default_factory=list)
    relations: list[str] = field(default_factory=list)


def _semantic_items(store: Store) -> list[StoredItem]:
    table = SEMANTIC.table
    # Tombstones have content {} and so a NULL kind: take every one (their ids are what counts).
    statement = select(table).where(
        or_(table.c.kind.in_(("concept", "relation")), table.c.deleted.is_(True))
    )
    with store.read() as conn:
        return [item_from_row(SEMANTIC, row) for row in conn.execute(statement).mappings()]


def forget_weak(store: Store, config: PolicyConfig, now_ns: int) -> RetentionOutcome:
    """Delete the unpinned live concepts weaker than ``forget_threshold`` and the live
    relations touching them or an already deleted concept; one transaction."""
    outcome = RetentionOutcome()
    items = _semantic_items(store)
    dead: set[str] = set()
    for item in items:
        if item.deleted:
            dead.add(item.item_id)
            continue
        if item.extras.get("kind") != "concept":
            continue
        if item.content.get("pinned") is True:
            continue
        if strength(item.content, item.version.timestamp_ns, config, now_ns) < (
            config.forget_threshold
        ):
            dead.add(item.item_id)
            outcome.forgotten.append(item.item_id)
    for item in items:
        if item.deleted or item.extras.get("kind") != "relation":
            continue
        if item.extras.get("source_id") in dead or item.extras.get("target_id") in dead:
            outcome.relations.append(item.item_id)
    outcome.forgotten.sort()
    outcome.relations.sort()
    writes = [LocalWrite.delete(i) for i in outcome.relations + outcome.forgotten]
    if writes:
        store.semantic.write_many(writes)
    return outcome
