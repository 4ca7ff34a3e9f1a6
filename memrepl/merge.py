"""The merge core: an item's replicated state and the ONE function that merges two of them.

Everything about convergence lives here, pure and without a database (ARCHITECTURE.md, "Item
state and the merge"). An item's state is an LWW-map:

- ``whole`` is the version of the last whole write (INSERT, UPDATE or DELETE); a whole write
  replaces the object, a DELETE leaves an empty tombstone;
- ``field_clocks`` holds the version of each field written by MERGE *after* that whole write;
  every other field of ``content`` carries the whole write's version implicitly;
- ``context`` is the causal context: for each node that wrote the item, the highest stamp it
  wrote. It is what tells a concurrent write from a superseded one;
- ``placement`` is where and how the item is filed (its namespace and key,
  :mod:`memrepl.namespaces`, and its filing options, :mod:`memrepl.filing`): a last-writer-wins
  register of its own, set by the writes that name a namespace and left alone by the others, so
  a write that does not mention the namespace never moves the item.

The rule that keeps it right: merging keeps the greatest whole write, each field keeps its
greatest version among those not older than that whole write, and the placement with the greatest
version is kept. All are maxima over a total order (:class:`Version`: stamp, then origin node id;
a placement ranks by its version first), so :func:`merge_states` is commutative,
associative and idempotent, for any number of writers and any delivery order. A later write after
a DELETE resurrects the item: a newer whole write replaces the tombstone, a newer MERGE adds
fields on top of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

from memrepl.errors import ItemError
from memrepl.protocol import fast
from memrepl.protocol.enums import SyncOperation

JsonObject = Mapping[str, Any]

# Enum members the merge reads for every item, bound once (memrepl.protocol.fast, trick 2).
_DELETE, _MERGE, _UPDATE = fast.DELETE, fast.MERGE, fast.UPDATE


class Version(NamedTuple):
    """One write's identity and its LWW rank: the greater stamp wins, then the greater origin.

    A named tuple, so that rank is tuple order, compared in C: every merge compares many.
    """

    timestamp_ns: int
    origin: str


#: The version of nothing: below every real write.
BOTTOM = Version(0, "")


class Placement(NamedTuple):
    """Where an item is filed: an LWW register of its own inside the item's state.

    Ranked as a tuple (``set_by`` first): two valid placements with one ``set_by`` are one
    write's, hence equal, and the tuple order is total anyway, so the merge stays a join.
    """

    #: The write that set it; BOTTOM when no write ever named a namespace.
    set_by: Version = BOTTOM
    #: The namespace (:mod:`memrepl.namespaces`); () is none.
    namespace: tuple[str, ...] = ()
    #: The key inside the namespace, "" when none (the id is not a keyed id).
    key: str = ""
    #: The filing options' canonical text (:func:`memrepl.filing.encode_options`), "" for none.
    options: str = ""


#: The placement of an item no write filed anywhere.
UNPLACED = Placement()


# Read-only empty mappings: the defaults of ItemState, shared by every instance that uses them.
_NOTHING: Mapping[str, Any] = MappingProxyType({})


class ItemState(NamedTuple):
    """The replicated state of one item. Treat the mappings as read-only.

    A named tuple, like :class:`Version`: immutable, and four times cheaper to build than a
    frozen dataclass (every item that is merged builds two or three).
    """

    #: The materialised JSON object ({} for a tombstone).
    content: JsonObject = _NOTHING
    #: The last whole write (INSERT/UPDATE/DELETE); BOTTOM if the item was only ever merged.
    whole: Version = BOTTOM
    #: Whether that whole write was a DELETE (True for BOTTOM: nothing exists before any write).
    whole_deleted: bool = True
    #: Fields written by MERGE after ``whole``, with the version of each.
    field_clocks: Mapping[str, Version] = _NOTHING
    #: Causal context: node id -> highest stamp that node wrote to this item.
    context: Mapping[str, int] = _NOTHING
    #: Namespace and key, with the write that set them.
    placement: Placement = UNPLACED

    @property
    def version(self) -> Version:
        """The latest write in this state: what the wire calls its timestamp and origin."""
        if not self.field_clocks:
            return self.whole
        return max(self.whole, *self.field_clocks.values())

    @property
    def deleted(self) -> bool:
        """A tombstone: the last whole write was a DELETE and nothing was merged since."""
        return self.whole_deleted and not self.field_clocks

    @property
    def operation(self) -> SyncOperation:
        """What this state travels as on the wire."""
        if self.deleted:
            return _DELETE
        if self.field_clocks:
            return _MERGE
        return _UPDATE


#: The state of an item no write has touched.
EMPTY_STATE = ItemState()


def dominates(a: Mapping[str, int], b: Mapping[str, int]) -> bool:
    """Whether causal context ``a`` contains every write that ``b`` does."""
    # A plain loop: twice as fast as all() over a generator, and every merge runs it twice.
    for node, stamp in b.items():  # noqa: SIM110
        if a.get(node, 0) < stamp:
            return False
    return True


def merge_contexts(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    """Pointwise maximum of two causal contexts."""
    merged = dict(a)
    for node, stamp in b.items():
        if stamp > merged.get(node, 0):
            merged[node] = stamp
    return merged


def apply_local_write(
    local: ItemState | None,
    operation: SyncOperation,
    content: JsonObject | None,
    version: Version,
    place: tuple[tuple[str, ...], str] | tuple[tuple[str, ...], str, str] | None = None,
) -> ItemState:
    """The state after a local write of ``version`` on top of ``local`` (None: no such item).

    ``version`` must be above everything in ``local`` (the HLC guarantees it). INSERT and UPDATE
    replace the object, DELETE tombstones it (``content`` ignored), MERGE sets the given fields.
    ``place`` (``(namespace, key)`` or ``(namespace, key, options text)``, already checked)
    files the item there as of this write; None leaves the placement as it was.
    """
    base = local if local is not None else EMPTY_STATE
    placement = base.placement if place is None else Placement(version, *place)
    if base.context:
        context = dict(base.context)
        context[version.origin] = max(context.get(version.origin, 0), version.timestamp_ns)
    else:
        context = {version.origin: version.timestamp_ns}
    if operation in (SyncOperation.INSERT, SyncOperation.UPDATE):
        return ItemState(dict(content or {}), version, False, {}, context, placement)
    if operation == SyncOperation.DELETE:
        return ItemState({}, version, True, {}, context, placement)
    if operation == SyncOperation.MERGE:
        fields = dict(content or {})
        if not fields:
            # A write must leave a trace in the state's version, or LWW could not rank it.
            raise ItemError("MERGE needs at least one field")
        merged_content = {**base.content, **fields}
        clocks = {**base.field_clocks, **dict.fromkeys(fields, version)}
        return ItemState(merged_content, base.whole, base.whole_deleted, clocks, context, placement)
    raise ItemError(f"{operation.name} is not a write operation")


def merge_states(a: ItemState, b: ItemState) -> ItemState:
    """The join of two states: commutative, associative and idempotent."""
    top = a if a.whole >= b.whole else b
    floor = top.whole
    placement = a.placement if a.placement >= b.placement else b.placement
    if not a.field_clocks and not b.field_clocks and a.whole != b.whole:
        # Whole writes only (the common case): every field of the older side is older than the
        # floor, so the general rule below keeps exactly the newer side's content, unmerged.
        return ItemState(
            top.content,
            floor,
            top.whole_deleted,
            {},
            merge_contexts(a.context, b.context),
            placement,
        )
    best: dict[str, tuple[Version, Any]] = {}
    for side in (a, b):
        for key, value in side.content.items():
            written = side.field_clocks.get(key, side.whole)
            # A whole write clears every field written before it (LWW-map).
            if written < floor:
                continue
            held = best.get(key)
            if held is None or written > held[0]:
                best[key] = (written, value)
    # Keys sorted: nodes that make the same merge from different sides store the same text.
    content = {key: best[key][1] for key in sorted(best)}
    clocks = {key: written for key, (written, _) in best.items() if written > floor}
    return ItemState(
        content, floor, top.whole_deleted, clocks, merge_contexts(a.context, b.context), placement
    )


class Outcome(StrEnum):
    """What merging a remote state into the local one did."""

    #: No local state: the remote state is taken as is.
    NEW = "new"
    #: The same writes as the local state: nothing to do.
    DUPLICATE = "duplicate"
    #: The local state already contains every remote write: nothing to do, not a conflict.
    SUPERSEDED = "superseded"
    #: The remote state contains every local write: it replaces the local one.
    FAST_FORWARD = "fast-forward"
    #: Each side has writes the other lacks: merged, and a conflict to log.
    CONCURRENT = "concurrent"
    #: The same writes (equal causal contexts) but different states: one replica was changed
    #: without a write (by hand, or by a bug). Settled by :func:`same_version_winner`, and a
    #: conflict to log.
    DIVERGED = "diverged"


class ConflictRule(StrEnum):
    """How a concurrent pair was decided, as logged in the ``conflicts`` table."""

    #: The winner's state was kept whole; the loser's writes were discarded.
    LWW = "lww"
    #: Writes of both sides survive: MERGE writes newer than the winning whole write, or the
    #: loser's placement (namespace) when it was set after the winner's.
    FIELD_MERGE = "field-merge"
    #: Two states of the same writes differed; the greater one (:func:`same_version_winner`)
    #: was kept whole.
    SAME_VERSION = "same-version"


class MergeVerdict(NamedTuple):
    """The result of :func:`merge_remote` (a named tuple: one is built per merged item)."""

    outcome: Outcome
    #: The state to keep locally.
    state: ItemState
    #: Whether ``state`` differs from the local state (the row must be rewritten).
    changed: bool
    #: For CONCURRENT: the side with the greater version, and the other one.
    winner: ItemState | None = None
    loser: ItemState | None = None
    rule: ConflictRule | None = None


# The merge's own enums, bound once by the same trick (memrepl.protocol.fast, trick 2; they are
# defined here, so they are bound here): merge_remote picks one for every item.
_NEW, _DUPLICATE, _SUPERSEDED = Outcome.NEW, Outcome.DUPLICATE, Outcome.SUPERSEDED
_FAST_FORWARD, _CONCURRENT = Outcome.FAST_FORWARD, Outcome.CONCURRENT
_LWW, _FIELD_MERGE = ConflictRule.LWW, ConflictRule.FIELD_MERGE


def _rank(state: ItemState, text: str | None) -> tuple[Any, ...]:
    content = text if text is not None else json.dumps(dict(state.content))
    return (
        content,
        state.whole,
        state.whole_deleted,
        sorted(state.field_clocks.items()),
        sorted(state.context.items()),
        state.placement,
    )


def same_version_winner(
    a: ItemState, b: ItemState, a_text: str | None = None, b_text: str | None = None
) -> ItemState:
    """Of two different states of the same writes, the one every node keeps: the greater by
    (content text, whole write, whether it was a DELETE, sorted field clocks, sorted causal
    context, placement). Deterministic and symmetric, so the replicas that hold either converge
    on it.

    Honest replicas never hold two such states: a write's state is made once and copied. They
    arise when a row is changed without a new write (``sqlite3`` by hand, a restored file that
    was edited, a bug), and anti-entropy brings them together. ``a_text``/``b_text`` are the
    contents' JSON texts as stored or received, when known.
    """
    return a if _rank(a, a_text) >= _rank(b, b_text) else b


def merge_remote(
    local: ItemState | None,
    remote: ItemState,
    texts: tuple[str | None, str | None] | None = None,
) -> MergeVerdict:
    """Merge a remote state into the local one and say what happened.

    ``texts`` are the local and remote contents' JSON texts when known: two states of the same
    writes whose texts differ are different states (DIVERGED), even when they decode equal.
    """
    if local is None or local == EMPTY_STATE:
        return MergeVerdict(_NEW, remote, True)
    local_has_remote = dominates(local.context, remote.context)
    remote_has_local = dominates(remote.context, local.context)
    if local_has_remote and remote_has_local:
        local_text, remote_text = texts if texts is not None else (None, None)
        if local == remote and (
            local_text is None or remote_text is None or local_text == remote_text
        ):
            return MergeVerdict(_DUPLICATE, local, False)
        local_wins = _rank(local, local_text) >= _rank(remote, remote_text)
        winner, loser = (local, remote) if local_wins else (remote, local)
        return MergeVerdict(
            Outcome.DIVERGED, winner, not local_wins, winner, loser, ConflictRule.SAME_VERSION
        )
    if local_has_remote:
        return MergeVerdict(_SUPERSEDED, local, False)
    merged = merge_states(local, remote)
    if remote_has_local:
        return MergeVerdict(_FAST_FORWARD, merged, merged != local)
    winner, loser = (local, remote) if local.version > remote.version else (remote, local)
    kept_whole = (
        merged.content == winner.content
        and merged.deleted == winner.deleted
        and merged.placement == winner.placement
    )
    return MergeVerdict(
        _CONCURRENT, merged, True, winner, loser, _LWW if kept_whole else _FIELD_MERGE
    )
