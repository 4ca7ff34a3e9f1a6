"""What a node proves itself with, decided from its configuration: a node certificate or the
cluster's shared key (README, "Security: the trust model").

The rule that keeps it right: **exactly one mode, chosen by what the files are, refused when
ambiguous.** A certificate that names a memrepl node (``memrepl cert issue``), with its key and
the cluster CA, means certificate mode; a ``--key-file`` means shared-key mode (optionally inside
TLS with any certificate, as before). Both at once, or neither, is a :class:`NodeConfigError`
before anything is opened; so is a certificate for another node id than the store's.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from memrepl.errors import CertificateError
from memrepl.mesh.identity import NodeCertificate
from memrepl.node.config import NodeConfig, NodeConfigError

__all__ = ["MeshCredentials", "certificate_node_id", "mesh_credentials", "tls_contexts"]


def tls_contexts(cert: Path, key: Path, ca: Path | None) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Shared-key mode's optional TLS: ``(server, client)`` contexts from a certificate, its key
    and an optional CA bundle.

    With ``ca``, each side also requires and verifies the other's certificate (mutual TLS).
    Raises NodeConfigError for files that cannot be loaded.
    """
    try:
        server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server.load_cert_chain(cert, key)
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca)
        client.load_cert_chain(cert, key)
        if ca is not None:
            server.load_verify_locations(ca)
            server.verify_mode = ssl.CERT_REQUIRED
    except (OSError, ssl.SSLError) as exc:
        raise NodeConfigError(f"loading TLS files: {exc}", key="tls_cert") from exc
    return server, client


@dataclass(frozen=True, slots=True)
class MeshCredentials:
    """The arguments of a node's TcpMesh that say how it authenticates."""

    shared_key: bytes | None = None
    certificate: NodeCertificate | None = None
    revocation_list: Path | None = None
    server_ssl: ssl.SSLContext | None = None
    client_ssl: ssl.SSLContext | None = None


def certificate_node_id(config: NodeConfig) -> str | None:
    """The node id ``config``'s certificate names, or None (no certificate, or not a memrepl
    node certificate). Raises NodeConfigError for a certificate file that cannot be read."""
    if config.tls_cert is None:
        return None
    from memrepl.mesh import certs  # only certificate users pay for the x509 import

    try:
        return certs.node_id_of(certs.load_certificate(config.tls_cert))
    except CertificateError as exc:
        raise NodeConfigError(str(exc), key="tls_cert") from exc


def mesh_credentials(config: NodeConfig) -> MeshCredentials:
    """Decide the mode and load its files (see the module docstring)."""
    if (config.tls_cert is None) != (config.tls_key is None):
        raise NodeConfigError("TLS needs both --tls-cert and --tls-key", key="tls_cert")
    certified = certificate_node_id(config)
    if certified is None:
        if config.key_file is None:
            raise NodeConfigError(
                "no credentials: pass --certs-dir DIR (a node certificate from "
                "'memrepl cert issue') or --key-file PATH (the cluster's shared key)",
                key="key_file",
            )
        if config.revocation_list is not None:
            raise NodeConfigError(
                "--revocation-list needs certificate mode: with a shared key every key holder "
                "can claim any node id, so revoking one would stop no one",
                key="revocation_list",
            )
        server_ssl = client_ssl = None
        if config.tls_cert is not None and config.tls_key is not None:
            server_ssl, client_ssl = tls_contexts(config.tls_cert, config.tls_key, config.tls_ca)
        return MeshCredentials(
            shared_key=config.shared_key(), server_ssl=server_ssl, client_ssl=client_ssl
        )
    if config.key_file is not None:
        raise NodeConfigError(
            f"both a node certificate ({str(config.tls_cert)!r}) and --key-file were given: "
            "choose certificate mode or shared-key mode",
            key="key_file",
        )
    if config.tls_ca is None:
        raise NodeConfigError(
            "certificate mode needs the cluster CA: --certs-dir DIR or --tls-ca PEM", key="tls_ca"
        )
    if config.node_id is not None and config.node_id != certified:
        raise NodeConfigError(
            f"the certificate {str(config.tls_cert)!r} is for node {certified!r}, but this node "
            f"is {config.node_id!r}",
            key="tls_cert",
        )
    assert config.tls_cert is not None and config.tls_key is not None
    try:
        certificate = NodeCertificate.load(config.tls_cert, config.tls_key, config.tls_ca)
    except CertificateError as exc:
        raise NodeConfigError(str(exc), key="tls_cert") from exc
    return MeshCredentials(certificate=certificate, revocation_list=config.revocation_list)
