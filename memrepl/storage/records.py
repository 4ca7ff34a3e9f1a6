"""An item as stored in a tier table (:class:`StoredItem`), and its conversions to and from rows.

The rule that keeps it right: a row is the merge core's :class:`~memrepl.merge.ItemState` plus
local bookkeeping, and nothing else. :func:`row_tuple` writes every stored column from a
``StoredItem`` and :func:`item_from_values` reads every one back, so
``item_from_values(row_tuple(x)) == x`` -- the state that merges is exactly the state that was
stored. The JSON encodings:

- ``content``: ``json.dumps(content)`` with Python's default separators (the wire's payload,
  PROTOCOL.md section 2, so its length is the payload size);
- ``field_clocks``: ``{"field": [stamp, "origin"], ...}``;
- ``causal_context``: ``{"node id": stamp, ...}``.

A record (:meth:`StoredItem.to_record`) is the dict the tier API returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from memrepl.merge import UNPLACED, ItemState, Placement, Version
from memrepl.namespaces import decode_namespace, encode_namespace
from memrepl.protocol.enums import SyncPriority
from memrepl.storage.fastjson import (
    decode_json,
    encode_compact_sorted,
    encode_content,
    encode_string,
)
from memrepl.storage.schema import TIER_SPECS, TierSpec, item_columns

#: The dict a tier returns for an item; keys listed in :meth:`StoredItem.to_record`.
Record = dict[str, Any]


@dataclass(slots=True)
class StoredItem:
    """One row of a tier table: an item's replicated state plus what this node keeps about it.

    Read-only by convention, not frozen: every write and every applied item builds one or two,
    and a frozen dataclass costs four times as much to build (``dataclasses.replace`` makes a
    changed copy).
    """

    item_id: str
    #: The replicated state (content, versions, field clocks, causal context).
    state: ItemState
    #: Replication priority of the latest write.
    priority: SyncPriority
    #: This node's HLC stamp when the row last changed here.
    modified_at: int
    #: The peer whose state this row equals, None when the state was produced on this node.
    received_from: str | None
    #: Stamp of the write that created the row on this node.
    created_at_ns: int
    access_count: int = 0
    last_accessed_ns: int | None = None
    #: The tier's own columns: derived from content (episode_id, kind...) and local (pinned...).
    extras: Mapping[str, Any] = field(default_factory=dict)
    #: ``encode_content(state.content)`` when already known (saves encoding it again).
    content_json: str | None = field(default=None, compare=False, repr=False)

    def encoded_content(self) -> str:
        """The content as stored and sent: ``json.dumps`` with default separators."""
        if self.content_json is not None:
            return self.content_json
        return encode_content(self.state.content)

    @property
    def content(self) -> Mapping[str, Any]:
        """The item's JSON object ({} for a tombstone)."""
        return self.state.content

    @property
    def deleted(self) -> bool:
        """Whether the row is a tombstone."""
        return self.state.deleted

    def expired(self, now_ns: int) -> bool:
        """Whether the item has a deadline (``expires_at_ns``) at or before ``now_ns``."""
        expires = self.extras.get("expires_at_ns")
        return expires is not None and expires <= now_ns

    @property
    def version(self) -> Version:
        """The latest write: (timestamp_ns, origin node)."""
        return self.state.version

    def to_record(self, *, copy: bool = True) -> Record:
        """The item as the tier API returns it: a fresh dict the caller may change.

        ``copy=False`` shares the content object instead of copying it: only for an item that
        nothing else will see (one just read from its row).

        Keys: ``item_id``, ``namespace`` (a tuple, ``()`` for none), ``key`` (None when the id
        is not a keyed id), ``content`` (a copy), ``deleted``, ``timestamp_ns`` and
        ``origin_node`` (the latest write's version), ``priority``, ``modified_at``,
        ``created_at_ns``, ``access_count``, ``last_accessed_ns``, then the tier's own columns.
        """
        version = self.state.version
        placement = self.state.placement
        record: Record = {
            "item_id": self.item_id,
            "namespace": placement.namespace,
            "key": placement.key or None,
            "content": decode_json(self.encoded_content()) if copy else self.state.content,
            "deleted": self.state.deleted,
            "timestamp_ns": version.timestamp_ns,
            "origin_node": version.origin,
            "priority": self.priority,
            "modified_at": self.modified_at,
            "created_at_ns": self.created_at_ns,
            "access_count": self.access_count,
            "last_accessed_ns": self.last_accessed_ns,
        }
        record.update(self.extras)
        return record


def encode_field_clocks(clocks: Mapping[str, Version]) -> str:
    """The stored (canonical: sorted, compact) text of a state's field clocks."""
    if not clocks:
        return "{}"
    return encode_compact_sorted(
        {name: [version.timestamp_ns, version.origin] for name, version in clocks.items()}
    )


