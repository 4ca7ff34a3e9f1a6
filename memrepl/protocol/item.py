"""One replicated item on the wire: a 48-byte header and its payload (PROTOCOL.md §2).

This module owns :class:`MemorySyncItem`, its byte layout (``!32sQBBHH`` + 2 bytes of padding),
the items-data section of a batch (items back to back), and :class:`ItemVersionInfo`, the
per-item version data memrepl adds to v2, which travels in the batch metadata, never in the item
bytes (PROTOCOL.md §3), so a v2 node sees plain items.

The rule that keeps it right: a constructed item always fits the wire intact (validated once, in
``__post_init__``; build errors are :class:`~memrepl.errors.ItemError` subclasses), and parsing
accepts only bytes that a valid item packs to (every fault a
:class:`~memrepl.errors.ProtocolError` with a ``code``). Parsed values are valid by
construction, so parsed items skip ``__post_init__``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, TypeVar

from memrepl.errors import (
    InvalidItemIdError,
    ItemError,
    ItemTooLargeError,
    ProtocolError,
    UnknownTierError,
)
from memrepl.protocol import fast
from memrepl.protocol.enums import MemoryTier, SyncOperation, SyncPriority
from memrepl.protocol.header import as_bytes
from memrepl.protocol.limits import (
    ITEM_HEADER_SIZE,
    MAX_ITEM_ID_BYTES,
    MAX_ITEM_PAYLOAD_BYTES,
    U64_MAX,
)

__all__ = ["ItemVersionInfo", "MemorySyncItem", "pack_items", "unpack_items"]

# id (NUL-padded), timestamp_ns, tier, operation, priority, payload_len, 2 zero bytes (§2).
_ITEM = struct.Struct("!32sQBBHH2x")

_TIERS: dict[int, MemoryTier] = {t.value: t for t in MemoryTier}
_OPERATIONS: dict[int, SyncOperation] = {o.value: o for o in SyncOperation}
_PRIORITIES: dict[int, SyncPriority] = {p.value: p for p in SyncPriority}

_new = fast.new
_set = fast.set_field
_Code = TypeVar("_Code", MemoryTier, SyncOperation, SyncPriority)


def _is_u64(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= U64_MAX


def _member(table: dict[int, _Code], value: object) -> _Code | None:
    """The enum member for an int (or member) ``value``; None for anything else, bool included."""
    if isinstance(value, int) and not isinstance(value, bool):
        return table.get(value)
    return None


def _bad_metadata(message: str) -> ProtocolError:
    return ProtocolError(f"batch metadata: {message}", code="bad-metadata")


@dataclass(frozen=True, slots=True)
class ItemVersionInfo:
    """What memrepl knows about an item's version beyond v2's ``timestamp_ns`` (ARCHITECTURE.md,
    "Item state and the merge").

    - ``origin_node``: the node that wrote the latest version (stamped the item's
      ``timestamp_ns``).
    - ``causal_context``: node id -> the highest stamp that node wrote to this item.
    - ``whole_timestamp_ns`` / ``whole_origin`` / ``whole_deleted``: the last whole write
      (INSERT, UPDATE or DELETE); ``0`` / ``""`` / ``False`` if the item was only ever MERGEd.
    - ``field_clocks``: field name -> ``(stamp, origin)`` for fields MERGEd after that write.
    - ``namespace`` / ``key`` / ``namespace_ts`` / ``namespace_origin``: where the item is filed
      and the write that filed it (``()`` / ``""`` / ``0`` / ``""`` if no write did); carried
      under the key ``"p"`` only when ``namespace_ts`` is not 0, so other items' bytes are as
      before.
    - ``options``: the filing options set with the namespace, as their canonical JSON text
      (``""``: none; what they mean is :mod:`memrepl.filing`'s); a fifth element of ``"p"``,
      present only when not empty.

    The codec checks types and ranges only; what the values mean is the merge core's. The
    mappings are copied into plain dicts at construction: treat them as read-only. Raises
    :class:`ItemError` for a wrong type or a stamp outside u64.
    """

    origin_node: str
    causal_context: Mapping[str, int] = field(default_factory=dict, hash=False)
    whole_timestamp_ns: int = 0
    whole_origin: str = ""
    whole_deleted: bool = False
    field_clocks: Mapping[str, tuple[int, str]] = field(default_factory=dict, hash=False)
    namespace: tuple[str, ...] = ()
    key: str = ""
    namespace_ts: int = 0
    namespace_origin: str = ""
    options: str = ""

    def __post_init__(self) -> None:
        if not (
            isinstance(self.origin_node, str)
            and _is_u64(self.whole_timestamp_ns)
            and isinstance(self.whole_origin, str)
            and isinstance(self.whole_deleted, bool)
            and isinstance(self.causal_context, Mapping)
            and isinstance(self.field_clocks, Mapping)
            and isinstance(self.namespace, tuple | list)
            and all(isinstance(part, str) for part in self.namespace)
            and isinstance(self.key, str)
            and _is_u64(self.namespace_ts)
            and isinstance(self.namespace_origin, str)
            and isinstance(self.options, str)
        ):
            raise ItemError(f"version info: a field has the wrong type or range: {self!r}")
        context: dict[str, int] = {}
        for node, stamp in self.causal_context.items():
            if not isinstance(node, str) or not _is_u64(stamp):
                raise ItemError(f"version info: causal_context entry {node!r}: {stamp!r}")
            context[node] = int(stamp)
        clocks: dict[str, tuple[int, str]] = {}
        for name, clock in self.field_clocks.items():
            if not (
                isinstance(name, str)
                and isinstance(clock, tuple | list)
                and len(clock) == 2
                and _is_u64(clock[0])
                and isinstance(clock[1], str)
            ):
                raise ItemError(f"version info: field clock {name!r}: {clock!r}")
            clocks[name] = (int(clock[0]), clock[1])
        _set(self, "causal_context", context)
        _set(self, "field_clocks", clocks)
        _set(self, "namespace", tuple(self.namespace))

    def to_json(self) -> dict[str, Any]:
        """Return the compact JSON form carried in the batch metadata (keys o c w wo wd f, and
        p = ``[namespace_ts, namespace_origin, [namespace parts], key]`` for a filed item, with
        the options text as a fifth element when there are options)."""
        clocks = self.field_clocks
        encoded: dict[str, Any] = {
            "o": self.origin_node,
            "c": dict(self.causal_context),
            "w": self.whole_timestamp_ns,
            "wo": self.whole_origin,
            "wd": self.whole_deleted,
            "f": {name: [stamp, origin] for name, (stamp, origin) in clocks.items()}
            if clocks
            else {},
        }
        if self.namespace_ts:
            encoded["p"] = [
                self.namespace_ts,
                self.namespace_origin,
                list(self.namespace),
                self.key,
            ]
            if self.options:
                encoded["p"].append(self.options)
        return encoded

    @classmethod
    def from_json(cls, obj: object) -> ItemVersionInfo:
        """Build from :meth:`to_json`'s form, checking shape and types strictly.

        Keys other than these seven are ignored (additions that keep the meaning of these).
        Raises :class:`ProtocolError` with code ``"bad-metadata"``.
        """
        if type(obj) is not dict:
            raise _bad_metadata("an item's version info is not an object")
        try:
            origin = obj["o"]
            context = obj["c"]
            whole_ts = obj["w"]
            whole_origin = obj["wo"]
            whole_deleted = obj["wd"]
            raw_clocks = obj["f"]
        except KeyError as exc:
            raise _bad_metadata(f"an item's version info lacks key {exc.args[0]!r}") from exc
        # JSON gives exact types, so ``type(x) is int`` also rules out bool.
        if (
            type(origin) is not str
            or type(whole_ts) is not int
            or not 0 <= whole_ts <= U64_MAX
            or type(whole_origin) is not str
            or type(whole_deleted) is not bool
            or type(context) is not dict
            or type(raw_clocks) is not dict
        ):
            raise _bad_metadata("an item's version info has a value of the wrong type")
        for stamp in context.values():
            if type(stamp) is not int or not 0 <= stamp <= U64_MAX:
                raise _bad_metadata(f"causal context stamp {stamp!r} is not a u64")
        clocks: dict[str, tuple[int, str]] = {}
        for name, clock in raw_clocks.items():
            if (
                type(clock) is not list
                or len(clock) != 2
                or type(clock[0]) is not int
                or not 0 <= clock[0] <= U64_MAX
                or type(clock[1]) is not str
            ):
                raise _bad_metadata(f"field clock {name!r} is not [u64, string]")
            clocks[name] = (clock[0], clock[1])
        placed = obj.get("p")
        namespace: tuple[str, ...] = ()
        key, placed_ts, placed_origin, options = "", 0, "", ""
        if placed is not None:
            if (
                type(placed) is not list
                or len(placed) not in (4, 5)
                or type(placed[0]) is not int
                or not 0 < placed[0] <= U64_MAX
                or type(placed[1]) is not str
                or type(placed[2]) is not list
                or any(type(part) is not str for part in placed[2])
                or type(placed[3]) is not str
                or (len(placed) == 5 and (type(placed[4]) is not str or not placed[4]))
            ):
                raise _bad_metadata(
                    "an item's placement is not [u64, string, [strings], string] with an "
                    "optional non-empty options string"
                )
            placed_ts, placed_origin, key = placed[0], placed[1], placed[3]
            namespace = tuple(placed[2])
            options = placed[4] if len(placed) == 5 else ""
        info = _new(cls)
        _set(info, "origin_node", origin)
        _set(info, "causal_context", context)
        _set(info, "whole_timestamp_ns", whole_ts)
        _set(info, "whole_origin", whole_origin)
        _set(info, "whole_deleted", whole_deleted)
        _set(info, "field_clocks", clocks)
        _set(info, "namespace", namespace)
        _set(info, "key", key)
        _set(info, "namespace_ts", placed_ts)
        _set(info, "namespace_origin", placed_origin)
        _set(info, "options", options)
        return info


def id_problem(value: object, limit: int = MAX_ITEM_ID_BYTES) -> str | None:
    """Why ``value`` cannot travel as an id, or None: ids (of items, of nodes) are 1 to ``limit``
    bytes of UTF-8 without NUL. The original truncated long ids; memrepl refuses them
    (PROTOCOL.md §6), and trailing NULs are padding on the wire, so one inside would be cut."""
    if not isinstance(value, str):
        return f"must be a str, not {type(value).__name__}"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        return f"{value!r} is not valid UTF-8"
    if not 1 <= size <= limit or "\x00" in value:
        return (
            f"{value!r} cannot travel: it must be 1 to {limit} bytes of UTF-8 without NUL "
            f"({size} bytes)"
        )
    return None


def check_item_id(item_id: object) -> str:
    """``item_id`` if it can travel intact; else :class:`~memrepl.errors.InvalidItemIdError`."""
    problem = id_problem(item_id)
    if problem is not None:
        raise InvalidItemIdError(
            f"item id {problem}", item_id=item_id if isinstance(item_id, str) else None
        )
    return item_id  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class MemorySyncItem:
    """One item of a sync batch, as the seed writes it (PROTOCOL.md §2).

    Construction coerces ints to the enums and refuses what the wire cannot carry intact:
    :class:`InvalidItemIdError` (not 1-32 bytes of UTF-8, or a NUL inside),
    :class:`ItemTooLargeError` (payload over 65,535 bytes), :class:`UnknownTierError`,
    :class:`ItemError` (operation, priority, timestamp outside u64, payload not bytes, version).

    ``version`` is memrepl's extension: :meth:`pack` does not write it (the batch carries it in
    its metadata), so :meth:`unpack` returns ``version=None``.
    """

    item_id: str
    timestamp_ns: int
    tier: MemoryTier
    operation: SyncOperation
    priority: SyncPriority = SyncPriority.NORMAL
    payload: bytes = b""
    version: ItemVersionInfo | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        item_id = check_item_id(self.item_id)
        if not _is_u64(self.timestamp_ns):
            raise ItemError(
                f"item {item_id!r}: timestamp_ns {self.timestamp_ns!r} is not a u64",
                item_id=item_id,
            )
        tier = _member(_TIERS, self.tier)
        if tier is None:
            raise UnknownTierError(f"item {item_id!r}: unknown tier {self.tier!r}", tier=self.tier)
        operation = _member(_OPERATIONS, self.operation)
        priority = _member(_PRIORITIES, self.priority)
        if operation is None or priority is None:
            raise ItemError(
                f"item {item_id!r}: unknown operation {self.operation!r} or priority "
                f"{self.priority!r}",
                item_id=item_id,
            )
        payload = self.payload
        if type(payload) is not bytes:
            if not isinstance(payload, bytes | bytearray | memoryview):
                raise ItemError(f"item {item_id!r}: payload is not bytes", item_id=item_id)
            payload = bytes(payload)
        if len(payload) > MAX_ITEM_PAYLOAD_BYTES:
            raise ItemTooLargeError(
                f"item {item_id!r}: payload of {len(payload)} bytes exceeds "
                f"{MAX_ITEM_PAYLOAD_BYTES}",
                item_id=item_id,
                limit=MAX_ITEM_PAYLOAD_BYTES,
                size=len(payload),
            )
        if self.version is not None and not isinstance(self.version, ItemVersionInfo):
            raise ItemError(f"item {item_id!r}: version is not an ItemVersionInfo", item_id=item_id)
        _set(self, "tier", tier)
        _set(self, "operation", operation)
        _set(self, "priority", priority)
        _set(self, "payload", payload)

    def pack(self) -> bytes:
        """Return the item's 48-byte header followed by its payload."""
        return pack_items((self,))

    @classmethod
    def unpack(cls, data: bytes, offset: int = 0) -> tuple[MemorySyncItem, int]:
        """Read one item at ``offset``; return it and the bytes it took (48 + payload_len).

        Bytes after the item are not looked at. Raises :class:`ProtocolError`: ``"truncated"``,
        ``"bad-item-id"``, ``"unknown-tier"``, ``"unknown-operation"``, ``"unknown-priority"``,
        ``"bad-offset"``, ``"not-bytes"``.
        """
        data = as_bytes(data)
        if type(offset) is not int or offset < 0:
            raise ProtocolError(f"item: bad offset {offset!r}", code="bad-offset")
        items, end = _read_items(data, offset, 1, None, "truncated")
        return items[0], end - offset


