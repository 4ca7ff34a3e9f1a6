"""A node's settings: the scheduler's timings (:class:`NodeSettings`) and, for ``memrepl serve``,
everything else a daemon needs (:class:`NodeConfig`), read from a TOML file and/or flags.

The rules that keep it right:

- **Checked once, here.** Every value is validated when the settings are built; a bad one raises
  :class:`NodeConfigError` naming the key (and the file), so the node's loops never meet a
  nonsensical interval. Every duration carries its unit in its name (``_s``).
- **One vocabulary.** A TOML file uses the flags' names with ``_`` for ``-``
  (``sync_interval = 1.0`` is ``--sync-interval 1.0``); flags given on the command line override
  the file's values. Paths in a file are relative to the file's directory. A ``[mesh]`` table
  sets :class:`~memrepl.mesh.config.TcpMeshConfig` fields by their own names. Unknown keys are
  refused (a typo must not silently leave a default in place).

An example ``node.toml``::

    db = "a.db"
    node_id = "node-a"
    listen = "127.0.0.1:7401"
    key_file = "cluster.key"
    sync_interval = 30.0
    high_delay = 1.0

    [peers]
    node-b = "10.0.0.2:7401"

    [mesh]
    heartbeat_interval_s = 1.0
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memrepl.errors import MemreplError, NodeConfigError
from memrepl.mesh.config import TcpMeshConfig
from memrepl.mesh.identity import cluster_key
from memrepl.node.monitor import DEFAULT_PROGRESS_INTERVAL_S

__all__ = [
    "DEFAULT_ACK_TIMEOUT_S",
    "DEFAULT_HIGH_DELAY_S",
    "DEFAULT_POLL_INTERVAL_S",
    "DEFAULT_PURGE_INTERVAL_S",
    "DEFAULT_SYNC_INTERVAL_S",
    "DEFAULT_TOMBSTONE_GRACE_S",
    "NodeConfig",
    "NodeConfigError",
    "NodeSettings",
    "parse_address",
    "parse_peer",
    "read_key_file",
]

#: The background round (ARCHITECTURE.md, "Priority-based replication": "every 30 s").
DEFAULT_SYNC_INTERVAL_S = 30.0
#: HIGH writes go out "within about a second".
DEFAULT_HIGH_DELAY_S = 1.0
#: How often the database is checked for commits made by other processes.
DEFAULT_POLL_INTERVAL_S = 0.02
#: How often the memory policies run (memrepl.policy.consolidate).
DEFAULT_CONSOLIDATE_INTERVAL_S = 300.0
#: How often collectable tombstones are purged.
DEFAULT_PURGE_INTERVAL_S = 600.0
#: How often anti-entropy compares digests with each connected peer, and how often the node
#: recomputes its own digests from its rows (finds changes made outside memrepl).
DEFAULT_ANTIENTROPY_INTERVAL_S = 180.0
DEFAULT_VERIFY_INTERVAL_S = 3600.0
#: How long a tombstone outlives the last acknowledgement (the sync manager's default).
DEFAULT_TOMBSTONE_GRACE_S = 24 * 3600.0
DEFAULT_ACK_TIMEOUT_S = 30.0


#: The settings that may be None ("never").
_MAY_BE_NONE = (
    "forget_peer_after_s",
    "consolidate_interval_s",
    "antientropy_interval_s",
    "verify_interval_s",
)


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """The timings of a :class:`~memrepl.node.Node`'s scheduler and sync manager."""

    #: Every tier is synced with every connected peer this often (the background round).
    sync_interval_s: float = DEFAULT_SYNC_INTERVAL_S
    #: A HIGH write goes out at most this long after it is seen (writes in between coalesce).
    high_delay_s: float = DEFAULT_HIGH_DELAY_S
    #: The database is checked for other processes' commits this often (this process's own
    #: commits wake the scheduler at once).
    poll_interval_s: float = DEFAULT_POLL_INTERVAL_S
    #: Collectable tombstones are purged this often.
    purge_interval_s: float = DEFAULT_PURGE_INTERVAL_S
    #: The memory policies (promotion, consolidation, retention: memrepl.policy, balanced
    #: preset) run this often. None: never.
    consolidate_interval_s: float | None = DEFAULT_CONSOLIDATE_INTERVAL_S
    #: Anti-entropy (memrepl.sync.antientropy) compares digests with every connected peer and
    #: repairs what differs this often. None: never.
    antientropy_interval_s: float | None = DEFAULT_ANTIENTROPY_INTERVAL_S
    #: The node's own digests are recomputed from its rows this often, and once at start (a full
    #: read of every tier; finds rows changed outside memrepl). None: never.
    verify_interval_s: float | None = DEFAULT_VERIFY_INTERVAL_S
    #: How long a tombstone outlives the last acknowledgement of every known peer.
    tombstone_grace_s: float = DEFAULT_TOMBSTONE_GRACE_S
    #: A peer that acknowledged nothing for this long stops holding back tombstone collection
    #: (it is dropped from the sync vectors; back, it is brought up to date with a snapshot).
    #: None: never (a known peer holds tombstones until it comes back).
    forget_peer_after_s: float | None = None
    #: After a peer connects, its catch-up round waits this long, so that a REPLICATE request
    #: from it (an empty tier bootstrapping) is not followed by a redundant delta of everything.
    catch_up_delay_s: float = 0.2
    #: An empty local tier asks the first peer that connects for a snapshot (REPLICATE). Off by
    #: default: a peer's catch-up round already brings a new node everything (as a delta from
    #: cursor 0, or, below its purge horizon, as the snapshot this node then asks for). Local
    #: writes made while a requested snapshot is in flight are safe: what counts as seen by the
    #: sender is what it had acknowledged when the request was made (memrepl.sync.snapshots).
    bootstrap_replicate: bool = False
    #: Items per batch (1..255).
    max_batch_items: int = 100
    #: How long a sent batch waits for its ACK.
    ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S
    #: ``stop()`` waits this long for the batches in hand before cancelling the rounds.
    stop_timeout_s: float = 10.0
    #: A round running longer than this logs its progress, and again every this long, on the
    #: sending and on the receiving side (memrepl.node.monitor).
    progress_interval_s: float = DEFAULT_PROGRESS_INTERVAL_S
    #: False: no scheduler at all (rounds run only when asked, e.g. by ``memrepl sync``).
    scheduler: bool = True

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if item.name in ("bootstrap_replicate", "scheduler"):
                if not isinstance(value, bool):
                    raise NodeConfigError(f"{item.name} must be true or false", key=item.name)
                continue
            if value is None and item.name in _MAY_BE_NONE:
                continue
            positive_only = item.name in (
                "progress_interval_s",
                "sync_interval_s",
                "poll_interval_s",
                "purge_interval_s",
                "ack_timeout_s",
                "max_batch_items",
            )
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
                or value < 0
                or (positive_only and value == 0)
            ):
                kind = "positive" if positive_only else "non-negative"
                raise NodeConfigError(
                    f"{item.name} must be a {kind} number, not {value!r}", key=item.name
                )
        if not isinstance(self.max_batch_items, int) or self.max_batch_items > 255:
            raise NodeConfigError(
                f"max_batch_items must be an integer 1..255, not {self.max_batch_items!r}",
                key="max_batch_items",
            )


