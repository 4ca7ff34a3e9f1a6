"""One node process per store: the node lock, a side file next to the database.

Two processes running a node on one store both claim its node id on the mesh: each displaces the
other's connections to their peers ("duplicate: replaced by another connection") and neither
syncs. So a process that runs a node on a store -- ``memrepl serve``, ``memrepl sync`` when no
daemon runs, an embedded :class:`~memrepl.node.Node` -- first takes an exclusive lock on
``<db>-node.lock`` (:class:`NodeLock`), and a second one is refused with
:class:`~memrepl.errors.StoreInUseError` naming the first.

The rules that keep it right:

- **The OS holds the lock, not the file.** It is an ``fcntl.flock`` on the open file, which the
  kernel drops when the process ends in any way (SIGKILL included): a leftover file never blocks
  a restart, and no pid is ever trusted to still mean the same process.
- **One lock per database file, whatever path names it.** The lock file sits next to the store's
  real path, symbolic links resolved (as SQLite resolves them for its ``-wal`` and ``-shm``), so
  ``serve --db link.db`` and ``serve --db a.db`` on the same file meet the same lock. (A hard
  link is a second name nothing can resolve: do not make one to a store.)
- **The file is never deleted.** Unlinking it on release would let a process that opened the old
  file lock it while a newer one locks a new file at the same path: two holders. It is emptied
  instead.
- **The contents only describe the holder** (JSON: pid, node id, what runs it, the listen
  address, the control socket -- :class:`LockInfo`), for the refusal's message and for
  ``memrepl sync`` to find the running node's control channel (memrepl.node.control). A reader
  trusts them only while the lock is actually held (:func:`holder`).

Other processes that only read or write the store (the CLI's ``put``/``get``, an application)
take no lock: SQLite serializes their transactions, and a running node picks their writes up.

**A store on PostgreSQL** has no file to lock: its node lock is a session advisory lock the
server holds for the node's connection (:class:`memrepl.storage.backends.postgresql.
NodeLockSession`), so two ``memrepl serve`` processes on one database are refused the same way
from any machine, and the server drops the lock when the holder dies. The holder describes
itself in one line (no control channel: ``memrepl sync`` beside it is for SQLite stores).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from memrepl.errors import StoreInUseError
from memrepl.storage.backends import backend_named
from memrepl.storage.engine import MEMORY, describe, is_url, store_url

#: The lock file is the store's path with this suffix (like SQLite's ``-wal`` and ``-shm``).
LOCK_SUFFIX = "-node.lock"
#: A reader (:func:`holder`) holds a shared lock for an instant: tries before giving up.
ACQUIRE_TRIES = 5
ACQUIRE_RETRY_S = 0.05
#: The same for a lock on a server, where a killed holder's session may take a moment to end.
SERVER_ACQUIRE_TRIES = 40
SERVER_ACQUIRE_RETRY_S = 0.05
#: What :func:`holder` says runs a node whose lock file does not say yet.
STARTING_NODE = "a starting node"


@dataclass(frozen=True, slots=True)
class LockInfo:
    """Who holds a store's node lock (the lock file's contents)."""

    pid: int
    node_id: str
    #: What runs the node: ``memrepl serve``, ``memrepl sync``, ``an embedded Node``.
    command: str
    #: ``HOST:PORT`` it listens on (None until it listens, or with no TCP mesh).
    address: str | None = None
    #: The unix socket of its control channel (None: it has none).
    control: str | None = None

    def describe(self) -> str:
        """``pid 1234, memrepl serve, listening on 127.0.0.1:7401``."""
        parts = [f"pid {self.pid}", self.command]
        if self.address:
            parts.append(f"listening on {self.address}")
        return ", ".join(parts)

    @classmethod
    def from_json(cls, text: str) -> LockInfo | None:
        try:
            data = json.loads(text)
            return cls(
                pid=int(data["pid"]),
                node_id=str(data["node_id"]),
                command=str(data["command"]),
                address=data.get("address"),
                control=data.get("control"),
            )
        except (ValueError, TypeError, KeyError):
            return None


def lock_path(db: str | os.PathLike[str]) -> Path:
    """The node lock file of the store at ``db``: next to its real path (links resolved)."""
    return Path(os.path.realpath(db) + LOCK_SUFFIX)


class NodeLock:
    """The node lock of one store, held by this process while a node runs on it (a private
    in-memory store, ``":memory:"``, has none: nothing else can open it)."""

    def __init__(self, db: str | os.PathLike[str]) -> None:
        self.path: Path | None = None
        self._server: Any = None
        #: The store as the caller named it (for the refusal's message; a URL without its
        #: password).
        self.store = describe(db)
        if is_url(db):
            url = store_url(db)
            if url.get_backend_name() == "sqlite":
                db = url.database or MEMORY
            else:
                self._server = backend_named(url.get_backend_name()).node_lock(url)
        if self._server is None and os.fspath(db) != MEMORY:
            self.path = lock_path(db)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None or self._server_held

    _server_held = False

    def _acquire_on_server(self, info: LockInfo) -> None:
        # A holder SIGKILLed a moment ago may still have its session on the server (it ends
        # when the server notices the closed socket): try for a while, as for a file.
        for _ in range(SERVER_ACQUIRE_TRIES):
            if self._server.try_acquire(info.describe()):
                self._server_held = True
                return
            time.sleep(SERVER_ACQUIRE_RETRY_S)
        other = self._server.holder() or "another process"
        raise StoreInUseError(
            f"{self.store} is already in use by a running node ({other}): one node process "
            "per store -- stop it first",
            pid=None,
            address=None,
        )

    def acquire(self, info: LockInfo) -> None:
        """Take the lock and describe this process in it.

        Raises :class:`StoreInUseError` (naming the holder when it said who it is) if another
        process holds it; ``OSError`` if the file cannot be created.
        """
        if self._server is not None:
            if not self._server_held:
                self._acquire_on_server(info)
            return
        if self._fd is not None or self.path is None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            _lock_exclusive(fd)
        except BlockingIOError:
            other = _read(fd)
            os.close(fd)
            store = self.store
            who = other.describe() if other is not None else "another process"
            raise StoreInUseError(
                f"{store} is already in use by a running node ({who}): one node process per "
                "store -- stop it first, or let it do the work ('memrepl sync' asks it)",
                pid=other.pid if other is not None else None,
                address=other.address if other is not None else None,
            ) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.update(info)

    def update(self, info: LockInfo) -> None:
        """Rewrite the description of the holder (this process)."""
        if self._server_held:
            self._server.describe(info.describe())
            return
        if self._fd is None:
            return
        data = json.dumps(asdict(info)).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        """Empty the file and drop the lock (idempotent; the file stays, see the module)."""
        if self._server is not None:
            self._server.release()
            self._server_held = False
            return
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        os.close(fd)


def holder(db: str | os.PathLike[str]) -> LockInfo | None:
    """Who runs a node on the store at ``db`` now: None if nobody holds its lock.

    A held lock whose file does not (yet) say who holds it gives a :class:`LockInfo` with pid 0.
    """
    path = lock_path(db)
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd) or LockInfo(pid=0, node_id="", command=STARTING_NODE)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _lock_exclusive(fd: int) -> None:
    for attempt in range(ACQUIRE_TRIES):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == ACQUIRE_TRIES - 1:
                raise
            time.sleep(ACQUIRE_RETRY_S)


def _read(fd: int) -> LockInfo | None:
    try:
        text = os.pread(fd, 1 << 16, 0).decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return LockInfo.from_json(text) if text else None
