"""Every exception memrepl raises on purpose, rooted at :class:`MemreplError`.

The tree::

    MemreplError
    ├── ProtocolError            bad bytes from the wire (.code names the fault)
    │   └── CompressionError     gzip that is corrupt or inflates past the largest valid batch
    ├── ItemError                an item the API cannot carry intact (.item_id)
    │   ├── InvalidItemIdError   empty, NUL inside, or more than 32 bytes of UTF-8
    │   ├── ItemTooLargeError    content encodes to more than 65,535 bytes (.limit, .size)
    │   ├── InvalidContentError  content that is not a JSON object
    │   ├── ItemExistsError      add() of an id that is live
    │   └── ItemNotFoundError    update()/delete() of an id that is not live
    ├── BatchError               a batch the API refuses to build or apply
    │   ├── BatchTooLargeError   more than 255 items (.limit)
    │   └── MisaddressedBatchError  a batch addressed to another node
    ├── ClockSkewError           a stamp too far ahead of the wall clock (.timestamp_ns, .limit)
    ├── UnknownTierError         a tier that does not exist or is not registered (.tier)
    ├── StoreError               opening or migrating a store
    │   ├── NodeIdMismatchError  reopening a store with another node id
    │   └── SchemaTooNewError    the database was written by a newer memrepl
    ├── SyncError                a sync round that did not complete (.peer_id)
    │   ├── SyncTimeoutError     no ACK in time
    │   └── SyncRejectedError    the peer answered NACK (.code, .reason)
    └── MeshError                transport faults (.peer_id)
        ├── AuthenticationError  wrong key, bad HMAC, replayed or reordered frame
        └── PeerUnavailableError no connection to that peer

Errors carry structured fields as well as a message that names the operation; the library never
prints or exits (the CLI maps these to one-line messages in one place).
"""

from __future__ import annotations


class MemreplError(Exception):
    """Root of every error memrepl raises on purpose."""


class ProtocolError(MemreplError):
    """Bytes that are not a valid MEMSHADOW v2 message. ``code`` is a stable, short fault name."""

    def __init__(self, message: str, *, code: str = "malformed") -> None:
        super().__init__(message)
        self.code = code


class CompressionError(ProtocolError):
    """Compressed items data that is corrupt or inflates past the largest valid batch."""

    def __init__(self, message: str, *, code: str = "bad-gzip") -> None:
        super().__init__(message, code=code)


class ItemError(MemreplError):
    """An item the API refuses: it could not be stored or sent intact."""

    def __init__(self, message: str, *, item_id: str | None = None) -> None:
        super().__init__(message)
        self.item_id = item_id


class InvalidItemIdError(ItemError):
    """An id that cannot travel intact: empty, with a NUL, or over 32 bytes of UTF-8."""


class ItemTooLargeError(ItemError):
    """Content whose JSON encoding exceeds the wire's 65,535-byte payload limit."""

    def __init__(self, message: str, *, item_id: str | None = None, limit: int, size: int) -> None:
        super().__init__(message, item_id=item_id)
        self.limit = limit
        self.size = size


class InvalidContentError(ItemError):
    """Content that is not a JSON object (a dict of JSON values with string keys)."""


class ItemExistsError(ItemError):
    """``add`` of an id that already holds a live item (use ``update`` or ``merge``)."""


class ItemNotFoundError(ItemError):
    """``update``/``delete`` of an id that holds no live item."""


class BatchError(MemreplError):
    """A batch the API refuses to build or apply."""


class BatchTooLargeError(BatchError):
    """More items than the header's count byte can carry."""

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class MisaddressedBatchError(BatchError):
    """A batch whose ``target_node`` is another node."""

    def __init__(self, message: str, *, target_node: str, node_id: str) -> None:
        super().__init__(message)
        self.target_node = target_node
        self.node_id = node_id


class ClockSkewError(MemreplError):
    """A stamp further ahead of the local wall clock than the configured tolerance."""

    def __init__(self, message: str, *, timestamp_ns: int, limit: int) -> None:
        super().__init__(message)
        self.timestamp_ns = timestamp_ns
        self.limit = limit


class UnknownTierError(MemreplError):
    """A tier number or name that does not exist, or a tier not registered with a manager."""

    def __init__(self, message: str, *, tier: object) -> None:
        super().__init__(message)
        self.tier = tier


class StoreError(MemreplError):
    """Opening, creating or migrating a store failed."""


class NodeIdMismatchError(StoreError):
    """The database belongs to another node id than the one it was opened with."""

    def __init__(self, message: str, *, stored: str, requested: str) -> None:
        super().__init__(message)
        self.stored = stored
        self.requested = requested


class SchemaTooNewError(StoreError):
    """The database's schema revision is unknown to this memrepl: it was written by a newer one."""

    def __init__(self, message: str, *, revision: str) -> None:
        super().__init__(message)
        self.revision = revision


class SyncError(MemreplError):
    """A sync round that did not complete."""

    def __init__(self, message: str, *, peer_id: str) -> None:
        super().__init__(message)
        self.peer_id = peer_id


class SyncTimeoutError(SyncError):
    """The peer did not acknowledge in time; nothing was marked synced."""


class SyncRejectedError(SyncError):
    """The peer answered NACK."""

    def __init__(self, message: str, *, peer_id: str, code: str, reason: str) -> None:
        super().__init__(message, peer_id=peer_id)
        self.code = code
        self.reason = reason


class MeshError(MemreplError):
    """A transport fault."""

    def __init__(self, message: str, *, peer_id: str | None = None) -> None:
        super().__init__(message)
        self.peer_id = peer_id


class AuthenticationError(MeshError):
    """A peer that failed the handshake, or a frame with a bad HMAC or sequence number."""


class PeerUnavailableError(MeshError):
    """No connection to that peer (unknown, down, or disconnected)."""
