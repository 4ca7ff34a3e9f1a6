"""Anti-entropy: finding and repairing what two replicas hold differently, behind the cursors.

Cursors say what was sent; digests say what is held (ARCHITECTURE.md, "Trust"). A check with a
peer walks the tiers' comparison trees (:mod:`memrepl.storage.digests`) from the top and only
down the branches that differ:

1. ``summary``: each tier's root (digest and row count). Equal roots end the check: one round
   trip of a few hundred bytes, whatever the size of the tiers.
2. ``groups`` then ``leaves``: the 128 groups of a differing tier, then the 128 buckets of each
   differing group.
3. ``entries``: ``(item id, row hash, stamp)`` of every row in the differing buckets, both sides.
   An id whose hashes differ, or that one side lacks, is a difference.
   The peer's digests said how many rows those buckets hold; an answer that lists far fewer ends
   the check (``bad-digest-answer``): otherwise a peer claiming full buckets and answering
   with empty ones would make the checker query -- and read its own tier for -- each of the
   16,384 buckets, one after another.
4. The initiator pushes its copies as ordinary batches and ``fetch``-es the peer's: every item
   goes through the ordinary merge (``apply_sync_batch``), so what the repair decided is in the
   conflict log like any other merge (a hand edit that kept its version is a ``same-version``
   conflict). Repair batches (made by the manager's batch builder, memrepl.sync.builder) carry
   no cursor (no one's position moves) and the CONFLICT_RESOLUTION flag; their ids start with
   ``ae-``.

What is not sent: an item one side lacks whose stamp is at or below that side's tombstone
horizon (it may be a delete whose tombstone was collected there: sending it would resurrect it),
and, in working memory, more missing items than the side has room for below its eviction
low-water mark (evicting is local forgetting, so full working tiers legitimately differ; a
wiped or emptied one is refilled). Those are counted as ``skipped``.

Hand edits do not pass through the code that keeps digests, so a node also **verifies** its own
digests (:func:`verify_digests`: recompute from the rows, correct the difference). The daemon
does it at start and every ``verify_interval_s``; ``memrepl sync`` before its check.

The rules that keep it right: a peer's query only reads (answers are built from the store in a
read transaction, and ``fetch`` sends items the peer could get from ordinary rounds anyway); what
changes a store is the ordinary merge of ordinary batches, so a hostile digest message cannot make
a node forget or overwrite anything a batch could not. Every query is answered, by an answer or a
NACK naming the fault. And what a query costs is bounded by this node, not by the asker: the
queries that read rows (``entries``) or send them (``fetch``) are answered one at a time per peer
(an honest checker waits for each answer; another one meanwhile is refused, ``query-busy``), and
an ``entries`` query whose buckets hold more rows than one answer may carry, by this node's own
digests, is refused before a row is read.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from memrepl.errors import CheckEndedError, MemreplError, PeerUnavailableError, ProtocolError
from memrepl.protocol.enums import MemoryTier, MessageTypes
from memrepl.storage import digests
from memrepl.storage.digests import GROUP_BUCKETS, GROUPS, Entry, Node
from memrepl.storage.items import load_items
from memrepl.storage.tiers import Tier
from memrepl.storage.working import low_water
from memrepl.sync import digest_messages as msgs
from memrepl.sync.batches import to_wire
from memrepl.sync.messages import Nack
from memrepl.sync.tombstones import purged_through

if TYPE_CHECKING:
    from memrepl.sync.manager import MemorySyncManager

log = logging.getLogger(__name__)

#: Default seconds between a running node's checks with each peer, and between verifications.
DEFAULT_ANTIENTROPY_INTERVAL_S = 180.0
DEFAULT_VERIFY_INTERVAL_S = 3600.0
#: Rows asked for in one ``entries`` query (by the bucket counts of both sides).
ENTRIES_PER_QUERY = 20_000
#: An entries answer may list fewer rows than the peer's digests counted in those buckets (rows
#: can go between two answers: tombstones collected, working memory evicted) -- but not fewer
#: than half of them, less this many: then its digests are not what it holds (a lie, or rows
#: changed by hand that its next verification finds), and the check ends.
ANSWER_SLACK_ROWS = 64


@dataclass(slots=True)
class CheckResult:
    """What one anti-entropy check with a peer found and did."""

    peer_id: str
    started_ns: int
    #: Tiers whose roots were compared, and those that differed.
    tiers_compared: int = 0
    tiers_differing: int = 0
    #: Groups and buckets ("ranges") compared below the roots.
    ranges_compared: int = 0
    buckets_differing: int = 0
    #: Item ids found different (or missing on one side).
    items_differing: int = 0
    #: Items sent to the peer and fetched from it, and how many of them changed a store.
    items_sent: int = 0
    items_fetched: int = 0
    repaired: int = 0
    #: Differences left alone (see the module docstring).
    skipped: int = 0
    #: Digest round trips (queries answered), and the bytes of queries and answers.
    round_trips: int = 0
    digest_bytes: int = 0
    #: The bytes of repair batches, both ways.
    batch_bytes: int = 0
    error: str | None = None
    tiers: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def found(self) -> bool:
        """Whether the check found anything to repair."""
        return self.items_differing > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name in (
                "peer_id",
                "started_ns",
                "tiers_compared",
                "tiers_differing",
                "ranges_compared",
                "buckets_differing",
                "items_differing",
                "items_sent",
                "items_fetched",
                "repaired",
                "skipped",
                "round_trips",
                "digest_bytes",
                "batch_bytes",
                "error",
            )
        }


def verify_digests(tier: Tier) -> int:
    """Recompute ``tier``'s digests from its rows and correct the stored ones; return how many
    buckets were wrong (0: they were right). A full read of the tier (about 3 µs a row), then a
    short write if anything was wrong."""
    with tier.store.read() as conn:
        errors = digests.find_errors(conn, tier.spec)
    if errors:
        with tier.store.write() as conn:
            digests.correct(conn, tier.tier, errors)
        log.warning(
            "%s: %s digests were wrong in %d buckets (rows changed outside memrepl); corrected",
            tier.node_id,
            tier.tier.name.lower(),
            len(errors),
        )
    return len(errors)


def _room(tier: Tier) -> int | None:
    """How many missing items a working tier takes in (None: no limit)."""
    capacity = tier.store.working_capacity
    if tier.tier != MemoryTier.WORKING or capacity is None:
        return None
    table = tier.spec.table
    from sqlalchemy import func, select

    with tier.store.read() as conn:
        live = conn.execute(
            select(func.count()).select_from(table).where(table.c.deleted.is_(False))
        ).scalar_one()
    return max(0, low_water(capacity) - int(live))


class AntiEntropy:
    """The anti-entropy side of a :class:`~memrepl.sync.manager.MemorySyncManager`: answers
    peers' digest queries and runs checks with them."""

    def __init__(self, manager: MemorySyncManager) -> None:
        self.manager = manager
        self._locks: dict[str, asyncio.Lock] = {}
        #: Peers with an ``entries`` or ``fetch`` query being answered (one each at a time).
        self._answering: set[str] = set()
        mesh = manager.mesh
        assert mesh is not None
        mesh.register_handler(MessageTypes.MEMORY_QUERY, self.handle_query)
        mesh.register_handler(MessageTypes.MEMORY_RESPONSE, self._on_answer)

    # -- answering ----------------------------------------------------------------------------

    def handle_query(self, data: bytes, peer_id: str) -> asyncio.Task[None] | None:
        """Answer one digest query: inline for the digest tree, in a task for entries and
        fetches (they read rows, or wait for ACKs)."""
        query_id = ""
        try:
            query = msgs.decode_query(data)
            query_id = query.id
            if query.op in ("entries", "fetch"):
                return self._start_answer(query, peer_id)
            self._send(peer_id, MessageTypes.MEMORY_RESPONSE, self._answer(query))
        except MemreplError as exc:
            self._refuse(peer_id, query_id, exc)
        return None

    def _start_answer(self, query: msgs.Query, peer_id: str) -> asyncio.Task[None] | None:
        """Answer a query that reads or sends rows, in a task -- unless one of this peer's is
        being answered already (an honest checker asks one at a time): then ``query-busy``."""
        if peer_id in self._answering:
            raise ProtocolError(
                f"digest query {query.id!r}: this node is still answering another entries or "
                "fetch query of this peer; ask one at a time",
                code=msgs.BUSY,
            )
        self._answering.add(peer_id)
        task = self.manager.start_task(self._answer_later(query, peer_id))
        if task is None:
            self._answering.discard(peer_id)
        return task

    def _refuse(self, peer_id: str, query_id: str, exc: MemreplError) -> None:
        log.warning("refused digest query %r from %s: %s", query_id, peer_id, exc)
        # The error's own code (memrepl.errors): stable, whatever its class is called.
        self._send(peer_id, MessageTypes.NACK, Nack(query_id, exc.code, str(exc)).encode())

    def _answer(self, query: msgs.Query) -> bytes:
        if query.op == "summary":
            roots = {}
            for tier in self.manager.tiers:
                reg = self.manager.registered(tier)
                with reg.store.read() as conn:
                    root = digests.root(conn, tier)
                roots[str(int(tier))] = [root.digest, root.items]
            return msgs.encode_answer(query.id, tiers=roots)
        reg = self.manager.registered(query.tier)
        with reg.store.read() as conn:
            if query.op == "groups":
                found = digests.groups(conn, reg.tier)
                return msgs.encode_answer(query.id, nodes=msgs.encode_nodes(found))
            leaves = {
                str(group): msgs.encode_nodes(digests.leaves(conn, reg.tier, group))
                for group in query.numbers
            }
            return msgs.encode_answer(query.id, nodes=leaves)

    async def _answer_later(self, query: msgs.Query, peer_id: str) -> None:
        try:
            reg = self.manager.registered(query.tier)
            if query.op == "entries":
                found, horizon, room = await asyncio.to_thread(_answer_entries, reg, query.numbers)
                answer = msgs.encode_answer(
                    query.id,
                    entries=[[e.item_id, e.row_hash, e.version_ts] for e in found],
                    horizon=horizon,
                    room=room,
                )
            else:
                sent, applied, size = await self.push(peer_id, reg, query.ids)
                answer = msgs.encode_answer(query.id, sent=sent, applied=applied, bytes=size)
        except MemreplError as exc:
            self._refuse(peer_id, query.id, exc)
            return
        finally:
            self._answering.discard(peer_id)
        self._send(peer_id, MessageTypes.MEMORY_RESPONSE, answer)

    def _send(self, peer_id: str, msg_type: MessageTypes, data: bytes) -> None:
        mesh = self.manager.mesh
        assert mesh is not None
        try:
            mesh.send(peer_id, msg_type, data)
        except PeerUnavailableError as exc:
            log.warning("could not answer %s: %s", peer_id, exc)

    def _on_answer(self, data: bytes, peer_id: str) -> None:
        try:
            answer = msgs.decode_answer(data)
        except ProtocolError as exc:
            log.warning("bad digest answer from %s: %s", peer_id, exc)
            return
        self.manager.resolve(peer_id, answer["id"], (peer_id, answer, len(data)))

    async def push(self, peer_id: str, reg: Tier, ids: Sequence[str]) -> tuple[int, int, int]:
        """Send the rows of ``ids`` this node holds to ``peer_id`` as repair batches, each
        acknowledged before the next; ``(items sent, items the peer changed, bytes)``."""
        with reg.store.read() as conn:
            rows = load_items(conn, reg.spec, ids)
        items = [to_wire(reg.tier, rows[i]) for i in ids if i in rows]
        batches = self.manager.builder.items(reg.tier, peer_id, items, repair=True)
        done = await self.manager.push(peer_id, reg.tier, batches)
        result = done.result
        if not result.ok:
            raise CheckEndedError(f"repair batch to {peer_id!r}: {result.error}")
        return result.items, result.applied, done.bytes_sent

    # -- checking -----------------------------------------------------------------------------

    async def check(self, peer_id: str) -> CheckResult:
        """Compare every registered tier with ``peer_id`` and repair what differs."""
        lock = self._locks.setdefault(peer_id, asyncio.Lock())
        async with lock:
            result = CheckResult(peer_id, time.time_ns())
            try:
                await self._check(peer_id, result)
            except CheckEndedError as exc:
                result.error = str(exc)
            except MemreplError as exc:
                result.error = f"{exc.code}: {exc}"
            if result.found or result.error:
                log.log(
                    logging.WARNING if result.error else logging.INFO,
                    "anti-entropy with %s: %d differing items in %d buckets, %d sent, "
                    "%d fetched, %d repaired, %d skipped%s",
                    peer_id,
                    result.items_differing,
                    result.buckets_differing,
                    result.items_sent,
                    result.items_fetched,
                    result.repaired,
                    result.skipped,
                    f"; ended early: {result.error}" if result.error else "",
                )
            return result

    async def _ask(self, peer_id: str, query: msgs.Query, result: CheckResult) -> dict[str, Any]:
        data = query.encode()
        answer = await self.manager.ask(peer_id, query.id, MessageTypes.MEMORY_QUERY, data)
        if isinstance(answer, Nack):
            raise CheckEndedError(
                f"{query.op} refused by {peer_id!r}: {answer.code}: {answer.reason}"
            )
        if not isinstance(answer, tuple):
            raise CheckEndedError(f"{query.op} to {peer_id!r}: {answer.value}")
        sender, body, size = answer
        if sender != peer_id:
            raise CheckEndedError(f"{query.op}: answered by {sender!r}, not {peer_id!r}")
        result.round_trips += 1
        result.digest_bytes += len(data) + size
        assert isinstance(body, dict)
        return body

    @staticmethod
    def _new_id() -> str:
        return uuid.uuid4().hex[:16]

    async def _check(self, peer_id: str, result: CheckResult) -> None:
        answer = await self._ask(peer_id, msgs.Query(self._new_id(), "summary"), result)
        try:
            theirs = msgs.tier_roots(answer.get("tiers"))
        except ProtocolError as exc:
            raise CheckEndedError(f"{exc.code}: {exc}") from exc
        for tier in self.manager.tiers:
            if int(tier) not in theirs:
                continue
            reg = self.manager.registered(tier)
            with reg.store.read() as conn:
                mine = digests.root(conn, tier)
            result.tiers_compared += 1
            if mine == theirs[int(tier)]:
                continue
            result.tiers_differing += 1
            await self._check_tier(peer_id, reg, result)

    async def _check_tier(self, peer_id: str, reg: Tier, result: CheckResult) -> None:
        tier = reg.tier
        try:
            answer = await self._ask(peer_id, msgs.Query(self._new_id(), "groups", tier), result)
            their_groups = msgs.nodes(answer.get("nodes"), GROUPS)
            with reg.store.read() as conn:
                my_groups = digests.groups(conn, tier)
            result.ranges_compared += GROUPS
            differing = [g for g in range(GROUPS) if my_groups[g] != their_groups[g]]
            if not differing:
                return
            query = msgs.Query(self._new_id(), "leaves", tier, tuple(differing))
            answer = await self._ask(peer_id, query, result)
            their_leaves = msgs.leaf_groups(answer.get("nodes"), differing)
        except ProtocolError as exc:
            raise CheckEndedError(f"{exc.code}: {exc}") from exc
        buckets: list[tuple[int, int]] = []
        #: What the peer's digests count in each differing bucket.
        counted: dict[int, int] = {}
        with reg.store.read() as conn:
            for group in differing:
                mine: list[Node] = digests.leaves(conn, tier, group)
                result.ranges_compared += GROUP_BUCKETS
                for offset, (a, b) in enumerate(zip(mine, their_leaves[group], strict=True)):
                    if a != b:
                        bucket = group * GROUP_BUCKETS + offset
                        buckets.append((bucket, max(a.items, b.items)))
                        counted[bucket] = b.items
        result.buckets_differing += len(buckets)
        for chunk in _chunks_by_rows(buckets, ENTRIES_PER_QUERY):
            await self._repair_buckets(peer_id, reg, chunk, sum(counted[b] for b in chunk), result)

    async def _repair_buckets(
        self,
        peer_id: str,
        reg: Tier,
        buckets: Sequence[int],
        counted: int,
        result: CheckResult,
    ) -> None:
        """Compare and repair the rows of ``buckets``, in which the peer's digests count
        ``counted`` rows."""
        query = msgs.Query(self._new_id(), "entries", reg.tier, tuple(buckets))
        answer = await self._ask(peer_id, query, result)
        try:
            theirs = {e.item_id: e for e in msgs.entries(answer.get("entries"), buckets)}
            their_horizon = msgs.answer_int(answer, "horizon") or 0
            their_room = msgs.answer_int(answer, "room", optional=True)
        except ProtocolError as exc:
            raise CheckEndedError(f"{exc.code}: {exc}") from exc
        if counted > 2 * len(theirs) + ANSWER_SLACK_ROWS:
            raise CheckEndedError(
                f"{msgs.BAD_ANSWER}: the digests of {peer_id!r} count {counted} rows in "
                f"{len(buckets)} buckets, its entries answer lists {len(theirs)}"
            )
        found, my_horizon, my_room = await asyncio.to_thread(_entries, reg, buckets)
        mine = {e.item_id: e for e in found}
        to_send: list[str] = []
        to_fetch: list[str] = []
        for item_id in sorted(mine.keys() | theirs.keys()):
            a, b = mine.get(item_id), theirs.get(item_id)
            if a is not None and b is not None:
                if a.row_hash == b.row_hash:
                    continue
                to_send.append(item_id)
                to_fetch.append(item_id)
            elif a is not None:
                if _takes(a, their_horizon):
                    to_send.append(item_id)
                else:
                    result.skipped += 1
            elif b is not None:
                if _takes(b, my_horizon):
                    to_fetch.append(item_id)
                else:
                    result.skipped += 1
            result.items_differing += 1
        to_send = _within_room(to_send, theirs, their_room, result)
        to_fetch = _within_room(to_fetch, mine, my_room, result)
        if to_send:
            sent, applied, size = await self.push(peer_id, reg, to_send)
            result.items_sent += sent
            result.repaired += applied
            result.batch_bytes += size
        for start in range(0, len(to_fetch), msgs.MAX_FETCH_IDS):
            ids = tuple(to_fetch[start : start + msgs.MAX_FETCH_IDS])
            answer = await self._ask(
                peer_id, msgs.Query(self._new_id(), "fetch", reg.tier, ids=ids), result
            )
            try:
                result.items_fetched += msgs.answer_int(answer, "sent") or 0
                result.repaired += msgs.answer_int(answer, "applied") or 0
                result.batch_bytes += msgs.answer_int(answer, "bytes") or 0
            except ProtocolError as exc:
                raise CheckEndedError(f"{exc.code}: {exc}") from exc


