"""The keyword index: one SQLite FTS5 table per tier, kept in each write's transaction, BM25.

What is indexed: **every string value of an item's content**, at any depth (in nested objects
and lists), joined by spaces; not the keys, not numbers or booleans, not the namespace (that is
a filter). Words are matched case-insensitively and without accents (FTS5's ``unicode61``
tokenizer with ``remove_diacritics 2``): ``Café`` matches ``cafe``. There is no stemming
(``run`` does not match ``running``; the FTS5 syntax has prefixes, ``run*``).

The rules that keep it right:

- **Derived, local, exact.** ``<tier table>_fts`` holds one row per live item with the text
  above; its rowid is the item's ``created_at_ns`` (:data:`ROWID_COLUMN`: the stamp of the
  write that created the row on this node, unique -- a unique index keeps it so -- and kept
  while the row lives; unlike SQLite's own rowid it survives ``VACUUM``). The storage
  operations change it in the SAME transaction as the rows (:func:`entry_changes` and
  :func:`index_changes`, called by :mod:`memrepl.storage.items` for every write, applied batch
  and forgetting: eviction, expiry, a snapshot's cleanup), so what a committed transaction
  wrote is findable at once and what it deleted or forgot never is. A tombstone has no entry
  (and purging tombstones touches none). The index never travels. Rows changed by hand with SQL
  are not followed: ``memrepl index rebuild`` re-derives the index.
- **Only text that changed.** A write that leaves an item's indexed text as it was (the same
  content applied again, a merge of a number, a move to another namespace) leaves its entry
  alone: the rowid does not change with the write, so the entry is still right.
- **Per batch, from the content at hand.** One ``executemany`` removes a batch's old entries
  and one adds its new ones; the text comes from the content objects the write already decoded
  (:func:`indexed_text`, a walk in Python: SQLite's ``json_tree`` took six times as long on the
  bench's items). Triggers were measured too: an FTS5 table written from a trigger flushes its
  pending terms on every row's statement savepoint, three times the cost.
- **Contentless.** The FTS5 table keeps only the index (``content=''``), not a second copy of
  the text; removing an entry needs the text it was added with (the FTS5 ``'delete'`` command),
  which is why ONE function (:func:`indexed_text`) serves adding, removing, rebuilding and the
  vector index (migrations 0006 and 0010 carry frozen copies, checked equal by a test).
- **Rebuildable.** :func:`rebuild` empties the index and re-derives it from the table
  (``memrepl index rebuild``); migration 0006 created it that way for existing stores, and
  migration 0010 re-keyed it by ``created_at_ns``.

Query syntax (:func:`match_expression`): by default a query is **plain words**: each word
(a run of letters and digits) is quoted and the words are OR-ed, so any text works and an item
that holds more of the words ranks higher (BM25 sums over the words). ``syntax="fts5"`` passes
FTS5's own syntax through (``AND``, ``OR``, ``NOT``, ``"phrases"``, ``prefix*``, ``NEAR``); a query
FTS5 cannot parse is an :class:`~memrepl.errors.InvalidQueryError`, found on a scratch in-memory
FTS5 table before the store is touched.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, TableClause, column, select, table, text
from sqlalchemy.engine import Connection

from memrepl.errors import InvalidQueryError
from memrepl.storage import driver
from memrepl.storage.backends import backend_of
from memrepl.storage.fastjson import decode_json
from memrepl.storage.records import StoredItem
from memrepl.storage.schema import TIER_SPECS, TierSpec

#: The FTS5 tokenizer: Unicode words, case and accents folded.
TOKENIZER = "unicode61 remove_diacritics 2"
#: The query syntaxes :func:`match_expression` understands.
SYNTAXES = ("words", "fts5")
#: Suffix of a tier table's keyword index.
SUFFIX = "_fts"
#: Rows read per chunk when (re)filling an index.
FILL_CHUNK_ROWS = 2000

_WORD = re.compile(r"[^\W_]+")


def fts_name(spec: TierSpec) -> str:
    """The name of the FTS5 table of ``spec``'s tier (``working_items_fts``...)."""
    return spec.table.name + SUFFIX


#: Every keyword index table (and FTS5's shadow tables start with these names).
FTS_TABLES = tuple(fts_name(spec) for spec in TIER_SPECS.values())


def is_index_table(name: str) -> bool:
    """Whether ``name`` is a keyword index or one of FTS5's shadow tables of one (not part of
    the schema's metadata: Alembic's comparison leaves them alone)."""
    return any(name == fts or name.startswith(fts + "_") for fts in FTS_TABLES)


