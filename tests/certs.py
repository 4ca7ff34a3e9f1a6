"""Certificates made at test time: a self-signed one for 127.0.0.1 (TLS tests), and ones a
cluster CA -- or anything else -- signed as the test wants (certificate-mode attacks)."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from memrepl.mesh import certs


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost and its key, made with the ``openssl`` command.

    (The ``cryptography`` package is not a dependency of memrepl, so the command line tool is
    used; the calling test is skipped where it is missing.)
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("TLS test needs the openssl command to make a self-signed certificate")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


Signer = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def ca_signer(ca_dir: Path) -> Signer:
    """The certificate and key of the CA made in ``ca_dir`` (``memrepl ca create``)."""
    cert = certs.load_certificate(ca_dir / certs.CA_CERT)
    key = serialization.load_pem_private_key((ca_dir / certs.CA_KEY).read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return cert, key


def signed(
    signer: Signer,
    name: str,
    *uris: str,
    ca: bool = False,
    days: float = 1.0,
    from_days: float = -2.0,
) -> Signer:
    """A certificate ``signer`` signed, with these URIs as its names, and its key: what a careless
    CA operator, other tooling sharing the CA, or a node's own key might make. It is valid from
    ``from_days`` (from now, in days: before now when negative) to ``days``."""
    issuer, issuer_key = signer
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=from_days))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        usage = dict.fromkeys(
            ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
             "key_agreement", "encipher_only", "decipher_only"), False,
        )  # fmt: skip
        builder = builder.add_extension(
            x509.KeyUsage(key_cert_sign=True, crl_sign=True, **usage), critical=True
        )
    if uris:
        names = [x509.UniformResourceIdentifier(uri) for uri in uris]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def write_pair(out: Path, leaf: Signer, *chain: x509.Certificate) -> tuple[Path, Path]:
    """``out/node.crt`` (``leaf`` then ``chain``) and ``out/node.key``, as ``--certs-dir`` reads
    them (add a ``ca.crt``)."""
    out.mkdir(parents=True)
    pem = serialization.Encoding.PEM
    (out / "node.crt").write_bytes(b"".join(c.public_bytes(pem) for c in (leaf[0], *chain)))
    (out / "node.key").write_bytes(
        leaf[1].private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return out / "node.crt", out / "node.key"
