"""The cluster's certificates: creating a CA, issuing node certificates, reading a node id back.

Everything cryptographic here is the ``cryptography`` package's X.509 builder and its keys; this
module only decides what goes into a certificate and where the files go:

- **The CA** is a self-signed certificate (``CA:TRUE``, path length 0, key usage
  ``keyCertSign``/``cRLSign``) with an ECDSA P-256 key, valid :data:`CA_DAYS` days.
- **A node certificate** is signed by the CA for ONE node id, valid :data:`NODE_DAYS` days, with
  ``CA:FALSE``, key usage ``digitalSignature`` and extended key usage ``serverAuth`` +
  ``clientAuth`` (a node both listens and dials). The node id is its subject alternative name
  ``memrepl://node/<id>`` (the id percent-encoded, so any id fits a URI) and, for humans, its
  subject common name.

The rule that keeps it right: **a certificate's node id is read from its URI alone**
(:func:`node_id_of`): exactly one ``memrepl://node/`` URI, or the certificate names no node. The
common name is never trusted: CA tooling fills it freely, the URI is ours.

Files (PEM): ``ca.crt`` and ``ca.key`` in the CA directory; ``node.crt``, ``node.key`` and a copy of
``ca.crt`` in a node's directory (what ``--certs-dir`` reads). Private keys are written with mode
0600 and never overwritten.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from memrepl.errors import CertificateError

__all__ = [
    "CA_CERT",
    "CA_DAYS",
    "CA_KEY",
    "NODE_CERT",
    "NODE_DAYS",
    "NODE_KEY",
    "NODE_URI_PREFIX",
    "CertificateInfo",
    "create_ca",
    "describe",
    "issue_node",
    "load_certificate",
    "node_id_of",
    "node_uri",
]

#: A node certificate's subject alternative name is this prefix followed by the quoted node id.
NODE_URI_PREFIX = "memrepl://node/"
CA_CERT, CA_KEY = "ca.crt", "ca.key"
NODE_CERT, NODE_KEY = "node.crt", "node.key"
#: Default lifetimes (CockroachDB's are 10 and 5 years too).
CA_DAYS = 3650
NODE_DAYS = 1825
#: Certificates are valid from this long before they are made: clocks differ between machines.
BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class CertificateInfo:
    """What an operator needs to know about one certificate (``memrepl cert show``)."""

    node_id: str | None
    subject: str
    issuer: str
    #: The serial number as lower-case hex, the form a revocation list uses (``serial:HEX``).
    serial: str
    #: SHA-256 of the DER encoding, lower-case hex.
    fingerprint: str
    not_before: datetime.datetime
    not_after: datetime.datetime
    is_ca: bool


def node_uri(node_id: str) -> str:
    """The SAN URI that names ``node_id``."""
    return NODE_URI_PREFIX + quote(node_id, safe="")


def node_id_of(cert: x509.Certificate) -> str | None:
    """The node id ``cert`` names (its one ``memrepl://node/`` URI), or None if it names none.

    Raises :class:`CertificateError` for a certificate naming two or more nodes, or a node id
    whose percent-encoding is not UTF-8.
    """
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    try:
        found = [
            unquote(uri[len(NODE_URI_PREFIX) :], errors="strict")
            for uri in names.get_values_for_type(x509.UniformResourceIdentifier)
            if uri.startswith(NODE_URI_PREFIX)
        ]
    except UnicodeDecodeError as exc:
        raise CertificateError(
            f"the certificate's node URI is not UTF-8 once decoded: {exc}"
        ) from exc
    if len(found) > 1:
        raise CertificateError(f"the certificate names {len(found)} memrepl nodes: {found}")
    return found[0] if found and found[0] else None


def serial_hex(cert: x509.Certificate) -> str:
    """The serial number as lower-case hex without leading zeros."""
    return format(cert.serial_number, "x")


def describe(cert: x509.Certificate) -> CertificateInfo:
    """The :class:`CertificateInfo` of ``cert``."""
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    return CertificateInfo(
        node_id=node_id_of(cert),
        subject=cert.subject.rfc4514_string(),
        issuer=cert.issuer.rfc4514_string(),
        serial=serial_hex(cert),
        fingerprint=cert.fingerprint(hashes.SHA256()).hex(),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        is_ca=is_ca,
    )


def load_certificate(path: Path) -> x509.Certificate:
    """The first certificate of a PEM file; :class:`CertificateError` if there is none."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"cannot read the certificate {str(path)!r}: {exc}") from exc
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise CertificateError(f"{str(path)!r} is not a PEM certificate: {exc}") from exc


def _exists_error(path: Path) -> CertificateError:
    return CertificateError(
        f"{str(path)!r} exists already: memrepl never overwrites keys or certificates "
        "(move it away first)"
    )


def _refuse_existing(*paths: Path) -> None:
    """Refuse before writing anything when one of ``paths`` exists."""
    for path in paths:
        if path.exists():
            raise _exists_error(path)


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` (never overwriting), holding ``data``."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise _exists_error(path) from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def create_ca(out: Path, *, name: str = "memrepl cluster CA", days: int = CA_DAYS) -> Path:
    """Create a CA in directory ``out`` (made if missing): ``ca.crt`` and ``ca.key`` (0600).

    Returns the certificate's path. Raises :class:`CertificateError` if either file exists.
    """
    if days < 1:
        raise CertificateError(f"a CA must be valid for at least 1 day, not {days}")
    out.mkdir(parents=True, exist_ok=True)
    _refuse_existing(out / CA_CERT, out / CA_KEY)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_new(out / CA_KEY, _pem_key(key), 0o600)
    _write_new(out / CA_CERT, _pem_cert(cert), 0o644)
    return out / CA_CERT


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = load_certificate(ca_dir / CA_CERT)
    try:
        key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), password=None)
    except OSError as exc:
        raise CertificateError(f"cannot read the CA key {str(ca_dir / CA_KEY)!r}: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise CertificateError(f"{str(ca_dir / CA_KEY)!r} is not a usable key: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise CertificateError(f"{str(ca_dir / CA_KEY)!r} is not the key of {CA_CERT}")
    return cert, key


def check_node_id(node_id: str) -> None:
    """Refuse node ids a certificate or a revocation list line could not carry intact."""
    if (
        not node_id
        or node_id != node_id.strip()
        or not node_id.isprintable()
        or len(node_id.encode("utf-8")) > 255
    ):
        raise CertificateError(
            f"node id {node_id!r} cannot go into a certificate: it must be 1..255 bytes of "
            "printable text without surrounding spaces"
        )


def issue_node(ca_dir: Path, node_id: str, out: Path, *, days: int = NODE_DAYS) -> CertificateInfo:
    """Issue ``node_id`` a key and a certificate signed by the CA in ``ca_dir``.

    Writes ``node.key`` (0600), ``node.crt`` and a copy of ``ca.crt`` into ``out`` (made if
    missing). Raises :class:`CertificateError` for a bad node id, an unreadable CA, or files that
    exist already (nothing is written then).
    """
    check_node_id(node_id)
    if days < 1:
        raise CertificateError(f"a certificate must be valid for at least 1 day, not {days}")
    ca_cert, ca_key = _load_ca(ca_dir)
    out.mkdir(parents=True, exist_ok=True)
    _refuse_existing(out / NODE_CERT, out / NODE_KEY)
    same_ca = out / CA_CERT
    if same_ca.exists() and same_ca.read_bytes() != _pem_cert(ca_cert):
        raise CertificateError(f"{str(same_ca)!r} exists and is another CA's certificate")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    not_after = min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc)
    ca_public = ca_cert.public_key()
    assert isinstance(ca_public, ec.EllipticCurvePublicKey)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_id[:64])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(node_uri(node_id))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_new(out / NODE_KEY, _pem_key(key), 0o600)
    _write_new(out / NODE_CERT, _pem_cert(cert), 0o644)
    if not same_ca.exists():
        _write_new(same_ca, _pem_cert(ca_cert), 0o644)
    return describe(cert)