def pack_items(items: Sequence[MemorySyncItem]) -> bytes:
    """Return a batch's items data: the items packed back to back (PROTOCOL.md §3)."""
    pack = _ITEM.pack
    parts: list[bytes] = []
    append = parts.append
    for item in items:
        payload = item.payload
        append(
            pack(
                item.item_id.encode(),
                item.timestamp_ns,
                item.tier,
                item.operation,
                item.priority,
                len(payload),
            )
        )
        append(payload)
    return b"".join(parts)


def unpack_items(
    data: bytes,
    count: int,
    versions: Sequence[ItemVersionInfo | None] | None = None,
    *,
    start: int = 0,
) -> tuple[MemorySyncItem, ...]:
    """Parse items data (``data`` from ``start`` on) that must hold exactly ``count`` items.

    ``versions``, if given, has one entry per item and is attached to the items in order.
    Raises :class:`ProtocolError`: any item fault, ``"count-mismatch"`` (the data ends on an item
    boundary before ``count`` items), ``"trailing-bytes"`` (bytes left after ``count`` items).
    """
    if versions is not None and len(versions) != count:
        raise ProtocolError(
            f"items data: {len(versions)} versions for {count} items", code="count-mismatch"
        )
    if start < 0:  # unpack_from would count a negative offset from the end
        raise ProtocolError(f"items data: bad start {start}", code="bad-offset")
    items, offset = _read_items(data, start, count, versions, "count-mismatch")
    if offset != len(data):
        raise ProtocolError(
            f"items data: {len(data) - offset} bytes after the {count} announced items",
            code="trailing-bytes",
        )
    return tuple(items)


