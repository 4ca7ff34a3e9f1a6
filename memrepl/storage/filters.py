"""Search filters on content fields, checked once and compiled to SQL over the ``content`` column.

A filter is a mapping of **field** to **condition**, all of which must hold (LangGraph's
``filter``): ``{"status": "active", "score": {"$gte": 3}}``.

- A field is a content key, or a dotted path into nested objects (``"author.name"``); each
  part is a non-empty string without ``"`` (a key that itself contains ``.`` cannot be named).
- A condition is a JSON value -- a scalar (str, int, float, bool or None) or a list -- meaning
  ``$eq``, or an object of operators: ``$eq``, ``$ne``, ``$gt``, ``$gte``, ``$lt``, ``$lte``.
- ``$eq`` is JSON equality: numbers by value (``1 == 1.0``), ``true`` is not ``1``; ``None``
  matches a field that is null or absent; a list matches a list of equal elements in the same
  order, an object (under ``$eq``/``$ne`` only) an object with the same keys and equal values.
  ``$ne`` is its negation, so it matches an absent field. NaN and the infinities equal nothing
  (JSON holds no such number).
- ``$gt``/``$gte``/``$lt``/``$lte`` compare numbers with numbers and strings with strings
  (by code point); a field of another type (or absent) does not match. Their operand must be a
  number or a string; the infinities order beyond every number (``{"$lt": inf}`` matches every
  number) and NaN orders with nothing. Integers beyond SQLite's 64 bits compare as floats.

Anything else -- a field that is not a non-empty string path, an unknown operator, an object as
a plain value, an object key with ``"``, values nested deeper than :data:`MAX_DEPTH` -- is an
:class:`~memrepl.errors.InvalidFilterError`, raised before any query runs.

The rule that keeps it right: ONE compilation (:func:`filter_condition`) used by every search
path (keyword, vector, no query), so every path filters the same way. It is written with the
portable conditions of :mod:`memrepl.storage.portable`, which tell a string from a number and
``true`` from ``1``, element by element for lists and objects: SQLite's ``json_type`` and
``json_extract``, PostgreSQL's ``jsonb`` operators over the stored text.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, and_, column, false, not_, or_, true
from sqlalchemy.sql.elements import ColumnClause

from memrepl.errors import InvalidFilterError
from memrepl.storage.portable import JsonCompare, JsonIs, JsonSize

#: The operators a condition may use.
OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})
_ORDERING = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
#: A field's path: its keys (and list positions) from the content object down.
Path = tuple[str | int, ...]
#: How deep lists and objects in a condition may nest.
MAX_DEPTH = 16
#: The range of SQLite's integers: an operand outside it is bound as a float.
_INT64 = range(-(2**63), 2**63)


def _json_path(field: object) -> Path:
    if not isinstance(field, str) or not field:
        raise InvalidFilterError(f"filter field {field!r} is not a non-empty string")
    parts = tuple(field.split("."))
    for part in parts:
        if not part or '"' in part:
            raise InvalidFilterError(
                f"filter field {field!r} is not a field path (parts joined by '.', none empty, "
                "no '\"')"
            )
    return parts


def _check_value(field: str, value: object, *, objects: bool, depth: int = 0) -> None:
    """Refuse what is not a JSON value a condition may compare with (objects only under
    ``$eq``/``$ne``)."""
    if depth > MAX_DEPTH:
        raise InvalidFilterError(f"filter on {field!r}: nested deeper than {MAX_DEPTH}")
    if value is None or isinstance(value, str | bool | int | float):
        return
    if isinstance(value, list | tuple):
        for element in value:
            _check_value(field, element, objects=True, depth=depth + 1)
        return
    if isinstance(value, Mapping) and objects:
        for key, inner in value.items():
            if not isinstance(key, str) or '"' in key:
                raise InvalidFilterError(
                    f"filter on {field!r}: object key {key!r} is not a str without '\"'"
                )
            _check_value(field, inner, objects=True, depth=depth + 1)
        return
    raise InvalidFilterError(
        f"filter on {field!r}: {value!r} is not a JSON value (str, number, bool, None, list) "
        f"nor an object of operators {sorted(OPERATORS)}"
    )


def _bound(value: int | float) -> int | float:
    """A number SQLite can bind: integers beyond 64 bits as floats."""
    return value if isinstance(value, float) or value in _INT64 else float(value)


def _equal(content: ColumnClause[Any], path: Path, value: object) -> ColumnElement[bool]:
    if value is None:
        return or_(JsonIs(content, path, "absent"), JsonIs(content, path, "null"))
    if isinstance(value, bool):
        return JsonIs(content, path, "true" if value else "false")
    if isinstance(value, str):
        return and_(JsonIs(content, path, "string"), JsonCompare(content, path, "=", value))
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return false()
        return and_(JsonIs(content, path, "number"), JsonCompare(content, path, "=", _bound(value)))
    if isinstance(value, list | tuple):
        return and_(
            JsonIs(content, path, "array"),
            JsonSize(content, path, "array", len(value)),
            *(_equal(content, (*path, index), item) for index, item in enumerate(value)),
        )
    assert isinstance(value, Mapping)
    return and_(
        JsonIs(content, path, "object"),
        JsonSize(content, path, "object", len(value)),
        *(_equal(content, (*path, key), item) for key, item in value.items()),
    )


def _ordered(
    content: ColumnClause[Any], path: Path, operator: str, value: object, field: str
) -> ColumnElement[bool]:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InvalidFilterError(
            f"filter on {field!r}: {operator} compares numbers or strings, not {value!r}"
        )
    if isinstance(value, str):
        wanted = JsonIs(content, path, "string")
    else:
        wanted = JsonIs(content, path, "number")
        if isinstance(value, float) and not math.isfinite(value):
            # Every number is below +inf and above -inf; nothing orders with NaN.
            below = operator in ("$lt", "$lte")
            if math.isnan(value) or (value > 0) != below:
                return false()
            return wanted
        value = _bound(value)
    return and_(wanted, JsonCompare(content, path, _ORDERING[operator], value))


def _condition(
    content: ColumnClause[Any], field: str, condition: object
) -> list[ColumnElement[bool]]:
    path = _json_path(field)
    if not isinstance(condition, Mapping):
        _check_value(field, condition, objects=False)
        return [_equal(content, path, condition)]
    if not condition:
        raise InvalidFilterError(f"filter on {field!r}: an empty object of operators")
    found: list[ColumnElement[bool]] = []
    for operator, operand in condition.items():
        if operator not in OPERATORS:
            raise InvalidFilterError(
                f"filter on {field!r}: unknown operator {operator!r} (use {sorted(OPERATORS)})"
            )
        if operator == "$eq":
            _check_value(field, operand, objects=True)
            found.append(_equal(content, path, operand))
        elif operator == "$ne":
            _check_value(field, operand, objects=True)
            different = not_(_equal(content, path, operand))
            if operand is not None:
                # An absent field makes the kind NULL, and NOT NULL is not true: say it.
                different = or_(JsonIs(content, path, "absent"), different)
            found.append(different)
        else:
            found.append(_ordered(content, path, operator, operand, field))
    return found


def check_filter(filter: object) -> Mapping[str, Any] | None:
    """``filter`` if it is a valid filter (None or an empty mapping: no filter); else
    :class:`~memrepl.errors.InvalidFilterError`. Checking compiles it once, on a scratch column."""
    if filter is None:
        return None
    if not isinstance(filter, Mapping):
        raise InvalidFilterError(
            f"a filter is a mapping of field to condition, not {type(filter).__name__}"
        )
    filter_condition(filter, _SCRATCH)
    return filter


def filter_condition(filter: Mapping[str, Any] | None, content: Any) -> ColumnElement[bool]:
    """The SQL condition of ``filter`` on the JSON column ``content`` (TRUE for no filter)."""
    if not filter:
        return true()
    conditions: list[ColumnElement[bool]] = []
    for field, condition in filter.items():
        conditions.extend(_condition(content, field, condition))
    return and_(*conditions)


#: A stand-in for the content column, to compile (and so check) a filter before any query.
_SCRATCH: ColumnClause[Any] = column("content")
