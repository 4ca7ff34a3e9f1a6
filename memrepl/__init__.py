"""memrepl: durable, replicated three-tier memory for AI agents.

Three memory tiers in SQLite -- working (L1), episodic (L2), semantic (L3, a knowledge graph) --
replicated between nodes with the MEMSHADOW v2 sync protocol: delta batches, Last-Write-Wins with
a node-id tie-break, a conflict log you can query with SQL, and sync vectors that survive
restarts. ``memrepl.open(path, node_id=...)`` opens a durable store; ``MemorySyncManager``
replicates it over a mesh (``memrepl.mesh.LocalMesh`` in one process, ``TcpMesh`` between them).
"""

from __future__ import annotations

from memrepl.errors import (
    AuthenticationError,
    BatchError,
    BatchTooLargeError,
    CertificateError,
    ClockSkewError,
    ClusterKeyError,
    CompressionError,
    ConfigError,
    EmbedderError,
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
    UnknownTierError,
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

__all__ = [
    "AuthenticationError",
    "BatchError",
    "BatchTooLargeError",
    "CertificateError",
    "ClockSkewError",
    "ClusterKeyError",
    "CompressionError",
    "ConfigError",
    "ConsolidationResult",
    "Embedder",
    "EmbedderError",
    "EpisodicMemory",
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
    "SyncFlags",
    "SyncOperation",
    "SyncPriority",
    "SyncResult",
    "SyncStatus",
    "UnknownTierError",
    "WorkingMemory",
    "__version__",
    "consolidate",
    "keyed_id",
    "open",
]
