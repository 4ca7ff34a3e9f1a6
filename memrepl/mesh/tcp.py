"""``TcpMesh``: the :class:`~memrepl.sync.transport.Mesh` interface between processes, over TCP.

Usage::

    mesh = TcpMesh("node-a", key, schema_revision=REPLICATION_REVISION, port=7400,
                   peers={"node-b": ("10.0.0.2", 7400)})
    manager = MemorySyncManager(node_id="node-a", mesh=mesh)
    async with mesh:
        await mesh.wait_for_peer("node-b", timeout_s=10)
        await manager.sync_with_peer("node-b", MemoryTier.WORKING)

A node proves who it is in one of two modes (:mod:`memrepl.mesh.identity`): with a node
certificate from the cluster CA (``certificate=``: mutual TLS, the node id is the certificate's;
a revocation list cuts revoked nodes off while running), or with the cluster's shared key
(``shared_key``: the HMAC handshake, then every frame sealed -- a sequence number and a MAC
after its header, an HMAC after its payload, :mod:`memrepl.mesh.auth`; TLS may wrap it for
encryption). Every new connection goes through the :class:`~memrepl.mesh.gate.Gate` (throttle,
TLS, certificate, revocation, handshake). Semantics, as in ``LocalMesh``:
``send`` only queues and never blocks; handlers get ``(data, peer_id)``, plain functions inline,
coroutines as tasks; a handler's exception is logged and the connection carries on.

The rules this module owns:

- **Peers.** ``peers()`` lists the peers with a live, authenticated connection. A peer is
  *known* if it is in the dial list (``peers=``/:meth:`add_peer`) or has connected to us. ``send``
  to an unknown peer raises :class:`~memrepl.errors.PeerUnavailableError`; to a known peer that is
  not connected it queues (bounded by ``max_queued_frames``/``max_queued_bytes``) for up to
  ``queue_while_down_s`` after the connection was lost (or after ``start()``), then raises
  ``PeerUnavailableError`` and drops that peer's queue, so the sync manager reports
  ``UNREACHABLE`` promptly instead of waiting out its ACK timeout. A full queue also raises it.
- **One connection per pair.** If both nodes dial each other, both keep the connection dialled
  by the smaller node id and retire the other gracefully (:mod:`memrepl.mesh.peers`).
- **Reconnect.** Each dialled peer has a task that redials whenever it is not connected, waiting
  :func:`~memrepl.mesh.config.backoff_delay_s` between attempts (exponential with jitter, from
  ``reconnect_base_s`` up to ``reconnect_cap_s``; back to the base after a connection that was
  up :data:`STABLE_CONNECTION_S`). So a connection lost to a network fault or a refused frame is
  redialled within a tenth of a second, and a peer that is down is tried about once a
  ``reconnect_cap_s``. A peer that only dials us is redialled by itself.
- **Shutdown.** :meth:`close` stops listening, says DISCONNECT ``shutdown`` on every connection,
  cancels every task it started (dialers, connections, handshakes in progress, coroutine handlers)
  and awaits them, and closes every socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import time
from collections.abc import Coroutine, Mapping
from types import TracebackType
from typing import Any

from memrepl.errors import MeshError, PeerUnavailableError
from memrepl.mesh.advice import UNREACHABLE
from memrepl.mesh.auth import MAX_NAME_BYTES
from memrepl.mesh.config import TcpMeshConfig, backoff_delay_s
from memrepl.mesh.connection import GOODBYE_TIMEOUT_S
from memrepl.mesh.dispatch import Handlers
from memrepl.mesh.framing import FaultCode, close_stream
from memrepl.mesh.gate import Gate, remote_of, tls_reason
from memrepl.mesh.identity import NodeCertificate, choose_credentials
from memrepl.mesh.peers import PeerState, PeerTable
from memrepl.mesh.revocation import RevocationWatcher
from memrepl.mesh.stats import Counters, MeshStats
from memrepl.protocol.enums import MessageTypes
from memrepl.sync.transport import Handler, LinkListener

__all__ = ["TcpMesh"]

log = logging.getLogger(__name__)

#: A dialled connection that was up at least this long is redialled at once when it ends; one
#: that ends sooner (a fault on every new connection, say) is redialled after a growing delay.
STABLE_CONNECTION_S = 5.0

#: Message types only the mesh itself sends.
_RESERVED = frozenset({MessageTypes.HANDSHAKE, MessageTypes.DISCONNECT})


class TcpMesh:
    """A node's endpoint on a TCP mesh; see the module docstring for its rules.

    Give ``shared_key`` (the cluster's secret, at least 32 bytes once surrounding whitespace is
    stripped; every node holds the same one) OR ``certificate`` (this node's
    :class:`~memrepl.mesh.identity.NodeCertificate`, whose node id must be ``node_id``; then
    ``revocation_list`` may name the file of revoked nodes, reloaded while running).
    ``schema_revision`` is the replication revision of the memrepl running
    (``memrepl.storage.migrate.REPLICATION_REVISION``, the newest migration that changed what
    nodes exchange; the name and the ``schema-mismatch`` refusal code predate it): nodes that
    differ refuse each other. ``host``/``port`` is where to listen
    (port 0 picks a free one; read :attr:`port` after :meth:`start`). ``peers`` maps peer ids to
    ``(host, port)`` to dial. In shared-key mode, ``server_ssl``/``client_ssl`` add TLS for
    listening and dialling (``tls_server_hostname`` overrides the name checked in the listener's
    certificate; default: the dialled host); certificate mode brings its own.

    Raises :class:`~memrepl.errors.MeshError` for a bad argument (its subclasses
    ``ClusterKeyError`` for a short key, ``CertificateError`` for a certificate of another node,
    ``RevocationListError`` for a list that cannot be read).
    """

    def __init__(
        self,
        node_id: str,
        shared_key: bytes | None = None,
        *,
        schema_revision: str,
        certificate: NodeCertificate | None = None,
        revocation_list: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        peers: Mapping[str, tuple[str, int]] | None = None,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        tls_server_hostname: str | None = None,
        config: TcpMeshConfig | None = None,
    ) -> None:
        _check_name("node_id", node_id)
        _check_name("schema_revision", schema_revision)
        credentials = choose_credentials(node_id, shared_key, certificate, server_ssl, client_ssl)
        if revocation_list is not None and certificate is None:
            raise MeshError(
                "a revocation list needs certificate mode: in shared-key mode every key holder "
                "can claim any node id, so revoking one id would stop no one"
            )
        self._node_id = node_id
        self._schema = schema_revision
        self.host = host
        self._port = port
        self.config = config or TcpMeshConfig()
        self._handlers = Handlers(node_id)
        self._totals = Counters()
        self._table = PeerTable(node_id, self.config, self._totals)
        self._gate = Gate(
            node_id,
            credentials,
            schema=schema_revision,
            config=self.config,
            table=self._table,
            totals=self._totals,
            revocations=None
            if revocation_list is None
            else RevocationWatcher.load(revocation_list),
            server_ssl=server_ssl,
            client_ssl=client_ssl,
            tls_server_hostname=tls_server_hostname,
        )
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._running = False
        self._closed = False
        for peer_id, address in (peers or {}).items():
            self.add_peer(peer_id, *address)

    # -- the Mesh interface --------------------------------------------------------------------

    @property
    def node_id(self) -> str:
        return self._node_id

    def send(self, peer_id: str, msg_type: MessageTypes, data: bytes) -> None:
        """Queue ``data`` for ``peer_id`` (never blocks; see the module docstring).

        Raises :class:`PeerUnavailableError` (unknown peer, down past ``queue_while_down_s``,
        queue full, mesh not running) or :class:`MeshError` (a type only the mesh may send, or a
        frame over ``max_frame_bytes``). Nothing is queued when it raises.
        """
        msg_type = MessageTypes(msg_type)
        if msg_type in _RESERVED:
            raise MeshError(f"send: {msg_type.name} frames are the mesh's own", peer_id=peer_id)
        data = bytes(data)
        if len(data) > self.config.max_frame_bytes:
            raise MeshError(
                f"send to {peer_id!r}: {len(data)} bytes exceed max_frame_bytes "
                f"{self.config.max_frame_bytes}",
                peer_id=peer_id,
            )
        peer = self._table.get(peer_id)
        if peer is None or not self._running:
            raise PeerUnavailableError(
                f"send to {peer_id!r}: no such peer on this mesh"
                if peer is None
                else f"send to {peer_id!r}: the mesh is not running",
                peer_id=peer_id,
            )
        if peer.connection is None:
            down_s = time.monotonic() - peer.down_since
            if down_s > self.config.queue_while_down_s:
                dropped = peer.outbox.clear()
                if dropped:
                    log.warning(
                        "dropped %d frames queued for unreachable peer %r", dropped, peer_id
                    )
                raise PeerUnavailableError(
                    f"send to {peer_id!r}: not connected for {down_s:.1f} s", peer_id=peer_id
                )
        if not peer.outbox.push(msg_type, data):
            raise PeerUnavailableError(
                f"send to {peer_id!r}: its outbox is full ({len(peer.outbox)} frames, "
                f"{peer.outbox.queued_bytes} bytes)",
                peer_id=peer_id,
            )

    def register_handler(self, msg_type: MessageTypes, handler: Handler) -> None:
        """Route every accepted frame of ``msg_type`` to ``handler(data, peer_id)``."""
        self._handlers.register(msg_type, handler)

    def peers(self) -> list[str]:
        """The peers with a live, authenticated connection, sorted."""
        return self._table.connected()

    def watch_links(self, listener: LinkListener) -> None:
        """Call ``listener(peer_id, up)`` when a peer's connection comes up (True) or the
        current one is lost (False); a connection replaced by a duplicate is not lost."""
        self._table.link_listeners.append(listener)

    # -- configuration and life cycle ----------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (the bound one after :meth:`start`, when given as 0)."""
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` listened on."""
        return self.host, self._port

    def add_peer(self, peer_id: str, host: str, port: int) -> None:
        """Dial ``peer_id`` at ``host:port`` (now if running, else from :meth:`start`).

        Updates the address of a known peer (the next dial uses it).
        """
        _check_name("peer_id", peer_id)
        if peer_id == self._node_id:
            raise MeshError(f"add_peer: {peer_id!r} is this node's own id", peer_id=peer_id)
        peer = self._table.ensure(peer_id)
        peer.address = (host, int(port))
        if self._running:
            self._start_dialer(peer)

    async def start(self) -> None:
        """Listen, and start dialling the known peers. Raises ``OSError`` if it cannot bind."""
        if self._closed:
            raise MeshError("a closed TcpMesh cannot be started again")
        if self._running:
            return
        # TLS, when used, starts inside the gate: a refused certificate is then counted, logged
        # and throttled like any other failed handshake.
        self._server = await asyncio.start_server(self._on_accept, self.host, self._port)
        sockets = self._server.sockets
        if sockets:
            self._port = int(sockets[0].getsockname()[1])
        self._running = True
        now = time.monotonic()
        for peer in self._table.all():
            peer.down_since = now
            self._start_dialer(peer)
        if self._gate.revocations is not None:
            self._spawn(self._watch_revocations(), "mesh-revocations")
        log.info(
            "mesh node %r listening on %s:%d (%s)",
            self._node_id,
            self.host,
            self._port,
            self._gate.mode,
        )

    async def close(self) -> None:
        """Stop everything the mesh started and close every socket (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self._running = False
        if self._server is not None:
            self._server.close()
        connections = [p.connection for p in self._table.all() if p.connection is not None]
        for conn in connections:
            conn.request_close(FaultCode.SHUTDOWN, "the node is shutting down")
        # Connections say goodbye inside their own tasks (bounded by GOODBYE_TIMEOUT_S); wait for
        # that, then cancel everything still running.
        for conn in connections:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2 * GOODBYE_TIMEOUT_S):
                    await conn.closed.wait()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._handlers.cancel_all()
        if self._server is not None:
            await self._server.wait_closed()
        log.info("mesh node %r closed", self._node_id)

    async def __aenter__(self) -> TcpMesh:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def is_connected(self, peer_id: str) -> bool:
        """Whether ``peer_id`` has a live, authenticated connection."""
        peer = self._table.get(peer_id)
        return peer is not None and peer.connection is not None

    async def wait_for_peer(self, peer_id: str, timeout_s: float | None = None) -> None:
        """Wait until ``peer_id`` is connected. Raises ``TimeoutError`` after ``timeout_s``.

        A peer waited for becomes known (``send`` queues for it, see the module docstring), so
        it must be a name a peer can have: :class:`MeshError` otherwise, or for this node's own.
        """
        _check_name("peer_id", peer_id)
        if peer_id == self._node_id:
            raise MeshError(f"wait_for_peer: {peer_id!r} is this node's own id", peer_id=peer_id)
        peer = self._table.ensure(peer_id)
        async with asyncio.timeout(timeout_s):
            while peer.connection is None:
                peer.changed.clear()
                await peer.changed.wait()

    def stats(self) -> MeshStats:
        """A snapshot of the counters, per peer and in total."""
        return MeshStats(
            node_id=self._node_id,
            host=self.host,
            port=self._port,
            total=self._totals.snapshot(),
            peers={peer.peer_id: peer.stats() for peer in self._table.all()},
            auth=self._gate.auth_stats(),
            strangers=self._table.strangers.snapshot(),
        )

    def check_revocations(self) -> int:
        """Reload the revocation list if it changed and cut off every connection it now
        revokes; the number cut off. (The mesh does this every ``revocation_poll_s``.)"""
        return self._gate.cut_revoked()

    # -- internals -----------------------------------------------------------------------------

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _start_dialer(self, peer: PeerState) -> None:
        if peer.dialer is None or peer.dialer.done():
            peer.dialer = self._spawn(self._dial_loop(peer), f"mesh-dial-{peer.peer_id}")

    def _deliver(
        self, msg_type: MessageTypes, data: bytes, peer_id: str
    ) -> asyncio.Future[None] | None:
        peer = self._table.get(peer_id)
        counters = (self._totals,) if peer is None else (self._totals, peer.counters)
        return self._handlers.deliver(msg_type, data, peer_id, counters)

    async def _watch_revocations(self) -> None:
        while self._running:
            await asyncio.sleep(self.config.revocation_poll_s)
            self.check_revocations()

    async def _on_accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        try:
            if not self._running:
                return
            accepted = await self._gate.accept(reader, writer)
            if accepted is not None and self._running:
                done, (reader, writer) = accepted
                if not self._gate.still_admitted(done, remote_of(writer)[1]):
                    return
                await self._table.serve(
                    done, reader, writer, dialled_by=done.peer_id, deliver=self._deliver
                )
        finally:
            await close_stream(writer)

    async def _dial_loop(self, peer: PeerState) -> None:
        attempt = 0
        config = self.config
        while self._running:
            if peer.connection is not None:
                peer.changed.clear()
                await peer.changed.wait()
                continue
            lasted_s = await self._dial_once(peer)
            if lasted_s is not None and lasted_s >= STABLE_CONNECTION_S:
                attempt = 0  # it was up a while: redial at once
            else:
                attempt += 1  # it failed, or failed again soon: wait longer each time
            if peer.connection is None:
                await asyncio.sleep(
                    backoff_delay_s(
                        attempt, base_s=config.reconnect_base_s, cap_s=config.reconnect_cap_s
                    )
                )

    async def _dial_once(self, peer: PeerState) -> float | None:
        """Dial ``peer`` and serve the connection until it ends; how long it was up (None: it
        never authenticated)."""
        assert peer.address is not None
        host, port = peer.address
        remote = f"{host}:{port}"
        config = self.config
        client_ssl = self._gate.client_ssl
        try:
            async with asyncio.timeout(config.connect_timeout_s):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    ssl=client_ssl,
                    server_hostname=(self._gate.tls_server_hostname or host)
                    if client_ssl
                    else None,
                    ssl_handshake_timeout=config.handshake_timeout_s if client_ssl else None,
                )
        except ssl.SSLError as exc:
            self._gate.failed(
                FaultCode.BAD_CERTIFICATE.value, tls_reason(exc), remote, peer.peer_id
            )
            return None
        except (OSError, TimeoutError) as exc:
            peer.counters.record_error(UNREACHABLE, f"connect to {remote}: {exc!r}")
            log.debug("cannot reach %r at %s: %r", peer.peer_id, remote, exc)
            return None
        try:
            done = await self._gate.secure_dialled(reader, writer, peer.peer_id, remote)
            if done is None or not self._gate.still_admitted(done, remote):
                return None
            started = time.monotonic()
            if self._running:
                await self._table.serve(
                    done, reader, writer, dialled_by=self._node_id, deliver=self._deliver
                )
            return time.monotonic() - started
        finally:
            await close_stream(writer)


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not 0 < len(value.encode("utf-8")) <= MAX_NAME_BYTES:
        raise MeshError(f"{what} must be a string of 1..{MAX_NAME_BYTES} bytes, not {value!r}")
