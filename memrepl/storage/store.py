"""Opening a store: the engine, the migrations, the node row, and the transactions tiers run in.

The rules that keep it right:

- **Opening changes nothing that is already right.** A read transaction checks the schema
  revision and the node row; only when the database is new or older does one write
  transaction migrate it and write the node row. A refused open (another node id, a schema from
  a newer memrepl) writes nothing.
- **Writes hold the store's write lock from their first statement** (:meth:`Store.write`:
  ``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL, see
  :mod:`memrepl.storage.engine`), reads see one snapshot (:meth:`Store.read`); a write that
  stamps anything takes the node's clock with :meth:`Store.stamping` inside that transaction.
- **After-commit hooks see only committed changes.** :meth:`Store.write` collects the items the
  storage operations change and, once the transaction has committed, hands them to each tier's
  ``_after_commit``; a rolled-back transaction hands over nothing.

:class:`Store` is synchronous (pysqlite, or psycopg); :class:`AsyncStore` is its asyncio twin
(aiosqlite, or psycopg's async connection; ``memrepl.aio.open``) and runs the very same functions
through ``AsyncConnection.run_sync``. A store lives in a SQLite file or a PostgreSQL database
(:func:`open` takes a path or a URL).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AbstractContextManager, asynccontextmanager, contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any
from uuid import uuid4

from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from memrepl.clock import DEFAULT_MAX_CLOCK_SKEW_NS, HybridLogicalClock, WallClock
from memrepl.errors import NodeIdMismatchError, StoreError, UnknownTierError
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import migrate
from memrepl.storage.engine import (
    DEFAULT_BUSY_TIMEOUT_MS,
    DEFAULT_SYNCHRONOUS,
    MEMORY,
    Location,
    async_write_engine,
    create_async_engine,
    create_engine,
    describe,
    is_url,
    store_url,
    write_engine,
)
from memrepl.storage.graph_tiers import AsyncSemanticMemory, SemanticMemory
from memrepl.storage.indexer import AsyncIndexer, ThreadIndexer
from memrepl.storage.items import collect_changes, stop_collecting
from memrepl.storage.node import ClockSettings, check_node_id, ensure_node, stamping, stored_node_id
from memrepl.storage.recall import AsyncRecallMethods, RecallMethods
from memrepl.storage.records import StoredItem
from memrepl.storage.tiers import AsyncEpisodicMemory, AsyncTier, EpisodicMemory, Tier, _TierBase
from memrepl.storage.working_tiers import AsyncWorkingMemory, WorkingMemory

#: Working memory's default capacity in items (None: unbounded).
DEFAULT_WORKING_CAPACITY = 10_000

Changes = Sequence[tuple[MemoryTier, list[StoredItem]]]


def resolve_tier(tier: object) -> MemoryTier:
    """The :class:`MemoryTier` for ``tier`` (a MemoryTier or its int); else UnknownTierError."""
    if isinstance(tier, int) and not isinstance(tier, bool):
        try:
            return MemoryTier(tier)
        except ValueError:
            pass
    raise UnknownTierError(
        f"unknown memory tier {tier!r}: expected one of "
        + ", ".join(f"{t.value} ({t.name})" for t in MemoryTier),
        tier=tier,
    )


def database_ready(conn: Connection, node_id: str) -> bool:
    """Whether the database is at the head revision with this node's row (a read, no writes).

    Raises NodeIdMismatchError when the node row names another node.
    """
    if migrate.current_revision(conn) != migrate.HEAD_REVISION:
        return False
    stored = stored_node_id(conn)
    if stored is not None and stored != node_id:
        raise NodeIdMismatchError(
            f"opening a store as node {node_id!r}: the database belongs to node {stored!r}",
            stored=stored,
            requested=node_id,
        )
    return stored is not None


def existing_node_id(conn: Connection, path: Location) -> str:
    """The node id an existing store recorded (what :func:`open` uses when given none).

    Raises StoreError for a database without one: a new file, or one made by ``alembic upgrade
    head`` alone, needs ``node_id=`` the first time.
    """
    stored = stored_node_id(conn) if migrate.current_revision(conn) is not None else None
    if stored is None:
        raise StoreError(
            f"opening the store at {describe(path)!r}: it has no node id yet; pass "
            "node_id=... the first time (a new store records it)"
        )
    return stored


def _require_existing(path: Location) -> None:
    """Without a node id only an existing file can be opened (never create one by a typo); a
    database on a server exists or the connection fails (its node row is checked next)."""
    if is_url(path):
        return
    assert not isinstance(path, URL)
    if os.fspath(path) == MEMORY or not os.path.isfile(path):
        raise StoreError(
            f"opening the store at {os.fspath(path)!r}: there is no store there; pass "
            "node_id=... to create one"
        )


def prepare_database(conn: Connection, node_id: str, now_ns: int) -> None:
    """Migrate to head and write the node row, in the caller's write transaction."""
    migrate.upgrade(conn)
    ensure_node(conn, node_id, now_ns=now_ns)


