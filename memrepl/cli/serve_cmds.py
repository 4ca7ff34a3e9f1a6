"""``memrepl serve``: run a node -- the store, its sync manager, the TCP mesh and the scheduler.

Flags or a TOML file (``--config``, the same keys: :mod:`memrepl.node.config`) say where the
store is, where to listen, which peers to dial, the cluster key and the timings; flags win over
the file. Logs go to stderr (``logging.basicConfig`` happens here, never in the library). Once
the node listens, ONE line goes to stderr -- ``memrepl: listening on HOST:PORT as NODE`` -- and,
with ``--port-file``, the bound port is written to that file (atomically: a reader never sees a
partial number), so scripts can start nodes on port 0.

The rule that keeps it right: **SIGTERM and SIGINT stop the node cleanly** -- every round
finishes the batch in hand, the mesh says goodbye to its peers, the store is closed -- and the
command exits 0. A node never runs unauthenticated: it needs a node certificate
(``--certs-dir``) or the cluster key (``--key-file``). One node process per store: a second
``serve`` (or any node) on the same file exits 1 with one line naming the running one
(memrepl.node.lock); ``memrepl sync`` beside it asks it to do the round through its control
channel (memrepl.node.control).

``serve`` creates the store when it does not exist and ``--node-id`` is given, or a node
certificate names the node (a new node joins a cluster in one command); otherwise the store's own
node id is used.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memrepl.cli.context import (
    DEFAULT_DB,
    ENV_DB,
    STATUS_SUFFIX,
    Subparsers,
    add_command,
    default_status_file,
    read_stored_node_id,
)
from memrepl.errors import CommandError, UsageError

if TYPE_CHECKING:
    from memrepl.node import NodeConfig

# The node (and through it the mesh, the sync layer, SQLAlchemy) is imported by the functions
# that run it, never when the parser is built: other commands must not pay for it.

ORDER = 70

#: How often ``--status-file`` is rewritten.
STATUS_EVERY_S = 2.0


def peer_arg(text: str) -> tuple[str, tuple[str, int]]:
    """An argparse type for ``--peer ID=HOST:PORT``."""
    from memrepl.node.config import NodeConfigError, parse_peer

    try:
        return parse_peer(text)
    except NodeConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def address_arg(text: str) -> tuple[str, int]:
    """An argparse type for ``--listen HOST:PORT``."""
    from memrepl.node.config import NodeConfigError, parse_address

    try:
        return parse_address(text, what="listen address")
    except NodeConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_mesh_options(parser: argparse.ArgumentParser, *, revocation: bool = False) -> None:
    """The options ``serve`` and ``sync`` share: the certificate or the key, and TLS."""
    group = parser.add_argument_group(
        "security (certificate mode: --certs-dir; shared-key mode: --key-file)"
    )
    group.add_argument(
        "--certs-dir",
        type=Path,
        metavar="DIR",
        help="certificate mode: the directory 'memrepl cert issue --out DIR' wrote (node.crt, "
        "node.key, ca.crt); the node id is the certificate's",
    )
    if revocation:
        group.add_argument(
            "--revocation-list",
            type=Path,
            metavar="PATH",
            help="certificate mode: a file of revoked nodes ('node:ID' or 'serial:HEX' lines), "
            "reloaded while running; revoked peers are cut off within seconds",
        )
    group.add_argument(
        "--key-file",
        type=Path,
        metavar="PATH",
        help="shared-key mode: a file of at least 32 random bytes, the same on every node "
        "(e.g. 'openssl rand -hex 32 > cluster.key'); every key holder can act as any node",
    )
    group.add_argument(
        "--tls-cert",
        type=Path,
        metavar="PEM",
        help="TLS: this node's certificate (see --certs-dir)",
    )
    group.add_argument("--tls-key", type=Path, metavar="PEM", help="TLS: its private key")
    group.add_argument(
        "--tls-ca",
        type=Path,
        metavar="PEM",
        help="TLS: the CA that signs peers' certificates (also makes peers present one)",
    )
    group.add_argument(
        "--tls-server-hostname",
        metavar="NAME",
        help="TLS: the name to expect in peers' certificates (default: the dialled host)",
    )


def add_parsers(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "serve",
        help="run a node: sync the store with its peers over TCP until SIGTERM",
        description=(
            "Run a node: sync the store with its peers over TCP (authenticated with a node "
            "certificate,\nor the cluster key) until SIGTERM or SIGINT, which finish the batch in "
            "hand and exit 0.\nSettings come from flags or --config FILE.toml (the same names, "
            "'_' for '-'); flags win.\nOnce listening, prints 'memrepl: listening on HOST:PORT "
            "as NODE' to stderr."
        ),
        run=run_serve,
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="a TOML file of settings")
    parser.add_argument(
        "--listen",
        type=address_arg,
        metavar="HOST:PORT",
        help="where to accept peers (default 127.0.0.1:0, port 0: any free port)",
    )
    parser.add_argument(
        "--peer",
        type=peer_arg,
        action="append",
        metavar="ID=HOST:PORT",
        help="a peer to dial (repeatable); peers that dial this node are synced with too",
    )
    parser.add_argument(
        "--port-file", type=Path, metavar="PATH", help="write the bound port here once listening"
    )
    parser.add_argument(
        "--status-file",
        type=Path,
        metavar="PATH",
        help=f"where to keep the node's report for 'memrepl status' -- every peer: connection, "
        f"last error, rounds, progress -- as JSON, rewritten every {STATUS_EVERY_S:g} s and at "
        f"exit (default: next to the store, DB{STATUS_SUFFIX})",
    )
    add_mesh_options(parser, revocation=True)
    timing = parser.add_argument_group("replication (seconds)")
    timing.add_argument("--sync-interval", type=float, metavar="S", help="background round (30)")
    timing.add_argument("--high-delay", type=float, metavar="S", help="HIGH writes within (1)")
    timing.add_argument(
        "--poll-interval", type=float, metavar="S", help="look for other processes' writes (0.02)"
    )
    timing.add_argument("--purge-interval", type=float, metavar="S", help="purge tombstones (600)")
    timing.add_argument(
        "--consolidate-interval",
        type=float,
        metavar="S",
        help="run the memory policies: promotion, consolidation, retention (300)",
    )
    timing.add_argument(
        "--antientropy-interval",
        type=float,
        metavar="S",
        help="compare digests with each peer and repair what differs (180; 0: never)",
    )
    timing.add_argument(
        "--verify-interval",
        type=float,
        metavar="S",
        help="recompute this node's digests from its rows, finding hand edits (3600; 0: never)",
    )
    timing.add_argument(
        "--tombstone-grace", type=float, metavar="S", help="keep acknowledged tombstones (86400)"
    )
    timing.add_argument(
        "--forget-peer-after",
        type=float,
        metavar="S",
        help="a peer silent this long stops holding back tombstone collection (default: never)",
    )
    timing.add_argument("--ack-timeout", type=float, metavar="S", help="wait for an ACK (30)")
    timing.add_argument(
        "--progress-interval",
        type=float,
        metavar="S",
        help="log a long round's progress every S seconds, sending and receiving (5)",
    )
    timing.add_argument("--max-batch-items", type=int, metavar="N", help="items per batch (100)")
    timing.add_argument(
        "--bootstrap",
        dest="bootstrap_replicate",
        action="store_const",
        const=True,
        help="ask the first peer for a snapshot of each empty tier (REPLICATE; off by default: "
        "peers push everything to a new node anyway)",
    )
    parser.add_argument(
        "--synchronous",
        choices=["OFF", "NORMAL", "FULL", "EXTRA"],
        help="SQLite's synchronous setting for the store (default FULL: durable commits)",
    )
    parser.add_argument(
        "--log-level",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging on stderr (default INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        help="text for people (default), or json: one object per line with stable fields "
        "(time, level, logger, node, message, and an event's own: see the README)",
    )
    parser.add_argument(
        "--metrics",
        type=address_arg,
        metavar="HOST:PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics (needs the 'metrics' extra: "
        "pip install 'memrepl[metrics]'; port 0: any free port, printed at start)",
    )


#: Flags that map one to one onto config keys.
_FLAG_KEYS = (
    "listen",
    "key_file",
    "port_file",
    "status_file",
    "tls_cert",
    "tls_key",
    "tls_ca",
    "tls_server_hostname",
    "certs_dir",
    "revocation_list",
    "sync_interval",
    "high_delay",
    "poll_interval",
    "purge_interval",
    "consolidate_interval",
    "antientropy_interval",
    "verify_interval",
    "tombstone_grace",
    "forget_peer_after",
    "ack_timeout",
    "progress_interval",
    "max_batch_items",
    "bootstrap_replicate",
    "synchronous",
    "log_level",
    "log_format",
    "metrics",
)


def build_config(args: argparse.Namespace) -> NodeConfig:
    """The node's config: ``--config``'s file, overridden by the flags given."""
    from memrepl.node.config import NodeConfig, load_toml
    from memrepl.node.credentials import certificate_node_id
    from memrepl.storage.engine import describe

    file_values: dict[str, Any] = {}
    base = None
    if args.config is not None:
        file_values = load_toml(args.config)
        base = args.config.resolve().parent
    flags: dict[str, Any] = {key: getattr(args, key, None) for key in _FLAG_KEYS}
    flags["db"] = args.db or os.environ.get(ENV_DB)
    if flags["db"] is None and "db" not in file_values:
        flags["db"] = DEFAULT_DB
    flags["node_id"] = args.node_id
    flags["peers"] = dict(args.peer or [])
    config = NodeConfig.from_sources(file_values, flags, base=base)
    if config.key_file is None and config.tls_cert is None:
        raise CommandError(
            "memrepl serve needs credentials: --certs-dir DIR (a node certificate from 'memrepl "
            "cert issue') or --key-file PATH (the cluster's shared key, at least 32 random bytes)"
        )
    if config.node_id is None:
        on_file = isinstance(config.db, Path) and config.db.is_file()
        stored = read_stored_node_id(Path(config.db)) if on_file else None
        stored = stored or certificate_node_id(config)
        if stored is None:
            raise UsageError(
                f"no node id for {describe(config.db)!r}: pass --node-id ID to create the store"
            )
        config = NodeConfig.from_sources(file_values, {**flags, "node_id": stored}, base=base)
    if config.status_file is None and isinstance(config.db, Path):
        # A store on a server has no directory of its own: --status-file says where, if wanted.
        config = dataclasses.replace(config, status_file=default_status_file(config.db))
    return config


def run_serve(args: argparse.Namespace) -> int:
    """Run the node until SIGTERM or SIGINT (:mod:`memrepl.cli.daemon`)."""
    from memrepl.cli import daemon

    return daemon.run(build_config(args))
