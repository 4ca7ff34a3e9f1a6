"""The CA and node certificates (made with ``cryptography``), the revocation list format, and
the per-address throttle: pure pieces, tested without sockets."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from memrepl.errors import CertificateError, RevocationListError
from memrepl.mesh import certs
from memrepl.mesh.identity import NodeCertificate
from memrepl.mesh.revocation import PeerIdentity, RevocationList
from memrepl.mesh.throttle import FailureThrottle, source_of


def test_a_node_certificate_names_its_node_and_is_signed_by_the_ca(tmp_path: Path) -> None:
    certs.create_ca(tmp_path / "ca")
    info = certs.issue_node(tmp_path / "ca", "node a/ü", tmp_path / "a")
    cert = certs.load_certificate(tmp_path / "a" / "node.crt")
    ca = certs.load_certificate(tmp_path / "ca" / "ca.crt")
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == [
        "memrepl://node/node%20a%2F%C3%BC"
    ]
    assert certs.node_id_of(cert) == info.node_id == "node a/ü"
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usages) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert certs.describe(ca).is_ca and certs.node_id_of(ca) is None
    assert info.serial == format(cert.serial_number, "x")
    assert (tmp_path / "a" / "ca.crt").read_bytes() == (tmp_path / "ca" / "ca.crt").read_bytes()
    for key in (tmp_path / "ca" / "ca.key", tmp_path / "a" / "node.key"):
        assert os.stat(key).st_mode & 0o777 == 0o600
    loaded = NodeCertificate.load(
        tmp_path / "a" / "node.crt", tmp_path / "a" / "node.key", tmp_path / "a" / "ca.crt"
    )
    assert (loaded.node_id, loaded.serial) == ("node a/ü", info.serial)


def test_nothing_is_overwritten_and_bad_input_is_refused(tmp_path: Path) -> None:
    certs.create_ca(tmp_path / "ca")
    ca_key = (tmp_path / "ca" / "ca.key").read_bytes()
    with pytest.raises(CertificateError, match="exists already"):
        certs.create_ca(tmp_path / "ca")
    assert (tmp_path / "ca" / "ca.key").read_bytes() == ca_key
    certs.issue_node(tmp_path / "ca", "a", tmp_path / "a")
    node_key = (tmp_path / "a" / "node.key").read_bytes()
    with pytest.raises(CertificateError, match="exists already"):
        certs.issue_node(tmp_path / "ca", "b", tmp_path / "a")
    assert (tmp_path / "a" / "node.key").read_bytes() == node_key
    for bad in ("", " a", "a\n", "x" * 256):
        with pytest.raises(CertificateError, match="cannot go into a certificate"):
            certs.issue_node(tmp_path / "ca", bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    with pytest.raises(CertificateError, match="cannot read the certificate"):
        certs.issue_node(tmp_path / "nowhere", "a", tmp_path / "c")


def test_a_certificate_from_another_ca_or_without_a_node_id_is_refused(tmp_path: Path) -> None:
    certs.create_ca(tmp_path / "ca")
    certs.create_ca(tmp_path / "other")
    certs.issue_node(tmp_path / "other", "a", tmp_path / "a")
    with pytest.raises(CertificateError, match="was not issued by the CA"):
        NodeCertificate.load(
            tmp_path / "a" / "node.crt", tmp_path / "a" / "node.key", tmp_path / "ca" / "ca.crt"
        )
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command for a certificate memrepl did not make")
    cert, key = tmp_path / "plain.crt", tmp_path / "plain.key"
    subprocess.run(
        [
            openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "1", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=a",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    assert certs.node_id_of(certs.load_certificate(cert)) is None  # the CN is never trusted
    with pytest.raises(CertificateError, match="names no memrepl node"):
        NodeCertificate.load(cert, key, cert)


def test_revocation_list_format() -> None:
    text = """
    # comments and blank lines are ignored

    node:node-c          # every certificate of node-c
    serial:00AB:cd       # one certificate, hex in any case, colons allowed
    node: spaced id
    """
    parsed = RevocationList.parse(text)
    assert parsed.node_ids == {"node-c", "spaced id"} and parsed.serials == {"abcd"}
    assert len(parsed) == 3
    assert parsed.reason(PeerIdentity("node-c", "1")) == "node 'node-c' is on the revocation list"
    assert "serial abcd" in (parsed.reason(PeerIdentity("node-d", "abcd")) or "")
    assert parsed.reason(PeerIdentity("node-d", "abce")) is None
    assert parsed.reason(PeerIdentity("spaced id")) is not None
    for bad, line in (("node-c", 1), ("node:a\nserial:xyz", 2), ("\n\nnode:", 3), ("id:a", 1)):
        with pytest.raises(RevocationListError) as caught:
            RevocationList.parse(bad)
        assert caught.value.line == line


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_throttle_locks_an_address_out_after_repeated_failures() -> None:
    clock = FakeClock()
    throttle = FailureThrottle(allowed=3, base_s=1.0, cap_s=8.0, max_pending=2, clock=clock)
    lockouts = []
    for _ in range(7):
        assert throttle.admit("10.0.0.1") is None
        lockouts.append(throttle.finished("10.0.0.1", ok=False))
        clock.now += 10  # past each lockout, short of forgetting the streak (10 * cap)
    assert lockouts == [0.0, 0.0, 1.0, 2.0, 4.0, 8.0, 8.0]  # doubling, capped
    assert throttle.admit("10.0.0.1") is None
    assert throttle.finished("10.0.0.1", ok=False) == 8.0
    assert "locked out" in (throttle.admit("10.0.0.1") or "")
    assert throttle.admit("10.0.0.2") is None  # per address
    clock.now += 8.0
    assert throttle.admit("10.0.0.1") is None
    assert throttle.finished("10.0.0.1", ok=True) == 0.0  # a success ends the streak
    assert throttle.admit("10.0.0.1") is None
    assert throttle.finished("10.0.0.1", ok=False) == 0.0


def test_the_throttle_bounds_parallel_handshakes_and_its_own_size() -> None:
    clock = FakeClock()
    throttle = FailureThrottle(
        allowed=3, base_s=1.0, cap_s=8.0, max_pending=2, max_addresses=100, clock=clock
    )
    assert throttle.admit("a") is None and throttle.admit("a") is None
    assert "in progress" in (throttle.admit("a") or "")
    throttle.finished("a", ok=True)
    assert throttle.admit("a") is None
    for n in range(1000):
        clock.now += 0.001
        if throttle.admit(f"10.1.{n // 256}.{n % 256}") is None:
            throttle.finished(f"10.1.{n // 256}.{n % 256}", ok=False)
    assert len(throttle) <= 101
    clock.now += 81  # a streak is forgotten 10 * cap after its last failure
    assert throttle.admit("10.1.3.231") is None


def test_the_throttle_bounds_the_handshakes_of_every_address_together() -> None:
    throttle = FailureThrottle(
        allowed=3, base_s=1.0, cap_s=8.0, max_pending=2, max_total_pending=5, clock=FakeClock()
    )
    for n in range(5):
        assert throttle.admit(f"10.2.0.{n}") is None
    assert "5 handshakes already in progress" in (throttle.admit("10.2.0.9") or "")
    throttle.finished("10.2.0.0", ok=False)
    assert throttle.pending == 4
    assert throttle.admit("10.2.0.9") is None


def test_the_throttle_counts_an_ipv6_host_by_its_64_prefix() -> None:
    # One host is routinely given a whole /64: per address, it could try 2**64 times as often.
    assert (
        source_of("2001:db8:1:2:aaaa::1")
        == source_of("2001:db8:1:2:ffff::9")
        == ("2001:db8:1:2::/64")
    )
    assert source_of("2001:db8:1:3::1") != source_of("2001:db8:1:2::1")
    assert source_of("fe80::1%eth0") == "fe80::/64"
    assert source_of("::ffff:10.0.0.7") == source_of("10.0.0.7") == "10.0.0.7"
    assert source_of("?") == "?"
    throttle = FailureThrottle(allowed=2, base_s=1.0, cap_s=8.0, max_pending=2, clock=FakeClock())
    for n in range(2):
        source = source_of(f"2001:db8::{n + 1:x}")
        assert throttle.admit(source) is None
        throttle.finished(source, ok=False)
    assert "locked out" in (throttle.admit(source_of("2001:db8::99")) or "")
