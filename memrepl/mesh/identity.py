"""How a node proves who it is on the mesh: its credentials in each mode, and the identity a
peer proved.

Two modes (README, "Security: the trust model"):

- **Certificate mode** (:class:`NodeCertificate`): mutual TLS 1.3 with the cluster CA. Each node
  holds a certificate naming its node id (:mod:`memrepl.mesh.certs`) and its private key; both
  ends of every connection must present one signed by the CA. The node id a peer is known by is
  the one in its certificate (:func:`peer_identity`), never only the one it claims.
- **Shared-key mode** (:class:`SharedKey`): every node holds the same secret of at least
  :data:`MIN_KEY_BYTES`; the handshake proves knowledge of it (:mod:`memrepl.mesh.auth`), not who
  the holder is.

The rule that keeps it right: **a certificate-mode context verifies the chain against the
cluster CA alone** (no system roots), requires a certificate from the other side in both
directions, and skips host name checks, because what is checked is the node id, against the
peer that was dialled or the id the dialler claims.
"""

from __future__ import annotations

import datetime
import hashlib
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from memrepl.errors import CertificateError, ClusterKeyError, MeshError
from memrepl.mesh.revocation import PeerIdentity

if TYPE_CHECKING:
    from cryptography import x509

__all__ = [
    "KEY_WHITESPACE",
    "MIN_KEY_BYTES",
    "Credentials",
    "NodeCertificate",
    "SharedKey",
    "choose_credentials",
    "cluster_key",
    "peer_identity",
]

#: A shared key shorter than this (after stripping surrounding whitespace) is refused: 32 bytes
#: is what ``openssl rand 32`` gives; ``openssl rand -hex 32`` gives 64 characters.
MIN_KEY_BYTES = 32
#: What is stripped from both ends of a key, given as bytes or read from a file.
KEY_WHITESPACE = b" \t\r\n"


def cluster_key(raw: bytes, *, source: str = "the cluster key") -> bytes:
    """The shared key as the mesh uses it: ``raw`` without surrounding whitespace.

    The same for a key file and for bytes given to the API (``open(path, "rb").read()``), so a
    trailing newline never makes two nodes disagree. Raises :class:`ClusterKeyError` for a key
    shorter than :data:`MIN_KEY_BYTES`.
    """
    if not isinstance(raw, bytes | bytearray):
        raise ClusterKeyError(f"{source} must be bytes", size=0, minimum=MIN_KEY_BYTES)
    key = bytes(raw).strip(KEY_WHITESPACE)
    if len(key) < MIN_KEY_BYTES:
        raise ClusterKeyError(
            f"{source} holds {len(key)} bytes; a cluster key needs at least {MIN_KEY_BYTES} "
            "random bytes (e.g. 'openssl rand -hex 32 > cluster.key')",
            size=len(key),
            minimum=MIN_KEY_BYTES,
        )
    return key


@dataclass(frozen=True, slots=True)
class SharedKey:
    """Shared-key mode: the cluster's key (already checked by :func:`cluster_key`)."""

    key: bytes

    @property
    def mode(self) -> str:
        return "shared-key"


