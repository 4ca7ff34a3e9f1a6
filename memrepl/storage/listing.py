"""Listing the namespaces in use: ``Store.list_namespaces``, as functions over a ``Connection``.

A namespace is *in use* in a tier when at least one live item is filed in it (not a tombstone,
and not expired: :mod:`.expiry`). The semantics follow LangGraph's ``list_namespaces``:
``prefix`` and ``suffix`` match whole parts, ``"*"`` in either matches any one part,
``max_depth`` cuts every namespace to its first parts (and removes the duplicates that makes),
and the result is sorted as tuples, then cut by ``offset`` and ``limit``.

The rule that keeps it right, and fast: each distinct namespace text is visited once through
the ``namespace`` index (a skip scan: "the next text after this one", one index seek each), and
a namespace counts only if one index lookup finds a live item in it. A namespace already counted
at ``max_depth`` skips its whole subtree with one seek, so the cost follows the number of
distinct namespaces under the prefix, not the number of items.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Table, and_, select
from sqlalchemy.engine import Connection

from memrepl.errors import InvalidNamespaceError
from memrepl.namespaces import Namespace, check_namespace, decode_namespace, prefix_bounds
from memrepl.storage.schema import TierSpec

#: The part of a prefix or suffix pattern that matches any one part.
WILDCARD = "*"


def check_pattern(pattern: object, *, what: str) -> tuple[str, ...]:
    """A prefix or suffix pattern: a namespace whose parts may be ``"*"``."""
    return check_namespace(pattern, what=what)


def _literal_prefix(prefix: Sequence[str]) -> Namespace:
    """The parts of ``prefix`` before its first wildcard (what the index can range over)."""
    literal = []
    for part in prefix:
        if part == WILDCARD:
            break
        literal.append(part)
    return tuple(literal)


def matches(namespace: Namespace, pattern: Sequence[str], *, suffix: bool = False) -> bool:
    """Whether ``namespace`` starts (ends, with ``suffix``) with ``pattern``, ``"*"`` matching
    any one part."""
    if len(namespace) < len(pattern):
        return False
    parts = namespace[len(namespace) - len(pattern) :] if suffix else namespace[: len(pattern)]
    return all(want in (WILDCARD, have) for have, want in zip(parts, pattern, strict=True))


def _live_in(conn: Connection, spec: TierSpec, text: str, now_ns: int) -> bool:
    table = spec.table
    query = select(table.c.item_id).where(table.c.namespace == text, table.c.deleted.is_(False))
    if "expires_at_ns" in table.c:
        expires = table.c.expires_at_ns
        query = query.where(expires.is_(None) | (expires > now_ns))
    return conn.execute(query.limit(1)).first() is not None


def _next_text(conn: Connection, table: Table, after: str, *, inclusive: bool) -> str | None:
    column = table.c.namespace
    condition = column >= after if inclusive else column > after
    found = conn.execute(
        select(column).where(and_(condition, column != "")).order_by(column).limit(1)
    ).scalar()
    return None if found is None else str(found)


def namespaces_in_tier(
    conn: Connection,
    spec: TierSpec,
    prefix: Namespace,
    max_depth: int | None,
    now_ns: int,
) -> set[Namespace]:
    """The namespaces in use in one tier under the literal ``prefix``, cut to ``max_depth``."""
    table = spec.table
    found: set[Namespace] = set()
    if prefix:
        exact, low, high = prefix_bounds(prefix)
        text = _next_text(conn, table, exact, inclusive=True)
    else:
        low, high = "", None
        text = _next_text(conn, table, "", inclusive=False)
    while text is not None and (high is None or text < high):
        if prefix and text != exact and text < low:
            # Between the prefix and its children sort texts such as "a-b": skip them.
            text = _next_text(conn, table, low, inclusive=True)
            continue
        namespace = decode_namespace(text)
        if _live_in(conn, spec, text, now_ns):
            if max_depth is not None and len(namespace) > max_depth:
                cut = namespace[:max_depth]
                found.add(cut)
                # Everything under the cut namespace is counted already: seek past it.
                text = _next_text(conn, table, prefix_bounds(cut)[2], inclusive=True)
                continue
            found.add(namespace)
        text = _next_text(conn, table, text, inclusive=False)
    return found


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def list_namespaces(
    conn: Connection,
    specs: Iterable[TierSpec],
    *,
    prefix: Sequence[str] = (),
    suffix: Sequence[str] | None = None,
    max_depth: int | None = None,
    limit: int | None = 100,
    offset: int = 0,
    now_ns: int,
) -> list[Namespace]:
    """The namespaces in use in ``specs``' tiers (see the module docstring), sorted as tuples.

    Raises :class:`~memrepl.errors.InvalidNamespaceError` for a bad prefix, suffix, depth, limit
    or offset.
    """
    prefix = check_pattern(prefix, what="prefix")
    wanted_suffix = None if suffix is None else check_pattern(suffix, what="suffix")
    if max_depth is not None and (
        isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 1
    ):
        raise InvalidNamespaceError(f"max_depth must be a positive int or None, not {max_depth!r}")
    if not _is_count(offset) or (limit is not None and not _is_count(limit)):
        raise InvalidNamespaceError(
            f"limit and offset must be non-negative ints (limit may be None), "
            f"not {limit!r} and {offset!r}"
        )
    literal = _literal_prefix(prefix)
    # With a wildcard in the prefix or a suffix to check, cut after matching, not before.
    exact_prefix = literal == prefix and wanted_suffix is None
    depth = max_depth if exact_prefix else None
    found: set[Namespace] = set()
    for spec in specs:
        found |= namespaces_in_tier(conn, spec, literal, depth, now_ns)
    kept = [
        namespace
        for namespace in found
        if matches(namespace, prefix)
        and (wanted_suffix is None or matches(namespace, wanted_suffix, suffix=True))
    ]
    if max_depth is not None and not exact_prefix:
        kept = list({namespace[:max_depth] for namespace in kept})
    kept.sort()
    end = None if limit is None else offset + limit
    return kept[offset:end]
