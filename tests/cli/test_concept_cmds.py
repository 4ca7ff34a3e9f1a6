"""``memrepl concept add`` / ``relation add``, and the note for semantic items outside the graph."""

from __future__ import annotations

from pathlib import Path

import memrepl
from memrepl.storage.semantic import concept_id, relation_id

from ..files import dump
from .conftest import Cli


def test_concepts_and_a_relation_make_the_graph(db: Path, cli: Cli) -> None:
    paris = cli("concept", "add", "paris", '{"population": 2100000}', "--type", "city", "--db", db)
    assert paris.code == 0, paris.err
    assert paris.err == ""
    record = paris.json()
    assert record["item_id"] == concept_id("paris", "city")
    assert record["content"] == {
        "kind": "concept", "name": "paris", "type": "city", "population": 2100000
    }  # fmt: skip
    link = cli(
        "relation", "add", "paris", "capital_of", "france", '{"since": 987}',
        "--source-type", "city", "--target-type", "country", "--priority", "high", "--db", db,
    )  # fmt: skip
    assert link.code == 0, link.err
    assert link.json()["item_id"] == relation_id(
        concept_id("paris", "city"), "capital_of", concept_id("france", "country")
    )
    assert link.json()["priority"] == "high"
    # The target does not exist yet: stored, outside the graph, and the user is told.
    assert "no concept 'france' (type 'country') yet" in link.err
    assert cli("concept", "add", "france", "--type", "country", "--db", db).code == 0
    # Adding again merges attributes into the same item.
    again = cli("concept", "add", "paris", '{"mayor": "someone"}', "--type", "city", "--db", db)
    assert again.json()["content"]["population"] == 2100000
    with memrepl.open(db) as store:
        graph = store.semantic.graph
        assert graph.has_edge(concept_id("paris", "city"), concept_id("france", "country"))
        assert graph.nodes[concept_id("paris", "city")]["mayor"] == "someone"


def test_bad_attributes_change_nothing(db: Path, cli: Cli) -> None:
    before = dump(db)
    for attributes in ("[1, 2]", "not json", '{"kind": "other"}'):
        refused = cli("concept", "add", "paris", attributes, "--db", db)
        assert refused.code == 1
        assert refused.err.startswith("memrepl: error: ")
    assert dump(db) == before


def test_a_semantic_item_without_a_kind_gets_a_note(db: Path, cli: Cli) -> None:
    merged = cli("merge", "semantic", "paris", '{"population": 2100000}', "--db", db)
    assert merged.code == 0
    assert merged.json()["kind"] is None
    assert 'has no "kind": "concept" or "relation"' in merged.err
    assert "memrepl concept add NAME" in merged.err
    quiet = cli("put", "semantic", "c", '{"kind": "concept", "name": "c"}', "--db", db)
    assert (quiet.code, quiet.err) == (0, "")
    assert cli("put", "working", "w", '{"population": 1}', "--db", db).err == ""
