"""``memrepl concept add`` and ``memrepl relation add``: the semantic tier's graph, by name.

The semantic tier keeps a graph of concepts and relations (ARCHITECTURE.md, "The tiers"). Both
are items with deterministic ids -- ``concept_id(name, type)``, ``relation_id(source, relation,
target)`` -- written by :meth:`SemanticMemory.add_concept` and :meth:`~SemanticMemory.add_relation`,
which merge: adding a concept again (on any node) adds its attributes to the same item. These
commands are those two calls, so a relation names its ends by concept name (and type), as a user
thinks of them, and the ids are computed the one way the library computes them.

A relation whose end is not a live concept yet is stored and kept out of the graph until that
concept exists: the command says so on stderr. ``memrepl put/merge semantic ID JSON`` still write
any JSON object; one without ``"kind": "concept"``/``"relation"`` gets a note that the graph
leaves it out (:func:`note_if_outside_graph`).
"""

from __future__ import annotations

import argparse
from typing import Any

from memrepl.cli.context import Subparsers, add_command, add_priority_option, open_store
from memrepl.cli.output import emit_json, note
from memrepl.errors import InvalidContentError

ORDER = 25

DEFAULT_TYPE = "concept"


def read_attributes(text: str | None, what: str) -> dict[str, Any]:
    """The attributes JSON object (``{}`` when not given); InvalidContentError otherwise."""
    from memrepl.cli.item_cmds import read_content

    if text is None:
        return {}
    value = read_content(text, what)
    if not isinstance(value, dict):
        raise InvalidContentError(f"{what}: the attributes must be a JSON object, not {text!r}")
    return value


def note_if_outside_graph(record: dict[str, Any]) -> None:
    """A note for a semantic item the graph leaves out (its content is no concept or relation)."""
    if record.get("kind") is None and not record.get("deleted"):
        note(
            f'semantic item {record["item_id"]!r} has no "kind": "concept" or "relation": '
            "it is stored, but the graph leaves it out (add concepts with 'memrepl concept add "
            "NAME', relations with 'memrepl relation add SOURCE RELATION TARGET')"
        )


def run_concept_add(args: argparse.Namespace) -> int:
    """Add (or merge into) a concept."""
    attributes = read_attributes(args.attributes, f"concept {args.name!r}")
    with open_store(args) as store:
        record = store.semantic.add_concept(
            args.name, args.type, priority=args.priority, **attributes
        )
    emit_json(_printable(record))
    return 0


def run_relation_add(args: argparse.Namespace) -> int:
    """Add (or merge into) a relation between two concepts named by name and type."""
    from memrepl.storage.semantic import concept_id

    attributes = read_attributes(args.attributes, f"relation {args.relation!r}")
    source = concept_id(args.source, args.source_type)
    target = concept_id(args.target, args.target_type)
    with open_store(args) as store:
        record = store.semantic.add_relation(
            source, args.relation, target, priority=args.priority, **attributes
        )
        missing = [
            f"{name!r} (type {kind!r})"
            for name, kind, item_id in (
                (args.source, args.source_type, source),
                (args.target, args.target_type, target),
            )
            if store.semantic.concept(item_id) is None
        ]
    emit_json(_printable(record))
    if missing:
        note(
            f"no concept {' or '.join(missing)} yet: the relation is stored and joins the graph "
            "once it exists ('memrepl concept add NAME --type TYPE')"
        )
    return 0


def _printable(record: dict[str, Any]) -> dict[str, Any]:
    from memrepl.cli.item_cmds import printable

    return printable(record)


def _priority(parser: argparse.ArgumentParser) -> None:
    add_priority_option(
        parser, "how urgently the write replicates (default: keep the item's; normal when new)"
    )


def add_parsers(subparsers: Subparsers) -> None:
    """``concept add`` and ``relation add``."""
    concept = add_command(subparsers, "concept", help="concepts of the semantic tier's graph")
    concept_commands: Subparsers = concept.add_subparsers(
        title="concept commands", dest="concept_command", metavar="CONCEPT_COMMAND", required=True
    )
    add = add_command(
        concept_commands,
        "add",
        help="add a concept (or add attributes to it)",
        description=(
            "Add the concept NAME of --type (default 'concept') to the semantic tier, with the "
            "attributes of an optional JSON object; adding it again merges the attributes into "
            "the same item (its id is derived from the name and type). Prints the item."
        ),
        run=run_concept_add,
    )
    add.add_argument("name", metavar="NAME", help="the concept's name, e.g. paris")
    add.add_argument(
        "attributes", nargs="?", metavar="JSON", help="attributes: a JSON object, or - for stdin"
    )
    add.add_argument(
        "--type", default=DEFAULT_TYPE, help=f"the concept's type (default: {DEFAULT_TYPE})"
    )
    _priority(add)

    relation = add_command(subparsers, "relation", help="relations of the semantic tier's graph")
    relation_commands: Subparsers = relation.add_subparsers(
        title="relation commands",
        dest="relation_command",
        metavar="RELATION_COMMAND",
        required=True,
    )
    link = add_command(
        relation_commands,
        "add",
        help="add a relation between two concepts",
        description=(
            "Add the relation SOURCE -RELATION-> TARGET between two concepts named by name (and "
            "--source-type / --target-type, default 'concept'), with the attributes of an "
            "optional JSON object. Stored even if a concept does not exist yet: its edge joins "
            "the graph once both do. Prints the item."
        ),
        run=run_relation_add,
    )
    link.add_argument("source", metavar="SOURCE", help="the source concept's name")
    link.add_argument("relation", metavar="RELATION", help="the relation, e.g. capital_of")
    link.add_argument("target", metavar="TARGET", help="the target concept's name")
    link.add_argument(
        "attributes", nargs="?", metavar="JSON", help="attributes: a JSON object, or - for stdin"
    )
    link.add_argument("--source-type", default=DEFAULT_TYPE, metavar="TYPE")
    link.add_argument("--target-type", default=DEFAULT_TYPE, metavar="TYPE")
    _priority(link)
