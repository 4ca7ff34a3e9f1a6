"""Every exception memrepl raises on purpose, rooted at :class:`MemreplError`.

The tree::

    MemreplError
    ├── ProtocolError            bad bytes from the wire (.code names the fault)
    │   ├── CompressionError     gzip that is corrupt or inflates past the largest valid batch
    │   └── FrameFaultError      a frame the mesh refuses (.fault, .in_sync; stays in the mesh)
    ├── ItemError                an item the API cannot carry intact (.item_id)
    │   ├── InvalidItemIdError   empty, NUL inside, or more than 32 bytes of UTF-8
    │   ├── ItemTooLargeError    content encodes to more than 65,535 bytes (.limit, .size)
    │   ├── InvalidContentError  content that is not a JSON object
    │   ├── FilingOptionsError   filing options an item cannot carry (a bad embed path or TTL)
    │   ├── ItemExistsError      add() of an id that is live
    │   ├── ItemNotFoundError    update()/delete() of an id that is not live
    │   └── CapacityExceededError  one write call of more live working items than the capacity
    ├── BatchError               a batch the API refuses to build or apply
    │   ├── BatchTooLargeError   more than 255 items (.limit)
    │   ├── MisaddressedBatchError  a batch addressed to another node
    │   ├── BadCursorError       a sender cursor above 2**63 - 1: no clock's stamp (.cursor)
    │   └── UnrequestedSnapshotError  snapshot batches this node did not ask for (.snapshot_id)
    ├── ClockSkewError           a stamp too far ahead of the wall clock (.timestamp_ns, .ahead_ns)
    ├── UnknownTierError         a tier that does not exist or is not registered (.tier)
    ├── InvalidArgumentError     a query argument of the wrong type or value (also a ValueError)
    ├── RecallError              a search, namespace or embedding the API refuses
    │   ├── InvalidNamespaceError  a bad namespace or key (also a ValueError)
    │   ├── InvalidQueryError    a keyword query FTS5 cannot parse (.query; also a ValueError)
    │   ├── InvalidFilterError   a filter on a non-field, or a bad operator (also a ValueError)
    │   └── EmbedderError        an embedder that failed or returned bad vectors (.reason)
    ├── StoreError               opening or migrating a store
    │   ├── NodeIdMismatchError  reopening a store with another node id
    │   ├── SchemaTooNewError    the database was written by a newer memrepl
    │   ├── StoreInUseError      another node process already runs on the store (.pid, .address)
    │   └── ClockRewindError     the clock cannot be rewound safely (the reason says why)
    ├── ConfigError              a setting that cannot be used (.key)
    │   ├── NodeConfigError      a node setting, flag or config file value
    │   └── PolicyConfigError    a memory policy threshold or preset name
    ├── NodeStateError           a Node used before start(), or started twice
    ├── RoundStateError          a sync round's state machine fed an event out of turn (a bug)
    ├── CheckEndedError          an anti-entropy check ended early (stays in the check's result)
    ├── MeshError                transport faults (.peer_id)
    │   ├── AuthenticationError  wrong key, bad HMAC, replayed or reordered frame
    │   │   └── HandshakeError   a handshake that did not complete (.code, .reason)
    │   ├── ClusterKeyError      a shared key too short to be random (.size, .minimum)
    │   ├── CertificateError     a CA, node certificate or key that cannot be made, read or used
    │   │   └── RevocationListError  a revocation list that cannot be read or parsed (.line)
    │   ├── PeerUnavailableError no connection to that peer
    │   └── ControlError         the control channel of a running node (memrepl sync beside it)
    └── CommandError             a ``memrepl`` command that cannot do what it was asked
        └── UsageError           a command line that cannot be understood

Errors carry structured fields as well as a message that names the operation; the library never
prints or exits (the CLI maps these to one-line messages in one place). A sync round raises
nothing for what its peer did: a timeout, a NACK or an unreachable peer is the status of the
``SyncResult`` it returns.

**Codes.** Every class states its ``code`` in its own body: a short, stable kebab-case name. A
peer's batch refused with one of these errors is answered with a NACK carrying that code
(``memrepl.sync.manager``), so the code -- never the class name -- is what other nodes see, and
renaming a class changes nothing on the wire (``tests/test_errors.py`` pins every code). A few
errors name their fault per instance instead: a :class:`ProtocolError` carries the code of the
fault it found (``bad-magic``, ``count-mismatch``, ...; the class's code is the default), a
:class:`FrameFaultError` or :class:`HandshakeError` a :class:`FaultCode` (or, for a handshake,
the code the peer refused it with).
"""

