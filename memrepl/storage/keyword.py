"""The keyword index: one SQLite FTS5 table per tier, kept by triggers, ranked with BM25.

What is indexed: **every string value of an item's content**, at any depth (in nested objects
and lists), joined by spaces; not the keys, not numbers or booleans, not the namespace (that is
a filter). Words are matched case-insensitively and without accents (FTS5's ``unicode61``
tokenizer with ``remove_diacritics 2``): ``Café`` matches ``cafe``. There is no stemming
(``run`` does not match ``running``; the FTS5 syntax has prefixes, ``run*``).

The rules that keep it right:

- **Derived, local, exact.** ``<tier table>_fts`` holds one row per live item (rowid = the
  item's ``modified_at``, which is unique and, unlike SQLite's own rowid, survives ``VACUUM``),
  with the text above. Three triggers on the tier table keep it so in the SAME statement that
  changes the row -- a local write, an applied batch, a tombstone, an eviction, a TTL expiry,
  a snapshot's cleanup, a purge, even a user's own SQL -- so what a committed transaction wrote
  is findable at once and what it deleted or forgot never is. The text is computed by SQLite
  from the JSON text the row already holds (``json_tree``): nothing is encoded twice. A
  tombstone has no row. The index never travels.
- **Contentless.** The FTS5 table keeps only the index (``content=''``), not a second copy of
  the text; removing an entry re-derives the old text from the old row (the FTS5 ``'delete'``
  command), which is why the same expression serves the insert and the delete.
- **Rebuildable.** :func:`rebuild` empties the index and re-derives it from the table
  (``memrepl index rebuild``); migration 0006 created it that way for existing stores.

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

from sqlalchemy import TableClause, column, table, text
from sqlalchemy.engine import Connection

from memrepl.errors import InvalidQueryError
from memrepl.storage.schema import TIER_SPECS, TierSpec

#: The FTS5 tokenizer: Unicode words, case and accents folded.
TOKENIZER = "unicode61 remove_diacritics 2"
#: The query syntaxes :func:`match_expression` understands.
SYNTAXES = ("words", "fts5")
#: Suffix of a tier table's keyword index.
SUFFIX = "_fts"

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


def text_of(row: str) -> str:
    """The SQL expression of the indexed text of the content of ``row`` (``NEW``/``OLD``)."""
    return f"(SELECT group_concat(value, ' ') FROM json_tree({row}.content) WHERE type = 'text')"


def ddl(spec: TierSpec) -> list[str]:
    """The statements that create ``spec``'s keyword index and its triggers (not its rows)."""
    items, fts = spec.table.name, fts_name(spec)

    def add(row: str) -> str:
        return (
            f"INSERT INTO {fts}(rowid, body) SELECT {row}.modified_at, {text_of(row)} "
            f"WHERE {row}.deleted = 0;"
        )

    def remove(row: str) -> str:
        return (
            f"INSERT INTO {fts}({fts}, rowid, body) "
            f"SELECT 'delete', {row}.modified_at, {text_of(row)} WHERE {row}.deleted = 0;"
        )

    # One trigger per event, each statement guarded: the old entry always goes before the new
    # one comes (two triggers on one event would run in an order SQLite does not promise).
    return [
        f"CREATE VIRTUAL TABLE {fts} USING fts5(body, content='', tokenize='{TOKENIZER}')",
        f"CREATE TRIGGER {fts}_insert AFTER INSERT ON {items} BEGIN {add('NEW')} END",
        f"CREATE TRIGGER {fts}_delete AFTER DELETE ON {items} BEGIN {remove('OLD')} END",
        f"CREATE TRIGGER {fts}_update AFTER UPDATE OF content, modified_at, deleted ON {items} "
        f"BEGIN {remove('OLD')} {add('NEW')} END",
    ]


def fill(conn: Connection, spec: TierSpec) -> None:
    """Index every live row of ``spec``'s tier (into an empty index)."""
    items, fts = spec.table.name, fts_name(spec)
    conn.execute(
        text(
            f"INSERT INTO {fts}(rowid, body) SELECT modified_at, {text_of(items)} "
            f"FROM {items} WHERE deleted = 0"
        )
    )


def rebuild(conn: Connection, spec: TierSpec) -> int:
    """Empty ``spec``'s keyword index and index its live rows again; how many it indexed.

    Run in a write transaction: the index is exactly the table's when it commits.
    """
    fts = fts_name(spec)
    conn.execute(text(f"INSERT INTO {fts}({fts}) VALUES ('delete-all')"))
    fill(conn, spec)
    conn.execute(text(f"INSERT INTO {fts}({fts}) VALUES ('optimize')"))
    count = conn.execute(text(f"SELECT count(*) FROM {spec.table.name} WHERE deleted = 0"))
    return int(count.scalar_one())


def fts_table(spec: TierSpec) -> TableClause:
    """``spec``'s keyword index as a Core table: ``rowid`` (the item's ``modified_at``),
    ``rank`` (FTS5's BM25, lower is better) and the table-valued column for ``MATCH``."""
    name = fts_name(spec)
    return table(name, column("rowid"), column("rank"), column(name))


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