def _walk(value: Any, found: list[str]) -> None:
    """Append the strings in ``value`` (a string, or a container at any depth) to ``found``,
    depth first in document order (an explicit stack: no recursion limit)."""
    stack: list[Any] = [value]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            stack.extend(reversed(value.values()))
        elif isinstance(value, list | tuple):
            stack.extend(reversed(value))


def indexed_text(content: Mapping[str, Any]) -> str:
    """The text indexed for ``content``: its string values, depth first in document order,
    joined by spaces ("" when it has none)."""
    # Every write runs this: the usual shapes (strings, lists of strings, at the top) are taken
    # without the general walk, which is three times slower.
    found: list[str] = []
    append = found.append
    for value in content.values():
        kind = type(value)
        if kind is str:
            append(value)
        elif kind is list:
            for inner in value:
                if type(inner) is str:
                    append(inner)
                elif isinstance(inner, str | dict | list | tuple):
                    _walk(inner, found)
        elif isinstance(value, str | dict | list | tuple):
            _walk(value, found)
    return " ".join(found)


#: FTS5 settings of every index (kept in its ``_config`` table). ``automerge``: merge the index's
#: segments 16 at a time, not 4: each entry is rewritten about half as often as the index grows
#: (building 1,000,000 items 100 a transaction took 28 s instead of 40), and searches cost the
#: same (bench/search_bench.py's queries on either index: within 3%).
SETTINGS = (("automerge", 16),)


def ddl(spec: TierSpec) -> list[str]:
    """The statements that create ``spec``'s keyword index (empty) with its :data:`SETTINGS`
    (migrations 0006 and 0009 ran them)."""
    fts = fts_name(spec)
    return [
        f"CREATE VIRTUAL TABLE {fts} USING fts5(body, content='', tokenize='{TOKENIZER}')",
        *(f"INSERT INTO {fts}({fts}, rank) VALUES ('{key}', {value})" for key, value in SETTINGS),
    ]


@cache
def _change_statements(fts: str) -> tuple[str, str]:
    """``(change, add)``: the statement of :func:`index_changes` (its first value is
    ``'delete'`` to remove an entry, NULL to add one), and the plain add of :func:`fill`."""
    change = f"INSERT INTO {fts}({fts}, rowid, body) VALUES (?, ?, ?)"
    add = f"INSERT INTO {fts}(rowid, body) VALUES (?, ?)"
    return change, add


#: The tier column the index's rowids are (see the module docstring).
ROWID_COLUMN = "created_at_ns"

#: An index entry: ``(rowid, indexed text)``.
Entry = tuple[int, str]


def entry_changes(
    pairs: Iterable[tuple[StoredItem | None, StoredItem | None]],
) -> tuple[list[Entry], list[Entry]]:
    """The entries to remove and to add for rows that changed from ``before`` to ``after``
    (None: no row), as :func:`index_changes` takes them. A live row whose indexed text and
    rowid stay the same needs neither."""
    removed: list[Entry] = []
    added: list[Entry] = []
    for before, after in pairs:
        old = before if before is not None and not before.deleted else None
        new = after if after is not None and not after.deleted else None
        old_text = new_text = None
        if old is not None and new is not None and old.created_at_ns == new.created_at_ns:
            if old.state.content is new.state.content or (
                old.content_json is not None and old.content_json == new.content_json
            ):
                continue  # the same content: the same text
            old_text, new_text = indexed_text(old.state.content), indexed_text(new.state.content)
            if old_text == new_text:
                continue
        if old is not None:
            removed.append((old.created_at_ns, old_text or indexed_text(old.state.content)))
        if new is not None:
            added.append((new.created_at_ns, new_text or indexed_text(new.state.content)))
    return removed, added


def index_changes(
    conn: Connection,
    spec: TierSpec,
    removed: Sequence[Entry],
    added: Sequence[Entry],
) -> None:
    """Remove and add index entries (:func:`entry_changes`): ``removed`` as the rows were (the
    text they were indexed with), ``added`` as they are now. In the caller's write transaction,
    as ONE statement in rising rowid order, an entry's removal before its new text: FTS5 writes
    its pending entries out as a new segment whenever a rowid comes lower than the one before
    (or again after an add), and updates in any other order made up to one segment per item."""
    if not removed and not added:
        return
    other = backend_of(conn).keyword_index
    if other is not None:
        # Not FTS5: PostgreSQL's full-text index (memrepl.storage.backends.postgresql_search).
        other.index_changes(conn, spec, removed, added)
        return
    change, _ = _change_statements(fts_name(spec))
    rows: list[tuple[str | None, int, str]] = [("delete", rowid, text) for rowid, text in removed]
    rows += [(None, rowid, text) for rowid, text in added]
    rows.sort(key=lambda row: (row[1], row[0] is None))
    driver.executemany(conn, change, rows)


