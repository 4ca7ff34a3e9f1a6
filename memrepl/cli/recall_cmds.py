"""``memrepl search``, ``memrepl namespaces`` and ``memrepl index rebuild``: recall from the shell.

Each command is one call of the store's recall API (:meth:`memrepl.Store.search`,
:meth:`~memrepl.Store.list_namespaces`, :meth:`~memrepl.Store.rebuild_indexes`), so it has
exactly the library's semantics. A namespace is written as its text form, ``users/alice/facts``
(a ``/`` inside a part is ``%2F``, a ``%`` is ``%25``): the same text as the ``namespace`` column.

``--filter`` takes ``FIELD=VALUE`` (and ``!=``, ``>``, ``>=``, ``<``, ``<=``); VALUE is read as
JSON when it is a JSON number, ``true``, ``false``, ``null`` or a quoted string, else as the
string it is: ``--filter status=active --filter 'score>=3'``. Repeat it to add conditions.

Output (the CLI's conventions, memrepl.cli.output): ``search`` prints a table (score, tier, id,
namespace, content), or one JSON object per hit with ``--json`` (an array), ``--nl`` (JSON lines)
or ``--csv``; ``namespaces`` one namespace per line, or ``{"namespace": text, "parts": [...]}``
objects in the same formats.
"""

from __future__ import annotations

import argparse
import json
import re
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from memrepl.cli.context import (
    Subparsers,
    add_command,
    open_store,
    parse_tier,
    positive_int,
)
from memrepl.cli.output import add_format_flags, emit, emit_rows, emit_table
from memrepl.errors import InvalidNamespaceError
from memrepl.namespaces import Namespace, encode_namespace, parse_namespace

if TYPE_CHECKING:
    from memrepl.storage.search import Hit

ORDER = 65

#: ``FIELD OP VALUE`` of ``--filter``; the longest operators first.
_FILTER = re.compile(r"^(?P<field>[^=!<>]+?)\s*(?P<op>!=|>=|<=|=|>|<)\s*(?P<value>.*)$", re.S)
_OPERATORS = {"=": "$eq", "!=": "$ne", ">": "$gt", ">=": "$gte", "<": "$lt", "<=": "$lte"}


def namespace_arg(text: str) -> Namespace:
    """An argparse type: a namespace's text form (``users/alice``)."""
    try:
        return parse_namespace(text)
    except InvalidNamespaceError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def filter_arg(text: str) -> tuple[str, str, Any]:
    """An argparse type: ``FIELD=VALUE`` (or another operator) as ``(field, operator, value)``."""
    found = _FILTER.match(text)
    if found is None:
        raise argparse.ArgumentTypeError(
            f"not a filter: {text!r} (expected FIELD=VALUE, or !=, >, >=, <, <=)"
        )
    raw = found["value"]
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    if isinstance(value, dict | list):
        value = raw
    return found["field"].strip(), _OPERATORS[found["op"]], value


def build_filter(conditions: list[tuple[str, str, Any]] | None) -> dict[str, Any] | None:
    """The search filter of the ``--filter`` conditions (operators on one field combine)."""
    if not conditions:
        return None
    built: dict[str, dict[str, Any]] = {}
    for field, operator, value in conditions:
        built.setdefault(field, {})[operator] = value
    return dict(built)


def hit_json(hit: Hit) -> dict[str, Any]:
    """A hit as plain JSON (tier by name, namespace as its parts)."""
    data = asdict(hit)
    data["tier"] = hit.tier.name.lower()
    data["namespace"] = list(hit.namespace)
    return data


def run_search(args: argparse.Namespace) -> int:
    """Search the store and print the hits, best first."""
    with open_store(args) as store:
        results = store.search(
            args.query,
            tiers=args.tier,
            namespace=args.namespace,
            filter=build_filter(args.filter),
            limit=args.limit,
            offset=args.offset,
            mode="keyword",
            syntax=args.syntax,
        )
    if emit_rows(args.format, [hit_json(hit) for hit in results]):
        return 0
    rows = [
        [
            "" if hit.score is None else f"{hit.score:.3f}",
            hit.tier.name.lower(),
            hit.item_id,
            encode_namespace(hit.namespace),
            hit.content,
        ]
        for hit in results
    ]
    emit_table(["score", "tier", "item_id", "namespace", "content"], rows, right=[0])
    return 0


