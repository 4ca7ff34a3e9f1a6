"""The best k items for an OR of words, exactly as FTS5's BM25 ranks them, without ranking every
item that holds a common word.

FTS5 answers ``MATCH 'a OR b' ORDER BY rank LIMIT k`` by computing BM25 for EVERY item that holds
any of the words (about a microsecond each): a query with a word found in a tenth of a million
items costs a tenth of a second, however rare its other words. This module ranks fewer items and
returns the same top k, by a bound on what the common words can add (MaxScore, Turtle and Flood
1995):

- FTS5's BM25 of an item is a sum over the query's phrases, ``idf(p) * f * (k1 + 1) / (f + K)``
  with ``f`` the phrase's count in the item, ``K > 0`` a function of the item's length, and
  ``idf(p) = log((N - n + 0.5) / (n + 0.5))`` (at least 1e-6) from the number ``n`` of items
  holding the phrase among the ``N`` indexed. So a phrase adds less than ``(k1 + 1) * idf(p)``
  (:func:`bound`), and a phrase held by more items has a smaller bound.
- The phrases are ranked rarest first (by ``n``; :func:`order`). The rarest few ("essential")
  are ranked with the others: the items holding an essential phrase and another phrase
  (``(E) AND (N)``: FTS5's own BM25 over all the query's phrases) and those holding essential
  phrases only (their BM25 is the essential phrases' alone). If the k-th best of those scores
  beats the sum of the other phrases' bounds, no item lacking every essential phrase can reach
  the top k, and the answer is exact. Otherwise one more phrase becomes essential; in the end
  (or when a round would cost about as much) the query is ranked whole, as FTS5 does.
- Every score returned is FTS5's own ``bm25()``, computed over the same phrases in the same order
  (rarest first: an OR's order changes its BM25 by the last bit of a float at most), so it is bit
  for bit the score of ``ORDER BY rank`` on that expression: a phrase an item lacks adds exactly
  0.0, and FTS5's ``n`` counts the whole index whatever the expression or the row conditions.
  Only which of several items with EQUAL scores fills the last places may differ.

What it costs: counting ``n`` for each phrase (FTS5 walks the phrase's list of items, ~30 ns an
item, and its BM25 counts again; counts are capped at :data:`COUNT_CAP` until a bound needs more)
and ranking the essential phrases' items. Queries whose rarest word is itself common stay
expensive (see the README, "Performance").
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Select, func, literal_column, select, text
from sqlalchemy.engine import Connection

from memrepl.storage import driver, keyword
from memrepl.storage.schema import TierSpec

#: FTS5's BM25 constant k1 (``fts5_aux.c``); a phrase adds less than ``(k1 + 1) * idf``.
K1 = 1.2
#: FTS5's floor for an idf that the formula makes zero or negative (a phrase in half the items).
MIN_IDF = 1e-6
#: Phrases are counted up to this many items first; past it, only when a bound needs it.
COUNT_CAP = 20_000
#: Queries whose phrases are held by at most this many items in all are ranked whole (cheaper).
SMALL_QUERY_ITEMS = 5_000
#: Rounds whose essential phrases hold at most this many items read the ``(E) AND (N)`` items
#: whole; bigger ones rank them with ``LIMIT`` and rank the essential-only items apart.
WHOLE_ROUND_ITEMS = 5_000
#: Slack on the bound: a rounding of the k-th score must not let an unranked item tie it.
BOUND_SLACK = 1e-9

#: The expression :func:`keyword.match_expression` makes of plain words: quoted phrases, OR-ed.
_PHRASES = re.compile(r'"[^"]*"(?: OR "[^"]*")*')


def phrases_of(match: str) -> list[str] | None:
    """The quoted phrases of an OR-of-phrases expression (``'"a" OR "b"'``), None for any other
    FTS5 expression (those are ranked whole)."""
    if _PHRASES.fullmatch(match) is None:
        return None
    return match.split(" OR ")


@dataclass(slots=True)
class Phrase:
    """A query phrase and how many indexed items hold it (``exact``: counted to the end)."""

    text: str
    items: int
    exact: bool


def count(conn: Connection, spec: TierSpec, phrase: str, cap: int | None) -> int:
    """How many indexed items hold ``phrase``, counting at most ``cap`` (None: all)."""
    fts = keyword.fts_name(spec)
    sql = f"SELECT count(*) FROM (SELECT 1 FROM {fts} WHERE {fts} MATCH ? LIMIT ?)"
    return int(driver.execute(conn, sql, (phrase, -1 if cap is None else cap))[0][0])


def counted(conn: Connection, spec: TierSpec, phrases: Sequence[str]) -> list[Phrase]:
    """Each phrase with its item count, capped at :data:`COUNT_CAP` (exact below it)."""
    found = []
    for phrase in phrases:
        items = count(conn, spec, phrase, COUNT_CAP)
        found.append(Phrase(phrase, items, items < COUNT_CAP))
    return found


def make_exact(conn: Connection, spec: TierSpec, phrase: Phrase) -> None:
    """Count ``phrase`` to the end."""
    if not phrase.exact:
        phrase.items = count(conn, spec, phrase.text, None)
        phrase.exact = True


def order(conn: Connection, spec: TierSpec, phrases: list[Phrase]) -> list[Phrase]:
    """``phrases`` rarest first (ties by text): the order the query's BM25 sums them in.

    Counts are exact below the cap, so only phrases AT the cap need counting on to be ordered,
    and only when there are two of them.
    """
    capped = [phrase for phrase in phrases if not phrase.exact]
    if len(capped) > 1:
        for phrase in capped:
            make_exact(conn, spec, phrase)
    return sorted(phrases, key=lambda phrase: (phrase.items, phrase.text))


def bound(phrase: Phrase, rows: int) -> float:
    """More than ``phrase`` can add to any item's BM25 (an upper bound, ``(k1 + 1) * idf``; a
    capped count is a lower bound of the true count, so its idf is an upper bound)."""
    idf = math.log((rows - phrase.items + 0.5) / (phrase.items + 0.5))
    return (K1 + 1.0) * max(idf, MIN_IDF)


def items_for_bound(limit: float, rows: int) -> int:
    """The fewest items a phrase must be held by for its :func:`bound` to be at most ``limit``
    (which must be above FTS5's floor, ``(k1 + 1) * 1e-6``)."""
    ratio = math.exp(limit / (K1 + 1.0))
    needed = max(0, math.ceil((rows + 0.5 - 0.5 * ratio) / (1.0 + ratio)))
    # The closed form may be a unit off after rounding: settle it on bound() itself.
    while bound(Phrase("", needed, True), rows) > limit:
        needed += 1
    while needed > 0 and bound(Phrase("", needed - 1, True), rows) <= limit:
        needed -= 1
    return needed


def beaten(conn: Connection, spec: TierSpec, others: Sequence[Phrase], threshold: float) -> bool:
    """Whether ``threshold`` beats what ``others`` can add to an item (so an item lacking every
    essential phrase scores less), counting capped phrases on only as far as that takes."""
    rows = keyword.indexed_rows(conn, spec)
    limit = threshold / (1.0 + BOUND_SLACK)
    floor = (K1 + 1.0) * MIN_IDF
    while sum(bound(phrase, rows) for phrase in others) >= limit:
        capped = [phrase for phrase in others if not phrase.exact]
        fixed = sum(bound(phrase, rows) for phrase in others if phrase.exact)
        share = (limit - fixed) / len(capped) if capped else floor
        if share <= floor:
            return False  # no count can bring the capped phrases' bounds low enough
        # Count each capped phrase on up to the items that bring its bound under its share of
        # what the exact phrases leave (or to its end: then it is exact, and shares change).
        target = items_for_bound(share, rows)
        refined = False
        for phrase in capped:
            if phrase.items < target:
                phrase.items = count(conn, spec, phrase.text, target)
                phrase.exact = phrase.items < target
                refined = True
        if not refined:
            return False
    return True


def any_of(phrases: Sequence[Phrase]) -> str:
    """The FTS5 expression matching any of ``phrases`` (in their order)."""
    joined = " OR ".join(phrase.text for phrase in phrases)
    return f"({joined})" if len(phrases) > 1 else joined


Scored = tuple[int, float]


@cache
def _plain_sql(fts: str, limited: bool) -> str:
    """:func:`scores` without row conditions, on the driver (the common case, run often)."""
    sql = f"SELECT rowid, -bm25({fts}) AS score FROM {fts} WHERE {fts} MATCH ?"
    return sql + " ORDER BY score DESC LIMIT ?" if limited else sql


def _query(spec: TierSpec, match: str, conditions: Sequence[ColumnElement[bool]]) -> Select[Any]:
    """:func:`scores` with row conditions: the index joined to the tier table by rowid."""
    fts = keyword.fts_table(spec)
    name = keyword.fts_name(spec)
    score = (-func.bm25(literal_column(name))).label("score")
    return (
        select(fts.c.rowid, score)
        .select_from(fts.join(spec.table, keyword.join_condition(spec, fts)))
        .where(fts.c[name].match(match), *conditions)
    )


def scores(
    conn: Connection,
    spec: TierSpec,
    match: str,
    conditions: Sequence[ColumnElement[bool]],
    limit: int | None,
) -> list[Scored]:
    """Index rowid and score (``-bm25``, higher is better) of the items ``match`` finds that
    satisfy ``conditions``: all of them, or the best ``limit``."""
    if not conditions:
        sql = _plain_sql(keyword.fts_name(spec), limit is not None)
        rows = driver.execute(conn, sql, (match,) if limit is None else (match, limit))
    else:
        query = _query(spec, match, conditions)
        if limit is not None:
            query = query.order_by(text("score DESC")).limit(limit)
        rows = [tuple(row) for row in conn.execute(query)]
    return [(int(row[0]), float(row[1])) for row in rows]


def best(scored: Sequence[Scored], count: int) -> list[Scored]:
    """The best ``count`` of ``scored``, best first (equal scores: lower rowid first)."""
    return heapq.nsmallest(count, scored, key=lambda row: (-row[1], row[0]))


def whole(
    conn: Connection,
    spec: TierSpec,
    match: str,
    conditions: Sequence[ColumnElement[bool]],
    wanted: int,
) -> list[Scored]:
    """Any FTS5 expression ranked whole, as FTS5 ranks it (every item it finds gets a score)."""
    return best(scores(conn, spec, match, conditions, wanted), wanted)


def _round(
    conn: Connection,
    spec: TierSpec,
    essential: Sequence[Phrase],
    others: Sequence[Phrase],
    *,
    conditions: Sequence[ColumnElement[bool]],
    wanted: int,
) -> list[Scored]:
    """The best ``wanted`` items among those holding an essential phrase, with their full
    scores (fewer when fewer hold one)."""
    both = f"{any_of(essential)} AND {any_of(others)}"
    if sum(phrase.items for phrase in essential) <= WHOLE_ROUND_ITEMS:
        # Few items: read every (E) AND (N) item, and rank the essential phrases' items alone;
        # those not read first hold essential phrases only, so their score is that ranking's.
        with_others = scores(conn, spec, both, conditions, None)
        seen = {rowid for rowid, _ in with_others}
        alone = scores(conn, spec, any_of(essential), conditions, wanted + len(seen))
        only = [row for row in alone if row[0] not in seen]
    else:
        with_others = scores(conn, spec, both, conditions, wanted)
        only_essential = f"{any_of(essential)} NOT {any_of(others)}"
        only = scores(conn, spec, only_essential, conditions, wanted)
    return best([*with_others, *only], wanted)


def ranked(
    conn: Connection,
    spec: TierSpec,
    phrases: Sequence[str],
    conditions: Sequence[ColumnElement[bool]],
    wanted: int,
) -> list[Scored]:
    """The best ``wanted`` (index rowid, score) of the OR of ``phrases`` among the items that
    satisfy ``conditions``, best first; score = ``-bm25`` (higher is better)."""
    if wanted <= 0 or not phrases:
        return []
    found = [phrase for phrase in counted(conn, spec, phrases) if phrase.items > 0]
    if not found:
        return []
    rarest_first = order(conn, spec, found)
    total = sum(phrase.items for phrase in rarest_first)
    if total <= SMALL_QUERY_ITEMS:
        return whole(conn, spec, any_of(rarest_first), conditions, wanted)
    for split in range(1, len(rarest_first)):
        essential, others = rarest_first[:split], rarest_first[split:]
        if 2 * sum(phrase.items for phrase in essential) >= total:
            break  # ranking the essential phrases' items would cost about as much as the whole
        top = _round(conn, spec, essential, others, conditions=conditions, wanted=wanted)
        if len(top) == wanted and beaten(conn, spec, others, top[-1][1]):
            return top
    return whole(conn, spec, any_of(rarest_first), conditions, wanted)
