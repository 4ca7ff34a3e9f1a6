"""The pruned keyword ranking returns what FTS5's ``ORDER BY rank`` returns: the same scores to
the last bit, the same items (among equal scores at the cut, any of them), for any corpus, query,
limit and namespace -- checked against the bare FTS5 query on the same index, with the
thresholds lowered so that small corpora take every path (rounds that succeed, rounds that fail,
counts refined, both ways of reading a round)."""

from __future__ import annotations

import functools
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import memrepl
from memrepl.storage import LocalWrite, Store, keyword, keyword_topk
from memrepl.storage.schema import EPISODIC
from memrepl.storage.search import namespace_condition

#: FTS5's own ranking (BM25, its shadow tables): PostgreSQL's keyword index ranks with ts_rank.
pytestmark = pytest.mark.sqlite_only

#: A vocabulary whose first words are in most items (like "the") and whose last are rare.
VOCABULARY = [f"w{rank}" for rank in range(12)]
WEIGHTS = [1.0 / (rank + 1) for rank in range(len(VOCABULARY))]
NAMESPACES = [("users", "alice"), ("users", "bob"), ()]


@functools.cache
def template_database() -> Path:
    path = Path(tempfile.mkdtemp(prefix="memrepl-topk-")) / "template.db"
    memrepl.open(path, node_id="node-a").close()
    return path


@contextmanager
def fresh_store() -> Iterator[Store]:
    directory = Path(tempfile.mkdtemp(prefix="memrepl-topk-"))
    try:
        path = directory / "node.db"
        shutil.copy(template_database(), path)
        with memrepl.open(path, node_id="node-a") as store:
            yield store
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def reference(
    path: Path, phrases: list[str], namespace: tuple[str, ...]
) -> list[tuple[int, float]]:
    """Every match of the query by FTS5's own ``ORDER BY rank`` (the phrases rarest first, as
    the pruned ranking sums them), with its score; filtered to ``namespace`` afterwards."""
    fts = keyword.fts_name(EPISODIC)
    conn = sqlite3.connect(path)
    try:
        counts = {
            phrase: conn.execute(
                f"SELECT count(*) FROM {fts} WHERE {fts} MATCH ?", (phrase,)
            ).fetchone()[0]
            for phrase in phrases
        }
        present = sorted((p for p in phrases if counts[p]), key=lambda p: (counts[p], p))
        if not present:
            return []
        rows = conn.execute(
            f"SELECT f.rowid, -f.rank, e.namespace FROM {fts} AS f "
            f"JOIN episodic_items AS e ON e.created_at_ns = f.rowid "
            f"WHERE {fts} MATCH ? ORDER BY f.rank",
            (" OR ".join(present),),
        ).fetchall()
    finally:
        conn.close()
    text = "/".join(namespace)
    return [
        (rowid, score)
        for rowid, score, item_namespace in rows
        if not namespace or item_namespace == text or item_namespace.startswith(text + "/")
    ]


def assert_same_top(got: list[tuple[int, float]], full: list[tuple[int, float]], k: int) -> None:
    expected = full[:k]
    assert [score for _, score in got] == [score for _, score in expected]
    if not expected:
        return
    cut = expected[-1][1]
    assert {r for r, s in got if s != cut} == {r for r, s in expected if s != cut}
    tied = {r for r, s in full if s == cut}
    assert {r for r, s in got if s == cut} <= tied


