"""Episodic memory (L2): the events of an episode in time order, and the episodes of a time range.

What this module owns (ARCHITECTURE.md, "The tiers"): the two episodic queries, each a function
over a ``Connection`` that the tier objects run. An event is an item whose content carries
``episode_id`` (a str) and ``occurred_at_ns`` (an int); the schema derives both into indexed
columns of ``episodic_items`` (:func:`memrepl.storage.schema.episodic_columns`).

The rule that keeps it right: each query is an index query and never scans the table --
:func:`events_of_episode` a range of ``ix_episodic_items_episode_occurred`` (episode_id,
occurred_at_ns), :func:`episodes_between` a range of ``ix_episodic_items_occurred_episode``
(occurred_at_ns, episode_id). A test asserts both with ``EXPLAIN QUERY PLAN``. Tombstones are
never returned (a deleted event's row keeps NULL derived columns, and the live filter drops any
other), and neither are items lacking either key.
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection
from sqlalchemy.sql import Select

from memrepl.errors import InvalidArgumentError
from memrepl.storage.records import StoredItem, item_from_row
from memrepl.storage.schema import EPISODIC, TierSpec, episodic_items


@cache
def _events_statement() -> Select[tuple[object, ...]]:
    table = episodic_items
    return (
        select(table)
        .where(
            table.c.episode_id == bindparam("episode_id"),
            table.c.occurred_at_ns.is_not(None),
            table.c.deleted.is_(False),
        )
        .order_by(table.c.occurred_at_ns, table.c.item_id)
    )


@cache
def _episodes_statement() -> Select[tuple[object, ...]]:
    table = episodic_items
    # DISTINCT over the index order (occurred, episode) is a temp B-tree on the episode ids
    # of the range only; the range itself is an index scan.
    return (
        select(table.c.episode_id)
        .where(
            table.c.occurred_at_ns >= bindparam("start_ns"),
            table.c.occurred_at_ns <= bindparam("end_ns"),
            table.c.episode_id.is_not(None),
            table.c.deleted.is_(False),
        )
        .group_by(table.c.episode_id)
        .order_by(table.c.episode_id)
    )


def _check_time(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"episodes_between: {name} must be an int (ns), not {value!r}")
    return value


def events_of_episode(
    conn: Connection, episode_id: str, spec: TierSpec = EPISODIC
) -> list[StoredItem]:
    """The live events of ``episode_id`` ordered by ``occurred_at_ns`` (then item id)."""
    if not isinstance(episode_id, str):
        raise InvalidArgumentError(
            f"events_of_episode: episode_id must be a str, not {episode_id!r}"
        )
    rows = conn.execute(_events_statement(), {"episode_id": episode_id}).mappings()
    return [item_from_row(spec, row) for row in rows]


def episodes_between(conn: Connection, start_ns: int, end_ns: int) -> list[str]:
    """The distinct ids of episodes with a live event in ``[start_ns, end_ns]``, sorted."""
    parameters = {
        "start_ns": _check_time(start_ns, "start_ns"),
        "end_ns": _check_time(end_ns, "end_ns"),
    }
    return [str(value) for value in conn.execute(_episodes_statement(), parameters).scalars()]
