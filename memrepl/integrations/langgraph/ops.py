"""LangGraph's store operations in memrepl's terms, and memrepl's answers in LangGraph's.

What this module owns -- translation only, no storage (:mod:`memrepl.integrations`):

- checking an operation as LangGraph's stores do (:func:`check_op`): namespace labels are
  non-empty strings without ``.`` or NUL, a put needs a namespace whose first label is not
  ``"langgraph"``, each raising LangGraph's ``InvalidNamespaceError`` (a ``ValueError``);
- where an item lives: the key ``key`` of ``namespace`` is memrepl's keyed id
  (:func:`memrepl.keyed_id`), filed under that namespace and key, so the same key written on
  two nodes is one item;
- a put as a :class:`~memrepl.storage.items.LocalWrite`: ``put`` (create or replace) of the
  value, or ``discard`` for ``value=None``; ``index`` and ``ttl`` as filing options
  (:mod:`memrepl.filing`);
- a filter: LangGraph's nested objects (``{"author": {"name": "x"}}``: each named field of the
  nested object matches) become memrepl's dotted paths (``{"author.name": "x"}``);
- a list of namespaces with several match conditions of one kind (only raw
  ``ListNamespacesOp``s have them): all must match;
- the records and hits memrepl returns as LangGraph ``Item``s and ``SearchItem``s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from langgraph.store.base import (
    GetOp,
    InvalidNamespaceError,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    SearchItem,
    SearchOp,
)

from memrepl.namespaces import keyed_id
from memrepl.protocol.enums import SyncPriority
from memrepl.storage.items import LocalWrite
from memrepl.storage.listing import matches
from memrepl.storage.search import Hit

#: The first label LangGraph keeps for itself.
RESERVED_ROOT = "langgraph"

_S_PER_MINUTE = 60.0


def check_labels(namespace: object) -> tuple[str, ...]:
    """``namespace`` as a tuple, if each label is a non-empty str without ``.`` or NUL;
    LangGraph's ``InvalidNamespaceError`` otherwise."""
    if isinstance(namespace, str) or not isinstance(namespace, Sequence):
        raise InvalidNamespaceError(
            f"Namespace {namespace!r} must be a tuple of strings such as ('users', 'alice')."
        )
    for label in namespace:
        if not isinstance(label, str):
            raise InvalidNamespaceError(
                f"Invalid namespace label {label!r} in {tuple(namespace)}: labels must be "
                f"strings, not {type(label).__name__}."
            )
        if not label:
            raise InvalidNamespaceError(f"Namespace labels cannot be empty: {tuple(namespace)}.")
        if "." in label or "\x00" in label:
            raise InvalidNamespaceError(
                f"Invalid namespace label {label!r} in {tuple(namespace)}: labels cannot "
                "contain periods ('.') or NUL."
            )
    return tuple(namespace)


def check_op(op: Op) -> None:
    """Check one operation before any runs (see the module docstring)."""
    if isinstance(op, GetOp):
        check_labels(op.namespace)
    elif isinstance(op, PutOp):
        namespace = check_labels(op.namespace)
        if op.value is not None:
            if not namespace:
                raise InvalidNamespaceError("Namespace cannot be empty.")
            if namespace[0] == RESERVED_ROOT:
                raise InvalidNamespaceError(
                    f'Root label for namespace cannot be "{RESERVED_ROOT}". Got: {namespace}'
                )
    elif isinstance(op, SearchOp):
        check_labels(op.namespace_prefix)
    elif isinstance(op, ListNamespacesOp):
        for condition in op.match_conditions or ():
            if condition.match_type not in ("prefix", "suffix"):
                raise ValueError(f"Unsupported match type: {condition.match_type!r}")
            check_labels(condition.path)
    else:
        raise ValueError(f"Unknown operation type: {type(op).__name__}")


def item_id(namespace: Sequence[str], key: str) -> str:
    """The memrepl id of ``key`` in ``namespace``."""
    return keyed_id(tuple(namespace), str(key))


