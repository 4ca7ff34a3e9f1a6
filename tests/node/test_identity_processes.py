"""Per-node identity with real ``memrepl serve`` processes: certificates made by ``memrepl ca
create`` / ``memrepl cert issue``, a revocation list edited while the nodes run, and what the
operator sees (logs, ``--status-file``, ``memrepl status``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import memrepl
from memrepl.cli.main import build_parser, main
from memrepl.cli.serve_cmds import build_config
from memrepl.mesh import certs
from memrepl.mesh.auth import HandshakeMessage, Hello, Refuse, decode_handshake, new_nonce
from memrepl.mesh.framing import read_frame
from memrepl.mesh.identity import NodeCertificate
from memrepl.protocol.enums import MessageTypes, SyncPriority
from memrepl.protocol.header import encode_frame
from memrepl.storage.migrate import REPLICATION_REVISION

from ..certs import ca_signer, signed, write_pair
from .helpers import Processes, converged, rows

FAST = ("--sync-interval", "0.5", "--high-delay", "0.1", "--ack-timeout", "5")
#: "Within seconds" of the list changing: a generous deadline, not a timing claim.
CUT_OFF_DEADLINE_S = 30.0


def memrepl_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memrepl", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def issue_all(directory: Path, *node_ids: str, ca: str = "ca") -> None:
    """``memrepl ca create`` then ``memrepl cert issue`` per node, as the README says."""
    done = memrepl_cli("ca", "create", "--out", directory / ca)
    assert done.returncode == 0, done.stderr
    for node_id in node_ids:
        out = directory / f"{ca}-{node_id}"
        done = memrepl_cli(
            "cert", "issue", "--ca", directory / ca, "--node-id", node_id, "--out", out
        )
        assert done.returncode == 0, done.stderr
        assert f"issued a certificate for {node_id!r}" in done.stdout


def certs_dir(directory: Path, node_id: str, ca: str = "ca") -> list[str]:
    return ["--certs-dir", str(directory / f"{ca}-{node_id}")]


def claim_as(port: int, certificate_dir: Path, claimed: str) -> HandshakeMessage:
    """Connect with the certificate in ``certificate_dir`` and say hello as ``claimed``; the
    daemon's answer."""

    async def exchange() -> HandshakeMessage:
        own = NodeCertificate.load(
            certificate_dir / "node.crt", certificate_dir / "node.key", certificate_dir / "ca.crt"
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=own.client_ssl)
        try:
            hello = Hello(claimed, REPLICATION_REVISION, new_nonce(), "certificate")
            writer.write(encode_frame(MessageTypes.HANDSHAKE, hello.encode()))
            frame = await read_frame(reader, max_payload=4096, idle_timeout_s=10)
            assert frame is not None
            return decode_handshake(frame.payload)
        finally:
            writer.close()
            with contextlib.suppress(OSError, TimeoutError):
                async with asyncio.timeout(5):
                    await writer.wait_closed()
            writer.transport.abort()  # whatever the TLS goodbye did: no socket left behind

    return asyncio.run(exchange())


def has_item(db: Path, tier: str, item_id: str) -> bool:
    return bool(rows(db, f"SELECT 1 FROM {tier}_items WHERE item_id = ?", item_id))