def run_namespaces(args: argparse.Namespace) -> int:
    """Print the namespaces that hold a live item."""
    with open_store(args) as store:
        found = store.list_namespaces(
            args.prefix or (),
            suffix=args.suffix,
            max_depth=args.max_depth,
            limit=args.limit,
            tiers=args.tier,
        )
    listed = [{"namespace": encode_namespace(ns), "parts": list(ns)} for ns in found]
    if not emit_rows(args.format, listed):
        for namespace in found:
            emit(encode_namespace(namespace))
    return 0


def run_rebuild(args: argparse.Namespace) -> int:
    """Rebuild the keyword index from the tiers' rows."""
    with open_store(args) as store:
        counts = store.rebuild_indexes(args.tier)
    done = ", ".join(f"{tier.name.lower()} {count}" for tier, count in counts.items())
    emit(f"rebuilt the keyword index (live items per tier: {done})")
    return 0


def _tier_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--tier",
        type=parse_tier,
        action="append",
        metavar="TIER",
        help=f"{what} only this tier (working, episodic, semantic; repeat for more; default: all)",
    )


def add_parsers(subparsers: Subparsers) -> None:
    """``search``, ``namespaces`` and ``index rebuild``."""
    search = add_command(
        subparsers,
        "search",
        help="keyword search (FTS5, BM25) over the tiers",
        description=(
            "Search every string value of the items' content for QUERY's words (any of them; "
            "more matches rank higher), best first. Without QUERY, list the items that match "
            "--namespace and --filter, most recently changed first."
        ),
        run=run_search,
    )
    search.add_argument("query", nargs="?", metavar="QUERY", help="words to look for")
    _tier_option(search, "search")
    search.add_argument(
        "--namespace",
        type=namespace_arg,
        metavar="A/B",
        help="only items in this namespace or under it (users/alice finds users/alice/facts)",
    )
    search.add_argument(
        "--filter",
        type=filter_arg,
        action="append",
        metavar="FIELD=VALUE",
        help="only items whose content field matches (also !=, >, >=, <, <=; repeatable)",
    )
    search.add_argument("--limit", type=positive_int, default=10, metavar="N", help="at most N")
    search.add_argument(
        "--offset", type=int, default=0, metavar="N", help="skip the first N hits (paging)"
    )
    search.add_argument(
        "--syntax",
        choices=["words", "fts5"],
        default="words",
        help="words: plain words, any text works (default); fts5: FTS5 query syntax",
    )
    add_format_flags(search)

    namespaces = add_command(
        subparsers,
        "namespaces",
        help="list the namespaces that hold items",
        description="List the namespaces that hold a live item, sorted, one per line.",
        run=run_namespaces,
    )
    namespaces.add_argument(
        "prefix", nargs="?", type=namespace_arg, metavar="PREFIX", help="only under this"
    )
    namespaces.add_argument(
        "--suffix", type=namespace_arg, metavar="A/B", help="only namespaces ending with this"
    )
    namespaces.add_argument(
        "--max-depth", type=positive_int, metavar="N", help="cut namespaces to N parts"
    )
    namespaces.add_argument(
        "--limit", type=positive_int, default=None, metavar="N", help="at most N (default: all)"
    )
    _tier_option(namespaces, "look in")
    add_format_flags(namespaces)

    index = add_command(subparsers, "index", help="the local search indexes")
    index_commands: Subparsers = index.add_subparsers(
        title="index commands", dest="index_command", metavar="INDEX_COMMAND", required=True
    )
    rebuild = add_command(
        index_commands,
        "rebuild",
        help="rebuild the keyword index from the tiers",
        description=(
            "Empty the keyword index and index every live item again, in one transaction. "
            "The index is kept exact by triggers; a rebuild is for repairs and checks."
        ),
        run=run_rebuild,
    )
    _tier_option(rebuild, "rebuild")
