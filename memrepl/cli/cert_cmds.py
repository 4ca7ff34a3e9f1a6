"""``memrepl ca create`` and ``memrepl cert issue|show``: the cluster CA and node certificates.

In the spirit of CockroachDB's ``cert create-ca`` / ``cert create-node``: the CA is made once,
kept offline, and signs one certificate per node; a node's directory (``node.crt``, ``node.key``,
``ca.crt``) is what ``memrepl serve --certs-dir`` reads. What goes into the certificates is
:mod:`memrepl.mesh.certs`'s to decide; this module only parses flags and prints.

The rule that keeps it right: nothing is ever overwritten -- an existing key or certificate stops
the command before it writes anything (:class:`~memrepl.errors.CertificateError`).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict
from pathlib import Path

from memrepl.cli.context import Subparsers, add_command, add_json_flag
from memrepl.cli.output import emit, emit_json
from memrepl.errors import UsageError

ORDER = 72


def run_ca_create(args: argparse.Namespace) -> int:
    from memrepl.mesh import certs

    cert = certs.create_ca(args.out, name=args.name, days=args.days or certs.CA_DAYS)
    info = certs.describe(certs.load_certificate(cert))
    emit(f"created the cluster CA in {args.out}/ (valid until {info.not_after:%Y-%m-%d})")
    emit(f"  {certs.CA_CERT}  give a copy to every node ('memrepl cert issue' does)")
    emit(f"  {certs.CA_KEY}  keep it offline: whoever holds it can admit any node id")
    return 0


def run_cert_issue(args: argparse.Namespace) -> int:
    from memrepl.mesh import certs

    if not args.node_id:
        raise UsageError("cert issue needs --node-id ID")
    info = certs.issue_node(args.ca, args.node_id, args.out, days=args.days or certs.NODE_DAYS)
    emit(f"issued a certificate for {info.node_id!r} in {args.out}/")
    emit(f"  serial       {info.serial}")
    emit(f"  valid until  {info.not_after:%Y-%m-%d}")
    emit(f"  files        {certs.NODE_CERT}, {certs.NODE_KEY} (secret), {certs.CA_CERT}")
    emit(f"  run with     memrepl serve --certs-dir {args.out} ...")
    return 0


def run_cert_show(args: argparse.Namespace) -> int:
    from memrepl.mesh import certs

    info = certs.describe(certs.load_certificate(args.file))
    if args.json:
        emit_json(asdict(info))
        return 0
    rows = [
        ("node id", info.node_id or "(none: not a memrepl node certificate)"),
        ("subject", info.subject),
        ("issuer", info.issuer),
        ("serial", info.serial),
        ("sha256", info.fingerprint),
        ("valid from", f"{info.not_before:%Y-%m-%d %H:%M:%S} UTC"),
        ("valid until", f"{info.not_after:%Y-%m-%d %H:%M:%S} UTC"),
        ("CA", "yes" if info.is_ca else "no"),
    ]
    for name, value in rows:
        emit(f"{name:<12} {value}")
    return 0


def add_parsers(subparsers: Subparsers) -> None:
    """The ``ca`` group (``ca create``) and the ``cert`` group (``cert issue``, ``cert show``)."""
    ca = add_command(subparsers, "ca", help="the cluster's certificate authority")
    ca_commands: Subparsers = ca.add_subparsers(
        title="ca commands", dest="ca_command", metavar="CA_COMMAND", required=True
    )
    create = add_command(
        ca_commands,
        "create",
        help="create the cluster CA: ca.crt and ca.key (never overwrites)",
        run=run_ca_create,
    )
    create.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write")
    create.add_argument("--name", default="memrepl cluster CA", help="the CA's common name")
    create.add_argument("--days", type=int, help="validity in days (default: 10 years)")

    cert = add_command(subparsers, "cert", help="node certificates signed by the cluster CA")
    cert_commands: Subparsers = cert.add_subparsers(
        title="cert commands", dest="cert_command", metavar="CERT_COMMAND", required=True
    )
    issue = add_command(
        cert_commands,
        "issue",
        help="issue a node its key and certificate (node id in the certificate)",
        description=(
            "Issue --node-id a private key and a certificate signed by the CA in --ca, into "
            "--out:\nnode.crt, node.key (mode 0600) and a copy of ca.crt, what 'memrepl serve "
            "--certs-dir' reads.\nThe node id is the certificate's subject alternative name "
            "memrepl://node/ID. Never overwrites."
        ),
        run=run_cert_issue,
    )
    issue.add_argument("--ca", type=Path, required=True, metavar="DIR", help="the CA directory")
    issue.add_argument("--out", type=Path, required=True, metavar="DIR", help="where to write")
    issue.add_argument(
        "--days", type=int, help="validity in days (default: 5 years, at most the CA's)"
    )
    show = add_command(
        cert_commands,
        "show",
        help="print a certificate's node id, serial (for revocation lists) and validity",
        run=run_cert_show,
    )
    show.add_argument("file", type=Path, metavar="PEM", help="a certificate file")
    add_json_flag(show, "print one JSON object")