def fill(conn: Connection, spec: TierSpec) -> int:
    """Index every live row of ``spec``'s tier (into an empty index); how many."""
    other = backend_of(conn).keyword_index
    if other is not None:
        return int(other.fill(conn, spec))
    table = spec.table
    _, add = _change_statements(fts_name(spec))
    count = 0
    rows = conn.execute(
        select(table.c[ROWID_COLUMN], table.c.content).where(table.c.deleted.is_(False))
    )
    while chunk := rows.fetchmany(FILL_CHUNK_ROWS):
        driver.executemany(
            conn, add, [(stamp, indexed_text(decode_json(text))) for stamp, text in chunk]
        )
        count += len(chunk)
    return count


def rebuild(conn: Connection, spec: TierSpec) -> int:
    """Empty ``spec``'s keyword index and index its live rows again; how many it indexed.

    Run in a write transaction: the index is exactly the table's when it commits.
    """
    other = backend_of(conn).keyword_index
    if other is not None:
        return int(other.rebuild(conn, spec))
    fts = fts_name(spec)
    conn.execute(text(f"INSERT INTO {fts}({fts}) VALUES ('delete-all')"))
    count = fill(conn, spec)
    conn.execute(text(f"INSERT INTO {fts}({fts}) VALUES ('optimize')"))
    return count


def fts_table(spec: TierSpec) -> TableClause:
    """``spec``'s keyword index as a Core table: ``rowid`` (the item's ``created_at_ns``),
    ``rank`` (FTS5's BM25, lower is better) and the table-valued column for ``MATCH``."""
    name = fts_name(spec)
    return table(name, column("rowid"), column("rank"), column(name))


def join_condition(spec: TierSpec, fts: TableClause) -> ColumnElement[bool]:
    """How an index entry (``fts``: :func:`fts_table`) finds its row of the tier table."""
    return spec.table.c[ROWID_COLUMN] == fts.c.rowid


def _varint(data: bytes) -> int:
    """The first SQLite varint of ``data`` (big-endian groups of 7 bits; a 9th byte of 8)."""
    value = 0
    for position, byte in enumerate(data[:9]):
        if position == 8:
            return (value << 8) | byte
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value
    return value


def indexed_rows(conn: Connection, spec: TierSpec) -> int:
    """How many items ``spec``'s index holds: FTS5's own count, the ``N`` of its BM25 (the
    first varint of the index's "averages" record, rowid 1 of its ``_data`` table; 0 when the
    index was never written)."""
    found = driver.execute(conn, f"SELECT block FROM {fts_name(spec)}_data WHERE id = 1")
    return _varint(bytes(found[0][0])) if found and found[0][0] else 0


# -- queries -------------------------------------------------------------------------------------

_scratch = threading.local()


def _scratch_index() -> sqlite3.Connection:
    """A per-thread in-memory FTS5 table with the same column and tokenizer, to parse queries."""
    conn: sqlite3.Connection | None = getattr(_scratch, "conn", None)
    if conn is None:
        conn = sqlite3.connect(":memory:")
        conn.execute(f"CREATE VIRTUAL TABLE q USING fts5(body, tokenize='{TOKENIZER}')")
        _scratch.conn = conn
    return conn


def match_expression(query: str, syntax: str = "words") -> str | None:
    """The FTS5 ``MATCH`` expression for a user's query; None when it has no word to look for.

    Raises :class:`~memrepl.errors.InvalidQueryError` for a query that is not a str, an
    unknown syntax, or (``syntax="fts5"``) a query FTS5 cannot parse.
    """
    if not isinstance(query, str):
        raise InvalidQueryError(f"a query is a str, not {type(query).__name__}", query=repr(query))
    if syntax not in SYNTAXES:
        raise InvalidQueryError(
            f"unknown query syntax {syntax!r} (use one of {SYNTAXES})", query=query
        )
    if syntax == "words":
        words = list(dict.fromkeys(word.lower() for word in _WORD.findall(query)))
        return " OR ".join(f'"{word}"' for word in words) or None
    if not query.strip():
        return None
    try:
        _scratch_index().execute("SELECT rowid FROM q WHERE q MATCH ?", (query,)).fetchall()
    except sqlite3.Error as exc:
        raise InvalidQueryError(
            f"keyword query {query!r} is not valid FTS5 syntax ({exc}); plain words always "
            "work with syntax='words'",
            query=query,
        ) from exc
    return query