def test_a_certificate_cluster_converges_and_a_revoked_node_is_cut_off(
    processes: Processes,
) -> None:
    d = processes.directory
    issue_all(d, "node-a", "node-b", "node-c")
    revoked = d / "revoked.txt"
    revoked.write_text("# revoked nodes\n")
    status_file = d / "a-status.json"
    # Every node here dials from 127.0.0.1, and node-c's refused redials would lock that address
    # out (the throttle, tested on its own elsewhere): node-b must stay able to reconnect.
    (d / "a.toml").write_text("[mesh]\nauth_failures_allowed = 100000\n")
    a = processes.node(
        "node-a",
        *FAST,
        "--config",
        str(d / "a.toml"),
        "--status-file",
        str(status_file),
        "--revocation-list",
        str(revoked),
        auth=certs_dir(d, "node-a"),
    ).start()
    b = processes.node("node-b", *FAST, "--peer", a.address, auth=certs_dir(d, "node-b")).start()
    c = processes.node("node-c", *FAST, "--peer", a.address, auth=certs_dir(d, "node-c")).start()
    for node in (b, c):
        with memrepl.open(node.db, node_id=node.node_id) as store:
            store.working.add(f"{node.node_id}-w", {"by": node.node_id})
            store.episodic.add(f"{node.node_id}-e", {"episode_id": "x", "occurred_at_ns": 1})
    processes.wait(converged([a.db, b.db, c.db]), 30, "the three nodes converge")
    assert "(certificate)" in a.log_text()

    # Regression: an admitted node (c) claiming another's id (b) used to replace b's connection.
    answer = claim_as(a.port, d / "ca-node-c", "node-b")
    assert isinstance(answer, Refuse) and answer.code == "identity-mismatch", answer
    processes.wait(
        lambda: "failed: identity-mismatch" in a.log_text(), 10, "node-a logs the refusal"
    )
    assert "lost 'node-b'" not in a.log_text()  # b's connection was never touched

    revoked.write_text("# revoked nodes\nnode:node-c\n")  # no restart, no re-keying
    processes.wait(
        lambda: "cutting off peer 'node-c'" in a.log_text(),
        CUT_OFF_DEADLINE_S,
        "node-a cuts node-c off",
    )
    # node-c's later writes no longer reach node-a; node-b's still do.
    with memrepl.open(c.db, node_id="node-c") as store:
        store.working.add("c-after-cut", {"by": "node-c"}, priority=SyncPriority.URGENT)
    with memrepl.open(b.db, node_id="node-b") as store:
        store.working.add("b-after-cut", {"by": "node-b"}, priority=SyncPriority.URGENT)
    processes.wait(lambda: has_item(a.db, "working", "b-after-cut"), 30, "b's write reaches a")
    processes.wait(
        lambda: "failed: revoked" in c.log_text(), CUT_OFF_DEADLINE_S, "c's redials are refused"
    )
    assert not has_item(a.db, "working", "c-after-cut")
    assert "node 'node-c' is on the revocation list" in c.log_text()  # c is told why

    def revoked_in_status() -> bool:
        auth = json.loads(status_file.read_text()).get("auth") or {}
        return bool(auth.get("refused", {}).get("revoked"))

    processes.wait(revoked_in_status, 30, "the status file counts the revocation")
    shown = memrepl_cli("status", "--db", a.db, "--node-status", status_file)
    assert shown.returncode == 0, shown.stderr
    line = next(x for x in shown.stdout.splitlines() if x.startswith("authentication:"))
    assert line.startswith("authentication: certificate, ") and "revoked" in line
    assert "1 revoked" in line
    assert [a.stop(), b.stop(), c.stop()] == [0, 0, 0]