#: An item's text: some of the common words and a word or two of any rarity.
texts = st.builds(
    lambda common, topic: " ".join(common + topic),
    st.lists(st.sampled_from(VOCABULARY[:3]), max_size=6),
    st.lists(st.sampled_from(VOCABULARY[3:]), min_size=1, max_size=2),
)
#: A query: a rare word among common ones (what pruning is for), or any words.
queries = st.builds(
    lambda rare, common: list(dict.fromkeys([*common, rare])),
    st.sampled_from(VOCABULARY[6:]),
    st.lists(st.sampled_from(VOCABULARY[:4]), min_size=1, max_size=3),
) | st.lists(st.sampled_from([*VOCABULARY, "absent"]), min_size=1, max_size=4, unique=True)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    corpus=st.lists(st.tuples(texts, st.sampled_from(NAMESPACES)), min_size=1, max_size=80),
    deletions=st.lists(st.integers(0, 79), max_size=10),
    query=queries,
    k=st.integers(1, 6) | st.integers(7, 15),
    namespace=st.sampled_from([(), ("users",), ("users", "alice")]),
    cap=st.sampled_from([1, 3, 1000]),
    whole_round=st.sampled_from([0, 1000]),
)
def test_the_pruned_ranking_is_the_fts5_ranking(
    monkeypatch: pytest.MonkeyPatch,
    *,
    corpus: list[tuple[str, tuple[str, ...]]],
    deletions: list[int],
    query: list[str],
    k: int,
    namespace: tuple[str, ...],
    cap: int,
    whole_round: int,
) -> None:
    monkeypatch.setattr(keyword_topk, "COUNT_CAP", cap)
    monkeypatch.setattr(keyword_topk, "SMALL_QUERY_ITEMS", 0)
    monkeypatch.setattr(keyword_topk, "WHOLE_ROUND_ITEMS", whole_round)
    with fresh_store() as store:
        store.episodic.write_many(
            [
                LocalWrite.add(f"i{n}", {"text": text}, namespace=ns)
                for n, (text, ns) in enumerate(corpus)
            ]
        )
        for n in sorted(set(deletions)):
            if n < len(corpus):
                store.episodic.delete(f"i{n}")  # leaves delete markers in the index
        phrases = keyword_topk.phrases_of(keyword.match_expression(" ".join(query)))
        assert phrases is not None
        conditions = [namespace_condition(EPISODIC, namespace)] if namespace else []
        with store.read() as conn:
            got = keyword_topk.ranked(conn, EPISODIC, phrases, conditions, k)
        assert store.path is not None
        full = reference(Path(store.path), phrases, namespace)
    assert_same_top(got, full, k)


def test_only_an_or_of_quoted_phrases_is_pruned() -> None:
    assert keyword_topk.phrases_of('"a" OR "b c"') == ['"a"', '"b c"']
    assert keyword_topk.phrases_of('"a"') == ['"a"']
    for other in ('"a" AND "b"', "a OR b", '"a" OR b', 'NEAR("a" "b")', '"a" OR "b" NOT "c"'):
        assert keyword_topk.phrases_of(other) is None


def test_a_common_word_is_bounded_and_the_answer_is_the_fts5_one(store: Store) -> None:
    # "the" is in every item: FTS5 gives it the floor idf (1e-6), so the items holding the rare
    # word win and the round never ranks the items that hold "the" alone.
    writes = [LocalWrite.add(f"c{n}", {"t": f"the common filler {n}"}) for n in range(300)]
    writes += [LocalWrite.add(f"r{n}", {"t": f"the rare word{n % 3}"}) for n in range(6)]
    store.episodic.write_many(writes)
    hits = store.episodic.search("the word1", limit=3)
    assert sorted(hit.item_id for hit in hits[:2]) == ["r1", "r4"]
    assert store.path is not None
    full = reference(Path(store.path), ['"word1"', '"the"'], ())
    assert [hit.score for hit in hits] == [score for _, score in full[:3]]


def test_the_row_count_is_fts5s(store: Store) -> None:
    store.episodic.write_many([LocalWrite.add(f"i{n}", {"t": "x y"}) for n in range(130)])
    store.episodic.delete("i7")
    with store.read() as conn:
        assert keyword.indexed_rows(conn, EPISODIC) == 129


def test_items_for_bound_is_the_smallest_count_under_the_bound() -> None:
    rows = 1000
    for limit in (3e-6, 0.5, 2.0, 7.5, 15.0, 30.0):
        needed = keyword_topk.items_for_bound(limit, rows)
        phrase = keyword_topk.Phrase('"x"', needed, True)
        assert keyword_topk.bound(phrase, rows) <= limit
        if needed > 0:
            phrase.items = needed - 1
            assert keyword_topk.bound(phrase, rows) > limit
