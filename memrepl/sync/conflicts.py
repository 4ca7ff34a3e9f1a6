"""The conflict log: one row in ``conflicts`` per concurrent pair detected while applying a batch.

Both sides are kept whole (stamp, origin, content, causal context), with the state that was kept
and the rule that decided, so nothing LWW discards is lost for good and "which of my writes lost,
to whom, and what did they say?" is one SQL query. Recording is idempotent: the pair (tier, item,
winner version, loser version) is unique, so a redelivered batch adds no rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.engine import Connection

from memrepl.merge import ItemState, MergeVerdict, Outcome
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.schema import conflicts


@dataclass(frozen=True, slots=True)
class DetectedConflict:
    """A concurrent pair found by the merge, with where it came from."""

    item_id: str
    verdict: MergeVerdict


def _side(prefix: str, state: ItemState) -> dict[str, object]:
    version = state.version
    return {
        f"{prefix}_ts": version.timestamp_ns,
        f"{prefix}_origin": version.origin,
        f"{prefix}_content": json.dumps(dict(state.content)),
        f"{prefix}_deleted": state.deleted,
        f"{prefix}_context": json.dumps(dict(state.context), sort_keys=True),
    }


def record_conflicts(
    conn: Connection,
    tier: MemoryTier,
    detected: Sequence[DetectedConflict],
    *,
    peer_id: str,
    batch_id: str | None,
    detected_at_ns: int,
) -> int:
    """Insert one row per concurrent pair (ignoring pairs already logged); return how many."""
    rows = []
    for conflict in detected:
        verdict = conflict.verdict
        if verdict.outcome != Outcome.CONCURRENT:
            continue
        assert verdict.winner is not None and verdict.loser is not None
        assert verdict.rule is not None
        rows.append(
            {
                "tier": int(tier),
                "item_id": conflict.item_id,
                **_side("winner", verdict.winner),
                **_side("loser", verdict.loser),
                "resolved_content": json.dumps(dict(verdict.state.content)),
                "rule": verdict.rule.value,
                "peer_id": peer_id,
                "batch_id": batch_id,
                "detected_at_ns": detected_at_ns,
            }
        )
    if not rows:
        return 0
    result = conn.execute(insert(conflicts).on_conflict_do_nothing(), rows)
    return max(result.rowcount, 0)