def test_only_admitted_certificates_connect_to_a_daemon(processes: Processes) -> None:
    d = processes.directory
    issue_all(d, "node-a", "node-s")
    issue_all(d, "node-d", ca="other-ca")
    (d / "a.toml").write_text("[mesh]\nauth_failures_allowed = 100000\n")  # see above
    a = processes.node(
        "node-a", *FAST, "--config", str(d / "a.toml"), auth=certs_dir(d, "node-a")
    ).start()
    with memrepl.open(a.db, node_id="node-a") as store:
        store.working.add("from-a", {"secret": True})

    # An admitted store syncs with `memrepl sync --certs-dir`.
    s_db = d / "s.db"
    with memrepl.open(s_db, node_id="node-s") as store:
        store.semantic.add("from-s", {"kind": "concept"})
    done = memrepl_cli("sync", "--db", s_db, "--peer", a.address, *certs_dir(d, "node-s"))
    assert done.returncode == 0, done.stdout + done.stderr
    processes.wait(lambda: has_item(a.db, "semantic", "from-s"), 10, "s's item on a")

    # A certificate from another CA, and a shared-key node, never get in.
    outsider = processes.node(
        "node-d", *FAST, "--peer", a.address, auth=certs_dir(d, "node-d", "other-ca")
    ).start()
    keyed = processes.node("node-k", *FAST, "--peer", a.address).start()  # --key-file

    def refused() -> int:
        # The report node-a keeps next to its store: the log says a repeated refusal once a
        # minute, the counts say every one.
        report = Path(f"{a.db}.status.json")
        auth = (json.loads(report.read_text()).get("auth") or {}) if report.exists() else {}
        return int((auth.get("refused") or {}).get("bad-certificate", 0))

    processes.wait(lambda: refused() >= 2, 30, "node-a refuses both")
    assert "failed: bad-certificate" in a.log_text()
    assert "connected to 'node-d'" not in a.log_text()
    assert "connected to 'node-k'" not in a.log_text()
    assert not has_item(outsider.db, "working", "from-a")
    assert not has_item(keyed.db, "working", "from-a")
    # node-d refuses node-a too: to it, the cluster CA is a stranger.
    assert "failed: bad-certificate: TLS handshake failed" in outsider.log_text()
    assert [a.stop(), outsider.stop(), keyed.stop()] == [0, 0, 0]


def test_serve_checks_its_credentials_before_opening_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    certs.create_ca(tmp_path / "ca")
    certs.issue_node(tmp_path / "ca", "node-b", tmp_path / "b")
    key = tmp_path / "cluster.key"
    key.write_text("0123456789abcdef" * 4 + "\n")
    db = tmp_path / "a.db"
    cases = [
        (["--node-id", "node-a", "--certs-dir", str(tmp_path / "b")], "is for node 'node-b'"),
        (
            ["--node-id", "node-a", "--certs-dir", str(tmp_path / "b"), "--key-file", str(key)],
            "choose certificate mode or shared-key mode",
        ),
        (
            ["--node-id", "node-a", "--key-file", str(key), "--revocation-list", str(key)],
            "--revocation-list needs certificate mode",
        ),
    ]
    for flags, message in cases:
        assert main(["serve", "--db", str(db), *flags]) == 1
        assert message in capsys.readouterr().err
        assert not db.exists()
    # Without --node-id, a new store takes the certificate's node id.
    args = build_parser().parse_args(["serve", "--db", str(db), "--certs-dir", str(tmp_path / "b")])
    assert build_config(args).node_id == "node-b"


def test_serve_refuses_a_certificate_no_peer_would_take(tmp_path: Path) -> None:
    """A node started with its certificate expired (or not valid yet) used to start and run cut
    off from everyone: its peers refused it with the reason in their logs, its own log said
    only 'connection lost during the handshake'. It now refuses to start, saying why."""
    certs.create_ca(tmp_path / "ca")
    ca = ca_signer(tmp_path / "ca")
    cases = {
        "expired": (signed(ca, "node-x", certs.node_uri("node-x"), days=-1), "expired on"),
        "not-yet": (
            signed(ca, "node-x", certs.node_uri("node-x"), days=30, from_days=3),
            "is valid only from",
        ),
    }
    for name, (leaf, message) in cases.items():
        out = tmp_path / name
        write_pair(out, leaf)
        shutil.copy(tmp_path / "ca" / certs.CA_CERT, out / certs.CA_CERT)
        db = tmp_path / f"{name}.db"
        done = memrepl_cli("serve", "--db", db, "--certs-dir", out, "--listen", "127.0.0.1:0")
        assert done.returncode == 1, done.stderr
        (line,) = done.stderr.splitlines()
        assert line.startswith("memrepl: error: the certificate ") and message in line, line
        assert not db.exists()