def latest_puts(puts: Sequence[PutOp]) -> list[PutOp]:
    """One put per item, the last of the batch (as LangGraph's stores apply them), in the order
    of their first appearance."""
    last: dict[tuple[tuple[str, ...], str], PutOp] = {}
    for op in puts:
        last[(tuple(op.namespace), str(op.key))] = op
    return list(last.values())


def put_write(op: PutOp, *, fields: Sequence[str] | None, priority: SyncPriority) -> LocalWrite:
    """The write of one put. ``fields``: the store's ``IndexConfig`` fields (None: the store has
    no index, and ``index`` is ignored, as LangGraph documents)."""
    namespace, key = tuple(op.namespace), str(op.key)
    identity = item_id(namespace, key)
    if op.value is None:
        return LocalWrite.discard(identity, priority)
    embed: Sequence[str] | bool | None = None
    if fields is not None:
        embed = fields if op.index is None else op.index
    ttl_s = None if op.ttl is None else float(op.ttl) * _S_PER_MINUTE
    return LocalWrite.put(
        identity,
        op.value,  # checked (a JSON object within the size limit) by the write
        priority,
        namespace=namespace,
        key=key,
        embed=embed,  # type: ignore[arg-type]
        expire_after_s=ttl_s,
    )


def flat_filter(filter: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A LangGraph filter as memrepl's: a nested object none of whose names starts with ``$``
    (an object of operators, as LangGraph tells them) is the conditions on its fields, written
    as dotted paths; an unknown ``$`` operator is left for memrepl to refuse."""
    if not filter:
        return None
    flat: dict[str, Any] = {}

    def walk(prefix: str, condition: object) -> None:
        operators = isinstance(condition, Mapping) and any(
            str(name).startswith("$") for name in condition
        )
        if isinstance(condition, Mapping) and condition and not operators:
            for name, inner in condition.items():
                walk(f"{prefix}.{name}", inner)
        else:
            flat[prefix] = condition

    for field, condition in filter.items():
        walk(str(field), condition)
    return flat


def list_options(op: ListNamespacesOp) -> tuple[dict[str, Any], list[MatchCondition]]:
    """``(store.list_namespaces arguments, conditions left to check)``: the first prefix and the
    first suffix go to the store; further conditions (only raw ops have them) are checked on
    the whole list, which is then cut by ``offset`` and ``limit`` here."""
    options: dict[str, Any] = {
        "max_depth": op.max_depth,
        "limit": op.limit,
        "offset": op.offset,
    }
    rest: list[MatchCondition] = []
    for condition in op.match_conditions or ():
        if not condition.path:
            continue
        name = condition.match_type
        if name not in options:
            options[name] = tuple(condition.path)
        else:
            rest.append(condition)
    if rest:
        options.update(limit=None, offset=0)
    return options, rest


def kept_namespaces(
    found: Sequence[tuple[str, ...]], rest: Sequence[MatchCondition], op: ListNamespacesOp
) -> list[tuple[str, ...]]:
    """The store's list with the conditions it could not take checked, then cut."""
    if not rest:
        return list(found)
    kept = [
        namespace
        for namespace in found
        if all(matches(namespace, c.path, suffix=c.match_type == "suffix") for c in rest)
    ]
    return kept[op.offset : op.offset + op.limit]


def moment(stamp_ns: int) -> datetime:
    """A stamp (nanoseconds since the epoch) as an aware UTC datetime."""
    return datetime.fromtimestamp(stamp_ns / 1e9, tz=UTC)


def item_of(record: Mapping[str, Any]) -> Item:
    """The ``Item`` of a tier record (:meth:`~memrepl.storage.records.StoredItem.to_record`)."""
    return Item(
        value=record["content"],
        key=record["key"],
        namespace=record["namespace"],
        created_at=moment(record["created_at_ns"]),
        updated_at=moment(record["timestamp_ns"]),
    )


def search_item_of(hit: Hit) -> SearchItem:
    """The ``SearchItem`` of a hit (an item written without a key -- by memrepl's own API --
    shows its id as its key)."""
    return SearchItem(
        namespace=hit.namespace,
        key=hit.key or hit.item_id,
        value=hit.content,
        created_at=moment(hit.created_at_ns),
        updated_at=moment(hit.timestamp_ns),
        score=hit.score,
    )
