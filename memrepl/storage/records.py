"""An item as stored in a tier table (:class:`StoredItem`), and its conversions to and from rows.

The rule that keeps it right: a row is the merge core's :class:`~memrepl.merge.ItemState` plus
local bookkeeping, and nothing else. :func:`row_values` writes every stored column from a
``StoredItem`` and :func:`item_from_row` reads every one back, so ``item_from_row(row_values(x))
== x`` -- the state that merges is exactly the state that was stored. The JSON encodings:

- ``content``: ``json.dumps(content)`` with Python's default separators (the wire's payload,
  PROTOCOL.md section 2, so its length is the payload size);
- ``field_clocks``: ``{"field": [stamp, "origin"], ...}``;
- ``causal_context``: ``{"node id": stamp, ...}``.

A record (:meth:`StoredItem.to_record`) is the dict the tier API returns.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring_ascii
from typing import Any

from sqlalchemy import RowMapping

from memrepl.merge import ItemState, Version
from memrepl.protocol.enums import SyncPriority
from memrepl.storage.schema import TierSpec

#: The dict a tier returns for an item; keys listed in :meth:`StoredItem.to_record`.
Record = dict[str, Any]

_COMPACT = (",", ":")


@dataclass(frozen=True, slots=True)
class StoredItem:
    """One row of a tier table: an item's replicated state plus what this node keeps about it."""

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

    @property
    def version(self) -> Version:
        """The latest write: (timestamp_ns, origin node)."""
        return self.state.version

    def to_record(self, *, copy: bool = True) -> Record:
        """The item as the tier API returns it: a fresh dict the caller may change.

        ``copy=False`` shares the content object instead of copying it: only for an item that
        nothing else will see (one just read from its row).

        Keys: ``item_id``, ``content`` (a copy), ``deleted``, ``timestamp_ns`` and
        ``origin_node`` (the latest write's version), ``priority``, ``modified_at``,
        ``created_at_ns``, ``access_count``, ``last_accessed_ns``, then the tier's own columns.
        """
        version = self.state.version
        record: Record = {
            "item_id": self.item_id,
            "content": json.loads(self.encoded_content()) if copy else self.state.content,
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


def encode_content(content: Mapping[str, Any]) -> str:
    """The stored and wire form of content: ``json.dumps`` with default separators."""
    return json.dumps(content, allow_nan=False)


def _encode_field_clocks(clocks: Mapping[str, Version]) -> str:
    if not clocks:
        return "{}"
    return json.dumps(
        {name: [version.timestamp_ns, version.origin] for name, version in clocks.items()},
        separators=_COMPACT,
    )


def _decode_field_clocks(text: str) -> dict[str, Version]:
    return {name: Version(int(ts), str(origin)) for name, (ts, origin) in json.loads(text).items()}


def _encode_context(context: Mapping[str, int]) -> str:
    if len(context) == 1:
        # The common case (one writer), without the general encoder's overhead.
        ((node_id, stamp),) = context.items()
        return f"{{{encode_basestring_ascii(node_id)}:{int(stamp)}}}"
    return json.dumps(dict(context), separators=_COMPACT)


def row_values(spec: TierSpec, item: StoredItem) -> dict[str, Any]:
    """Every column of ``spec``'s table for ``item`` (tier columns missing from extras: NULL)."""
    state = item.state
    version = state.version
    values: dict[str, Any] = {
        "item_id": item.item_id,
        "content": item.encoded_content(),
        "deleted": state.deleted,
        "version_ts": version.timestamp_ns,
        "version_origin": version.origin,
        "whole_ts": state.whole.timestamp_ns,
        "whole_origin": state.whole.origin,
        "whole_deleted": state.whole_deleted,
        "field_clocks": _encode_field_clocks(state.field_clocks),
        "causal_context": _encode_context(state.context),
        "priority": int(item.priority),
        "modified_at": item.modified_at,
        "received_from": item.received_from,
        "created_at_ns": item.created_at_ns,
        "access_count": item.access_count,
        "last_accessed_ns": item.last_accessed_ns,
    }
    for name in (*spec.derived_names, *spec.local_defaults):
        values[name] = item.extras.get(name)
    return values


def item_from_row(spec: TierSpec, row: RowMapping) -> StoredItem:
    """The :class:`StoredItem` of one row of ``spec``'s table (selected with all its columns)."""
    state = ItemState(
        content=json.loads(row["content"]),
        whole=Version(row["whole_ts"], row["whole_origin"]),
        whole_deleted=bool(row["whole_deleted"]),
        field_clocks=_decode_field_clocks(row["field_clocks"]),
        context=json.loads(row["causal_context"]),
    )
    extras = {name: row[name] for name in (*spec.derived_names, *spec.local_defaults)}
    return StoredItem(
        item_id=row["item_id"],
        state=state,
        priority=SyncPriority(row["priority"]),
        modified_at=row["modified_at"],
        received_from=row["received_from"],
        created_at_ns=row["created_at_ns"],
        access_count=row["access_count"],
        last_accessed_ns=row["last_accessed_ns"],
        extras=extras,
        content_json=row["content"],
    )