from __future__ import annotations

from enum import StrEnum


class MemreplError(Exception):
    """Root of every error memrepl raises on purpose."""

    #: The stable name a NACK carries for this error (see the module docstring).
    code: str = "memrepl"


class ProtocolError(MemreplError):
    """Bytes that are not a valid MEMSHADOW v2 message. ``code`` is a stable, short fault name."""

    code = "malformed"

    def __init__(self, message: str, *, code: str = "malformed") -> None:
        super().__init__(message)
        self.code = code


class CompressionError(ProtocolError):
    """Compressed items data that is corrupt or inflates past the largest valid batch."""

    code = "bad-gzip"

    def __init__(self, message: str, *, code: str = "bad-gzip") -> None:
        super().__init__(message, code=code)


class FaultCode(StrEnum):
    """Why the mesh refused a frame or a connection; the ``code`` of its NACK or DISCONNECT."""

    #: A frame's seal (its header's MAC or the frame's HMAC) does not verify (altered in
    #: transit, or another session's).
    BAD_HMAC = "bad-hmac"
    #: A frame's sequence number is not the next expected one (replayed or reordered).
    BAD_SEQUENCE = "bad-sequence"
    #: A frame other than HANDSHAKE before the handshake completed.
    HANDSHAKE_REQUIRED = "handshake-required"
    #: A HANDSHAKE frame after the handshake completed.
    UNEXPECTED_HANDSHAKE = "unexpected-handshake"
    #: The handshake did not complete within the handshake timeout.
    HANDSHAKE_TIMEOUT = "handshake-timeout"
    #: A HANDSHAKE payload that is not a handshake message expected at this step.
    BAD_HANDSHAKE = "bad-handshake"
    #: The peer could not prove it holds the cluster key.
    AUTH_FAILED = "auth-failed"
    #: The peer uses the other authentication mode (shared key against certificates).
    AUTH_MODE_MISMATCH = "auth-mode-mismatch"
    #: The peer's certificate was refused: not signed by the cluster CA, expired, absent, naming
    #: no memrepl node -- or the peer spoke no TLS at all.
    BAD_CERTIFICATE = "bad-certificate"
    #: The node id the peer claims (or was dialled as) is not the one its certificate names.
    IDENTITY_MISMATCH = "identity-mismatch"
    #: The peer's certificate or node id is on this node's revocation list.
    REVOKED = "revoked"
    #: Too many failed handshakes from the peer's address: it is locked out for a while.
    THROTTLED = "throttled"
    #: The peer's replication revision (storage.migrate.REPLICATION_REVISION) differs from ours.
    SCHEMA_MISMATCH = "schema-mismatch"
    #: The peer speaks another protocol version.
    VERSION_MISMATCH = "version-mismatch"
    #: The peer claims an id it may not use (our own, or not the peer we dialled).
    WRONG_PEER = "wrong-peer"
    #: The header's payload_len exceeds the limit (the stream is lost).
    FRAME_TOO_LARGE = "frame-too-large"
    #: The header's magic is wrong (the stream is lost).
    BAD_MAGIC = "bad-magic"
    #: The header's version is not 2 (the stream is lost).
    BAD_VERSION = "bad-version"
    #: A message type memrepl does not speak.
    UNKNOWN_MSG_TYPE = "unknown-msg-type"
    #: A header priority outside the v2 table.
    UNKNOWN_PRIORITY = "unknown-priority"
    #: Any other header fault.
    MALFORMED_HEADER = "malformed-header"
    #: The peer reached the fault limit of its connection.
    TOO_MANY_FAULTS = "too-many-faults"
    #: Nothing arrived within the idle timeout (or a write made no progress for as long).
    IDLE_TIMEOUT = "idle-timeout"
    #: Both nodes dialled each other; this connection lost (see ``memrepl.mesh.tcp``).
    DUPLICATE = "duplicate"
    #: The node is shutting down.
    SHUTDOWN = "shutdown"


class FrameFaultError(ProtocolError):
    """A frame or connection the mesh refuses (internal to the mesh; never reaches the caller).

    ``code`` is the value of ``fault``, a :class:`FaultCode`; ``in_sync`` says whether the stream
    is still at a frame boundary, so that the fault can be answered with a NACK and the next
    frame read.
    """

    code = "frame-fault"

    def __init__(self, code: FaultCode, reason: str, *, in_sync: bool) -> None:
        super().__init__(reason, code=code.value)
        self.fault = code
        self.reason = reason
        self.in_sync = in_sync


