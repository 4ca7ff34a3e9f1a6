"""The policy run: promotion, consolidation and retention, in that order, on one store.

What this module owns: :func:`consolidate` and :class:`ConsolidationResult`. The node's periodic
task (and a ``Store.consolidate`` method) call it; keep ``result.cursor`` and pass it back as
``since_ns`` so the importance trigger counts only events new since the previous run.

Working-memory TTL and pressure eviction are not run here: the working tier applies them on
every write (``memrepl.storage.working``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memrepl.policy.consolidation import consolidate_episodes
from memrepl.policy.presets import PolicyConfig
from memrepl.policy.promotion import promote
from memrepl.policy.retention import forget_weak
from memrepl.storage.store import Store


@dataclass(frozen=True, slots=True)
class ConsolidationResult:
    """What one :func:`consolidate` run did (ids sorted unless noted)."""

    #: Working ids promoted to episodic events this run.
    promoted: list[str] = field(default_factory=list)
    #: Episodes consolidated into the semantic tier for the first time.
    consolidated: list[str] = field(default_factory=list)
    #: Episodes consolidated again after growing (their evidence reinforced).
    reinforced: list[str] = field(default_factory=list)
    #: Concept ids written (created or reinforced).
    concepts: list[str] = field(default_factory=list)
    #: Relation ids written (created or reinforced).
    relations: list[str] = field(default_factory=list)
    #: Concepts forgotten (replicated deletes).
    forgotten: list[str] = field(default_factory=list)
    #: Relations deleted with forgotten concepts.
    forgotten_relations: list[str] = field(default_factory=list)
    #: Working ids that qualified but were too large to promote.
    skipped: list[str] = field(default_factory=list)
    #: Whether the importance trigger fired (open episodes were considered).
    triggered: bool = False
    #: Pass as ``since_ns`` to the next run.
    cursor: int = 0


def consolidate(
    store: Store,
    config: PolicyConfig | None = None,
    *,
    now_ns: int | None = None,
    since_ns: int | None = None,
) -> ConsolidationResult:
    """Run the memory policies on ``store`` with ``config`` (default: the balanced preset).

    ``now_ns`` (default: the store's wall clock) is the time the rules compare with;
    ``since_ns`` is the previous run's ``cursor`` (None: every event counts as new for the
    importance trigger). Each step commits its own transaction(s); a step that fails leaves the
    earlier steps committed, and every step is safe to run again.
    """
    config = PolicyConfig.preset() if config is None else config
    now = store.clock_settings.wall() if now_ns is None else now_ns
    promoted, skipped = promote(store, config, now)
    outcome = consolidate_episodes(store, config, now, since_ns)
    retention = forget_weak(store, config, now)
    return ConsolidationResult(
        promoted=sorted(promoted),
        consolidated=sorted(outcome.consolidated),
        reinforced=sorted(outcome.reinforced),
        concepts=sorted(outcome.concepts),
        relations=sorted(outcome.relations),
        forgotten=retention.forgotten,
        forgotten_relations=retention.relations,
        skipped=sorted(skipped),
        triggered=outcome.triggered,
        cursor=outcome.cursor,
    )
