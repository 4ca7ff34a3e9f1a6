"""``Node``: a running memrepl node -- a store, its sync manager, a mesh and the scheduler.

Embedded in an asyncio application::

    async with Node("a.db", node_id="node-a", key=key, listen=("0.0.0.0", 7401),
                    peers={"node-b": ("10.0.0.2", 7401)}) as node:
        node.store.working.add("task-1", {"goal": "ship"}, priority=SyncPriority.URGENT)
        ...  # it replicates: URGENT at once, HIGH within a second, the rest every 30 s

``memrepl serve`` is this class plus flags, signals and logging. The node owns what it opens: the
store (opened in :meth:`Node.start`, closed in :meth:`Node.stop`) and the mesh (a
:class:`~memrepl.mesh.tcp.TcpMesh`, unless another :class:`~memrepl.sync.transport.Mesh` such as
a ``LocalMesh`` endpoint is passed in).

The rules that keep it right:

- **The manager talks through a :class:`NodeLink`**, the node's view of the mesh. When the node
  stops, the link refuses new sync batches: every round finishes the batch in hand (its ACK is
  still received and recorded, if it comes within :data:`STOP_ANSWER_GRACE_S`: a connection
  that died unnoticed must not hold the stop) and then ends, instead of being cut off mid-batch
  or starting the next one. Answers (ACK/NACK) still go out until the mesh closes.
- **Store work stays off the event loop**: peers' batches are committed in a
  :class:`~memrepl.sync.worker.StoreWorker` thread, in turn per peer, and so are the scheduler's
  tombstone collection and memory policies; the loop keeps serving heartbeats, every peer's
  frames and the rounds while a transaction commits.
- **Stopping leaves nothing behind**: rounds and the manager's snapshot answers are awaited (for
  at most ``stop_timeout_s``, then cancelled -- always safe, see :mod:`memrepl.node.scheduler`),
  then the mesh is closed (its tasks and sockets), then the store worker (its batch in hand
  finishes), then the store.
- **One node process per store**: :meth:`Node.start` takes the store's node lock
  (:mod:`memrepl.node.lock`) before it opens anything, and :meth:`Node.stop` releases it last; a
  second node on the same file is refused with :class:`~memrepl.errors.StoreInUseError`. With
  ``control=True`` the node also serves the control channel (:mod:`memrepl.node.control`) that
  ``memrepl sync`` uses beside it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

import memrepl
from memrepl.errors import NodeStateError
from memrepl.mesh.config import TcpMeshConfig
from memrepl.mesh.identity import NodeCertificate, cluster_key
from memrepl.mesh.stats import MeshStats
from memrepl.mesh.tcp import TcpMesh
from memrepl.node.config import NodeConfig, NodeConfigError, NodeSettings
from memrepl.node.control import ControlServer
from memrepl.node.credentials import mesh_credentials, tls_contexts
from memrepl.node.link import NodeLink, NodeSyncManager, ServingMesh
from memrepl.node.lock import LockInfo, NodeLock
from memrepl.node.monitor import NodeMonitor
from memrepl.node.report import NodeReport, gather
from memrepl.node.scheduler import PeerTierStatus, Scheduler
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import migrate
from memrepl.storage.store import Store
from memrepl.sync.antientropy import CheckResult
from memrepl.sync.manager import MemorySyncManager
from memrepl.sync.results import SyncResult
from memrepl.sync.transport import Mesh
from memrepl.sync.worker import StoreWorker

__all__ = ["Node", "tls_contexts"]  # tls_contexts lives in memrepl.node.credentials

log = logging.getLogger(__name__)

#: A stopping node waits at most this long for the answer to a batch in hand.
STOP_ANSWER_GRACE_S = 1.0


class Node:
    """A store replicating with its peers; see the module docstring.

    ``db`` is the store's file (created if missing). The node proves who it is with
    ``certificate`` (a :class:`~memrepl.mesh.identity.NodeCertificate` for ``node_id``, from
    the cluster CA; ``revocation_list`` names the file of revoked nodes, reloaded while
    running) or with ``key``, the cluster's shared key (at least 32 bytes once surrounding
    whitespace is stripped, the same on every node; ``open("cluster.key", "rb").read()`` and
    ``--key-file cluster.key`` give the same key). ``listen`` is where to accept peers (port 0:
    any free port, see :attr:`address`); ``peers`` maps the ids of peers to dial to ``(host,
    port)`` (peers that dial this node are synced with as well). ``mesh`` replaces the TCP mesh
    with any other :class:`Mesh` (then the credentials, ``listen``, ``peers`` and the TLS
    options are unused).
    ``control=True`` serves the control channel (``memrepl serve`` does); ``command`` says what
    runs the node, in the lock file and in the refusal another process gets.
    """

    def __init__(
        self,
        db: str | os.PathLike[str],
        *,
        node_id: str,
        key: bytes | None = None,
        certificate: NodeCertificate | None = None,
        revocation_list: str | os.PathLike[str] | None = None,
        listen: tuple[str, int] = ("127.0.0.1", 0),
        peers: Mapping[str, tuple[str, int]] | None = None,
        settings: NodeSettings | None = None,
        mesh_config: TcpMeshConfig | None = None,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        tls_server_hostname: str | None = None,
        synchronous: str | None = None,
        mesh: Mesh | None = None,
        control: bool = False,
        command: str = "an embedded Node",
    ) -> None:
        if mesh is None and key is None and certificate is None:
            raise NodeConfigError(
                "a node on a TCP mesh needs a node certificate or the cluster key", key="key_file"
            )
        self.db = db
        self.node_id = node_id
        self.settings = settings or NodeSettings()
        # Checked (and stripped) now, so a short key fails before anything is opened.
        self._key = None if key is None else cluster_key(key)
        self._certificate = certificate
        self._revocation_list = revocation_list
        self._listen = listen
        self._peers = dict(peers or {})
        self._mesh_config = mesh_config
        self._server_ssl = server_ssl
        self._client_ssl = client_ssl
        self._tls_server_hostname = tls_server_hostname
        self._synchronous = synchronous
        self._given_mesh = mesh
        #: Replication progress and counters (the manager's observer): status, metrics, logs.
        self.monitor = NodeMonitor(node_id, progress_interval_s=self.settings.progress_interval_s)
        self._store: Store | None = None
        self._mesh: Mesh | None = None
        self._link: NodeLink | None = None
        self._worker: StoreWorker | None = None
        self._manager: MemorySyncManager | None = None
        self._scheduler: Scheduler | None = None
        self._hooked: list[Any] = []
        self._state = "new"
        self._lock = NodeLock(db)
        self._command = command
        self._control: ControlServer | None = ControlServer(self) if control else None

    @classmethod
    def from_config(
        cls, config: NodeConfig, *, control: bool = False, command: str = "an embedded Node"
    ) -> Node:
        """The node ``memrepl serve`` runs for ``config`` (reads the key or certificate files;
        :func:`~memrepl.node.credentials.mesh_credentials` decides the mode)."""
        if config.node_id is None:
            raise NodeConfigError("no node id: pass --node-id or set node_id", key="node_id")
        credentials = mesh_credentials(config)
        return cls(
            config.db,
            node_id=config.node_id,
            key=credentials.shared_key,
            certificate=credentials.certificate,
            revocation_list=credentials.revocation_list,
            listen=config.listen,
            peers=config.peers,
            settings=config.settings,
            mesh_config=config.mesh,
            server_ssl=credentials.server_ssl,
            client_ssl=credentials.client_ssl,
            tls_server_hostname=config.tls_server_hostname,
            synchronous=config.synchronous,
            control=control,
            command=command,
        )

    # -- what a running node exposes -----------------------------------------------------------

    @property
    def store(self) -> Store:
        """The node's store (write through its tiers: the node sees every commit)."""
        if self._store is None:
            raise NodeStateError(f"node {self.node_id!r} is not started")
        return self._store

    @property
    def manager(self) -> MemorySyncManager:
        """The node's sync manager."""
        if self._manager is None:
            raise NodeStateError(f"node {self.node_id!r} is not started")
        return self._manager

    @property
    def mesh(self) -> Mesh:
        """The mesh (a TcpMesh unless another was given)."""
        if self._mesh is None:
            raise NodeStateError(f"node {self.node_id!r} is not started")
        return self._mesh

    @property
    def link(self) -> NodeLink:
        """The manager's view of the mesh, with the traffic counters."""
        if self._link is None:
            raise NodeStateError(f"node {self.node_id!r} is not started")
        return self._link

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the TCP mesh listens on (the bound port once started)."""
        mesh = self._mesh
        if isinstance(mesh, TcpMesh):
            return mesh.address
        return self._listen

    @property
    def running(self) -> bool:
        """Whether the node is started and not stopped."""
        return self._state == "running"

    def peers(self) -> list[str]:
        """The peers connected now."""
        return self.mesh.peers()

    @property
    def configured_peers(self) -> dict[str, tuple[str, int]]:
        """The peers this node dials, by id (a copy)."""
        return dict(self._peers)

    def mesh_stats(self) -> MeshStats | None:
        """The TCP mesh's counters (None on another mesh)."""
        mesh = self._mesh
        return mesh.stats() if isinstance(mesh, TcpMesh) else None

    def report(self, *, every_s: float = 0.0, stopped: bool = False) -> NodeReport:
        """Everything the node knows about its peers (:mod:`memrepl.node.report`)."""
        return gather(self, every_s=every_s, stopped=stopped)

    def status(self) -> list[PeerTierStatus]:
        """Per peer and tier: connected, last attempt, last success, last error, last result."""
        return self._require_scheduler().status()

    def antientropy_status(self) -> dict[str, Any]:
        """The last anti-entropy check with each peer and the last verification of this node's
        digests (:mod:`memrepl.node.repair`)."""
        repair = self._require_scheduler().repair
        return {
            "last_verified_ns": repair.last_verified_ns,
            "last_verify_corrected": repair.last_verify_corrected,
            "checks": [repair.last[peer].as_dict() for peer in sorted(repair.last)],
        }

    async def check_now(self, peer_id: str) -> CheckResult:
        """Verify this node's digests from its rows, then one anti-entropy check with
        ``peer_id`` (what ``memrepl sync`` does after its rounds)."""
        repair = self._require_scheduler().repair
        await repair.verify()
        result = await self.manager.check_peer(peer_id)
        repair.last[peer_id] = result
        return result

    async def sync_now(
        self, peers: Iterable[str] | None = None, tiers: Iterable[MemoryTier] | None = None
    ) -> list[SyncResult]:
        """One round now with each peer (default: the connected ones) for each tier."""
        return await self._require_scheduler().sync_now(peers, tiers)

    async def wait_for_peer(self, peer_id: str, timeout_s: float | None = None) -> None:
        """Wait until ``peer_id`` is connected; ``TimeoutError`` after ``timeout_s``."""
        mesh = self.mesh
        if isinstance(mesh, TcpMesh):
            await mesh.wait_for_peer(peer_id, timeout_s)
            return
        async with asyncio.timeout(timeout_s):
            while peer_id not in mesh.peers():
                await asyncio.sleep(0.01)

    def _require_scheduler(self) -> Scheduler:
        if self._scheduler is None:
            raise NodeStateError(f"node {self.node_id!r} is not started")
        return self._scheduler

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store, start the mesh and the scheduler.

        Raises :class:`~memrepl.errors.StoreInUseError` if another node process runs on the
        store, what :func:`memrepl.open` raises (StoreError...), MeshError, or OSError when the
        address cannot be bound; on error everything opened so far is closed again.
        """
        if self._state != "new":
            raise NodeStateError(f"node {self.node_id!r} was already started")
        self._state = "starting"
        try:
            self._lock.acquire(self._lock_info())
        except BaseException:
            self._state = "stopped"
            raise
        try:
            if self._synchronous is None:
                self._store = memrepl.open(self.db, node_id=self.node_id)
            else:
                self._store = memrepl.open(
                    self.db, node_id=self.node_id, synchronous=self._synchronous
                )
            await self._start_parts(self._store)
        except BaseException:
            await self._close_parts()
            self._state = "stopped"
            raise
        self._state = "running"
        log.info("node %s started", self.node_id)

    def _lock_info(self) -> LockInfo:
        address = None
        if isinstance(self._mesh, TcpMesh):
            host, port = self._mesh.address
            address = f"{host}:{port}"
        control = self._control.path if self._control is not None else None
        return LockInfo(
            pid=os.getpid(),
            node_id=self.node_id,
            command=self._command,
            address=address,
            control=None if control is None else os.fspath(control),
        )

    async def _start_parts(self, store: Store) -> None:
        settings = self.settings
        if self._given_mesh is not None:
            self._mesh = self._given_mesh
        else:
            host, port = self._listen
            self._mesh = TcpMesh(
                self.node_id,
                self._key,
                certificate=self._certificate,
                revocation_list=self._revocation_list,
                schema_revision=migrate.REPLICATION_REVISION,
                host=host,
                port=port,
                peers=self._peers,
                server_ssl=self._server_ssl,
                client_ssl=self._client_ssl,
                tls_server_hostname=self._tls_server_hostname,
                config=self._mesh_config,
            )
        self._link = NodeLink(self._mesh)
        self._worker = StoreWorker(f"memrepl-store-{self.node_id}")
        self._manager = NodeSyncManager(
            self.node_id,
            self._link,
            store_worker=self._worker,
            max_batch_items=settings.max_batch_items,
            ack_timeout_s=settings.ack_timeout_s,
            tombstone_grace_s=settings.tombstone_grace_s,
        )
        self._manager.observer = self.monitor
        for tier in MemoryTier:
            self._manager.register_memory_tier(tier, store.tier(tier))
        scheduler = self._scheduler = Scheduler(store, self._manager, self._link.peers, settings)
        self._link.on_replicate = scheduler.replicate_requested
        self._hook_commits(store, scheduler.wake)
        if isinstance(self._mesh, ServingMesh):
            await self._mesh.start()
        scheduler.start()
        if self._control is not None:
            await self._control.start()
        self._lock.update(self._lock_info())

    def _hook_commits(self, store: Store, wake: Callable[[], None]) -> None:
        """Chain ``wake`` after each tier's after-commit hook: this process's commits."""
        for tier in MemoryTier:
            memory = store.tier(tier)
            original = memory._after_commit

            def hooked(changed: Any, original: Callable[[Any], None] = original) -> None:
                original(changed)
                wake()

            # An instance attribute shadows the class's method; stop() removes it again.
            setattr(memory, "_after_commit", hooked)  # noqa: B010
            self._hooked.append(memory)

    async def stop(self) -> None:
        """Finish the batches in hand, stop the loops, close the mesh and the store (idempotent)."""
        if self._state in ("new", "stopped"):
            self._state = "stopped"
            return
        self._state = "stopped"
        log.info("node %s stopping", self.node_id)
        await self._close_parts()
        log.info("node %s stopped", self.node_id)

    async def _close_parts(self) -> None:
        if self._control is not None:
            await self._control.close()
        if self._link is not None:
            self._link.draining = True
        if self._manager is not None:
            self._manager.drain_answers(STOP_ANSWER_GRACE_S)
        if self._scheduler is not None:
            await self._scheduler.stop()
        if self._manager is not None:
            await _finish_manager_tasks(self._manager, self.settings.stop_timeout_s)
        if isinstance(self._mesh, ServingMesh):
            await self._mesh.close()
        if self._worker is not None:
            # The batch being committed finishes; nothing is left running on the store.
            await asyncio.to_thread(self._worker.close)
            self._worker = None
        for memory in self._hooked:
            vars(memory).pop("_after_commit", None)
        self._hooked.clear()
        if self._store is not None:
            self._store.close()
        self._store = self._manager = self._scheduler = None
        self._lock.release()

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"<Node {self.node_id!r} db={os.fspath(self.db)!r} {self._state}>"


async def _finish_manager_tasks(manager: MemorySyncManager, timeout_s: float) -> None:
    """Await the manager's own background rounds (snapshots it answers REPLICATE with).

    The manager offers no public way to wait for them yet, so this reads its task set; with the
    link draining, each ends after the batch in hand.
    """
    tasks: set[asyncio.Task[SyncResult]] = set(getattr(manager, "_background", set()))
    if not tasks:
        return
    _, late = await asyncio.wait(tasks, timeout=timeout_s)
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