def _takes(entry: Entry, horizon: int) -> bool:
    """Whether a side that lacks ``entry`` may take it: not if a collected tombstone there could
    be its delete (its stamp is at or below that side's horizon)."""
    return entry.version_ts > horizon


def _within_room(
    ids: list[str], receiver: dict[str, Entry], room: int | None, result: CheckResult
) -> list[str]:
    """Cut the items a side lacks to the room it has (working memory); items it holds in
    another state always pass."""
    if room is None:
        return ids
    kept: list[str] = []
    for item_id in ids:
        if item_id in receiver:
            kept.append(item_id)
        elif room > 0:
            kept.append(item_id)
            room -= 1
        else:
            result.skipped += 1
    return kept


def _chunks_by_rows(buckets: Sequence[tuple[int, int]], limit: int) -> list[list[int]]:
    chunks: list[list[int]] = []
    current: list[int] = []
    rows = 0
    for bucket, count in buckets:
        if current and rows + count > limit:
            chunks.append(current)
            current, rows = [], 0
        current.append(bucket)
        rows += count
    if current:
        chunks.append(current)
    return chunks


def _too_many(rows: int) -> ProtocolError:
    return ProtocolError(
        f"digest query: {rows} rows in the asked buckets, more than {msgs.MAX_ANSWER_ENTRIES}: "
        "ask for fewer buckets",
        code="too-many-entries",
    )


def _answer_entries(reg: Tier, buckets: Sequence[int]) -> tuple[list[Entry], int, int | None]:
    """:func:`_entries` for a peer's query (a thread): refused by this node's own digests'
    row counts before any row is read -- finding a bucket's rows reads every id of the tier, and
    a query for every bucket would hold the whole tier in memory -- and by the rows found."""
    with reg.store.read() as conn:
        counts = digests.stored(conn, reg.tier)
    rows = sum(counts[bucket][1] for bucket in buckets if bucket in counts)
    if rows > msgs.MAX_ANSWER_ENTRIES:
        raise _too_many(rows)
    found, horizon, room = _entries(reg, buckets)
    if len(found) > msgs.MAX_ANSWER_ENTRIES:
        raise _too_many(len(found))
    return found, horizon, room


def _entries(reg: Tier, buckets: Sequence[int]) -> tuple[list[Entry], int, int | None]:
    """This node's entries in ``buckets``, its tombstone horizon and its room (a thread)."""
    with reg.store.read() as conn:
        found = digests.entries(conn, reg.spec, buckets)
        horizon = purged_through(conn, reg.tier)
    return found, horizon, _room(reg)
