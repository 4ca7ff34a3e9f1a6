"""The conflict log: one row in ``conflicts`` per concurrent pair detected while applying a batch.

Both sides are kept whole (stamp, origin, content, causal context), with the state that was kept
and the rule that decided, so nothing LWW discards is lost for good and "which of my writes lost,
to whom, and what did they say?" is one SQL query. Recording is idempotent: the pair (tier, item,
winner version, loser version) is unique, so a redelivered batch adds no rows.
:func:`logged_conflicts` reads the log back for the items of a namespace, or of some ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection

from memrepl.merge import ItemState, MergeVerdict, Outcome
from memrepl.namespaces import Namespace
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import driver
from memrepl.storage.backends import backend_named
from memrepl.storage.driver import compile_statement
from memrepl.storage.fastjson import decode_json, encode_content, encode_json
from memrepl.storage.schema import TierSpec, conflicts
from memrepl.storage.search import namespace_condition

# The logged causal contexts: sorted keys, default separators (json.dumps(sort_keys=True)).
_encode_sorted = encode_json(sort_keys=True)
# Every column but the id, in table order: the order of a row in record_conflicts.
_COLUMNS = [column for column in conflicts.columns if column.name != "id"]


class DetectedConflict(NamedTuple):
    """A concurrent pair found by the merge, with where it came from."""

    item_id: str
    verdict: MergeVerdict
    #: The remote state merged. Then the JSON texts already known (None: not known), logged as
    #: they are instead of encoding the content again: the remote content as received, the
    #: local content as stored, and the kept content as now stored.
    remote: ItemState
    remote_text: str | None = None
    local_text: str | None = None
    resolved_text: str | None = None

    def content_text(self, state: ItemState) -> str:
        """``state``'s content as JSON text (a known text when there is one)."""
        # The merge's winner and loser are the remote state and the local one, as they were.
        text = self.remote_text if state is self.remote else self.local_text
        return text if text is not None else encode_content(state.content)

    def resolved_content_text(self) -> str:
        """The kept state's content as JSON text."""
        if self.resolved_text is not None:
            return self.resolved_text
        return encode_content(self.verdict.state.content)


@cache
def _insert(backend: str) -> str:
    """The insert of one conflict row, ignoring a pair already logged: it runs with every applied
    batch that has conflicts, so it is compiled once (per backend) and run on the driver
    (storage.driver)."""
    return compile_statement(
        backend_named(backend)
        .insert(conflicts)
        .values({column.name: bindparam(column.name) for column in _COLUMNS})
        .on_conflict_do_nothing(),
        backend,
    ).sql


def _side(conflict: DetectedConflict, state: ItemState) -> tuple[object, ...]:
    version = state.version
    return (
        version.timestamp_ns,
        version.origin,
        conflict.content_text(state),
        state.deleted,
        _encode_sorted(dict(state.context)),
    )


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
        if verdict.outcome not in (Outcome.CONCURRENT, Outcome.DIVERGED):
            continue
        assert verdict.winner is not None and verdict.loser is not None
        assert verdict.rule is not None
        rows.append(
            (
                int(tier),
                conflict.item_id,
                *_side(conflict, verdict.winner),
                *_side(conflict, verdict.loser),
                conflict.resolved_content_text(),
                verdict.rule.value,
                peer_id,
                batch_id,
                detected_at_ns,
            )
        )
    if not rows:
        return 0
    return max(driver.executemany(conn, _insert(conn.dialect.name), rows), 0)


@dataclass(frozen=True, slots=True)
class ConflictSide:
    """One version of a logged conflict."""

    timestamp_ns: int
    origin: str
    content: dict[str, Any]
    deleted: bool


@dataclass(frozen=True, slots=True)
class LoggedConflict:
    """One row of the conflict log, decoded."""

    id: int
    tier: MemoryTier
    item_id: str
    winner: ConflictSide
    loser: ConflictSide
    #: The content kept (the winner's, or a field merge of both).
    resolved_content: dict[str, Any]
    rule: str
    #: The peer whose batch brought the other version, and that batch.
    peer_id: str
    batch_id: str | None
    detected_at_ns: int


def conflict_count(conn: Connection, tier: MemoryTier) -> int:
    """How many rows of the conflict log are about ``tier``."""
    query = select(func.count()).select_from(conflicts).where(conflicts.c.tier == int(tier))
    return int(conn.execute(query).scalar_one())


def _logged_side(row: Any, prefix: str) -> ConflictSide:
    return ConflictSide(
        row[f"{prefix}_ts"],
        row[f"{prefix}_origin"],
        decode_json(row[f"{prefix}_content"]),
        bool(row[f"{prefix}_deleted"]),
    )


def logged_conflicts(
    conn: Connection,
    spec: TierSpec,
    *,
    namespace: Namespace = (),
    item_ids: Sequence[str] | None = None,
) -> list[LoggedConflict]:
    """The conflict log of ``spec``'s tier, oldest first: of the items filed under
    ``namespace`` (a prefix, as the tier holds them now; ``()``: every item) and, when given,
    only of ``item_ids``. An index lookup per id, or a join on the namespace index."""
    table = spec.table
    query = select(conflicts).where(conflicts.c.tier == int(spec.tier))
    under = namespace_condition(spec, namespace)
    if under is not None:
        query = query.join(table, table.c.item_id == conflicts.c.item_id).where(under)
    if item_ids is not None:
        query = query.where(conflicts.c.item_id.in_(list(item_ids)))
    return [
        LoggedConflict(
            row["id"],
            MemoryTier(row["tier"]),
            row["item_id"],
            _logged_side(row, "winner"),
            _logged_side(row, "loser"),
            decode_json(row["resolved_content"]),
            row["rule"],
            row["peer_id"],
            row["batch_id"],
            row["detected_at_ns"],
        )
        for row in conn.execute(query.order_by(conflicts.c.id)).mappings()
    ]
