"""Episodic -> semantic consolidation: closed, important, used episodes become knowledge.

What this module owns: what an episode is worth (:class:`EpisodeSummary`), when it is due
(:func:`due`), the evidence fields (:func:`evidence_count`, :func:`confidence`) and
:func:`consolidate_episodes`.

Definitions (the thresholds are :class:`~memrepl.policy.presets.PolicyConfig` fields):

- An episode's events are the live episodic items with its ``episode_id``.
- **Closed**: one of its events has content ``"closed": true``, or its latest ``occurred_at_ns``
  is at least ``episode_idle_ns`` before now. Both are functions of replicated content.
- **Importance**: the mean of the events' ``importance`` (numbers clamped to [0, 1]; an event
  without one counts as 0).
- **Accesses**: the sum of the events' local ``access_count``.
- **Trigger**: when the summed importance of events changed since the last run (``since_ns``, a
  local ``modified_at`` cursor; None counts every event) reaches ``importance_trigger``, open
  episodes are consolidated too, as if closed.

A due episode's events name ``entities`` (``[{"name", "type"}]``) and ``relations``
(``[{"source", "relation", "target"}]``, by entity name; an end's type is the one the episode
gives that name, else ``"concept"``). Each entity becomes a concept (``concept_id(name, type)``),
each relation an edge (``relation_id``), both written with MERGE.

The rules that keep it right:

- **Evidence is a set of per-episode fields.** A concept or relation carries
  ``"evidence:<episode id>": <round>`` for each episode that supports it. MERGE is field-wise
  LWW, so two nodes adding evidence from different episodes end with the union (a single list
  field would keep only one side's list); the same episode written on two nodes is one field.
  ``evidence_count`` (the sum of the rounds) and ``confidence``
  (``1 - (1 - evidence_confidence) ** evidence_count``) are computed from those fields on read,
  never stored, so they cannot disagree with them after a merge.
- **An episode is consolidated once per size.** A marker item in the semantic tier,
  ``marker_id(episode)`` (content ``kind: "consolidation"``: not part of the graph), records the
  event count and round it was consolidated at, and replicates. A run skips an episode whose
  marker covers its event count; an episode that has grown since is consolidated again with
  round + 1: that is the reinforcement (its evidence fields rise, so does the confidence), and it
  writes no new items.
- ``reinforced_at_ns`` (the run's time) dates the latest reinforcement; the decay of
  :mod:`~.retention` starts from it. Two nodes reinforcing concurrently keep one of their times
  (field-wise LWW): both end with the same value.

Limitation: evidence fields grow a concept's content by one field per supporting episode; a
concept supported by thousands of episodes would reach the 65,535-byte payload limit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from memrepl.policy.presets import PolicyConfig
from memrepl.storage.items import LocalWrite, load_items
from memrepl.storage.records import StoredItem, item_from_row
from memrepl.storage.schema import EPISODIC, SEMANTIC
from memrepl.storage.semantic import concept_id, relation_id
from memrepl.storage.store import Store

#: Prefix of the hashed key of a consolidation marker's id.
MARKER_KEY_PREFIX = "memrepl/policy/consolidation/v1"
#: The content ``kind`` of a consolidation marker.
MARKER_KIND = "consolidation"
#: Prefix of the per-episode evidence fields.
EVIDENCE_PREFIX = "evidence:"
#: The field dating a concept's or relation's latest reinforcement.
REINFORCED_AT = "reinforced_at_ns"
DEFAULT_CONCEPT_TYPE = "concept"


def marker_id(episode_id: str) -> str:
    """The semantic id of the consolidation marker of ``episode_id`` (32 hex chars)."""
    key = f"{MARKER_KEY_PREFIX}\x00{episode_id}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def evidence_count(content: Mapping[str, Any]) -> int:
    """The evidence of a concept or relation: the sum of its per-episode rounds."""
    return sum(
        int(value)
        for key, value in content.items()
        if key.startswith(EVIDENCE_PREFIX)
        and isinstance(value, int)
        and not isinstance(value, bool)
    )


def evidence_episodes(content: Mapping[str, Any]) -> list[str]:
    """The episodes that support a concept or relation, sorted."""
    return sorted(k[len(EVIDENCE_PREFIX) :] for k in content if k.startswith(EVIDENCE_PREFIX))


def confidence(content: Mapping[str, Any], config: PolicyConfig) -> float:
    """``1 - (1 - evidence_confidence) ** evidence_count``: 0 without evidence, below 1."""
    return 1.0 - (1.0 - config.evidence_confidence) ** evidence_count(content)


def _importance(content: Mapping[str, Any]) -> float:
    value = content.get("importance")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return min(1.0, max(0.0, float(value)))


@dataclass(frozen=True, slots=True)
class EpisodeSummary:
    """What the consolidation rule looks at in one episode."""

    episode_id: str
    events: Sequence[StoredItem]
    importance: float
    accesses: int
    closed: bool


def summarize(
    episode_id: str, events: Sequence[StoredItem], config: PolicyConfig, now_ns: int
) -> EpisodeSummary:
    """The :class:`EpisodeSummary` of ``events`` (the live events of ``episode_id``)."""
    latest = max(int(e.extras.get("occurred_at_ns") or 0) for e in events)
    closed = any(e.content.get("closed") is True for e in events) or (
        now_ns - latest >= config.episode_idle_ns
    )
    return EpisodeSummary(
        episode_id=episode_id,
        events=events,
        importance=sum(_importance(e.content) for e in events) / len(events),
        accesses=sum(e.access_count for e in events),
        closed=closed,
    )


def due(summary: EpisodeSummary, config: PolicyConfig, *, triggered: bool = False) -> bool:
    """Whether the episode passes the consolidation thresholds (closed, or ``triggered``)."""
    return (
        (summary.closed or triggered)
        and len(summary.events) >= config.consolidate_min_events
        and summary.importance >= config.consolidate_min_importance
        and summary.accesses >= config.consolidate_min_accesses
    )


def _named(value: object) -> str | None:
    return value if isinstance(value, str) and value and "\x00" not in value else None


def knowledge(events: Iterable[StoredItem]) -> tuple[dict[str, str], list[tuple[str, str, str]]]:
    """The entities (name -> type) and relations (source, relation, target names) of events."""
    entities: dict[str, str] = {}
    relations: list[tuple[str, str, str]] = []
    events = list(events)
    for event in events:
        for entity in event.content.get("entities") or ():
            if isinstance(entity, Mapping) and (name := _named(entity.get("name"))):
                entities.setdefault(name, _named(entity.get("type")) or DEFAULT_CONCEPT_TYPE)
    for event in events:
        for rel in event.content.get("relations") or ():
            if not isinstance(rel, Mapping):
                continue
            ends = _named(rel.get("source")), _named(rel.get("relation")), _named(rel.get("target"))
            if all(ends):
                relations.append((str(ends[0]), str(ends[1]), str(ends[2])))
    return entities, sorted(set(relations))


@dataclass(slots=True)
class ConsolidationOutcome:
    """What :func:`consolidate_episodes` did: episodes consolidated the first time, reinforced
    (again, after growing), and the concept and relation ids written."""

    consolidated: list[str] = field(default_factory=list)
    reinforced: list[str] = field(default_factory=list)
    concepts: set[str] = field(default_factory=set)
    relations: set[str] = field(default_factory=set)
    triggered: bool = False
    #: The highest episodic ``modified_at`` seen: pass it as ``since_ns`` to the next run.
    cursor: int = 0


def _load_events(store: Store) -> tuple[dict[str, list[StoredItem]], list[StoredItem]]:
    table = EPISODIC.table
    statement = (
        select(table)
        .where(table.c.deleted.is_(False), table.c.episode_id.is_not(None))
        .order_by(table.c.episode_id, table.c.occurred_at_ns, table.c.item_id)
    )
    episodes: dict[str, list[StoredItem]] = {}
    every: list[StoredItem] = []
    with store.read() as conn:
        for row in conn.execute(statement).mappings():
            item = item_from_row(EPISODIC, row)
            every.append(item)
            if item.extras.get("occurred_at_ns") is not None:
                episodes.setdefault(str(item.extras["episode_id"]), []).append(item)
    return episodes, every


def _writes(
    summary: EpisodeSummary, round_: int, now_ns: int, outcome: ConsolidationOutcome
) -> list[LocalWrite]:
    entities, relations = knowledge(summary.events)
    evidence = {f"{EVIDENCE_PREFIX}{summary.episode_id}": round_, REINFORCED_AT: now_ns}
    writes: list[LocalWrite] = []
    for name, kind in sorted(entities.items()):
        cid = concept_id(name, kind)
        outcome.concepts.add(cid)
        content = {"kind": "concept", "name": name, "type": kind, **evidence}
        writes.append(LocalWrite.merge(cid, content))
    for source, relation, target in relations:
        source_id = concept_id(source, entities.get(source, DEFAULT_CONCEPT_TYPE))
        target_id = concept_id(target, entities.get(target, DEFAULT_CONCEPT_TYPE))
        rid = relation_id(source_id, relation, target_id)
        outcome.relations.add(rid)
        content = {
            "kind": "relation",
            "source": source_id,
            "target": target_id,
            "relation": relation,
            **evidence,
        }
        writes.append(LocalWrite.merge(rid, content))
    marker = {
        "kind": MARKER_KIND,
        "episode_id": summary.episode_id,
        "event_count": len(summary.events),
        "round": round_,
        "consolidated_at_ns": now_ns,
    }
    writes.append(LocalWrite.merge(marker_id(summary.episode_id), marker))
    return writes


def consolidate_episodes(
    store: Store, config: PolicyConfig, now_ns: int, since_ns: int | None = None
) -> ConsolidationOutcome:
    """Consolidate every due episode of ``store`` into its semantic tier (module docstring).

    All semantic writes of the run are one transaction: a failure writes none of them.
    """
    outcome = ConsolidationOutcome()
    episodes, every = _load_events(store)
    outcome.cursor = max((e.modified_at for e in every), default=since_ns or 0)
    fresh = sum(
        _importance(e.content) for e in every if since_ns is None or e.modified_at > since_ns
    )
    outcome.triggered = fresh >= config.importance_trigger > 0
    candidates = [
        summary
        for episode_id, events in episodes.items()
        if due(
            summary := summarize(episode_id, events, config, now_ns),
            config,
            triggered=outcome.triggered,
        )
    ]
    if not candidates:
        return outcome
    with store.read() as conn:
        markers = load_items(conn, SEMANTIC, [marker_id(s.episode_id) for s in candidates])
    writes: list[LocalWrite] = []
    for summary in candidates:
        marker = markers.get(marker_id(summary.episode_id))
        if marker is None or marker.deleted:
            round_ = 1
            outcome.consolidated.append(summary.episode_id)
        elif int(marker.content.get("event_count", 0)) >= len(summary.events):
            continue
        else:
            round_ = int(marker.content.get("round", 0)) + 1
            outcome.reinforced.append(summary.episode_id)
        writes.extend(_writes(summary, round_, now_ns, outcome))
    if writes:
        store.semantic.write_many(writes)
    return outcome