def parse_address(text: str, *, what: str = "address") -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as ``(host, port)``; port 0..65535."""
    host, sep, port_text = text.strip().rpartition(":")
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        port = -1
    if not sep or not host or not 0 <= port <= 65535:
        raise NodeConfigError(f"{what} {text!r} is not HOST:PORT", key=what)
    return host, port


def parse_peer(text: str) -> tuple[str, tuple[str, int]]:
    """``ID=HOST:PORT`` as ``(id, (host, port))``."""
    peer_id, sep, address = text.partition("=")
    if not sep or not peer_id.strip():
        raise NodeConfigError(f"peer {text!r} is not ID=HOST:PORT", key="peer")
    host, port = parse_address(address, what="peer address")
    if port == 0:
        raise NodeConfigError(f"peer {text!r}: port 0 cannot be dialled", key="peer")
    return peer_id.strip(), (host, port)


def read_key_file(path: str | os.PathLike[str]) -> bytes:
    """The cluster's shared key from ``path``: its bytes without surrounding whitespace, exactly
    what :func:`memrepl.mesh.identity.cluster_key` makes of the same bytes given to the API.

    At least 32 bytes (``openssl rand -hex 32 > cluster.key`` writes 64). What ``--key-file``
    reads: an application embedding a :class:`~memrepl.node.Node` reads the same file with it,
    so both hold the same key. Raises NodeConfigError for a missing or unreadable file,
    ClusterKeyError for a short key.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise NodeConfigError(
            f"cannot read the key file {str(path)!r}: {exc}", key="key_file"
        ) from exc
    return cluster_key(raw, source=f"the key file {str(path)!r}")


