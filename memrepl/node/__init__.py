"""A running memrepl node: a store, its sync manager, a mesh, and the replication scheduler.

- :mod:`~memrepl.node.node`: :class:`Node` (start/stop, the store, status) and :class:`NodeLink`.
- :mod:`~memrepl.node.scheduler`: when to send what (ARCHITECTURE.md, "Priority-based
  replication").
- :mod:`~memrepl.node.config`: :class:`NodeSettings` and ``memrepl serve``'s :class:`NodeConfig`
  (TOML file and flags).
"""

from memrepl.node.config import NodeConfig, NodeConfigError, NodeSettings
from memrepl.node.node import Node, NodeLink
from memrepl.node.scheduler import PeerTierStatus

__all__ = ["Node", "NodeConfig", "NodeConfigError", "NodeLink", "NodeSettings", "PeerTierStatus"]