def _check_options(working_capacity: int | None, max_clock_skew_ns: int) -> None:
    if working_capacity is not None and (
        not isinstance(working_capacity, int) or working_capacity < 1
    ):
        raise StoreError(
            f"working_capacity must be a positive int or None, not {working_capacity!r}"
        )
    if not isinstance(max_clock_skew_ns, int) or max_clock_skew_ns < 0:
        raise StoreError(f"max_clock_skew_ns must be a non-negative int, not {max_clock_skew_ns!r}")


class StoreBase:
    """What the sync and asyncio stores share: identity, settings and the tier table."""

    def __init__(
        self,
        *,
        node_id: str,
        path: Path | None,
        clock_settings: ClockSettings,
        working_capacity: int | None,
        url: URL | None = None,
    ) -> None:
        self.node_id = node_id
        #: The database file, None for a private in-memory store or a server database.
        self.path = path
        #: The store's database URL (``sqlite:///...`` for a file, ``postgresql+psycopg://...``).
        self.url = url if url is not None else store_url(path if path is not None else MEMORY)
        self.clock_settings = clock_settings
        self.working_capacity = working_capacity
        self._tiers: dict[MemoryTier, _TierBase] = {}
        self._closed = False
        #: The vector indexer, once an embedder is attached (``attach_embedder``).
        self._indexer: ThreadIndexer | AsyncIndexer | None = None

    def tier(self, tier: MemoryTier | int) -> _TierBase:
        """The tier object for ``tier``; UnknownTierError for anything else."""
        return self._tiers[resolve_tier(tier)]

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"store of node {self.node_id!r} is closed")

    def _dispatch(self, changes: Changes) -> None:
        for tier, items in changes:
            self._tiers[tier]._after_commit(items)
        if changes and self._indexer is not None:
            self._indexer.notify()

    @property
    def location(self) -> Path | URL:
        """Where the store lives: its file, or its database URL (a private store: its URL)."""
        return self.path if self.path is not None else self.url

    def __repr__(self) -> str:
        where = describe(self.location)
        return f"<{type(self).__name__} node_id={self.node_id!r} location={where!r}>"


