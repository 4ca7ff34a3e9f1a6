"""memrepl: durable, replicated three-tier memory for AI agents.

Three memory tiers in SQLite -- working (L1), episodic (L2), semantic (L3, a knowledge graph) --
replicated between nodes with the MEMSHADOW v2 sync protocol: delta batches, Last-Write-Wins with
a node-id tie-break, a conflict log you can query with SQL, and sync vectors that survive
restarts. ``memrepl.open(path, node_id=...)`` opens a durable store; ``MemorySyncManager``
replicates it over a mesh (``memrepl.mesh.LocalMesh`` in one process, ``TcpMesh`` between them).

The names below are imported when first used (:mod:`memrepl.lazy`): ``import memrepl`` alone
loads neither SQLAlchemy nor networkx, so the ``memrepl`` command starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memrepl.lazy import lazy_exports

if TYPE_CHECKING:
    from memrepl.errors import (
        AuthenticationError,
        BadCursorError,
        BatchError,
        BatchTooLargeError,
        CapacityExceededError,
        CertificateError,
        ClockRewindError,
        ClockSkewError,
        ClusterKeyError,
        CompressionError,
        ConfigError,
        ControlError,
        EmbedderError,
        FilingOptionsError,
        HandshakeError,
        InvalidArgumentError,
        InvalidContentError,
        InvalidFilterError,
        InvalidItemIdError,
        InvalidNamespaceError,
        InvalidQueryError,
        ItemError,
        ItemExistsError,
        ItemNotFoundError,
        ItemTooLargeError,
        MemreplError,
        MeshError,
        MisaddressedBatchError,
        NodeConfigError,
        NodeIdMismatchError,
        NodeStateError,
        PeerUnavailableError,
        PolicyConfigError,
        ProtocolError,
        RecallError,
        RevocationListError,
        SchemaTooNewError,
        StoreError,
        StoreInUseError,
        UnknownTierError,
        UnrequestedSnapshotError,
    )
    from memrepl.namespaces import keyed_id
    from memrepl.policy import ConsolidationResult, PolicyConfig, consolidate
    from memrepl.protocol import (
        HeaderFlags,
        ItemVersionInfo,
        MemorySyncBatch,
        MemorySyncItem,
        MemoryTier,
        MessageTypes,
        Priority,
        SyncFlags,
        SyncOperation,
        SyncPriority,
    )
    from memrepl.storage import (
        EpisodicMemory,
        LocalWrite,
        SemanticMemory,
        Store,
        WorkingMemory,
        open,
    )
    from memrepl.storage.embedders import Embedder, HashingEmbedder, MiniLMEmbedder
    from memrepl.storage.search import Hit, SearchResults
    from memrepl.sync.manager import MemorySyncManager
    from memrepl.sync.results import SyncResult, SyncStatus

__version__ = "0.1.0"

_EXPORTS = {
    **dict.fromkeys(
        [
            "AuthenticationError",
            "BadCursorError",
            "BatchError",
            "BatchTooLargeError",
            "CapacityExceededError",
            "CertificateError",
            "ClockRewindError",
            "ClockSkewError",
            "ClusterKeyError",
            "CompressionError",
            "ConfigError",
            "ControlError",
            "EmbedderError",
            "FilingOptionsError",
            "HandshakeError",
            "InvalidArgumentError",
            "InvalidContentError",
            "InvalidFilterError",
            "InvalidItemIdError",
            "InvalidNamespaceError",
            "InvalidQueryError",
            "ItemError",
            "ItemExistsError",
            "ItemNotFoundError",
            "ItemTooLargeError",
            "MemreplError",
            "MeshError",
            "MisaddressedBatchError",
            "NodeConfigError",
            "NodeIdMismatchError",
            "NodeStateError",
            "PeerUnavailableError",
            "PolicyConfigError",
            "ProtocolError",
            "RecallError",
            "RevocationListError",
            "SchemaTooNewError",
            "StoreError",
            "StoreInUseError",
            "UnknownTierError",
            "UnrequestedSnapshotError",
        ],
        "memrepl.errors",
    ),
    "keyed_id": "memrepl.namespaces",
    **dict.fromkeys(
        [
            "ConsolidationResult",
            "PolicyConfig",
            "consolidate",
        ],
        "memrepl.policy",
    ),
    **dict.fromkeys(
        [
            "HeaderFlags",
            "ItemVersionInfo",
            "MemorySyncBatch",
            "MemorySyncItem",
            "MemoryTier",
            "MessageTypes",
            "Priority",
            "SyncFlags",
            "SyncOperation",
            "SyncPriority",
        ],
        "memrepl.protocol",
    ),
    **dict.fromkeys(
        [
            "EpisodicMemory",
            "LocalWrite",
            "SemanticMemory",
            "Store",
            "WorkingMemory",
            "open",
        ],
        "memrepl.storage",
    ),
    **dict.fromkeys(
        [
            "Embedder",
            "HashingEmbedder",
            "MiniLMEmbedder",
        ],
        "memrepl.storage.embedders",
    ),
    **dict.fromkeys(
        [
            "Hit",
            "SearchResults",
        ],
        "memrepl.storage.search",
    ),
    "MemorySyncManager": "memrepl.sync.manager",
    **dict.fromkeys(
        [
            "SyncResult",
            "SyncStatus",
        ],
        "memrepl.sync.results",
    ),
}

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "AuthenticationError",
    "BadCursorError",
    "BatchError",
    "BatchTooLargeError",
    "CapacityExceededError",
    "CertificateError",
    "ClockRewindError",
    "ClockSkewError",
    "ClusterKeyError",
    "CompressionError",
    "ConfigError",
    "ConsolidationResult",
    "ControlError",
    "Embedder",
    "EmbedderError",
    "EpisodicMemory",
    "FilingOptionsError",
    "HandshakeError",
    "HashingEmbedder",
    "HeaderFlags",
    "Hit",
    "InvalidArgumentError",
    "InvalidContentError",
    "InvalidFilterError",
    "InvalidItemIdError",
    "InvalidNamespaceError",
    "InvalidQueryError",
    "ItemError",
    "ItemExistsError",
    "ItemNotFoundError",
    "ItemTooLargeError",
    "ItemVersionInfo",
    "LocalWrite",
    "MemorySyncBatch",
    "MemorySyncItem",
    "MemorySyncManager",
    "MemoryTier",
    "MemreplError",
    "MeshError",
    "MessageTypes",
    "MiniLMEmbedder",
    "MisaddressedBatchError",
    "NodeConfigError",
    "NodeIdMismatchError",
    "NodeStateError",
    "PeerUnavailableError",
    "PolicyConfig",
    "PolicyConfigError",
    "Priority",
    "ProtocolError",
    "RecallError",
    "RevocationListError",
    "SchemaTooNewError",
    "SearchResults",
    "SemanticMemory",
    "Store",
    "StoreError",
    "StoreInUseError",
    "SyncFlags",
    "SyncOperation",
    "SyncPriority",
    "SyncResult",
    "SyncStatus",
    "UnknownTierError",
    "UnrequestedSnapshotError",
    "WorkingMemory",
    "__version__",
    "consolidate",
    "keyed_id",
    "open",
]