# The parser reads bytes 40-43 (tier u8, operation u8, priority u16) as one u32 key, so that
# one dict lookup checks all three codes of a valid item; only a miss is decoded field by field,
# to name the fault.
_ITEM_KEYED = struct.Struct("!32sQIH2x")
_KINDS: dict[int, tuple[MemoryTier, SyncOperation, SyncPriority]] = {
    tier << 24 | operation << 16 | priority: (tier, operation, priority)
    for tier in MemoryTier
    for operation in SyncOperation
    for priority in SyncPriority
}


#: The parser's mutable twin of MemorySyncItem (memrepl.protocol.fast, trick 1): a parsed item
#: is valid by construction, so it is filled with plain attribute stores and then becomes an
#: ordinary, frozen MemorySyncItem by a ``__class__`` assignment.
_ParsedItem: Any = fast.mutable_twin(MemorySyncItem)


def _read_items(
    data: bytes,
    offset: int,
    count: int,
    versions: Sequence[ItemVersionInfo | None] | None,
    ended_code: str,
) -> tuple[list[MemorySyncItem], int]:
    """Parse ``count`` items from ``offset``; return them and the offset after the last one.

    The one parser of item bytes, for :meth:`MemorySyncItem.unpack` (count 1) and
    :func:`unpack_items`. ``versions`` (exactly ``count``, or None) are attached in order. Data
    that ends exactly where an item should start is refused with ``ended_code``.
    """
    end = len(data)
    unpack_from = _ITEM_KEYED.unpack_from
    kinds = _KINDS.get
    new = _new
    items: list[MemorySyncItem] = []
    append = items.append
    for version in repeat(None, count) if versions is None else versions:
        try:
            raw_id, timestamp_ns, kind, payload_len = unpack_from(data, offset)
        except struct.error:  # fewer than 48 bytes left
            raise _short_fault(offset, end, len(items), count, ended_code) from None
        payload_start = offset + ITEM_HEADER_SIZE
        payload_end = payload_start + payload_len
        if payload_end > end:
            raise ProtocolError(
                f"item at byte {offset}: payload of {payload_len} bytes runs past the end",
                code="truncated",
            )
        # Trailing NULs are the slot's padding; a valid id has no NUL, so stripping is lossless.
        # (UTF-8 is str's default codec; ``0 in`` is a memchr, ``b"\0" in`` a far slower search.)
        id_bytes = raw_id.rstrip(b"\0")
        try:
            item_id = id_bytes.decode()
        except UnicodeDecodeError as exc:
            raise _id_fault(offset, raw_id) from exc
        if not id_bytes or 0 in id_bytes:
            raise _id_fault(offset, raw_id)
        codes = kinds(kind)
        if codes is None:
            raise _kind_fault(item_id, kind)
        item = new(_ParsedItem)
        item.item_id = item_id
        item.timestamp_ns = timestamp_ns
        item.tier, item.operation, item.priority = codes
        item.payload = data[payload_start:payload_end]
        item.version = version
        item.__class__ = MemorySyncItem
        append(item)
        offset = payload_end
    return items, offset


def _short_fault(offset: int, end: int, index: int, count: int, ended_code: str) -> ProtocolError:
    if offset == end:
        return ProtocolError(
            f"items data: {count} items announced, the data ends after {index}", code=ended_code
        )
    return ProtocolError(
        f"item at byte {offset}: {end - offset} bytes left, its header needs {ITEM_HEADER_SIZE}",
        code="truncated",
    )


def _id_fault(offset: int, raw_id: bytes) -> ProtocolError:
    return ProtocolError(
        f"item at byte {offset}: id {raw_id!r} is not 1-32 bytes of UTF-8 without NUL",
        code="bad-item-id",
    )


def _kind_fault(item_id: str, kind: int) -> ProtocolError:
    tier, operation, priority = kind >> 24, (kind >> 16) & 0xFF, kind & 0xFFFF
    if tier not in _TIERS:
        return ProtocolError(f"item {item_id!r}: unknown tier {tier}", code="unknown-tier")
    if operation not in _OPERATIONS:
        return ProtocolError(
            f"item {item_id!r}: unknown operation {operation}", code="unknown-operation"
        )
    return ProtocolError(f"item {item_id!r}: unknown priority {priority}", code="unknown-priority")
