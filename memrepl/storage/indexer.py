"""The vector indexer: runs the index's steps after commits, in a thread (sync) or a task (async).

A step (:mod:`memrepl.storage.vector_index`) reads a tier's next changes in a read transaction,
calls the model with no transaction open, and writes the vectors with the new cursor in one short
write transaction. The runners here only decide *when* steps run:

- in the background (``attach_embedder(..., background=True)``, the default): woken after every
  commit of the store that changed a tier (local writes and applied batches alike), and every
  ``poll_s`` seconds for writes by other processes on the same file; it runs steps until no
  tier has pending changes;
- on demand: :meth:`ThreadIndexer.catch_up` (``store.index_vectors()``) and a search with
  ``wait_s`` run steps in the caller until the index is up to date (or the time is up).

The rules that keep it right: one step at a time per store (a lock; a second indexer in another
process is harmless, its write is refused when the cursor moved); a failing model (an
:class:`~memrepl.errors.EmbedderError`) writes nothing, is kept as :attr:`last_error` and
retried on the next wake-up, never in a loop; ``close`` stops the runner before the store closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from memrepl.errors import EmbedderError
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import vector_index
from memrepl.storage.schema import TierSpec
from memrepl.storage.vector_index import Changes, VectorIndex

if TYPE_CHECKING:
    from memrepl.storage.store import AsyncStore, Store

log = logging.getLogger(__name__)

#: How often a background indexer looks for writes made by other processes.
DEFAULT_POLL_S = 1.0


class _Runner:
    """What both runners share: the index, the tiers, the last error."""

    def __init__(self, index: VectorIndex, specs: Iterable[TierSpec], poll_s: float) -> None:
        self.index = index
        self.specs = list(specs)
        self.poll_s = poll_s
        #: The last model failure (None after a step succeeds).
        self.last_error: EmbedderError | None = None

    def _wall(self) -> int:
        return time.time_ns()


class ThreadIndexer(_Runner):
    """The indexer of a synchronous :class:`~memrepl.storage.store.Store`."""

    def __init__(
        self, store: Store, index: VectorIndex, specs: Iterable[TierSpec], poll_s: float
    ) -> None:
        super().__init__(index, specs, poll_s)
        self.store = store
        self._step_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Run in a daemon thread until :meth:`close`."""
        self._thread = threading.Thread(
            target=self._run, name=f"memrepl-indexer-{self.store.node_id}", daemon=True
        )
        self._thread.start()

    @property
    def background(self) -> bool:
        """Whether a background thread runs the steps."""
        return self._thread is not None and self._thread.is_alive()

    def notify(self) -> None:
        """A commit changed a tier: wake the background thread."""
        self._wake.set()

    def step(self, spec: TierSpec) -> int | None:
        """One step on one tier: how many items it embedded, None when it was up to date."""
        index = self.index
        with self._step_lock:
            with self.store.read() as conn:
                changes = vector_index.read_changes(
                    conn, spec, index.name, index.dims, index.batch_items
                )
            if changes is None:
                return None
            texts = changes.texts
            matrix = index.embed(texts) if texts else None
            with self.store.write() as conn:
                written = vector_index.write_vectors(
                    conn, changes, index.name, index.dims, matrix=matrix, now_ns=self._wall()
                )
            if written:
                index.applied(changes, matrix)
            self.last_error = None
            return len(changes.embed)

    def catch_up(self, deadline: float | None = None) -> int:
        """Run steps until every tier is up to date (or ``deadline``, a ``time.monotonic()``);
        how many items were embedded. Raises the model's :class:`EmbedderError`."""
        embedded = 0
        for spec in self.specs:
            while deadline is None or time.monotonic() < deadline:
                done = self.step(spec)
                if done is None:
                    break
                embedded += done
        return embedded

    def pending(self) -> dict[MemoryTier, int]:
        """Per tier, the changes not embedded yet."""
        index = self.index
        with self.store.read() as conn:
            return {
                spec.tier: vector_index.pending(
                    conn, spec, vector_index.cursor_of(conn, spec.tier, index.name, index.dims)
                )
                for spec in self.specs
            }

    def wait(self, timeout_s: float) -> bool:
        """Wait until nothing is pending (True) or ``timeout_s`` passes (False). Without a
        background thread, the steps run here."""
        deadline = time.monotonic() + timeout_s
        if not self.background:
            self.catch_up(deadline)
            return not any(self.pending().values())
        while True:
            if self.last_error is not None:
                raise self.last_error
            if not any(self.pending().values()):
                return True
            if time.monotonic() >= deadline:
                return False
            self._wake.set()
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.catch_up()
            except EmbedderError as exc:
                self.last_error = exc
                log.warning("vector indexer: %s (retrying on the next change)", exc)
            except Exception:  # a busy database, a closed store: retried on the next wake-up
                if self._stop.is_set():
                    return
                log.exception("vector indexer: step failed")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def close(self) -> None:
        """Stop the background thread (waits for the step in hand)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


class AsyncIndexer(_Runner):
    """The indexer of an :class:`~memrepl.storage.store.AsyncStore`: an asyncio task; the model
    runs in a worker thread so the event loop never waits for it."""

    def __init__(
        self, store: AsyncStore, index: VectorIndex, specs: Iterable[TierSpec], poll_s: float
    ) -> None:
        super().__init__(index, specs, poll_s)
        self.store = store
        self._step_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Run as a task of the running loop until :meth:`close`."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def background(self) -> bool:
        """Whether a background task runs the steps."""
        return self._task is not None and not self._task.done()

    def notify(self) -> None:
        """A commit changed a tier: wake the background task."""
        self._wake.set()

    async def step(self, spec: TierSpec) -> int | None:
        """See :meth:`ThreadIndexer.step`."""
        index = self.index
        async with self._step_lock:
            async with self.store.read() as conn:
                changes: Changes | None = await conn.run_sync(
                    vector_index.read_changes, spec, index.name, index.dims, index.batch_items
                )
            if changes is None:
                return None
            texts = changes.texts
            matrix = await asyncio.to_thread(index.embed, texts) if texts else None
            async with self.store.write() as conn:
                written = await conn.run_sync(
                    vector_index.write_vectors,
                    changes,
                    index.name,
                    index.dims,
                    matrix=matrix,
                    now_ns=self._wall(),
                )
            if written:
                index.applied(changes, matrix)
            self.last_error = None
            return len(changes.embed)

    async def catch_up(self, deadline: float | None = None) -> int:
        """See :meth:`ThreadIndexer.catch_up`."""
        embedded = 0
        for spec in self.specs:
            while deadline is None or time.monotonic() < deadline:
                done = await self.step(spec)
                if done is None:
                    break
                embedded += done
        return embedded

    async def pending(self) -> dict[MemoryTier, int]:
        """See :meth:`ThreadIndexer.pending`."""
        index = self.index
        found: dict[MemoryTier, int] = {}
        async with self.store.read() as conn:
            for spec in self.specs:
                cursor = await conn.run_sync(
                    vector_index.cursor_of, spec.tier, index.name, index.dims
                )
                found[spec.tier] = await conn.run_sync(vector_index.pending, spec, cursor)
        return found

    async def wait(self, timeout_s: float) -> bool:
        """See :meth:`ThreadIndexer.wait`."""
        deadline = time.monotonic() + timeout_s
        if not self.background:
            await self.catch_up(deadline)
            return not any((await self.pending()).values())
        while True:
            if self.last_error is not None:
                raise self.last_error
            if not any((await self.pending()).values()):
                return True
            if time.monotonic() >= deadline:
                return False
            self._wake.set()
            await asyncio.sleep(min(0.01, max(0.0, deadline - time.monotonic())))

    async def _run(self) -> None:
        while True:
            try:
                await self.catch_up()
            except EmbedderError as exc:
                self.last_error = exc
                log.warning("vector indexer: %s (retrying on the next change)", exc)
            except Exception:
                log.exception("vector indexer: step failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.poll_s)
            self._wake.clear()

    async def close(self) -> None:
        """Stop the background task."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
