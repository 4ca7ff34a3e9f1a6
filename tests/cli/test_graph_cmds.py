"""``memrepl graph export``: the semantic tier as GraphML and node-link JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import networkx as nx
import pytest

import memrepl
from memrepl.storage.graph_tiers import SemanticMemory

from .conftest import Cli


@pytest.fixture
def graph_db(db: Path) -> Path:
    """Concepts and relations, with everything the export must leave out."""
    with memrepl.open(db, node_id="node-a") as store:
        semantic = store.semantic
        semantic.add("paris", {"kind": "concept", "name": "Paris", "tags": ["city"], "gone": None})
        semantic.add("france", {"kind": "concept", "name": "France", "meta": {"pop": 68}})
        semantic.add("lyon", {"kind": "concept", "name": "Lyon"})
        semantic.add("old", {"kind": "concept", "name": "Deleted"})
        semantic.delete("old")
        relation = {"kind": "relation", "source": "paris", "target": "france"}
        semantic.add("r-capital", {**relation, "relation": "capital_of", "weight": 1})
        semantic.add("r-in", {**relation, "relation": "in", "weight": "strong\x01"})
        semantic.add("r-dangling", {**relation, "target": "nowhere", "relation": "x"})
        semantic.add("r-to-deleted", {**relation, "target": "old", "relation": "x"})
        semantic.add("r-deleted", {**relation, "relation": "x"})
        semantic.delete("r-deleted")
        semantic.add("note", {"text": "no kind: not part of the graph"})
        store.working.add("paris", {"kind": "concept"})  # another tier: not part of it either
    return db


def test_graphml_to_stdout(graph_db: Path, cli: Cli) -> None:
    result = cli("graph", "export", "--db", graph_db)
    assert result.code == 0, result.err
    assert result.out.startswith("<?xml")
    graph = nx.parse_graphml(result.out, force_multigraph=True)
    assert isinstance(graph, nx.MultiDiGraph)
    assert sorted(graph.nodes) == ["france", "lyon", "paris"]
    assert sorted(graph.edges(keys=True)) == [
        ("paris", "france", "r-capital"),
        ("paris", "france", "r-in"),
    ]
    # GraphML-safe: nested JSON as text, nulls left out, mixed types as text, no control chars.
    assert graph.nodes["paris"] == {"kind": "concept", "name": "Paris", "tags": '["city"]'}
    assert json.loads(graph.nodes["france"]["meta"]) == {"pop": 68}
    capital = graph.edges["paris", "france", "r-capital"]
    assert capital == {"kind": "relation", "relation": "capital_of", "weight": "1"}
    assert graph.edges["paris", "france", "r-in"]["weight"] == "strong\ufffd"
    assert graph.graph["memrepl_node"] == "node-a"
    assert graph.graph["memrepl_tier"] == "semantic"


def test_node_link_keeps_the_content(graph_db: Path, cli: Cli) -> None:
    result = cli("graph", "export", "--format", "node-link", "--db", graph_db)
    assert result.code == 0, result.err
    data = result.json()
    assert data["directed"] is True and data["multigraph"] is True
    graph = nx.node_link_graph(data, edges="edges")
    assert sorted(graph.nodes) == ["france", "lyon", "paris"]
    assert graph.nodes["paris"]["tags"] == ["city"]
    assert graph.nodes["france"]["meta"] == {"pop": 68}
    assert graph.edges["paris", "france", "r-in"]["weight"] == "strong\x01"
    assert graph.edges["paris", "france", "r-capital"]["weight"] == 1


@pytest.mark.parametrize("fmt", ["graphml", "node-link"])
def test_output_file(graph_db: Path, tmp_path: Path, cli: Cli, fmt: str) -> None:
    target = tmp_path / f"graph.{fmt}"
    result = cli("graph", "export", "--format", fmt, "--output", target, "--db", graph_db)
    assert result.code == 0, result.err
    assert result.out == (
        f"wrote 3 concepts and 2 relations of node 'node-a' to {target} ({fmt})\n"
    )
    if fmt == "graphml":
        graph = nx.read_graphml(target, force_multigraph=True)
    else:
        graph = nx.node_link_graph(json.loads(target.read_text()), edges="edges")
    assert graph.number_of_nodes() == 3 and graph.number_of_edges() == 2


def test_an_empty_tier_and_an_unwritable_output(db: Path, tmp_path: Path, cli: Cli) -> None:
    empty = nx.parse_graphml(cli("graph", "export", "--db", db).out)
    assert empty.number_of_nodes() == 0
    refused = cli("graph", "export", "-o", tmp_path / "no" / "such" / "dir.xml", "--db", db)
    assert refused.code == 1
    assert len(refused.error_lines) == 1
    assert "No such file or directory" in refused.err
    assert cli("graph", "--db", db).code == 2
    assert cli("graph", "export", "--format", "dot", "--db", db).code == 2


def test_the_tiers_own_graph_is_exported_when_it_has_one(
    graph_db: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    offered = nx.MultiDiGraph()
    offered.add_node("only", content={"nested": [1, 2]})

    def graph(self: SemanticMemory) -> Any:
        return offered

    monkeypatch.setattr(SemanticMemory, "graph", property(graph), raising=False)
    exported = nx.parse_graphml(cli("graph", "export", "--db", graph_db).out)
    assert list(exported.nodes(data=True)) == [("only", {"content": '{"nested":[1,2]}'})]
    assert offered.nodes["only"] == {"content": {"nested": [1, 2]}}  # a copy was made safe
