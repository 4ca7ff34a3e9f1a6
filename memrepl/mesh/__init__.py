"""Transports between nodes: the ``Mesh`` interface, ``LocalMesh`` (in-process) and, over real
sockets, ``TcpMesh``."""

from memrepl.mesh.config import TcpMeshConfig
from memrepl.mesh.local import LocalEndpoint, LocalMesh, LocalMessage
from memrepl.mesh.stats import MeshStats, PeerStats, TrafficStats
from memrepl.mesh.tcp import TcpMesh
from memrepl.sync.transport import Handler, Mesh

__all__ = [
    "Handler",
    "LocalEndpoint",
    "LocalMesh",
    "LocalMessage",
    "Mesh",
    "MeshStats",
    "PeerStats",
    "TcpMesh",
    "TcpMeshConfig",
    "TrafficStats",
]
