"""A self-signed TLS certificate for 127.0.0.1, made at test time (mesh and node TLS tests)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


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
