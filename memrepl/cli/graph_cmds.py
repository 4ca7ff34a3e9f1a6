"""``memrepl graph export``: the semantic tier (L3) as GraphML or node-link JSON.

The graph is the one the semantic tier keeps, defined once in :mod:`memrepl.storage.semantic`:
live concepts are its nodes (attributes: their content), live relations between live concepts its
edges, keyed by the relation's item id. The command exports a copy; it never rebuilds the graph.

GraphML carries only scalar attributes, so for GraphML (only) the attributes are made safe:
objects and lists become their JSON text, nulls are left out, an attribute whose type differs
between elements becomes text everywhere (one GraphML key per name), and characters XML 1.0
cannot carry become U+FFFD. Node-link JSON keeps the content as it is.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memrepl.cli.context import Subparsers, add_command, open_store
from memrepl.cli.output import emit

if TYPE_CHECKING:
    pass

ORDER = 60

FORMATS = ("graphml", "node-link")
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _xml_text(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _scalar(value: Any) -> Any:
    """A GraphML-safe value: str/int/float/bool as is, anything else as its JSON text."""
    if isinstance(value, str):
        return _xml_text(value)
    if isinstance(value, bool | int | float):
        return value
    return _xml_text(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _safe_attributes(elements: Iterable[dict[str, Any]]) -> None:
    """Make the attribute dicts GraphML-safe in place (see the module docstring)."""
    chosen = list(elements)
    types: dict[str, set[type]] = {}
    for attributes in chosen:
        for name in [name for name, value in attributes.items() if value is None]:
            del attributes[name]
        for name, value in attributes.items():
            attributes[name] = _scalar(value)
            types.setdefault(name, set()).add(type(attributes[name]))
    mixed = {name for name, found in types.items() if len(found) > 1}
    for attributes in chosen:
        for name in mixed & set(attributes):
            value = attributes[name]
            attributes[name] = value if isinstance(value, str) else json.dumps(value)


def graphml_safe(graph: Any) -> Any:
    """``graph`` with GraphML-safe attributes (changed in place and returned)."""
    _safe_attributes([graph.graph])
    _safe_attributes(attributes for _, attributes in graph.nodes(data=True))
    _safe_attributes(attributes for *_, attributes in graph.edges(keys=True, data=True))
    return graph


def render(graph: Any, fmt: str) -> str:
    """The graph as GraphML or node-link JSON text."""
    import networkx as nx

    if fmt == "graphml":
        buffer = io.BytesIO()
        nx.write_graphml(graphml_safe(graph), buffer, encoding="utf-8")
        return buffer.getvalue().decode("utf-8").rstrip("\n")
    data = nx.node_link_data(graph, edges="edges")
    return json.dumps(data, indent=2, ensure_ascii=False)


def _describe(graph: Any, graph_attributes: Mapping[str, Any]) -> str:
    return (
        f"{graph.number_of_nodes()} concepts and {graph.number_of_edges()} relations "
        f"of node {graph_attributes.get('memrepl_node')!r}"
    )


def run_export(args: argparse.Namespace) -> int:
    """Export the semantic tier's graph."""
    with open_store(args) as store:
        # The tier's own graph (memrepl.storage.semantic), loaded when the store opened.
        graph = store.semantic.graph.copy()
        graph.graph.setdefault("memrepl_node", store.node_id)
        graph.graph.setdefault("memrepl_tier", "semantic")
    text = render(graph, args.format)
    if args.output is None:
        sys.stdout.write(text + "\n")
        return 0
    output = Path(args.output)
    output.write_text(text + "\n", encoding="utf-8")
    emit(f"wrote {_describe(graph, graph.graph)} to {output} ({args.format})")
    return 0


def add_parsers(subparsers: Subparsers) -> None:
    """The ``graph`` group: ``graph export``."""
    graph = add_command(subparsers, "graph", help="the semantic tier as a graph")
    commands: Subparsers = graph.add_subparsers(
        title="graph commands", dest="graph_command", metavar="GRAPH_COMMAND", required=True
    )
    export = add_command(
        commands,
        "export",
        help="write the semantic tier as GraphML or node-link JSON",
        description=(
            "Write the semantic tier as a directed multigraph: live concepts are nodes, live "
            "relations between live concepts are edges (keyed by item id). GraphML "
            "attributes are scalars: nested JSON values are written as JSON text."
        ),
        run=run_export,
    )
    export.add_argument(
        "--format", choices=FORMATS, default="graphml", help="output format (default: graphml)"
    )
    export.add_argument("--output", "-o", metavar="FILE", help="write to FILE instead of stdout")
