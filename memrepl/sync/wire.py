"""Between an item's replicated state and its MEMSHADOW v2 form on the wire.

Outgoing, a state becomes a :class:`MemorySyncItem` whose payload is the content as plain JSON
(so a v2 node sees ordinary items) and whose :class:`ItemVersionInfo` carries what the merge needs
(origin, causal context, whole-write version, field clocks) in the batch metadata.

Incoming, the reverse, strictly: a state that contradicts itself (a version that is not the
latest write it holds, field clocks for absent fields or older than the whole write, a causal
context that misses its own writes, a tombstone with content) is refused with a
:class:`ProtocolError`, because one malformed state merged in would break convergence for every
node it reaches. An item from a plain v2 node (no version info) is read as a single write by the
batch's source node: INSERT/UPDATE replace, DELETE tombstones, MERGE sets the payload's fields.
"""

from __future__ import annotations

from typing import Any

from memrepl.errors import FilingOptionsError, InvalidNamespaceError, ItemError, ProtocolError
from memrepl.filing import decode_options
from memrepl.merge import BOTTOM, UNPLACED, ItemState, Placement, Version, apply_local_write
from memrepl.namespaces import check_key, check_namespace
from memrepl.protocol import fast
from memrepl.protocol.enums import MemoryTier, SyncOperation, SyncPriority
from memrepl.protocol.item import ItemVersionInfo, MemorySyncItem
from memrepl.storage.fastjson import decode_json, encode_content


def item_from_state(
    item_id: str,
    state: ItemState,
    tier: MemoryTier,
    priority: SyncPriority,
    *,
    payload: bytes | None = None,
) -> MemorySyncItem:
    """The wire item for ``state``. ``payload`` may pass the already-encoded content."""
    version = state.version
    if state.deleted:
        payload = b""
    elif payload is None:
        # The stored form is the wire form (PROTOCOL.md §2: the content's json.dumps).
        payload = encode_content(dict(state.content)).encode()
    (placed_ts, placed_origin), namespace, key, options = state.placement
    info = ItemVersionInfo(
        origin_node=version.origin,
        causal_context=state.context,
        whole_timestamp_ns=state.whole.timestamp_ns,
        whole_origin=state.whole.origin,
        whole_deleted=state.whole_deleted and state.whole != BOTTOM,
        field_clocks={k: (v.timestamp_ns, v.origin) for k, v in state.field_clocks.items()},
        namespace=namespace,
        key=key,
        namespace_ts=placed_ts,
        namespace_origin=placed_origin,
        options=options,
    )
    return MemorySyncItem(
        item_id=item_id,
        timestamp_ns=version.timestamp_ns,
        tier=tier,
        operation=state.operation,
        priority=priority,
        payload=payload,
        version=info,
    )


# Every incoming item is checked against these (memrepl.protocol.fast, trick 2).
_INSERT, _UPDATE = fast.INSERT, fast.UPDATE


def decode_item(item: MemorySyncItem, *, source_node: str) -> tuple[ItemState, str | None]:
    """The state an incoming item carries, and its payload as text (None when empty).

    Raises :class:`ProtocolError` if it is malformed.
    """
    text, content = _decode_payload(item)
    info = item.version
    if info is None:
        state = _state_from_v2_item(item, content, source_node)
        # A v2 DELETE may carry a payload; a tombstone's content is {} whatever it said.
        return state, None if state.deleted else text
    whole_ts = info.whole_timestamp_ns
    # Stamp 0: the item was only ever merged (its whole write is BOTTOM, which counts deleted).
    whole = Version(whole_ts, info.whole_origin) if whole_ts else BOTTOM
    clocks = info.field_clocks
    state = ItemState(
        content,
        whole,
        info.whole_deleted or not whole_ts,
        {name: Version(*clock) for name, clock in clocks.items()} if clocks else {},
        # The version info owns a fresh dict (built when it was decoded): shared, read-only.
        info.causal_context,
        _placement(item, info) if info.namespace_ts else UNPLACED,
    )
    if not info.namespace_ts and (info.namespace or info.key or info.namespace_origin):
        raise _bad(item, "a namespace or key without the write that set it")
    _check_consistent(item, state, (item.timestamp_ns, info.origin_node))
    return state, text


def _placement(item: MemorySyncItem, info: ItemVersionInfo) -> Placement:
    try:
        namespace = check_namespace(info.namespace)
        key = check_key(info.key) if info.key else ""
        # Only the canonical text of valid options: equal options, equal rows and hashes.
        decode_options(info.options)
    except (InvalidNamespaceError, FilingOptionsError) as exc:
        raise _bad(item, str(exc)) from exc
    return Placement(
        Version(info.namespace_ts, info.namespace_origin), namespace, key, info.options
    )


def _decode_payload(item: MemorySyncItem) -> tuple[str | None, dict[str, Any]]:
    if not item.payload:
        return None, {}
    try:
        text = item.payload.decode("utf-8")
        # Unique keys: the text is stored and logged as received, where SQL reads it too.
        content = decode_json(text, unique_keys=True)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise _bad(item, f"payload is not UTF-8 JSON ({exc})") from exc
    if not isinstance(content, dict):
        raise _bad(item, "payload is not a JSON object")
    return text, content


def _state_from_v2_item(
    item: MemorySyncItem, content: dict[str, Any], source_node: str
) -> ItemState:
    if item.operation == SyncOperation.REPLICATE:
        raise _bad(item, "REPLICATE is a request, not an item state")
    version = Version(item.timestamp_ns, source_node)
    try:
        return apply_local_write(None, item.operation, content, version)
    except ItemError as exc:
        # A write the merge core cannot make (a MERGE without fields): the item is malformed.
        raise _bad(item, str(exc)) from exc


def _check_consistent(item: MemorySyncItem, state: ItemState, claimed: tuple[int, str]) -> None:
    # ``claimed`` is (stamp, origin): a plain tuple compares equal to the Version it names.
    if state.version != claimed:
        raise _bad(item, f"timestamp/origin {Version(*claimed)} is not the latest write it holds")
    whole, clocks, context = state.whole, state.field_clocks, state.context
    for name, clock in clocks.items():
        if name not in state.content:
            raise _bad(item, f"field clock for absent field {name!r}")
        if clock <= whole:
            raise _bad(item, f"field {name!r} is older than the whole write")
    placed = state.placement.set_by
    if placed > state.version:
        raise _bad(item, "its namespace was set by a write later than the item's latest")
    for write in (whole, *clocks.values(), placed):
        if write.timestamp_ns and context.get(write.origin, 0) < write.timestamp_ns:
            raise _bad(item, "causal context misses the item's own writes")
    if state.deleted and state.content:
        raise _bad(item, "a tombstone carries content")
    expected = state.operation
    if item.operation != expected and not (expected == _UPDATE and item.operation == _INSERT):
        raise _bad(item, f"operation {item.operation.name} does not match its state")


def _bad(item: MemorySyncItem, message: str) -> ProtocolError:
    return ProtocolError(f"item {item.item_id!r}: {message}", code="bad-item-state")
