"""The keyword index on PostgreSQL: full-text search with a GIN index, kept like the FTS5 one.

The same index as :mod:`memrepl.storage.keyword` describes for SQLite -- derived, local, exact,
changed in the same transaction as the rows, per batch, rebuildable -- in PostgreSQL's terms:
``<tier table>_fts`` is ``(rowid BIGINT PRIMARY KEY, body TSVECTOR)`` with a GIN index on
``body`` (migration 0006), one row per live item; ``rowid`` is the item's ``created_at_ns``
(:data:`memrepl.storage.keyword.ROWID_COLUMN`, as FTS5's rowid is on SQLite: kept while the row
lives, so a write that leaves the text as it was leaves the entry alone).

**Same words as FTS5.** The lexemes are made here, not by a text search configuration, so that
a word means what it means on SQLite (``unicode61 remove_diacritics 2``): the indexed text
(:func:`memrepl.storage.keyword.indexed_text`) is case-folded and stripped of accents
(Unicode decomposition, combining marks dropped), cut into runs of letters and digits, and
each run becomes a lexeme at its position (:func:`lexemes`); no stemming, no stop words. Queries
are folded the same way, so ``Café`` matches ``cafe``. (PostgreSQL caps a lexeme at 2,047 bytes
and positions at 16,383; longer words are not indexed, later positions count as 16,383.)

**Queries.** A search's FTS5 expression (plain words become ``"a" OR "b"``, see
:func:`memrepl.storage.keyword.match_expression`) is translated to a ``tsquery``
(:func:`tsquery`): ``OR`` is ``|``, ``AND`` and juxtaposition ``&``, ``a NOT b`` is
``a & !b``, a phrase ``"a b"`` (or ``a + b``) is ``a <-> b``, ``pre*`` is ``pre:*``. Two
differences, documented in the README: ``NEAR(a b, N)`` matches items holding all the phrases,
however far apart; ``^`` (first token) and excluding columns (``-body:``) are refused with an
:class:`~memrepl.errors.InvalidQueryError`.

**Ranking** is ``ts_rank(body, query, 1)`` (term frequency, divided by ``1 + log`` of the
item's length), higher is better: an item with more of the words ranks higher, as with BM25,
but PostgreSQL has no inverse document frequency, so a rare word does not outweigh a common one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import cache, lru_cache
from typing import Any

from sqlalchemy import ColumnElement, cast, column, func, literal, select, table, text
from sqlalchemy.dialects.postgresql import TSQUERY
from sqlalchemy.engine import Connection

from memrepl.errors import InvalidQueryError
from memrepl.storage import driver
from memrepl.storage.fastjson import decode_json
from memrepl.storage.keyword import (
    FILL_CHUNK_ROWS,
    ROWID_COLUMN,
    fts_name,
    indexed_text,
    join_condition,
)
from memrepl.storage.schema import TierSpec

_WORD = re.compile(r"[^\W_]+")
#: PostgreSQL's limits: bytes in a lexeme (less than 2 KB), a position, positions per lexeme.
MAX_LEXEME_BYTES = 2047
MAX_POSITION = 16383
MAX_POSITIONS = 256


def fold(text: str) -> str:
    """``text`` lower-cased and without accents (what FTS5's tokenizer ignores)."""
    if not text.isascii():
        decomposed = unicodedata.normalize("NFD", text)
        text = "".join(char for char in decomposed if not unicodedata.combining(char))
    return text.lower()


def words(text: str) -> list[str]:
    """The words of ``text`` as the index holds them: folded runs of letters and digits."""
    return _WORD.findall(fold(text))


def lexemes(text: str) -> str:
    """The ``tsvector`` literal of an indexed text: each word with its positions."""
    positions: dict[str, list[str]] = {}
    for position, word in enumerate(words(text), start=1):
        found = positions.get(word)
        if found is None:
            if len(word.encode()) >= MAX_LEXEME_BYTES:
                continue
            found = positions[word] = []
        if len(found) < MAX_POSITIONS:
            found.append(str(min(position, MAX_POSITION)))
    # Words are letters and digits only: no quote or backslash to escape.
    return " ".join(f"'{word}':{','.join(where)}" for word, where in positions.items())


@cache
def _change_statements(fts: str) -> tuple[str, str]:
    remove = f"DELETE FROM {fts} WHERE rowid = ANY(%s::bigint[])"
    add = (
        f"INSERT INTO {fts} (rowid, body) "
        "SELECT stamp, body::tsvector FROM unnest(%s::bigint[], %s::text[]) AS rows(stamp, body)"
    )
    return remove, add


def index_changes(
    conn: Connection,
    spec: TierSpec,
    removed: Sequence[tuple[int, str]],
    added: Sequence[tuple[int, str]],
) -> None:
    """Remove then add index entries (see :func:`memrepl.storage.keyword.index_changes`): one
    statement each, the rows passed as arrays."""
    remove, add = _change_statements(fts_name(spec))
    if removed:
        driver.execute(conn, remove, ([stamp for stamp, _ in removed],))
    if added:
        stamps = [stamp for stamp, _ in added]
        driver.execute(conn, add, (stamps, [lexemes(body) for _, body in added]))


def fill(conn: Connection, spec: TierSpec) -> int:
    """Index every live row of ``spec``'s tier (into an empty index); how many."""
    items = spec.table
    _, add = _change_statements(fts_name(spec))
    count = 0
    rows = conn.execute(
        select(items.c[ROWID_COLUMN], items.c.content).where(items.c.deleted.is_(False))
    )
    while chunk := rows.fetchmany(FILL_CHUNK_ROWS):
        stamps = [stamp for stamp, _ in chunk]
        bodies = [lexemes(indexed_text(decode_json(content))) for _, content in chunk]
        driver.execute(conn, add, (stamps, bodies))
        count += len(chunk)
    return count


def rebuild(conn: Connection, spec: TierSpec) -> int:
    """Empty ``spec``'s keyword index and index its live rows again; how many it indexed."""
    conn.execute(text(f"DELETE FROM {fts_name(spec)}"))
    return fill(conn, spec)


# -- queries -------------------------------------------------------------------------------------


class _Tokens:
    """The tokens of an FTS5 expression: strings (with ``quoted``), barewords, punctuation."""

    _TOKEN = re.compile(r'\s*(?:"((?:[^"]|"")*)"|([\w\x1a\x80-\U0010ffff]+)|(\S))', re.UNICODE)

    def __init__(self, expression: str) -> None:
        self.items: list[tuple[str, str]] = []
        for match in self._TOKEN.finditer(expression):
            quoted, bare, mark = match.groups()
            if quoted is not None:
                self.items.append(("string", quoted.replace('""', '"')))
            elif bare is not None:
                kind = bare if bare in ("AND", "OR", "NOT", "NEAR") else "string"
                self.items.append((kind, bare))
            elif mark is not None:
                self.items.append((mark, mark))
        self.at = 0

    def peek(self) -> str | None:
        return self.items[self.at][0] if self.at < len(self.items) else None

    def take(self) -> tuple[str, str]:
        token = self.items[self.at]
        self.at += 1
        return token


def _refuse(expression: str, what: str) -> InvalidQueryError:
    return InvalidQueryError(
        f"keyword query {expression!r}: {what} is not supported on PostgreSQL (see the README, "
        "Recall); plain words always work",
        query=expression,
    )


def _both(left: str | None, operator: str, right: str | None) -> str | None:
    if left is None or right is None:
        return left if right is None else right
    return f"({left} {operator} {right})"


class _Translator:
    """An FTS5 expression (already known to be valid FTS5) as a tsquery; None for no words."""

    def __init__(self, expression: str) -> None:
        self.expression = expression
        self.tokens = _Tokens(expression)

    def query(self) -> str | None:
        found = self.and_query()
        while self.tokens.peek() == "OR":
            self.tokens.take()
            found = _both(found, "|", self.and_query())
        return found

    def and_query(self) -> str | None:
        found = self.not_query()
        while self.tokens.peek() not in (None, "OR", ")"):
            if self.tokens.peek() == "AND":
                self.tokens.take()
            found = _both(found, "&", self.not_query())
        return found

    def not_query(self) -> str | None:
        found = self.primary()
        while self.tokens.peek() == "NOT":
            self.tokens.take()
            excluded = self.primary()
            if found is not None and excluded is not None:
                found = f"({found} & !{excluded})"
        return found

    def primary(self) -> str | None:
        kind = self.tokens.peek()
        if kind == "-":
            raise _refuse(self.expression, "excluding a column")
        if kind == "{" or (kind == "string" and self._column_follows()):
            self._column_spec()
            kind = self.tokens.peek()
        if kind == "^":
            raise _refuse(self.expression, "'^' (the first token)")
        if kind == "(":
            self.tokens.take()
            found = self.query()
            self.tokens.take()  # ")"
            return found
        if kind == "NEAR":
            return self._near()
        return self._phrase()

    def _column_follows(self) -> bool:
        at = self.tokens.at + 1
        return at < len(self.tokens.items) and self.tokens.items[at][0] == ":"

    def _column_spec(self) -> None:
        # The index has one column (body): naming it filters nothing.
        if self.tokens.take()[0] == "{":
            while self.tokens.take()[0] != "}":
                pass
        self.tokens.take()  # ":"

    def _near(self) -> str | None:
        self.tokens.take()  # NEAR
        self.tokens.take()  # "("
        found: str | None = None
        while self.tokens.peek() not in (")", ","):
            found = _both(found, "&", self._phrase())
        if self.tokens.peek() == ",":
            self.tokens.take()
            self.tokens.take()  # the distance
        self.tokens.take()  # ")"
        return found

    def _phrase(self) -> str | None:
        parts = words(self.tokens.take()[1])
        while self.tokens.peek() == "+":
            self.tokens.take()
            parts += words(self.tokens.take()[1])
        prefix = self.tokens.peek() == "*"
        if prefix:
            self.tokens.take()
        if not parts:
            return None
        lexemes = [f"'{part}'" for part in parts]
        if prefix:
            lexemes[-1] += ":*"
        return lexemes[0] if len(lexemes) == 1 else "(" + " <-> ".join(lexemes) + ")"


@lru_cache(maxsize=256)
def tsquery(expression: str) -> str | None:
    """The tsquery text of a valid FTS5 expression; None when it holds no word to look for.

    Raises :class:`~memrepl.errors.InvalidQueryError` for what PostgreSQL cannot express.
    """
    return _Translator(expression).query()


def ranked(
    conn: Connection,
    spec: TierSpec,
    expression: str,
    conditions: Sequence[ColumnElement[bool]],
    count: int,
) -> list[tuple[int, float]]:
    """The ``count`` best ``(rowid, score)`` for an FTS5 expression among the rows that
    meet ``conditions`` (on the tier table), best first; score = ``ts_rank``."""
    query_text = tsquery(expression)
    if query_text is None:
        return []
    fts = table(fts_name(spec), column("rowid"), column("body"))
    wanted = cast(literal(query_text), TSQUERY)
    score = func.ts_rank(fts.c.body, wanted, 1).label("score")
    query: Any = select(fts.c.rowid, score).where(fts.c.body.op("@@")(wanted))
    if conditions:
        query = query.select_from(fts.join(spec.table, join_condition(spec, fts))).where(
            *conditions
        )
    rows = conn.execute(query.order_by(score.desc()).limit(count)).all()
    return [(int(rowid), float(rank)) for rowid, rank in rows]