@dataclass(frozen=True, slots=True)
class NodeCertificate:
    """Certificate mode: this node's certificate and key, the cluster CA, and the TLS contexts
    built from them. Build with :meth:`load`."""

    node_id: str
    serial: str
    cert: Path
    key: Path
    ca: Path
    server_ssl: ssl.SSLContext
    client_ssl: ssl.SSLContext

    @property
    def mode(self) -> str:
        return "certificate"

    @classmethod
    def load(cls, cert: Path, key: Path, ca: Path) -> NodeCertificate:
        """Load and check the files. Raises :class:`CertificateError` if they cannot be loaded,
        if the certificate names no memrepl node, if the CA did not sign it, or if either is
        expired or not valid yet."""
        from cryptography.exceptions import InvalidSignature

        from memrepl.mesh import certs  # the x509 parser is only needed in this mode

        own = certs.load_certificate(cert)
        node_id = certs.node_id_of(own)
        if node_id is None:
            raise CertificateError(
                f"{str(cert)!r} names no memrepl node (no {certs.NODE_URI_PREFIX}ID name): "
                "issue one with 'memrepl cert issue'"
            )
        authority = certs.load_certificate(ca)
        try:
            own.verify_directly_issued_by(authority)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise CertificateError(
                f"{str(cert)!r} was not issued by the CA in {str(ca)!r}"
                + (f": {exc}" if str(exc) else " (its signature does not verify)")
            ) from exc
        # Every peer would refuse a certificate outside its validity, with the reason in ITS
        # log only: say so here, before the node starts and runs cut off from everyone.
        for what, path, checked in (("certificate", cert, own), ("CA certificate", ca, authority)):
            _check_validity(what, path, checked)
        try:
            server = _context(ssl.PROTOCOL_TLS_SERVER, cert, key, ca)
            client = _context(ssl.PROTOCOL_TLS_CLIENT, cert, key, ca)
        except (OSError, ssl.SSLError) as exc:
            raise CertificateError(f"loading the TLS files of {node_id!r}: {exc}") from exc
        return cls(node_id, certs.serial_hex(own), cert, key, ca, server, client)


def _check_validity(what: str, path: Path, cert: x509.Certificate) -> None:
    """Refuse a certificate this node cannot use now: expired, or not valid yet."""
    now = datetime.datetime.now(datetime.UTC)
    after, before = cert.not_valid_after_utc, cert.not_valid_before_utc
    if now > after:
        raise CertificateError(
            f"the {what} {str(path)!r} expired on {after:%Y-%m-%d %H:%M} UTC: every peer would "
            "refuse it (issue a new one with 'memrepl cert issue')"
        )
    if now < before:
        raise CertificateError(
            f"the {what} {str(path)!r} is valid only from {before:%Y-%m-%d %H:%M} UTC: every "
            "peer would refuse it (is this machine's clock right?)"
        )


def _context(protocol: int, cert: Path, key: Path, ca: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(protocol)
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.check_hostname = False  # the node id is checked instead (module docstring)
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.load_verify_locations(cafile=ca)
    context.load_cert_chain(cert, key)
    return context


Credentials = SharedKey | NodeCertificate


def peer_identity(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> PeerIdentity:
    """The identity the peer's verified certificate proves.

    Raises :class:`CertificateError` when there is no TLS, no certificate, or a certificate that
    names no memrepl node.
    """
    from cryptography import x509

    from memrepl.mesh import certs

    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        raise CertificateError("the peer presented no certificate")
    cert = x509.load_der_x509_certificate(der)
    node_id = certs.node_id_of(cert)
    if node_id is None:
        raise CertificateError(
            f"the peer's certificate ({cert.subject.rfc4514_string()}) names no memrepl node"
        )
    return PeerIdentity(node_id, certs.serial_hex(cert), hashlib.sha256(der).hexdigest())


def choose_credentials(
    node_id: str,
    shared_key: bytes | None,
    certificate: NodeCertificate | None,
    server_ssl: ssl.SSLContext | None,
    client_ssl: ssl.SSLContext | None,
) -> Credentials:
    """A mesh's credentials: exactly one mode, checked.

    Raises :class:`MeshError` (neither or both modes; TLS contexts given in certificate mode),
    :class:`ClusterKeyError`, or :class:`CertificateError` (a certificate for another node).
    """
    if (shared_key is None) == (certificate is None):
        raise MeshError("give the mesh a shared key or a node certificate (exactly one)")
    if certificate is None:
        assert shared_key is not None
        return SharedKey(cluster_key(shared_key))
    if certificate.node_id != node_id:
        raise CertificateError(
            f"the certificate {str(certificate.cert)!r} is for node {certificate.node_id!r}, "
            f"not {node_id!r}"
        )
    if server_ssl is not None or client_ssl is not None:
        raise MeshError(
            "certificate mode brings its own TLS contexts: pass no server_ssl/client_ssl"
        )
    return certificate