class Store(RecallMethods, StoreBase):
    """A synchronous memrepl store: three tiers in one SQLite file or PostgreSQL database. Open
    it with :func:`open`."""

    working: WorkingMemory
    episodic: EpisodicMemory
    semantic: SemanticMemory

    def __init__(
        self,
        engine: Engine,
        *,
        node_id: str,
        path: Path | None,
        clock_settings: ClockSettings,
        working_capacity: int | None = DEFAULT_WORKING_CAPACITY,
        url: URL | None = None,
    ) -> None:
        super().__init__(
            node_id=node_id,
            path=path,
            clock_settings=clock_settings,
            working_capacity=working_capacity,
            url=url,
        )
        self.engine = engine
        self._write_engine = write_engine(engine)
        # One connection for every write transaction, kept open: checking a connection out of
        # the pool and back costs about 30 us, most of a small write. The lock lets threads share
        # the store; SQLite lets one writer in at a time anyway. Re-entrant, so that a write
        # opened inside another fails at once (StoreError) instead of waiting on itself.
        self._writer: Connection | None = None
        self._write_lock = threading.RLock()
        #: Write transactions open (0 or 1: a nested one is refused).
        self._writing = 0
        self.working = WorkingMemory._bind(self)
        self.episodic = EpisodicMemory._bind(self)
        self.semantic = SemanticMemory._bind(self)
        self._tiers.update(
            {tier.tier: tier for tier in (self.working, self.episodic, self.semantic)}
        )

    def tier(self, tier: MemoryTier | int) -> Tier:
        """The tier object for ``tier`` (a MemoryTier or 1-3); UnknownTierError otherwise."""
        found = super().tier(tier)
        assert isinstance(found, Tier)
        return found

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """One write transaction (holding the store's write lock): committed on exit, rolled back
        on error.

        After the commit, the tiers whose rows changed get their ``_after_commit`` hook.
        """
        with self._write_lock:
            self._check_open()
            if self._writing:
                # Only this thread can hold the lock here: it is inside a write already.
                raise StoreError(
                    f"store of node {self.node_id!r}: a write transaction is already open in "
                    "this thread (nested writes would wait on themselves)"
                )
            if self._writer is None:
                self._writer = self._write_engine.connect()
            conn = self._writer
            self._writing += 1
            try:
                with conn.begin():
                    changes = collect_changes(conn.info)
                    try:
                        yield conn
                    finally:
                        stop_collecting(conn.info)
            except BaseException:
                # SQLAlchemy rolls back a failed block, but a failed COMMIT can leave SQLite's
                # transaction open (and the write lock held): give the connection back to the
                # pool, whose reset rolls it back, and take a fresh one next time.
                self._drop_writer()
                raise
            finally:
                self._writing -= 1
                if self._closed and not self._writing:
                    # close() was called inside this write: finish closing now.
                    self._drop_writer()
                    self.engine.dispose()
        self._dispatch(changes)

    def _drop_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """One deferred transaction: a consistent snapshot for reads."""
        self._check_open()
        with self.engine.begin() as conn:
            yield conn

    def stamping(self, conn: Connection) -> AbstractContextManager[HybridLogicalClock]:
        """The node's clock inside a :meth:`write` transaction, saved when the block exits."""
        return stamping(conn, self.clock_settings)

    def close(self) -> None:
        """Close every connection; the store can no longer be used. Idempotent."""
        if isinstance(self._indexer, ThreadIndexer):
            self._indexer.close()
        with self._write_lock:
            self._closed = True
            if not self._writing:
                # Else the write finishes closing: its connection must go back to the pool
                # before the pool is disposed, or it would be left open.
                self._drop_writer()
                self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncStore(AsyncRecallMethods, StoreBase):
    """The asyncio twin of :class:`Store`. Open it with ``await memrepl.aio.open(...)``."""

    working: AsyncWorkingMemory
    episodic: AsyncEpisodicMemory
    semantic: AsyncSemanticMemory

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        node_id: str,
        path: Path | None,
        clock_settings: ClockSettings,
        working_capacity: int | None = DEFAULT_WORKING_CAPACITY,
        url: URL | None = None,
    ) -> None:
        super().__init__(
            node_id=node_id,
            path=path,
            clock_settings=clock_settings,
            working_capacity=working_capacity,
            url=url,
        )
        self.engine = engine
        self._write_engine = async_write_engine(engine)
        # The tasks inside a write transaction: one that opens another would wait on itself
        # (one write connection), so it is refused at once, as Store refuses it per thread.
        self._writing: set[asyncio.Task[Any]] = set()
        self.working = AsyncWorkingMemory._bind(self)
        self.episodic = AsyncEpisodicMemory._bind(self)
        self.semantic = AsyncSemanticMemory._bind(self)
        self._tiers.update(
            {tier.tier: tier for tier in (self.working, self.episodic, self.semantic)}
        )

    def tier(self, tier: MemoryTier | int) -> AsyncTier:
        """The tier object for ``tier`` (a MemoryTier or 1-3); UnknownTierError otherwise."""
        found = super().tier(tier)
        assert isinstance(found, AsyncTier)
        return found

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """See :meth:`Store.write`; run storage functions with ``await conn.run_sync(...)``.

        Writes of different tasks wait for each other; a write opened inside another in the same
        task fails at once with :class:`~memrepl.errors.StoreError` (it would wait on itself).
        """
        self._check_open()
        task = asyncio.current_task()
        if task is not None and task in self._writing:
            raise StoreError(
                f"store of node {self.node_id!r}: a write transaction is already open in this "
                "task (nested writes would wait on themselves)"
            )
        if task is not None:
            self._writing.add(task)
        try:
            async with self._write_engine.begin() as conn:
                changes = collect_changes(conn.info)
                try:
                    yield conn
                finally:
                    stop_collecting(conn.info)
        finally:
            if task is not None:
                self._writing.discard(task)
        self._dispatch(changes)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """See :meth:`Store.read`."""
        self._check_open()
        async with self.engine.begin() as conn:
            yield conn

    def stamping(self, conn: Connection) -> AbstractContextManager[HybridLogicalClock]:
        """See :meth:`Store.stamping` (``conn`` is the sync connection inside ``run_sync``)."""
        return stamping(conn, self.clock_settings)

    async def close(self) -> None:
        """Close every connection (awaits the engine's disposal). Idempotent."""
        if isinstance(self._indexer, AsyncIndexer):
            await self._indexer.close()
        self._closed = True
        await self.engine.dispose()

    async def __aenter__(self) -> AsyncStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


