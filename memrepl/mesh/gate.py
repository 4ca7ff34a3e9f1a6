"""The mesh's front door: every new connection, in or out, is authenticated here or dropped.

A :class:`Gate` holds what a node proves itself with (:mod:`memrepl.mesh.identity`), the
revocation list it enforces (:mod:`memrepl.mesh.revocation`) and the per-address throttle
(:mod:`memrepl.mesh.throttle`). :meth:`Gate.accept` and :meth:`Gate.secure_dialled` turn a raw
stream into an :class:`~memrepl.mesh.handshake.Established` connection, or return None after
counting, logging and (where it can) telling the peer why.

The order of the checks on an accepted connection is the rule that keeps it cheap to refuse:

1. the throttle (no TLS, no handshake for a locked-out address, nor beyond the node's limit of
   handshakes in progress);
2. TLS, done here rather than by the server socket so that a refused certificate is counted,
   logged and throttled like any other failed handshake;
3. certificate mode: the peer certificate's node id, then the revocation list;
4. the memrepl handshake (:mod:`memrepl.mesh.handshake`), which checks the claimed node id
   against the certificate, or the shared-key proof.

Every failure ends the same way: :meth:`Gate.failed` counts it under its code (per peer for a
known peer id, apart for strangers, in the totals always), logs one WARNING line naming the
address, the claimed id, the reason and what to do about it (repeats of the same failure once a
minute, with a count), and charges the address's throttle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import time
from collections.abc import Coroutine
from typing import Any

from memrepl.errors import CertificateError
from memrepl.mesh.advice import advice
from memrepl.mesh.config import TcpMeshConfig
from memrepl.mesh.framing import FaultCode, FrameFaultError
from memrepl.mesh.handshake import Established, HandshakeError, initiate, refuse, respond
from memrepl.mesh.identity import Credentials, NodeCertificate, peer_identity
from memrepl.mesh.peers import PeerTable
from memrepl.mesh.revocation import PeerIdentity, RevocationWatcher
from memrepl.mesh.stats import AuthStats, Counters
from memrepl.mesh.throttle import FailureThrottle, source_of

__all__ = ["Gate", "remote_of"]

log = logging.getLogger(__name__)

#: A handshake failing again the same way is logged at most this often (with a count).
FAULT_LOG_EVERY_S = 60.0
#: At most this many distinct failures are remembered for that; the oldest is forgotten first.
FAULT_LOG_ENTRIES = 256

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class Gate:
    """Authentication of new connections for one mesh node (see the module docstring)."""

    def __init__(
        self,
        node_id: str,
        credentials: Credentials,
        *,
        schema: str,
        config: TcpMeshConfig,
        table: PeerTable,
        totals: Counters,
        revocations: RevocationWatcher | None = None,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
        tls_server_hostname: str | None = None,
    ) -> None:
        self.node_id = node_id
        self.credentials = credentials
        self.schema = schema
        self.config = config
        self.table = table
        self.totals = totals
        self.revocations = revocations
        if isinstance(credentials, NodeCertificate):
            server_ssl, client_ssl = credentials.server_ssl, credentials.client_ssl
        #: TLS for accepted and dialled connections (None: plain TCP).
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.tls_server_hostname = tls_server_hostname
        #: The last refusal, as ``"code: reason"`` (for the stats).
        self.last_refusal: str | None = None
        # (peer, fault code) -> (when last logged, failures not logged since).
        self._fault_log: dict[tuple[str | None, str, str], tuple[float, int]] = {}
        self.throttle = FailureThrottle(
            allowed=config.auth_failures_allowed,
            base_s=config.auth_lockout_base_s,
            cap_s=config.auth_lockout_cap_s,
            max_pending=config.max_handshakes_per_address,
            max_total_pending=config.max_handshakes,
        )
        self._full_warned = -math.inf

    @property
    def mode(self) -> str:
        return self.credentials.mode

    def revoked(self, identity: PeerIdentity) -> str | None:
        """Why ``identity`` is revoked now, or None."""
        if self.revocations is None:
            return None
        return self.revocations.current.reason(identity)

    def failed(self, code: str, reason: str, remote: str, peer_id: str | None) -> None:
        """Count and log one failed handshake.

        A peer that keeps failing the same way is redialled every few seconds: the WARNING says
        it once with what to do about it (:func:`memrepl.mesh.advice.advice`), then once a
        minute with a count, not on every attempt. "The same way" is the same code and reason:
        a different reason is news and is logged at once. Strangers share entries whatever they
        claim, and the table keeps the latest :data:`FAULT_LOG_ENTRIES`, so no peer grows it.
        """
        text = f"{code}: {reason}"
        self.last_refusal = f"{text} ({remote})"
        self.table.record_handshake_failure(
            peer_id, code, f"{text} (with {remote}, claiming {peer_id!r})"
        )
        key = (peer_id if peer_id is not None and self.table.get(peer_id) else None, code, reason)
        now = time.monotonic()
        last, quiet = self._fault_log.get(key, (-math.inf, 0))
        if now - last < FAULT_LOG_EVERY_S:
            self._fault_log[key] = (last, quiet + 1)
            log.debug("handshake with %s (claims %r) failed again: %s", remote, peer_id, text)
            return
        self._fault_log.pop(key, None)
        if len(self._fault_log) >= FAULT_LOG_ENTRIES:
            del self._fault_log[next(iter(self._fault_log))]
        self._fault_log[key] = (now, 0)
        hint = advice(code)
        log.warning(
            "handshake with %s (claims %r) failed: %s%s%s",
            remote,
            peer_id,
            text,
            f" -- {hint}" if hint else "",
            f" ({quiet} more times since the last report)" if quiet else "",
            extra={
                "fields": {
                    "event": "handshake-failed",
                    "peer": peer_id,
                    "code": code,
                    "remote": remote,
                    "repeats": quiet,
                }
            },
        )

    def still_admitted(self, done: Established, remote: str) -> bool:
        """Check the revocation list once more as the connection is adopted: a list reloaded
        while this handshake ran (after its own check) must not let a revoked node in. The
        caller adopts the connection with no ``await`` in between."""
        reason = self.revoked(done.identity)
        if reason is None:
            return True
        self.failed(FaultCode.REVOKED.value, reason, remote, done.peer_id)
        return False

    def auth_stats(self) -> AuthStats:
        """The mode, the revocation list's state and the throttle's size."""
        watcher = self.revocations
        return AuthStats(
            mode=self.mode,
            revoked_entries=None if watcher is None else len(watcher.current),
            revocation_error=None if watcher is None else watcher.last_error,
            throttled_addresses=len(self.throttle),
            last_refusal=self.last_refusal,
        )

    def cut_revoked(self) -> int:
        """Reload the revocation list if it changed and cut off every current connection it now
        revokes (counted and logged under ``revoked``); the number cut off."""
        watcher = self.revocations
        if watcher is None or not watcher.poll():
            return 0
        log.info("revocation list reloaded: %d entries", len(watcher.current))
        cut = 0
        for peer in self.table.all():
            conn = peer.connection
            reason = None if conn is None else self.revoked(conn.identity)
            if conn is None or reason is None:
                continue
            cut += 1
            for counters in (peer.counters, self.totals):
                counters.refused[FaultCode.REVOKED.value] += 1
                counters.record_error(
                    FaultCode.REVOKED.value, f"{FaultCode.REVOKED.value}: {reason}"
                )
            self.last_refusal = f"{FaultCode.REVOKED.value}: {reason} (cut off)"
            log.warning("cutting off peer %r: %s", peer.peer_id, reason)
            conn.request_close(FaultCode.REVOKED, reason)
        return cut

    # -- accepted connections ------------------------------------------------------------------

    async def accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> tuple[Established, Streams] | None:
        """Authenticate an accepted connection; None if it was refused (the caller closes)."""
        address, remote = remote_of(writer)
        host = source_of(address)
        why = self.throttle.admit(host)
        if why is not None:
            self.totals.refused[FaultCode.THROTTLED.value] += 1
            self.last_refusal = f"{FaultCode.THROTTLED.value}: {why} ({remote})"
            log.debug("refused a connection from %s: throttled (%s)", remote, why)
            self._warn_if_full()
            if self.server_ssl is None:  # on a TLS port, plain text would only confuse it
                with contextlib.suppress(OSError, TimeoutError):
                    async with asyncio.timeout(1.0):
                        await refuse(
                            reader,
                            writer,
                            FaultCode.THROTTLED,
                            f"too many failed handshakes from {host}: {why}",
                            peer_id=None,
                            idle_timeout_s=1.0,
                            counters=self.totals,
                        )
            return None
        done = None
        try:
            done = await self._run(self._accepted(reader, writer), remote, None)
        finally:
            # Exactly once per admitted handshake; a lost or cancelled one counts as failed.
            lockout = self.throttle.finished(host, ok=done is not None)
            if lockout:
                log.warning(
                    "throttling %s: too many failed handshakes, its new connections are "
                    "refused for %.1f s",
                    host,
                    lockout,
                )
        return None if done is None else (done, (reader, writer))

    async def _accepted(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> Established:
        certified = None
        if self.server_ssl is not None:
            await writer.start_tls(
                self.server_ssl, ssl_handshake_timeout=self.config.handshake_timeout_s
            )
        if isinstance(self.credentials, NodeCertificate):
            certified = await self._certified(reader, writer)
        return await respond(
            reader,
            writer,
            node_id=self.node_id,
            credentials=self.credentials,
            certified=certified,
            schema=self.schema,
            idle_timeout_s=self.config.handshake_timeout_s,
            counters=self.totals,
        )

    def _warn_if_full(self) -> None:
        """Say (at most once a minute) that new connections are closed because the node's
        handshakes in progress are at their limit: honest peers cannot connect meanwhile."""
        throttle = self.throttle
        now = time.monotonic()
        if throttle.pending < throttle.max_total_pending or now < self._full_warned + 60.0:
            return
        self._full_warned = now
        log.warning(
            "%d handshakes in progress, the most this node runs at once (max_handshakes): new "
            "connections are closed until some end",
            throttle.pending,
        )

    # -- dialled connections -------------------------------------------------------------------

    async def secure_dialled(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer_id: str, remote: str
    ) -> Established | None:
        """Authenticate a connection this node dialled to ``peer_id`` (TLS is already up, when
        used); None if it was refused (the caller closes)."""
        return await self._run(self._dialled(reader, writer, peer_id), remote, peer_id)

    async def _dialled(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer_id: str
    ) -> Established:
        certified = None
        if isinstance(self.credentials, NodeCertificate):
            certified = await self._certified(reader, writer)
            if certified.node_id != peer_id:
                raise await self._refuse(
                    reader,
                    writer,
                    FaultCode.IDENTITY_MISMATCH,
                    f"dialled {peer_id!r}, but the listener's certificate (serial "
                    f"{certified.serial}) is for {certified.node_id!r}",
                    peer_id,
                )
        return await initiate(
            reader,
            writer,
            node_id=self.node_id,
            credentials=self.credentials,
            certified=certified,
            schema=self.schema,
            expected_peer=peer_id,
            idle_timeout_s=self.config.handshake_timeout_s,
            counters=self.totals,
        )

    # -- shared steps --------------------------------------------------------------------------

    async def _certified(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> PeerIdentity:
        """The identity of the peer's certificate, unless it is revoked."""
        try:
            identity = peer_identity(writer.get_extra_info("ssl_object"))
        except CertificateError as exc:
            refusal = await self._refuse(reader, writer, FaultCode.BAD_CERTIFICATE, str(exc), None)
            raise refusal from exc
        reason = self.revoked(identity)
        if reason is not None:
            raise await self._refuse(reader, writer, FaultCode.REVOKED, reason, identity.node_id)
        return identity

    async def _refuse(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        code: FaultCode,
        reason: str,
        peer_id: str | None,
    ) -> HandshakeError:
        return await refuse(
            reader,
            writer,
            code,
            reason,
            peer_id=peer_id,
            idle_timeout_s=self.config.handshake_timeout_s,
            counters=self.totals,
        )

    async def _run(
        self,
        exchange: Coroutine[Any, Any, Established],
        remote: str,
        peer_id: str | None,
    ) -> Established | None:
        """Run one side under the handshake timeout; None (counted, logged) if it fails."""
        try:
            async with asyncio.timeout(self.config.handshake_timeout_s):
                return await exchange
        except HandshakeError as exc:
            self.failed(exc.code, exc.reason, remote, exc.peer_id or peer_id)
        except FrameFaultError as exc:
            self.failed(exc.code, exc.reason, remote, peer_id)
        except TimeoutError:
            reason = "the handshake did not complete in time"
            self.failed(FaultCode.HANDSHAKE_TIMEOUT.value, reason, remote, peer_id)
        except ssl.SSLError as exc:
            self.failed(FaultCode.BAD_CERTIFICATE.value, tls_reason(exc), remote, peer_id)
        except (OSError, EOFError) as exc:
            log.info("connection with %s lost during the handshake: %r", remote, exc)
        return None


def tls_reason(exc: ssl.SSLError) -> str:
    """A one-line reason for a failed TLS handshake (OpenSSL's, without the noise)."""
    detail = getattr(exc, "verify_message", None) or exc.reason or str(exc)
    return f"TLS handshake failed: {detail}"


def remote_of(writer: asyncio.StreamWriter) -> tuple[str, str]:
    """``(host, "host:port")`` of the other end, or placeholders when unknown."""
    with contextlib.suppress(OSError, TypeError, ValueError):
        host, port = writer.get_extra_info("peername")[:2]
        return str(host), f"{host}:{port}"
    return "?", "an unknown address"
