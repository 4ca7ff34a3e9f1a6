"""``memrepl search``, ``memrepl namespaces`` and ``memrepl index rebuild``."""

from __future__ import annotations

from pathlib import Path

import memrepl
from memrepl.namespaces import keyed_id

from ..files import dump
from .conftest import Cli


def fill(db: Path) -> None:
    with memrepl.open(db, node_id="node-a") as store:
        store.working.add(
            "w1", {"fact": "alice likes green tea", "n": 3}, namespace=("users", "alice")
        )
        store.episodic.add("e1", {"fact": "bob likes tea", "n": 5}, namespace=("users", "bob"))
        store.semantic.add(
            keyed_id(("docs", "a/b"), "k"), {"t": "tea guide"}, namespace=("docs", "a/b"), key="k"
        )


def test_search_prints_a_table_best_first(db: Path, cli: Cli) -> None:
    fill(db)
    result = cli("search", "green tea", "--db", db)
    assert result.code == 0, result.err
    header, rule, first, *rest = result.out.splitlines()
    assert header.split() == ["score", "tier", "item_id", "namespace", "content"]
    assert set(rule) <= {"-", " "}
    assert first.split()[1:4] == ["working", "w1", "users/alice"]
    assert len(rest) == 2


def test_search_by_namespace_filter_tier_and_as_json(db: Path, cli: Cli) -> None:
    fill(db)
    hits = cli("search", "tea", "--namespace", "users", "--json", "--db", db).json()
    assert sorted(hit["item_id"] for hit in hits) == ["e1", "w1"]
    assert {tuple(hit["namespace"]) for hit in hits} == {("users", "alice"), ("users", "bob")}
    only_bob = cli("search", "tea", "--namespace", "users/bob", "--json", "--db", db).json()
    assert [hit["item_id"] for hit in only_bob] == ["e1"]
    big = cli("search", "tea", "--filter", "n>=4", "--json", "--db", db).json()
    assert [hit["item_id"] for hit in big] == ["e1"]
    semantic = cli("search", "tea", "--tier", "L3", "--json", "--db", db).json()
    assert [(hit["namespace"], hit["key"]) for hit in semantic] == [(["docs", "a/b"], "k")]
    escaped = cli("search", "--namespace", "docs/a%2Fb", "--json", "--db", db).json()
    assert len(escaped) == 1 and escaped[0]["score"] is None


def test_bad_search_arguments(db: Path, cli: Cli) -> None:
    fill(db)
    before = dump(db)
    assert cli("search", "tea", "--namespace", "users//bob", "--db", db).code == 2
    assert cli("search", "tea", "--filter", "no-operator", "--db", db).code == 2
    failed = cli("search", "tea AND", "--syntax", "fts5", "--db", db)
    assert failed.code == 1 and "FTS5" in failed.err
    assert cli("search", "tea AND", "--db", db).code == 0  # plain words always work
    assert dump(db) == before


def test_namespaces_lists_what_is_in_use(db: Path, cli: Cli) -> None:
    fill(db)
    assert cli("namespaces", "--db", db).out.splitlines() == [
        "docs/a%2Fb",
        "users/alice",
        "users/bob",
    ]
    assert cli("namespaces", "users", "--db", db).out.splitlines() == ["users/alice", "users/bob"]
    assert cli("namespaces", "--max-depth", "1", "--db", db).out.splitlines() == ["docs", "users"]
    assert cli("namespaces", "--json", "--tier", "semantic", "--db", db).json() == [
        {"namespace": "docs/a%2Fb", "parts": ["docs", "a/b"]}
    ]
    assert cli("namespaces", "--nl", "--db", db).json_lines()[0]["parts"] == ["docs", "a/b"]


def test_index_rebuild(db: Path, cli: Cli) -> None:
    fill(db)
    result = cli("index", "rebuild", "--db", db)
    assert result.code == 0, result.err
    assert result.out == (
        "rebuilt the keyword index (live items per tier: working 1, episodic 1, semantic 1)\n"
    )
    assert len(cli("search", "tea", "--json", "--db", db).json()) == 3