def _store_path(location: Location) -> Path | None:
    """The file of a SQLite store (None in memory, or on a server)."""
    url = store_url(location)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", MEMORY):
        return None
    if is_url(location):
        return Path(os.path.abspath(url.database))
    assert not isinstance(location, URL)
    return Path(os.path.abspath(os.fspath(location)))


def open(
    path: Location,
    *,
    node_id: str | None = None,
    synchronous: str = DEFAULT_SYNCHRONOUS,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    max_clock_skew_ns: int = DEFAULT_MAX_CLOCK_SKEW_NS,
    wall: WallClock = time.time_ns,
    working_capacity: int | None = DEFAULT_WORKING_CAPACITY,
) -> Store:
    """Open (creating and migrating if needed) the store at ``path``: a SQLite file, or a
    database URL (``postgresql+psycopg://user@host/dbname`` for PostgreSQL; the database must
    exist, its tables are created).

    ``node_id`` (1-32 bytes of UTF-8, no NUL) is recorded when the database is created; opening
    it with another one raises :class:`~memrepl.errors.NodeIdMismatchError`. Without
    ``node_id`` an existing store opens as the node it records (a store without one -- new, or
    made by ``alembic upgrade head`` -- raises :class:`~memrepl.errors.StoreError`). A database
    written by a newer memrepl raises :class:`~memrepl.errors.SchemaTooNewError`. Other failures
    to open are :class:`~memrepl.errors.StoreError`. On error nothing was written and nothing is
    left open.
    ``path=":memory:"`` opens a private, non-durable in-memory store.
    """
    if node_id is not None:
        check_node_id(node_id)
    else:
        _require_existing(path)
    _check_options(working_capacity, max_clock_skew_ns)
    url = store_url(path)
    engine = create_engine(url, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
    try:
        with engine.begin() as conn:
            node_id = node_id if node_id is not None else existing_node_id(conn, path)
            ready = database_ready(conn, node_id)
        if not ready:
            with write_engine(engine).begin() as conn:
                prepare_database(conn, node_id, wall())
    except DBAPIError as exc:
        engine.dispose()
        raise StoreError(f"opening the store at {describe(path)!r}: {exc.orig}") from exc
    except BaseException:
        engine.dispose()
        raise
    return Store(
        engine,
        node_id=node_id,
        path=_store_path(path),
        clock_settings=ClockSettings(wall, max_clock_skew_ns),
        working_capacity=working_capacity,
        url=url,
    )


async def open_async(
    path: Location,
    *,
    node_id: str | None = None,
    synchronous: str = DEFAULT_SYNCHRONOUS,
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS,
    max_clock_skew_ns: int = DEFAULT_MAX_CLOCK_SKEW_NS,
    wall: WallClock = time.time_ns,
    working_capacity: int | None = DEFAULT_WORKING_CAPACITY,
) -> AsyncStore:
    """The asyncio twin of :func:`open` (``memrepl.aio.open``): same arguments, same errors."""
    if node_id is not None:
        check_node_id(node_id)
    else:
        _require_existing(path)
    _check_options(working_capacity, max_clock_skew_ns)
    url = store_url(path)
    engine = create_async_engine(url, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
    try:
        async with engine.begin() as conn:
            if node_id is None:
                node_id = await conn.run_sync(existing_node_id, path)
            assert node_id is not None
            ready = await conn.run_sync(database_ready, node_id)
        if not ready:
            async with async_write_engine(engine).begin() as conn:
                await conn.run_sync(prepare_database, node_id, wall())
    except DBAPIError as exc:
        await engine.dispose()
        raise StoreError(f"opening the store at {describe(path)!r}: {exc.orig}") from exc
    except BaseException:
        await engine.dispose()
        raise
    store = AsyncStore(
        engine,
        node_id=node_id,
        path=_store_path(path),
        clock_settings=ClockSettings(wall, max_clock_skew_ns),
        working_capacity=working_capacity,
        url=url,
    )
    try:
        await store.semantic.reload_graph()
    except BaseException:
        await store.close()
        raise
    return store


def open_private(**options: Any) -> Store:
    """A private in-memory store with a generated node id (what the bare constructors use)."""
    return open(MEMORY, node_id=f"node-{uuid4().hex[:12]}", **options)