def decode_field_clocks(text: str) -> dict[str, Version]:
    """The field clocks of their stored text."""
    if text == "{}":
        return {}
    return {name: Version(int(ts), str(origin)) for name, (ts, origin) in decode_json(text).items()}


def encode_context(context: Mapping[str, int]) -> str:
    """The stored (canonical: sorted, compact) text of a causal context."""
    if len(context) == 1:
        # The common case (one writer), without the general encoder's overhead.
        ((node_id, stamp),) = context.items()
        return f"{{{encode_string(node_id)}:{int(stamp)}}}"
    return encode_compact_sorted(dict(context))


#: How many columns every tier table starts with (schema.item_columns), in table order.
_COMMON_COLUMNS = len(item_columns())
_PRIORITIES = {int(priority): priority for priority in SyncPriority}


def column_names(spec: TierSpec) -> tuple[str, ...]:
    """The columns of ``spec``'s table in table order: the order of :func:`row_tuple` and of the
    values :func:`item_from_values` reads."""
    return tuple(column.name for column in spec.table.columns)


def _extra_names(spec: TierSpec) -> tuple[str, ...]:
    extras = column_names(spec)[_COMMON_COLUMNS:]
    assert set(extras) == {*spec.derived_names, *spec.local_defaults}, extras
    return extras


def row_tuple(spec: TierSpec, item: StoredItem) -> tuple[Any, ...]:
    """Every column of ``spec``'s table for ``item``, in table order (missing extras: NULL)."""
    state = item.state
    version_ts, version_origin = state.version
    whole_ts, whole_origin = state.whole
    (placed_ts, placed_origin), namespace, key, options = state.placement
    return (
        item.item_id,
        item.encoded_content(),
        state.deleted,
        version_ts,
        version_origin,
        whole_ts,
        whole_origin,
        state.whole_deleted,
        encode_field_clocks(state.field_clocks),
        encode_context(state.context),
        int(item.priority),
        item.modified_at,
        item.received_from,
        key or None,
        placed_ts,
        placed_origin,
        options,
        item.created_at_ns,
        item.access_count,
        item.last_accessed_ns,
        encode_namespace(namespace) if namespace else "",
        *map(item.extras.get, _EXTRA_NAMES[spec.table.name]),
    )


def item_from_values(spec: TierSpec, values: Sequence[Any]) -> StoredItem:
    """The :class:`StoredItem` of one row of ``spec``'s table, its columns in table order."""
    (
        item_id,
        content,
        _deleted,
        _version_ts,
        _version_origin,
        whole_ts,
        whole_origin,
        whole_deleted,
        field_clocks,
        causal_context,
        priority,
        modified_at,
        received_from,
        item_key,
        namespace_ts,
        namespace_origin,
        item_options,
        created_at_ns,
        access_count,
        last_accessed_ns,
        namespace,
    ) = values[:_COMMON_COLUMNS]
    state = ItemState(
        decode_json(content),
        Version(whole_ts, whole_origin),
        bool(whole_deleted),
        decode_field_clocks(field_clocks),
        decode_json(causal_context),
        Placement(
            Version(namespace_ts, namespace_origin),
            decode_namespace(namespace),
            item_key or "",
            item_options,
        )
        if namespace_ts
        else UNPLACED,
    )
    return StoredItem(
        item_id,
        state,
        _PRIORITIES[priority],
        modified_at,
        received_from,
        created_at_ns,
        access_count,
        last_accessed_ns,
        _extras(spec, values[_COMMON_COLUMNS:]),
        content,
    )


def _extras(spec: TierSpec, values: Sequence[Any]) -> dict[str, Any]:
    name = spec.table.name
    extras = dict(zip(_EXTRA_NAMES[name], values, strict=True))
    # The driver returns SQLite's 0/1 for a Boolean column; a record says True/False.
    for flag in _EXTRA_FLAGS[name]:
        if extras[flag] is not None:
            extras[flag] = bool(extras[flag])
    return extras


def item_from_row(spec: TierSpec, row: Mapping[Any, Any]) -> StoredItem:
    """The :class:`StoredItem` of one row of ``spec``'s table, its columns by name."""
    return item_from_values(spec, [row[name] for name in column_names(spec)])


# By table name: each tier table's own columns after the common ones.
_EXTRA_NAMES = {spec.table.name: _extra_names(spec) for spec in TIER_SPECS.values()}
# By table name: which of those are Boolean columns.
_EXTRA_FLAGS = {
    spec.table.name: tuple(
        name
        for name in _EXTRA_NAMES[spec.table.name]
        if spec.table.c[name].type.python_type is bool
    )
    for spec in TIER_SPECS.values()
}
