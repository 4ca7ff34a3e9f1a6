"""Transports between nodes: the ``Mesh`` interface, ``LocalMesh`` (in-process) and, over real
sockets, ``TcpMesh``."""

from memrepl.mesh.local import LocalEndpoint, LocalMesh, LocalMessage
from memrepl.sync.transport import Handler, Mesh

__all__ = ["Handler", "LocalEndpoint", "LocalMesh", "LocalMessage", "Mesh"]
