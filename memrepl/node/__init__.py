"""A running memrepl node: a store, its sync manager, a mesh, and the replication scheduler.

- :mod:`~memrepl.node.node`: :class:`Node` (start/stop, the store, status).
- :mod:`~memrepl.node.link`: how the node's sync manager reaches the mesh (:class:`NodeLink`,
  :class:`NodeSyncManager`).
- :mod:`~memrepl.node.watch`: seeing commits in the store (the poll and its queries).
- :mod:`~memrepl.node.scheduler`: when to send what (ARCHITECTURE.md, "Priority-based
  replication").
- :mod:`~memrepl.node.config`: :class:`NodeSettings` and ``memrepl serve``'s :class:`NodeConfig`
  (TOML file and flags).
- :mod:`~memrepl.node.credentials`: certificate or shared-key mode, decided from the config.
- :mod:`~memrepl.node.monitor`: the replication counters and the progress of each round, both
  ways (the sync manager's observer), and the progress logs.
- :mod:`~memrepl.node.report`: every fact the node has about each peer, gathered in one place
  (the status file, ``memrepl status``).
- :mod:`~memrepl.node.metrics`: the Prometheus endpoint (``--metrics``).
"""

from memrepl.node.config import NodeConfig, NodeConfigError, NodeSettings, read_key_file
from memrepl.node.link import NodeLink, NodeSyncManager
from memrepl.node.node import Node
from memrepl.node.scheduler import PeerTierStatus

__all__ = [
    "Node",
    "NodeConfig",
    "NodeConfigError",
    "NodeLink",
    "NodeSettings",
    "NodeSyncManager",
    "PeerTierStatus",
    "read_key_file",
]