class ItemError(MemreplError):
    """An item the API refuses: it could not be stored or sent intact."""

    code = "item"

    def __init__(self, message: str, *, item_id: str | None = None) -> None:
        super().__init__(message)
        self.item_id = item_id


class InvalidItemIdError(ItemError):
    """An id that cannot travel intact: empty, with a NUL, or over 32 bytes of UTF-8."""

    code = "invalid-item-id"


class ItemTooLargeError(ItemError):
    """Content whose JSON encoding exceeds the wire's 65,535-byte payload limit."""

    code = "item-too-large"

    def __init__(self, message: str, *, item_id: str | None = None, limit: int, size: int) -> None:
        super().__init__(message, item_id=item_id)
        self.limit = limit
        self.size = size


class InvalidContentError(ItemError):
    """Content that is not a JSON object (a dict of JSON values with string keys)."""

    code = "invalid-content"


class FilingOptionsError(ItemError):
    """Filing options (:mod:`memrepl.filing`) an item cannot carry: an embed path that is not a
    non-empty string, too many paths, a TTL that is not a positive number of seconds."""

    code = "invalid-filing-options"


class ItemExistsError(ItemError):
    """``add`` of an id that already holds a live item (use ``update`` or ``merge``)."""

    code = "item-exists"


class ItemNotFoundError(ItemError):
    """``update``/``delete`` of an id that holds no live item."""

    code = "item-not-found"


class CapacityExceededError(ItemError):
    """One local write call that would make more working items live than the tier's capacity:
    they could not all be kept, so none is written (``.limit``: the capacity, ``.size``: the
    items the call makes live)."""

    code = "capacity-exceeded"

    def __init__(self, message: str, *, limit: int, size: int) -> None:
        super().__init__(message)
        self.limit = limit
        self.size = size


class BatchError(MemreplError):
    """A batch the API refuses to build or apply."""

    code = "batch"


class BatchTooLargeError(BatchError):
    """More items than the header's count byte can carry."""

    code = "batch-too-large"

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


class MisaddressedBatchError(BatchError):
    """A batch whose ``target_node`` is another node."""

    code = "misaddressed-batch"

    def __init__(self, message: str, *, target_node: str, node_id: str) -> None:
        super().__init__(message)
        self.target_node = target_node
        self.node_id = node_id


class BadCursorError(BatchError):
    """A batch whose cursor (or purge horizon) is above 2**63 - 1: no clock's stamp can be. (A
    cursor too far ahead of the wall clock is a :class:`ClockSkewError`.)"""

    code = "bad-cursor"

    def __init__(self, message: str, *, cursor: int, limit: int) -> None:
        super().__init__(message)
        self.cursor = cursor
        self.limit = limit


class UnrequestedSnapshotError(BatchError):
    """Snapshot batches from a peer this node did not ask for a snapshot (nothing is applied)."""

    code = "unrequested-snapshot"

    def __init__(self, message: str, *, snapshot_id: str, peer_id: str) -> None:
        super().__init__(message)
        self.snapshot_id = snapshot_id
        self.peer_id = peer_id


class ClockSkewError(MemreplError):
    """A stamp further ahead of the local wall clock than the configured tolerance.

    ``ahead_ns`` is how far ahead of the local wall clock the stamp was when it was refused.
    """

    code = "clock-skew"

    def __init__(
        self, message: str, *, timestamp_ns: int, limit: int, ahead_ns: int | None = None
    ) -> None:
        super().__init__(message)
        self.timestamp_ns = timestamp_ns
        self.limit = limit
        self.ahead_ns = ahead_ns


class UnknownTierError(MemreplError):
    """A tier number or name that does not exist, or a tier not registered with a manager."""

    code = "unknown-tier"

    def __init__(self, message: str, *, tier: object) -> None:
        super().__init__(message)
        self.tier = tier


class InvalidArgumentError(MemreplError, ValueError):
    """An argument of the wrong type or value to a query method (``episodes_between``,
    ``neighbors``, ...). Also a ``ValueError``, as Python's own argument errors are."""

    code = "invalid-argument"


class RecallError(MemreplError):
    """A search, a namespace, a filter or an embedding that the API refuses; nothing changed."""

    code = "recall"


class InvalidNamespaceError(RecallError, ValueError):
    """A namespace that is not a tuple of non-empty strings (or too long), or a bad key."""

    code = "invalid-namespace"


class InvalidQueryError(RecallError, ValueError):
    """A keyword query in FTS5 syntax that FTS5 cannot parse."""

    code = "invalid-query"

    def __init__(self, message: str, *, query: str) -> None:
        super().__init__(message)
        self.query = query


