"""The merge core's algebra and verdicts, checked against a ground truth of who wrote what.

The model: 3-5 writers, each holding its own state of one item. A step either writes locally
(any of the four write kinds, stamps drawn so that equal stamps on different nodes happen) or
delivers one writer's state to another. Alongside each state the test keeps the set of writes
it contains; that set is the ground truth for "duplicate", "superseded" and "concurrent".
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memrepl.errors import ItemError
from memrepl.merge import (
    EMPTY_STATE,
    ConflictRule,
    ItemState,
    Outcome,
    Placement,
    Version,
    apply_local_write,
    merge_remote,
    merge_states,
)
from memrepl.protocol.enums import SyncOperation

WRITES = [
    SyncOperation.INSERT,
    SyncOperation.UPDATE,
    SyncOperation.DELETE,
    SyncOperation.MERGE,
]


@dataclass
class Replica:
    state: ItemState = EMPTY_STATE
    writes: frozenset[Version] = field(default_factory=frozenset)
    #: Every write it contains that named a namespace (the ground truth for its placement).
    placements: frozenset[Placement] = field(default_factory=frozenset)


write_step = st.tuples(
    st.just("write"),
    st.integers(0, 4),  # node
    st.sampled_from(WRITES),
    st.dictionaries(st.sampled_from("abcd"), st.integers(0, 3), max_size=3),
    st.integers(0, 3),  # stamp bump: 0 makes equal stamps across nodes likely
    # The namespace (and filing options) the write files the item under; None leaves it where
    # it is.
    st.one_of(
        st.none(),
        st.tuples(
            st.sampled_from([(), ("a",), ("a", "b"), ("c",)]),
            st.sampled_from(["", '{"ttl_ns":5}', '{"embed":["a"]}']),
        ),
    ),
)
deliver_step = st.tuples(st.just("deliver"), st.integers(0, 4), st.integers(0, 4))
histories = st.tuples(
    st.integers(3, 5),
    st.lists(st.one_of(write_step, deliver_step), min_size=1, max_size=40),
)


def run_history(
    nodes: int, steps: list[tuple[object, ...]], check: bool = True
) -> tuple[list[Replica], list[ItemState]]:
    """Play a history; check every verdict against the ground truth; return replicas and
    every state that ever existed."""
    replicas = [Replica() for _ in range(nodes)]
    seen_states: list[ItemState] = []
    for step in steps:
        if step[0] == "write":
            _, node, op, content, bump, namespace = step
            assert isinstance(node, int) and isinstance(bump, int)
            replica = replicas[node % nodes]
            if op == SyncOperation.MERGE and not content:
                continue  # refused: a MERGE needs a field
            # As the HLC does: above every stamp this replica has seen.
            seen = max([replica.state.version.timestamp_ns, *replica.state.context.values()])
            version = Version(seen + 1 + bump, f"n{node % nodes}")
            replica.state = apply_local_write(
                replica.state,
                op,  # type: ignore[arg-type]
                content,  # type: ignore[arg-type]
                version,
                None if namespace is None else (namespace[0], "", namespace[1]),  # type: ignore[index]
            )
            replica.writes = replica.writes | {version}
            if namespace is not None:
                placed = Placement(version, namespace[0], "", namespace[1])  # type: ignore[index]
                replica.placements = replica.placements | {placed}
        else:
            _, source, target = step
            assert isinstance(source, int) and isinstance(target, int)
            local, remote = replicas[target % nodes], replicas[source % nodes]
            verdict = merge_remote(local.state, remote.state)
            if check:
                check_verdict(local, remote, verdict.outcome)
            local.state = verdict.state
            local.writes = local.writes | remote.writes
            local.placements = local.placements | remote.placements
        seen_states.extend(r.state for r in replicas)
    return replicas, seen_states


def check_verdict(local: Replica, remote: Replica, outcome: Outcome) -> None:
    if not local.writes:
        assert outcome == Outcome.NEW
    elif local.writes == remote.writes:
        assert outcome == Outcome.DUPLICATE
    elif remote.writes <= local.writes:
        assert outcome == Outcome.SUPERSEDED
    elif local.writes <= remote.writes:
        assert outcome == Outcome.FAST_FORWARD
    else:
        assert outcome == Outcome.CONCURRENT


@settings(max_examples=300, deadline=None)
@given(histories)
def test_verdicts_match_the_ground_truth_of_who_saw_which_write(
    history: tuple[int, list[tuple[object, ...]]],
) -> None:
    run_history(*history)


@settings(max_examples=300, deadline=None)
@given(histories, st.randoms(use_true_random=False))
def test_merge_is_commutative_associative_and_idempotent(
    history: tuple[int, list[tuple[object, ...]]], rnd: random.Random
) -> None:
    _, states = run_history(*history, check=False)
    states.append(EMPTY_STATE)
    picks = [rnd.choice(states) for _ in range(3)]
    a, b, c = picks
    assert merge_states(a, b) == merge_states(b, a)
    assert merge_states(merge_states(a, b), c) == merge_states(a, merge_states(b, c))
    assert merge_states(a, a) == a


@settings(max_examples=200, deadline=None)
@given(histories)
def test_every_delivery_order_of_the_same_states_converges(
    history: tuple[int, list[tuple[object, ...]]],
) -> None:
    replicas, _ = run_history(*history, check=False)
    finals = set()
    for order in itertools.permutations(range(len(replicas))):
        state = EMPTY_STATE
        for index in order:
            state = merge_remote(state, replicas[index].state).state
        finals.add(
            repr(sorted(state.content.items())) + repr(state.version) + repr(state.placement)
        )
        expected = state
    assert len(finals) == 1
    # States are a function of the writes they contain: same writes, same state.
    everything = frozenset().union(*(r.writes for r in replicas))
    for replica in replicas:
        if replica.writes == everything:
            assert replica.state == expected


@settings(max_examples=300, deadline=None)
@given(histories)
def test_an_items_placement_is_the_latest_write_that_named_a_namespace(
    history: tuple[int, list[tuple[object, ...]]],
) -> None:
    replicas, _ = run_history(*history, check=False)
    for replica in replicas:
        expected = max(replica.placements, default=Placement())
        assert replica.state.placement == expected
        assert replica.state.placement.set_by <= replica.state.version


def field_by_field_join(a: ItemState, b: ItemState) -> dict[str, object]:
    """The LWW-map rule spelled out per field: among the versions no older than the greatest
    whole write, each field keeps its greatest (the oracle for merge_states' content)."""
    floor = max(a.whole, b.whole)
    candidates: dict[str, list[tuple[Version, object]]] = {}
    for side in (a, b):
        for key, value in side.content.items():
            written = side.field_clocks.get(key, side.whole)
            if written >= floor:
                candidates.setdefault(key, []).append((written, value))
    return {key: max(found, key=lambda pair: pair[0])[1] for key, found in candidates.items()}


@settings(max_examples=300, deadline=None)
@given(histories, st.randoms(use_true_random=False))
def test_merged_content_keeps_each_fields_latest_write_since_the_latest_whole_write(
    history: tuple[int, list[tuple[object, ...]]], rnd: random.Random
) -> None:
    _, states = run_history(*history, check=False)
    states.append(EMPTY_STATE)
    for _ in range(5):
        a, b = rnd.choice(states), rnd.choice(states)
        merged = merge_states(a, b)
        assert merged.content == field_by_field_join(a, b)
        assert merged.whole == max(a.whole, b.whole)
        assert merged.version == max(a.version, b.version)


def test_a_later_whole_write_clears_older_merged_fields() -> None:
    state = apply_local_write(None, SyncOperation.INSERT, {"a": 1}, Version(1, "x"))
    state = apply_local_write(state, SyncOperation.MERGE, {"b": 2}, Version(2, "x"))
    concurrent_update = apply_local_write(None, SyncOperation.UPDATE, {"c": 3}, Version(3, "y"))
    verdict = merge_remote(state, concurrent_update)
    assert verdict.outcome == Outcome.CONCURRENT
    assert verdict.state.content == {"c": 3}
    assert verdict.rule == ConflictRule.LWW
    assert verdict.winner == concurrent_update
    assert verdict.loser == state


def test_concurrent_merges_keep_both_sides_fields() -> None:
    base = apply_local_write(None, SyncOperation.INSERT, {"a": 0}, Version(1, "x"))
    left = apply_local_write(base, SyncOperation.MERGE, {"a": 1, "b": 1}, Version(2, "x"))
    right = apply_local_write(base, SyncOperation.MERGE, {"c": 1, "b": 2}, Version(2, "y"))
    verdict = merge_remote(left, right)
    assert verdict.outcome == Outcome.CONCURRENT
    assert verdict.rule == ConflictRule.FIELD_MERGE
    # Equal stamps: the greater origin ("y") wins field b.
    assert verdict.state.content == {"a": 1, "b": 2, "c": 1}
    assert verdict.winner == right


def test_delete_tombstones_and_a_later_write_resurrects() -> None:
    state = apply_local_write(None, SyncOperation.INSERT, {"a": 1}, Version(1, "x"))
    tomb = apply_local_write(state, SyncOperation.DELETE, None, Version(2, "x"))
    assert tomb.deleted and tomb.content == {} and tomb.operation == SyncOperation.DELETE
    revived = apply_local_write(tomb, SyncOperation.MERGE, {"b": 1}, Version(3, "x"))
    assert not revived.deleted and revived.content == {"b": 1}
    assert revived.operation == SyncOperation.MERGE
    older_insert = apply_local_write(None, SyncOperation.INSERT, {"z": 0}, Version(1, "w"))
    verdict = merge_remote(tomb, older_insert)
    assert verdict.outcome == Outcome.CONCURRENT
    assert verdict.state.deleted


def test_an_old_copy_of_an_overwritten_item_is_superseded_not_a_conflict() -> None:
    old = apply_local_write(None, SyncOperation.INSERT, {"a": 1}, Version(1, "x"))
    new = apply_local_write(old, SyncOperation.UPDATE, {"a": 2}, Version(2, "y"))
    verdict = merge_remote(new, old)
    assert verdict.outcome == Outcome.SUPERSEDED
    assert not verdict.changed
    assert verdict.rule is None


def test_concurrent_moves_keep_the_later_namespace_and_log_a_field_merge() -> None:
    base = apply_local_write(
        None, SyncOperation.INSERT, {"a": 0}, Version(1, "x"), (("users", "alice"), "")
    )
    # x moves it (stamp 3); y updates its content later (stamp 4) without naming a namespace.
    moved = apply_local_write(base, SyncOperation.MERGE, {"b": 1}, Version(3, "x"), (("t",), ""))
    updated = apply_local_write(base, SyncOperation.UPDATE, {"c": 2}, Version(4, "y"))
    assert updated.placement.namespace == ("users", "alice")
    verdict = merge_remote(moved, updated)
    assert verdict.outcome == Outcome.CONCURRENT
    # y's whole write wins the content; x's move is the latest write that named a namespace.
    assert verdict.state.content == {"c": 2}
    assert verdict.state.placement == Placement(Version(3, "x"), ("t",), "")
    assert verdict.rule == ConflictRule.FIELD_MERGE
    assert merge_remote(updated, moved).state == verdict.state


def test_replicate_and_an_empty_merge_are_not_writes() -> None:
    with pytest.raises(ItemError):
        apply_local_write(None, SyncOperation.REPLICATE, {}, Version(1, "x"))
    with pytest.raises(ItemError):
        apply_local_write(None, SyncOperation.MERGE, {}, Version(1, "x"))


contents = st.dictionaries(st.sampled_from("abc"), st.integers(0, 3) | st.booleans(), max_size=3)


@given(a=contents, b=contents, deleted=st.booleans())
def test_same_writes_different_states_settle_on_one_side_whichever_merges(
    a: dict[str, object], b: dict[str, object], deleted: bool
) -> None:
    # Two replicas of the same write whose contents differ (one was edited by hand): each
    # merging the other's keeps the same state, and both log it as a same-version conflict.
    version = Version(10, "node-a")
    left = ItemState(a, version, False, {}, {"node-a": 10})
    right = ItemState({} if deleted else b, version, deleted, {}, {"node-a": 10})
    one, other = merge_remote(left, right), merge_remote(right, left)
    if left == right:
        assert one.outcome == other.outcome == Outcome.DUPLICATE
        return
    assert one.outcome == other.outcome == Outcome.DIVERGED
    assert one.rule == other.rule == ConflictRule.SAME_VERSION
    assert one.state == other.state
    assert one.changed != other.changed  # exactly one side takes the other's state
    assert [one.winner, one.loser] in ([left, right], [right, left])


def test_equal_states_with_different_texts_are_settled_by_text() -> None:
    state = ItemState({"a": 1}, Version(10, "node-a"), False, {}, {"node-a": 10})
    texts = ('{"a": 1}', '{"a":1}')
    one = merge_remote(state, state, texts)
    other = merge_remote(state, state, (texts[1], texts[0]))
    assert one.outcome == other.outcome == Outcome.DIVERGED
    assert one.changed != other.changed
    assert merge_remote(state, state, (texts[0], texts[0])).outcome == Outcome.DUPLICATE