#: Settings keys of a config file / flags, and the NodeSettings field each one sets.
SETTINGS_KEYS: dict[str, str] = {
    "sync_interval": "sync_interval_s",
    "high_delay": "high_delay_s",
    "poll_interval": "poll_interval_s",
    "purge_interval": "purge_interval_s",
    "consolidate_interval": "consolidate_interval_s",
    "antientropy_interval": "antientropy_interval_s",
    "verify_interval": "verify_interval_s",
    "tombstone_grace": "tombstone_grace_s",
    "forget_peer_after": "forget_peer_after_s",
    "catch_up_delay": "catch_up_delay_s",
    "bootstrap_replicate": "bootstrap_replicate",
    "max_batch_items": "max_batch_items",
    "ack_timeout": "ack_timeout_s",
    "stop_timeout": "stop_timeout_s",
    "progress_interval": "progress_interval_s",
}
_PATH_KEYS = (
    "db",
    "key_file",
    "port_file",
    "status_file",
    "tls_cert",
    "tls_key",
    "tls_ca",
    "certs_dir",
    "revocation_list",
)
_TEXT_KEYS = ("node_id", "tls_server_hostname", "log_level", "log_format")
_OTHER_KEYS = ("listen", "peers", "mesh", "synchronous", "metrics")
#: ``log_format``'s values (memrepl.cli.logs).
LOG_FORMATS = ("text", "json")
KNOWN_KEYS = frozenset((*SETTINGS_KEYS, *_PATH_KEYS, *_TEXT_KEYS, *_OTHER_KEYS))


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything ``memrepl serve`` needs; build it with :meth:`from_sources`."""

    #: The store: a SQLite file's path, or a PostgreSQL database's URL (kept as text).
    db: Path | str
    node_id: str | None = None
    listen: tuple[str, int] = ("127.0.0.1", 0)
    peers: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    key_file: Path | None = None
    port_file: Path | None = None
    status_file: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    tls_server_hostname: str | None = None
    #: Certificate mode: the directory ``memrepl cert issue --out`` wrote (``node.crt``,
    #: ``node.key``, ``ca.crt``); fills in ``tls_cert``/``tls_key``/``tls_ca`` not given.
    certs_dir: Path | None = None
    #: Certificate mode: the revocation list file, reloaded while running.
    revocation_list: Path | None = None
    synchronous: str | None = None
    log_level: str = "INFO"
    #: ``text`` or ``json`` (one object per line, stable field names: memrepl.cli.logs).
    log_format: str = "text"
    #: Where to serve Prometheus metrics (``/metrics``), None: nowhere.
    metrics: tuple[str, int] | None = None
    settings: NodeSettings = field(default_factory=NodeSettings)
    mesh: TcpMeshConfig = field(default_factory=TcpMeshConfig)

    @classmethod
    def from_sources(
        cls, file_values: Mapping[str, Any], flags: Mapping[str, Any], *, base: Path | None = None
    ) -> NodeConfig:
        """Merge a config file's values (``load_toml``) with flags (which win; None = unset).

        ``base`` is the directory relative file paths are resolved against. Raises
        NodeConfigError for an unknown key, a wrong type or a missing ``db``/``key_file``.
        """
        values: dict[str, Any] = {}
        for key, value in file_values.items():
            if key not in KNOWN_KEYS:
                raise NodeConfigError(f"unknown config key {key!r}", key=key)
            values[key] = _path(value, key, base) if key in _PATH_KEYS else value
        peers = dict(_peers(values.pop("peers", {})))
        for key, value in flags.items():
            if key == "peers":
                peers.update(value or {})
            elif value is not None:
                values[key] = value
        settings_values = {
            field_name: values.pop(key)
            for key, field_name in SETTINGS_KEYS.items()
            if key in values
        }
        mesh_values = values.pop("mesh", {}) or {}
        if not isinstance(mesh_values, Mapping):
            raise NodeConfigError("[mesh] must be a table", key="mesh")
        try:
            mesh = TcpMeshConfig(**mesh_values)
        except TypeError as exc:
            raise NodeConfigError(f"[mesh]: {exc}", key="mesh") from exc
        except MemreplError as exc:
            raise NodeConfigError(f"[mesh]: {exc}", key="mesh") from exc
        try:
            settings = NodeSettings(**settings_values)
        except TypeError as exc:
            raise NodeConfigError(str(exc)) from exc
        listen = values.pop("listen", None)
        if isinstance(listen, str):
            listen = parse_address(listen, what="listen")
        elif listen is None:
            listen = ("127.0.0.1", 0)
        metrics = values.pop("metrics", None)
        if isinstance(metrics, str):
            metrics = parse_address(metrics, what="metrics")
        elif metrics is not None and not isinstance(metrics, tuple):
            raise NodeConfigError("metrics must be HOST:PORT", key="metrics")
        log_format = values.get("log_format") or "text"
        if log_format not in LOG_FORMATS:
            raise NodeConfigError(
                f"log_format must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}",
                key="log_format",
            )
        for key in _TEXT_KEYS:
            if values.get(key) is not None and not isinstance(values[key], str):
                raise NodeConfigError(f"{key} must be a string", key=key)

        def path(key: str) -> Path | None:
            value = values.get(key)
            return None if value is None else Path(value)

        db_value = values.get("db")
        db: Path | str | None = db_value if _is_url(db_value) else path("db")
        if db is None:
            raise NodeConfigError("no database: pass --db or set db in the config", key="db")
        certs_dir = path("certs_dir")
        if certs_dir is not None:
            for key, name in (
                ("tls_cert", "node.crt"),
                ("tls_key", "node.key"),
                ("tls_ca", "ca.crt"),
            ):
                if values.get(key) is None:
                    values[key] = certs_dir / name
        return cls(
            db=db,
            node_id=values.get("node_id"),
            listen=(str(listen[0]), int(listen[1])),
            peers=peers,
            key_file=path("key_file"),
            port_file=path("port_file"),
            status_file=path("status_file"),
            tls_cert=path("tls_cert"),
            tls_key=path("tls_key"),
            tls_ca=path("tls_ca"),
            tls_server_hostname=values.get("tls_server_hostname"),
            certs_dir=certs_dir,
            revocation_list=path("revocation_list"),
            synchronous=values.get("synchronous"),
            log_level=values.get("log_level") or "INFO",
            log_format=log_format,
            metrics=None if metrics is None else (str(metrics[0]), int(metrics[1])),
            settings=settings,
            mesh=mesh,
        )

    def shared_key(self) -> bytes:
        """The cluster key from :attr:`key_file` (shared-key mode)."""
        if self.key_file is None:
            raise NodeConfigError(
                "no cluster key: pass --key-file PATH (a file of at least 32 random bytes, "
                "the same on every node)",
                key="key_file",
            )
        return read_key_file(self.key_file)


def load_toml(path: Path) -> dict[str, Any]:
    """A config file's values; NodeConfigError for a file that cannot be read or parsed."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise NodeConfigError(f"cannot read config {str(path)!r}: {exc}", key="config") from exc
    except tomllib.TOMLDecodeError as exc:
        raise NodeConfigError(f"config {str(path)!r}: {exc}", key="config") from exc


def _is_url(value: object) -> bool:
    # Imported here: the CLI builds its parsers without loading SQLAlchemy.
    from memrepl.storage.engine import is_url

    return is_url(value)


def _path(value: object, key: str, base: Path | None) -> Path | str:
    if not isinstance(value, str):
        raise NodeConfigError(f"{key} must be a path string, not {value!r}", key=key)
    if key == "db" and _is_url(value):
        return value
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() or base is None else base / path


def _peers(value: object) -> dict[str, tuple[str, int]]:
    """``[peers]`` as a table ``{id = "host:port"}`` or a list ``["id=host:port", ...]``."""
    if isinstance(value, Mapping):
        entries = [f"{peer_id}={address}" for peer_id, address in value.items()]
    elif isinstance(value, list):
        entries = [str(entry) for entry in value]
    else:
        raise NodeConfigError("peers must be a table or a list of ID=HOST:PORT", key="peers")
    return dict(parse_peer(entry) for entry in entries)
