"""The storage operations on tier items, each written once as a function over a ``Connection``.

The synchronous API calls these directly and the asyncio API through
``AsyncConnection.run_sync`` (ARCHITECTURE.md, "The layers"); the sync manager calls them inside
its own transactions. Every function that writes must run in a write transaction
(``Store.write()``: ``BEGIN IMMEDIATE``) with the node's clock from
:func:`memrepl.storage.node.stamping`.

The rules that keep it right:

- **Validate, then write.** A call checks every item (id, content, the semantics below) and
  computes every new state before its first write; a refused call leaves the database as it was
  (the caller's transaction rolls back the clock too).
- **One stamp per change.** Each changed row gets ``modified_at = clock.tick()``; for a local
  write that same stamp is its version. So ``modified_at`` is unique and rises in commit order
  (ARCHITECTURE.md, "Deltas, cursors and sync vectors").
- **The merge core decides.** Local writes go through :func:`memrepl.merge.apply_local_write`,
  remote states through :func:`memrepl.merge.merge_remote`; nothing here interprets versions.

Local write semantics (the seed's ``add``/``update``/``delete``/``merge``):

- ``add`` (INSERT) of a live id raises :class:`~memrepl.errors.ItemExistsError`; over a
  tombstone it resurrects the item with the new content.
- ``update`` (UPDATE) replaces the whole content; of a missing or deleted id it raises
  :class:`~memrepl.errors.ItemNotFoundError`.
- ``delete`` (DELETE) leaves a tombstone (content ``{}``, kept so the delete replicates); of a
  missing or deleted id it raises :class:`~memrepl.errors.ItemNotFoundError`.
- ``merge`` (MERGE) sets the given fields and keeps the others; of a missing id it creates the
  item with those fields, over a tombstone it resurrects it with just those fields. It needs at
  least one field, and the merged content must still fit one payload.
- Content is a JSON object: a dict with str keys (at every depth) of JSON values, no NaN or
  Infinity, at most 65,535 bytes as ``json.dumps(content)``; ids are 1-32 bytes of UTF-8, no NUL.
- Several writes to one id in one call apply in order, each on the state the previous one left.
- ``namespace`` (and ``key``) on a write file the item there as of that write (a
  last-writer-wins register of the item's state, :class:`memrepl.merge.Placement`); a write
  without ``namespace`` leaves the item where it is (a new item: in no namespace). A ``key``
  needs its ``namespace`` and the id :func:`memrepl.namespaces.keyed_id` gives for them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from sqlalchemy import Table, bindparam, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.sql.dml import Update
from sqlalchemy.sql.elements import BindParameter

from memrepl.clock import HybridLogicalClock
from memrepl.errors import (
    FilingOptionsError,
    InvalidContentError,
    InvalidNamespaceError,
    ItemError,
    ItemExistsError,
    ItemNotFoundError,
    StoreError,
)
from memrepl.filing import check_options, deadline_after_write, encode_options
from memrepl.merge import (
    EMPTY_STATE,
    ItemState,
    MergeVerdict,
    Version,
    apply_local_write,
    merge_remote,
)
from memrepl.namespaces import check_key, check_namespace, keyed_id
from memrepl.protocol.enums import MemoryTier, SyncOperation, SyncPriority
from memrepl.protocol.item import check_item_id
from memrepl.storage import digests, driver, keyword
from memrepl.storage.backends import backend_named
from memrepl.storage.digests import tuple_hash
from memrepl.storage.driver import DriverStatement, compile_statement
from memrepl.storage.fastjson import encode_content
from memrepl.storage.records import StoredItem, item_from_values, row_tuple
from memrepl.storage.schema import TierSpec, item_columns
from memrepl.storage.validation import check_content, check_size

#: Ids per ``IN (...)`` query: well under SQLite's bound-parameter limit (and PostgreSQL's).
LOAD_CHUNK_ITEMS = 500
#: The key under which a write transaction collects its changed items (``Connection.info``).
CHANGES_KEY = "memrepl.changes"

_WRITE_OPERATIONS = frozenset(
    {SyncOperation.INSERT, SyncOperation.UPDATE, SyncOperation.DELETE, SyncOperation.MERGE}
)
# Columns an upsert leaves alone on an existing row: local bookkeeping owned by other writers.
_KEPT_ON_UPSERT = frozenset({"item_id", "created_at_ns", "access_count", "last_accessed_ns"})
# Indexed item columns only a whole upsert sets: an update of the state alone leaves them (and
# their index entries) alone, so it is used only when they keep their values.
_UPSERT_ONLY = frozenset({"namespace"})


class LocalWrite(NamedTuple):
    """One local write: what ``add``/``update``/``delete``/``merge`` do, as data (a named tuple:
    a bulk load builds one per item).

    ``local`` sets tier-local columns (for example working memory's ``pinned``); columns not named
    keep their value, or the tier's default on a new row. ``namespace`` (a tuple of non-empty
    strings, ``()`` for none) files the item there; None leaves it where it is. ``key`` records
    the key of a keyed id (:func:`memrepl.keyed_id`) and needs ``namespace``.

    ``strict=False`` (:meth:`put`, :meth:`discard`) makes an UPDATE create a missing or deleted
    item (an upsert) and a DELETE of a missing or deleted item leave a tombstone, instead of
    raising. ``embed`` and ``expire_after_s`` are the filing options (:mod:`memrepl.filing`) the
    write files the item with, together with its namespace (so they need ``namespace``):
    which content paths the vector index embeds (None: the default text, False: none) and how
    long after its latest write every node forgets the item (a TTL that replicates).

    ``priority`` None (the default) keeps the item's priority: an ``update``, ``merge`` or
    ``delete`` of an item added with HIGH stays HIGH (its eviction score and its urgency do not
    drop because a field changed); an ``add``, or any write of an item that does not exist, gets
    NORMAL. A priority given is the item's from then on.
    """

    item_id: str
    operation: SyncOperation
    content: Mapping[str, Any] | None = None
    priority: SyncPriority | None = None
    local: Mapping[str, Any] = MappingProxyType({})
    namespace: Sequence[str] | None = None
    key: str | None = None
    strict: bool = True
    embed: Sequence[str] | Literal[False] | None = None
    expire_after_s: float | None = None

    @classmethod
    def put(
        cls,
        item_id: str,
        content: Mapping[str, Any],
        priority: SyncPriority = SyncPriority.NORMAL,
        *,
        namespace: Sequence[str] | None = None,
        key: str | None = None,
        embed: Sequence[str] | Literal[False] | None = None,
        expire_after_s: float | None = None,
    ) -> LocalWrite:
        """A ``put``: the item's whole content, whether it exists, was deleted or never was
        (an UPDATE that creates: LangGraph's ``put``)."""
        return cls(
            item_id,
            SyncOperation.UPDATE,
            content,
            priority,
            _NO_LOCAL,
            namespace,
            key,
            False,
            embed,
            expire_after_s,
        )

    @classmethod
    def discard(cls, item_id: str, priority: SyncPriority = SyncPriority.NORMAL) -> LocalWrite:
        """A ``delete`` that does not mind a missing or deleted item: it leaves a tombstone all
        the same, so it also wins over a concurrent write it has not seen, if it is later."""
        return cls(item_id, SyncOperation.DELETE, None, priority, strict=False)

    @classmethod
    def add(
        cls,
        item_id: str,
        content: Mapping[str, Any],
        priority: SyncPriority | None = None,
        *,
        namespace: Sequence[str] | None = None,
        key: str | None = None,
    ) -> LocalWrite:
        """An ``add`` (INSERT)."""
        return cls(item_id, SyncOperation.INSERT, content, priority, _NO_LOCAL, namespace, key)

    @classmethod
    def update(
        cls,
        item_id: str,
        content: Mapping[str, Any],
        priority: SyncPriority | None = None,
        *,
        namespace: Sequence[str] | None = None,
        key: str | None = None,
    ) -> LocalWrite:
        """An ``update`` (UPDATE)."""
        return cls(item_id, SyncOperation.UPDATE, content, priority, _NO_LOCAL, namespace, key)

    @classmethod
    def delete(cls, item_id: str, priority: SyncPriority | None = None) -> LocalWrite:
        """A ``delete`` (DELETE)."""
        return cls(item_id, SyncOperation.DELETE, None, priority)

    @classmethod
    def merge(
        cls,
        item_id: str,
        content: Mapping[str, Any],
        priority: SyncPriority | None = None,
        *,
        namespace: Sequence[str] | None = None,
        key: str | None = None,
    ) -> LocalWrite:
        """A ``merge`` (MERGE)."""
        return cls(item_id, SyncOperation.MERGE, content, priority, _NO_LOCAL, namespace, key)


_NO_LOCAL: Mapping[str, Any] = MappingProxyType({})


def write_priority(write: LocalWrite, current: StoredItem | None) -> SyncPriority:
    """The priority ``write`` leaves on its item (see :class:`LocalWrite`)."""
    if write.priority is not None:
        return SyncPriority(write.priority)
    if current is None or write.operation == SyncOperation.INSERT:
        return SyncPriority.NORMAL
    return current.priority


class RemoteItem(NamedTuple):
    """An item state received from a peer, to merge into the local one (a named tuple: one is
    built per received item)."""

    item_id: str
    state: ItemState
    priority: SyncPriority = SyncPriority.NORMAL
    #: The content's JSON text as received (the wire payload), stored as is when the remote
    #: state is kept whole: it saves encoding the content again.
    content_json: str | None = None


@dataclass(frozen=True, slots=True)
class _Statements:
    """One tier table's hot statements, compiled once for the driver (:mod:`.driver`)."""

    load_one: str
    #: The upsert of whole rows; parameters are :func:`row_tuple` (table column order).
    upsert: str
    #: The update of an existing row's state columns only (the shared item columns an upsert
    #: does not keep, but the namespace: ``content`` .. ``namespace_origin``); parameters are
    #: ``row_tuple(...)[1:state_end]``, then the id.
    update_state: str
    state_end: int
    count_access: Update


@cache
def _statements(table: Table, backend: str) -> _Statements:
    """``table``'s hot statements for the driver of ``backend`` (``conn.dialect.name``)."""
    upsert = backend_named(backend).insert(table)
    upsert = upsert.on_conflict_do_update(
        index_elements=[table.c.item_id],
        set_={
            column.name: upsert.excluded[column.name]
            for column in table.columns
            if column.name not in _KEPT_ON_UPSERT
        },
    )
    compiled_upsert = compile_statement(upsert, backend)
    names = tuple(column.name for column in table.columns)
    assert compiled_upsert.keys == names
    state_columns = tuple(
        column.name
        for column in item_columns()
        if column.name not in _KEPT_ON_UPSERT and column.name not in _UPSERT_ONLY
    )
    # Right after the id, so that a slice of a row tuple gives their values.
    assert names[1 : 1 + len(state_columns)] == state_columns
    update_state = compile_statement(
        update(table)
        .where(table.c.item_id == bindparam("id"))
        .values({name: bindparam(name) for name in state_columns}),
        backend,
    )
    assert update_state.keys == (*state_columns, "id")
    return _Statements(
        load_one=compile_statement(
            select(table).where(table.c.item_id == bindparam("id")), backend
        ).sql,
        upsert=compiled_upsert.sql,
        update_state=update_state.sql,
        state_end=1 + len(state_columns),
        count_access=update(table)
        .where(table.c.item_id == bindparam("access_item_id"))
        .values(access_count=table.c.access_count + 1, last_accessed_ns=bindparam("now_ns")),
    )


@cache
def _since_statement(
    table: Table, exclude_peer: bool, limited: bool, live_only: bool, backend: str
) -> DriverStatement:
    """:func:`modified_since`'s query with these options, compiled once; its parameters are
    ``since``, then ``peer`` and ``limit`` where used."""
    query = select(table).where(table.c.modified_at > bindparam("since"))
    if exclude_peer:
        query = query.where(table.c.received_from.is_distinct_from(bindparam("peer")))
    if live_only:
        query = query.where(table.c.deleted.is_(False))
    query = query.order_by(table.c.modified_at)
    if limited:
        limit: BindParameter[int] = bindparam("limit")
        query = query.limit(limit)
    return compile_statement(query, backend)


@lru_cache(maxsize=4 * LOAD_CHUNK_ITEMS)
def _load_many(table: Table, count: int, backend: str) -> str:
    """``SELECT <every column> ... WHERE item_id IN (?, ... count times)``, compiled once."""
    ids: BindParameter[list[str]] = bindparam("ids", value=[""] * count, expanding=True)
    statement = select(table).where(table.c.item_id.in_(ids))
    return compile_statement(statement, backend, render_postcompile=True).sql


def load_items(conn: Connection, spec: TierSpec, ids: Iterable[str]) -> dict[str, StoredItem]:
    """The stored rows (tombstones included) of ``ids`` that exist, by id: one query per 500."""
    unique = list(dict.fromkeys(ids))
    table = spec.table
    if len(unique) == 1:
        rows = driver.execute(conn, _statements(table, conn.dialect.name).load_one, unique)
        return {row[0]: item_from_values(spec, row) for row in rows}
    found: dict[str, StoredItem] = {}
    for start in range(0, len(unique), LOAD_CHUNK_ITEMS):
        chunk = unique[start : start + LOAD_CHUNK_ITEMS]
        for row in driver.execute(conn, _load_many(table, len(chunk), conn.dialect.name), chunk):
            found[row[0]] = item_from_values(spec, row)
    return found


def _store(
    conn: Connection,
    spec: TierSpec,
    changed: Sequence[StoredItem],
    stored: Mapping[str, StoredItem],
    *,
    local: bool,
) -> None:
    """Write ``changed`` (``stored``: their rows before the call), run the tier hook (``local``:
    local writes, not states from a peer), note them for after-commit hooks.

    A row whose tier columns (derived and local) and namespace keep their values gets an UPDATE
    of its state columns only: SQLite rewrites the index entries of every column an UPDATE sets,
    changed or not, and those columns carry the tiers' indexes (episode, time, graph ends,
    expiry, namespace). Every other row is upserted whole.
    """
    if not changed:
        return
    statements = _statements(spec.table, conn.dialect.name)
    whole: list[tuple[Any, ...]] = []
    state_only: list[tuple[Any, ...]] = []
    hashes: list[digests.RowChange] = []
    for item in changed:
        row = row_tuple(spec, item)
        before = stored.get(item.item_id)
        hashes.append(
            (row[0], digests.item_hash(before) if before is not None else None, tuple_hash(row))
        )
        if (
            before is not None
            and before.extras == item.extras
            and before.state.placement.namespace == item.state.placement.namespace
        ):
            state_only.append((*row[1 : statements.state_end], row[0]))
        else:
            whole.append(row)
    if whole:
        driver.executemany(conn, statements.upsert, whole)
    if state_only:
        updated = driver.executemany(conn, statements.update_state, state_only)
        if updated != len(state_only):
            # ``stored`` was read in this transaction, so this would be a bug: refuse to commit
            # a write that silently lost rows.
            raise StoreError(
                f"{spec.table.name}: {updated} of {len(state_only)} state updates found their row"
            )
    digests.record_changes(conn, spec.tier, hashes)
    # The keyword index follows, in this transaction: out with text that changed, in with the new.
    removed, added = keyword.entry_changes((stored.get(item.item_id), item) for item in changed)
    keyword.index_changes(conn, spec, removed, added)
    # Noted before the tier hook runs: what the hook forgets (eviction) must come after, so that
    # after-commit hooks end with an item's final state.
    pending = conn.info.get(CHANGES_KEY)
    if pending is not None:
        pending.append((spec.tier, list(changed)))
    if spec.on_change is not None:
        spec.on_change(conn, changed, local)


def _local_extras(
    spec: TierSpec,
    state: ItemState,
    previous: StoredItem | None,
    local: Mapping[str, Any],
) -> dict[str, Any]:
    extras = spec.derive_columns(state.content)
    if not spec.local_defaults:
        return extras
    for name, default in spec.local_defaults.items():
        extras[name] = local.get(name, previous.extras.get(name) if previous else default)
    if "expires_at_ns" in spec.local_defaults and "expires_at_ns" not in local:
        # A replicated TTL runs from the latest write (memrepl.filing); a local one is kept.
        extras["expires_at_ns"] = deadline_after_write(
            state.placement.options,
            state.version.timestamp_ns,
            previous.state.placement.options if previous else None,
            extras["expires_at_ns"],
        )
    return extras


def _check_options(write: LocalWrite) -> str:
    """The canonical text of the write's filing options (:mod:`memrepl.filing`)."""
    if write.embed is None and write.expire_after_s is None:
        return ""
    try:
        return encode_options(check_options(write.embed, write.expire_after_s))
    except FilingOptionsError as exc:
        raise FilingOptionsError(f"item {write.item_id!r}: {exc}", item_id=write.item_id) from exc


def _check_place(write: LocalWrite) -> tuple[tuple[str, ...], str, str] | None:
    """The ``(namespace, key, options text)`` a write files its item under; None when it names
    no namespace."""
    if write.namespace is None:
        if write.key is not None:
            raise InvalidNamespaceError(
                f"item {write.item_id!r}: a key needs its namespace (give namespace= too)"
            )
        if write.embed is not None or write.expire_after_s is not None:
            raise InvalidNamespaceError(
                f"item {write.item_id!r}: filing options (embed, expire_after_s) are set with "
                "the namespace: give namespace= too (() for none)"
            )
        return None
    namespace = check_namespace(write.namespace)
    options = _check_options(write)
    if write.key is None:
        return namespace, "", options
    key = check_key(write.key)
    expected = keyed_id(namespace, key)
    if write.item_id != expected:
        raise InvalidNamespaceError(
            f"item {write.item_id!r}: the id of key {key!r} in {namespace!r} is "
            f"keyed_id(namespace, key) = {expected!r}"
        )
    return namespace, key, options


_Checked = tuple[tuple[dict[str, Any], str] | None, tuple[tuple[str, ...], str, str] | None]


def _check_write(spec: TierSpec, write: LocalWrite) -> _Checked:
    return _check_content(spec, write), _check_place(write)


def _check_content(spec: TierSpec, write: LocalWrite) -> tuple[dict[str, Any], str] | None:
    item_id = check_item_id(write.item_id)
    if write.operation not in _WRITE_OPERATIONS:
        raise ItemError(
            f"item {item_id!r}: {write.operation!r} is not a local write", item_id=item_id
        )
    if write.priority is not None and type(write.priority) is not SyncPriority:
        try:
            SyncPriority(write.priority)
        except ValueError as exc:
            raise ItemError(
                f"item {item_id!r}: unknown priority {write.priority!r}", item_id=item_id
            ) from exc
    unknown = write.local and set(write.local) - set(spec.local_defaults)
    if unknown:
        raise ItemError(
            f"item {item_id!r}: {spec.tier.name.lower()} memory has no local column "
            f"{sorted(unknown)}",
            item_id=item_id,
        )
    if write.operation == SyncOperation.DELETE:
        return None
    checked = check_content(write.content, item_id)
    if write.operation == SyncOperation.MERGE and not checked[0]:
        raise InvalidContentError(
            f"merge of item {item_id!r}: give at least one field to merge", item_id=item_id
        )
    return checked


def _check_semantics(write: LocalWrite, current: StoredItem | None) -> None:
    if not write.strict:
        return
    live = current is not None and not current.deleted
    item_id = write.item_id
    if write.operation == SyncOperation.INSERT and live:
        raise ItemExistsError(
            f"add of item {item_id!r}: it exists (use update or merge)", item_id=item_id
        )
    if write.operation in (SyncOperation.UPDATE, SyncOperation.DELETE) and not live:
        verb = "update" if write.operation == SyncOperation.UPDATE else "delete"
        state = "is deleted" if current is not None else "does not exist"
        raise ItemNotFoundError(f"{verb} of item {item_id!r}: it {state}", item_id=item_id)


def write_local(
    conn: Connection,
    spec: TierSpec,
    node_id: str,
    clock: HybridLogicalClock,
    writes: Sequence[LocalWrite],
) -> list[StoredItem]:
    """Apply local writes in order; return the item after each write (one per write).

    Raises (before writing anything) :class:`~memrepl.errors.InvalidItemIdError`,
    :class:`~memrepl.errors.InvalidContentError`, :class:`~memrepl.errors.ItemTooLargeError`,
    :class:`~memrepl.errors.ItemExistsError` or :class:`~memrepl.errors.ItemNotFoundError`.
    """
    contents = [_check_write(spec, write) for write in writes]
    stored = load_items(conn, spec, (write.item_id for write in writes))
    latest = dict(stored)
    results: list[StoredItem] = []
    changed: dict[str, StoredItem] = {}
    for write, (checked, place) in zip(writes, contents, strict=True):
        current = latest.get(write.item_id)
        _check_semantics(write, current)
        stamp = clock.tick()
        content, text = checked if checked is not None else (None, "{}")
        state = apply_local_write(
            current.state if current else None,
            write.operation,
            content,
            Version(stamp, node_id),
            place,
        )
        if write.operation == SyncOperation.MERGE:
            text = encode_content(state.content)
            check_size(text, write.item_id)
        item = StoredItem(
            item_id=write.item_id,
            state=state,
            priority=write_priority(write, current),
            modified_at=stamp,
            received_from=None,
            created_at_ns=current.created_at_ns if current else stamp,
            access_count=current.access_count if current else 0,
            last_accessed_ns=current.last_accessed_ns if current else None,
            extras=_local_extras(spec, state, current, write.local),
            content_json=text,
        )
        latest[write.item_id] = changed[write.item_id] = item
        results.append(item)
    _store(conn, spec, list(changed.values()), stored, local=True)
    return results


@dataclass(slots=True)
class MergedStates:
    """What :func:`apply_remote_states` did: three lists, each in the order of its input."""

    verdicts: list[MergeVerdict]
    #: The row each state was merged into (None: the tier had none).
    before: list[StoredItem | None]
    #: The row written for each state (None: the state changed nothing).
    after: list[StoredItem | None]


def apply_remote_states(
    conn: Connection,
    spec: TierSpec,
    clock: HybridLogicalClock,
    incoming: Sequence[RemoteItem],
    *,
    from_peer: str,
) -> MergedStates:
    """Merge states received from ``from_peer`` into the tier; what each state did.

    Every remote stamp is first checked against the clock (``clock.observe``: a
    :class:`~memrepl.errors.ClockSkewError` refuses the whole call before any write). Changed
    rows get a fresh ``modified_at`` each (so they flow on to other peers) and
    ``received_from = from_peer`` when the kept state IS the remote one, NULL when the merge made
    a new combination (that one must travel back too). The row keeps the remote priority, or the
    greater of both for a merge. Later states of one id in ``incoming`` merge onto earlier ones.
    """
    for remote in incoming:
        check_item_id(remote.item_id)
    if incoming:
        # The causal contexts' stamps too (a state may carry a write it does not show); one
        # check of the latest stamp covers them all.
        clock.observe(
            max(max(r.state.version.timestamp_ns, *r.state.context.values()) for r in incoming)
        )
    stored = load_items(conn, spec, (remote.item_id for remote in incoming))
    latest = dict(stored)
    merged = MergedStates([], [], [])
    changed: dict[str, StoredItem] = {}
    for remote in incoming:
        current = latest.get(remote.item_id)
        if current is None:
            verdict = merge_remote(None, remote.state)
        else:
            verdict = merge_remote(
                current.state, remote.state, (current.content_json, remote.content_json)
            )
        merged.verdicts.append(verdict)
        merged.before.append(current)
        if not verdict.changed:
            merged.after.append(None)
            continue
        state = verdict.state
        as_received = state == remote.state
        priority = remote.priority
        if type(priority) is not SyncPriority:
            priority = SyncPriority(priority)
        if current is not None and not as_received:
            priority = max(priority, current.priority)
        # The merge often keeps one side's content as is: then its text is known.
        if as_received or state.content is remote.state.content:
            text = remote.content_json
        elif current is not None and state.content is current.state.content:
            text = current.content_json
        else:
            text = None
        item = StoredItem(
            remote.item_id,
            state,
            priority,
            clock.tick(),
            from_peer if as_received else None,
            current.created_at_ns if current is not None else clock.last_ns,
            current.access_count if current is not None else 0,
            current.last_accessed_ns if current is not None else None,
            _local_extras(spec, state, current, {}),
            text,
        )
        merged.after.append(item)
        latest[remote.item_id] = changed[remote.item_id] = item
    _store(conn, spec, list(changed.values()), stored, local=False)
    return merged


def modified_since(
    conn: Connection,
    spec: TierSpec,
    since_ns: int,
    *,
    limit: int | None = None,
    exclude_received_from: str | None = None,
    live_only: bool = False,
) -> list[StoredItem]:
    """Rows changed here after ``since_ns`` (tombstones included unless ``live_only``), in
    ``modified_at`` order.

    An index range scan on ``modified_at``: its cost follows the number of rows returned, not the
    size of the tier. ``exclude_received_from`` leaves out rows whose state came as is from that
    peer (no echo), filtered on the same scan; a caller advancing a cursor past such rows can use
    :func:`max_modified_at`. ``limit`` counts the rows returned (after both filters).
    """
    query = _since_statement(
        spec.table,
        exclude_received_from is not None,
        limit is not None,
        live_only,
        conn.dialect.name,
    )
    parameters = {"since": since_ns, "peer": exclude_received_from, "limit": limit}
    rows = driver.execute(conn, query.sql, query.parameters(parameters))
    return [item_from_values(spec, row) for row in rows]


def max_modified_at(conn: Connection, spec: TierSpec) -> int:
    """The tier's latest ``modified_at`` (0 when empty): one index lookup."""
    value = conn.execute(select(func.max(spec.table.c.modified_at))).scalar_one()
    return int(value) if value is not None else 0


def record_access(conn: Connection, spec: TierSpec, item_id: str, now_ns: int) -> None:
    """Count a local read: ``access_count + 1`` and ``last_accessed_ns``; never ``modified_at``."""
    conn.execute(
        _statements(spec.table, conn.dialect.name).count_access,
        {"access_item_id": item_id, "now_ns": now_ns},
    )


def count_read(conn: Connection, spec: TierSpec, item: StoredItem, now_ns: int) -> StoredItem:
    """Record a local read of ``item`` (:func:`record_access`); the item as it now is."""
    record_access(conn, spec, item.item_id, now_ns)
    return replace(item, access_count=item.access_count + 1, last_accessed_ns=now_ns)


def read_item(
    conn: Connection, spec: TierSpec, item_id: str, now_ns: int, *, count_access: bool = True
) -> StoredItem | None:
    """The live item ``item_id``, None if missing, deleted or expired
    (:mod:`memrepl.storage.expiry`); with ``count_access`` the read is
    recorded (in a write transaction), without it nothing is written."""
    item = load_items(conn, spec, [check_item_id(item_id)]).get(item_id)
    if item is None or item.deleted or item.expired(now_ns):
        return None
    return count_read(conn, spec, item, now_ns) if count_access else item


def read_items(
    conn: Connection, spec: TierSpec, item_ids: Sequence[str], now_ns: int
) -> dict[str, StoredItem]:
    """The live, unexpired items among ``item_ids``, by id, with an access recorded for each
    (:func:`record_access`, one statement for all); missing, deleted and expired ones are left
    out. In a write transaction."""
    found = {
        item_id: item
        for item_id, item in load_items(conn, spec, map(check_item_id, item_ids)).items()
        if not item.deleted and not item.expired(now_ns)
    }
    if found:
        conn.execute(
            _statements(spec.table, conn.dialect.name).count_access,
            [{"access_item_id": item_id, "now_ns": now_ns} for item_id in found],
        )
    return {
        item_id: replace(item, access_count=item.access_count + 1, last_accessed_ns=now_ns)
        for item_id, item in found.items()
    }


def collect_changes(info: MutableMapping[Any, Any]) -> list[tuple[MemoryTier, list[StoredItem]]]:
    """Start collecting the items a transaction changes, in its connection's ``info``.

    ``Store.write()`` does this so that it can run the tiers' after-commit hooks.
    """
    pending: list[tuple[MemoryTier, list[StoredItem]]] = []
    info[CHANGES_KEY] = pending
    return pending


def stop_collecting(info: MutableMapping[Any, Any]) -> None:
    """Stop collecting changes (before the connection goes back to the pool)."""
    info.pop(CHANGES_KEY, None)


def forget_items(conn: Connection, spec: TierSpec, ids: Iterable[str]) -> list[StoredItem]:
    """Delete rows outright, leaving no tombstone: local forgetting, which never replicates.

    Used where a node drops what it holds without deleting it for everyone (working-memory
    eviction and TTL, a snapshot's cleanup). After-commit hooks see each forgotten item with an
    empty, deleted state. Returns the rows as they were.
    """
    found = load_items(conn, spec, ids)
    if not found:
        return []
    table = spec.table
    unique = list(found)
    for start in range(0, len(unique), LOAD_CHUNK_ITEMS):
        chunk = unique[start : start + LOAD_CHUNK_ITEMS]
        conn.execute(table.delete().where(table.c.item_id.in_(chunk)))
    digests.record_changes(
        conn, spec.tier, [(item.item_id, digests.item_hash(item), None) for item in found.values()]
    )
    removed, _ = keyword.entry_changes((item, None) for item in found.values())
    keyword.index_changes(conn, spec, removed, [])
    pending = conn.info.get(CHANGES_KEY)
    if pending is not None:
        pending.append((spec.tier, [replace(item, state=EMPTY_STATE) for item in found.values()]))
    return list(found.values())


def resend_items(
    conn: Connection, spec: TierSpec, clock: HybridLogicalClock, ids: Iterable[str]
) -> list[StoredItem]:
    """Give rows a fresh ``modified_at`` and no ``received_from``, their state unchanged.

    The next delta to every peer then carries them again, the peer they came from included: used
    when a peer turns out to lack items it had seen (the end of a snapshot). Returns the rows as
    they now are.
    """
    stored = load_items(conn, spec, ids)
    changed = [
        replace(item, modified_at=clock.tick(), received_from=None) for item in stored.values()
    ]
    _store(conn, spec, changed, stored, local=False)
    return changed