class InvalidFilterError(RecallError, ValueError):
    """A search filter on something that is not a content field, or with a bad operator."""

    code = "invalid-filter"


class EmbedderError(RecallError):
    """An embedder that raised, or returned the wrong number of vectors, the wrong dimension,
    NaN, infinity or a zero vector. ``reason`` is a short stable name for the fault."""

    code = "embedder"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class StoreError(MemreplError):
    """Opening, creating or migrating a store failed."""

    code = "store"


class NodeIdMismatchError(StoreError):
    """The database belongs to another node id than the one it was opened with."""

    code = "node-id-mismatch"

    def __init__(self, message: str, *, stored: str, requested: str) -> None:
        super().__init__(message)
        self.stored = stored
        self.requested = requested


class SchemaTooNewError(StoreError):
    """The database's schema revision is unknown to this memrepl: it was written by a newer one."""

    code = "schema-too-new"

    def __init__(self, message: str, *, revision: str) -> None:
        super().__init__(message)
        self.revision = revision


class StoreInUseError(StoreError):
    """Another node process (``memrepl serve``, ``memrepl sync``, an embedded ``Node``) holds
    the store's node lock; ``pid`` and ``address`` name it when it said."""

    code = "store-in-use"

    def __init__(self, message: str, *, pid: int | None, address: str | None) -> None:
        super().__init__(message)
        self.pid = pid
        self.address = address


class ClockRewindError(StoreError):
    """``memrepl clock rewind`` refused: rewinding would break replication (the message says
    what is in the way)."""

    code = "clock-rewind"


class ConfigError(MemreplError):
    """A setting that cannot be used (``.key`` names it, when one setting is at fault)."""

    code = "config"

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class NodeConfigError(ConfigError):
    """A node setting, flag or config file value that cannot be used."""

    code = "node-config"


class PolicyConfigError(ConfigError):
    """A memory policy threshold out of its range, or an unknown preset name."""

    code = "policy-config"


class NodeStateError(MemreplError):
    """A :class:`~memrepl.node.Node` asked for its parts before ``start()``, or started twice."""

    code = "node-state"


class RoundStateError(MemreplError):
    """A sync round's state machine (:mod:`memrepl.sync.rounds`) was given an event it cannot
    take in its state: a bug of the driver that runs it, never something a peer can cause."""

    code = "round-state"


class CheckEndedError(MemreplError):
    """Ends an anti-entropy check early (a NACK, a timeout, a bad answer); its message becomes
    the check's ``error`` (internal to :mod:`memrepl.sync.antientropy`)."""

    code = "check-ended"


class MeshError(MemreplError):
    """A transport fault."""

    code = "mesh"

    def __init__(self, message: str, *, peer_id: str | None = None) -> None:
        super().__init__(message)
        self.peer_id = peer_id


class AuthenticationError(MeshError):
    """A peer that failed the handshake, or a frame with a bad HMAC or sequence number."""

    code = "authentication"


class HandshakeError(AuthenticationError):
    """A handshake that did not complete; ``code`` names why (a :class:`FaultCode` value, or the
    code the peer refused us with)."""

    code = "handshake"

    def __init__(self, code: str, reason: str, *, peer_id: str | None = None) -> None:
        super().__init__(reason, peer_id=peer_id)
        self.code = code
        self.reason = reason


class ClusterKeyError(MeshError):
    """A shared cluster key refused before use: shorter than the minimum (``.size``,
    ``.minimum``, in bytes after surrounding whitespace is stripped)."""

    code = "cluster-key"

    def __init__(self, message: str, *, size: int, minimum: int) -> None:
        super().__init__(message)
        self.size = size
        self.minimum = minimum


class CertificateError(MeshError):
    """A CA, node certificate or private key that cannot be created, read or used, or a node
    certificate that does not name the node using it."""

    code = "certificate"


class RevocationListError(CertificateError):
    """A revocation list that cannot be read or has a line that is not an entry (``.line``)."""

    code = "revocation-list"

    def __init__(self, message: str, *, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


class PeerUnavailableError(MeshError):
    """No connection to that peer (unknown, down, or disconnected)."""

    code = "peer-unavailable"


class ControlError(MeshError):
    """The control channel of a running node failed or refused a request."""

    code = "control"


class CommandError(MemreplError):
    """A ``memrepl`` command that cannot do what it was asked (exit code 1): the message says
    why."""

    code = "command"


class UsageError(CommandError):
    """A ``memrepl`` command line that cannot be understood (exit code 2)."""

    code = "usage"
