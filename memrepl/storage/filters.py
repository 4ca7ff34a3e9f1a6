"""Search filters on content fields, checked once and compiled to SQL over the ``content`` column.

A filter is a mapping of **field** to **condition**, all of which must hold (LangGraph's
``filter``): ``{"status": "active", "score": {"$gte": 3}}``.

- A field is a content key, or a dotted path into nested objects (``"author.name"``); each
  part is a non-empty string without ``"`` (a key that itself contains ``.`` cannot be named).
- A condition is a JSON scalar (str, int, float, bool or None), meaning ``$eq``, or an object
  of operators: ``$eq``, ``$ne``, ``$gt``, ``$gte``, ``$lt``, ``$lte``, each with a scalar.
- ``$eq`` is JSON equality: numbers by value (``1 == 1.0``), ``true`` is not ``1``; ``None``
  matches a field that is null or absent. ``$ne`` is its negation, so it matches an absent field.
- ``$gt``/``$gte``/``$lt``/``$lte`` compare numbers with numbers and strings with strings
  (by code point); a field of another type (or absent) does not match. Their operand must be a
  number or a string.

Anything else -- a field that is not a non-empty string path, an unknown operator, an object or
list as a value, NaN -- is an :class:`~memrepl.errors.InvalidFilterError`, raised before any
query runs.

The rule that keeps it right: ONE compilation (:func:`filter_condition`) used by every search
path (keyword, vector, no query), so every path filters the same way; it uses SQLite's
``json_type`` and ``json_extract``, whose types tell a string from a number and ``true`` from
``1``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from sqlalchemy import ColumnElement, and_, column, func, not_, or_, true
from sqlalchemy.sql.elements import ColumnClause

from memrepl.errors import InvalidFilterError

#: The operators a condition may use.
OPERATORS = frozenset({"$eq", "$ne", "$gt", "$gte", "$lt", "$lte"})
_ORDERING = {"$gt": "__gt__", "$gte": "__ge__", "$lt": "__lt__", "$lte": "__le__"}
_NUMBER_TYPES = ("integer", "real")

Scalar = str | int | float | bool | None


def _json_path(field: object) -> str:
    if not isinstance(field, str) or not field:
        raise InvalidFilterError(f"filter field {field!r} is not a non-empty string")
    parts = field.split(".")
    for part in parts:
        if not part or '"' in part:
            raise InvalidFilterError(
                f"filter field {field!r} is not a field path (parts joined by '.', none empty, "
                "no '\"')"
            )
    return "$" + "".join(f'."{part}"' for part in parts)


def _scalar(field: str, value: object) -> Scalar:
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidFilterError(f"filter on {field!r}: {value!r} is not a JSON number")
        return value
    raise InvalidFilterError(
        f"filter on {field!r}: {value!r} is not a JSON scalar (str, number, bool or None) "
        f"nor an object of operators {sorted(OPERATORS)}"
    )


def _equal(content: ColumnClause[Any], path: str, value: Scalar) -> ColumnElement[bool]:
    kind = func.json_type(content, path)
    if value is None:
        return or_(kind.is_(None), kind == "null")
    if isinstance(value, bool):
        return kind == ("true" if value else "false")
    if isinstance(value, str):
        return and_(kind == "text", func.json_extract(content, path) == value)
    return and_(kind.in_(_NUMBER_TYPES), func.json_extract(content, path) == value)


def _ordered(
    content: ColumnClause[Any], path: str, operator: str, value: Scalar, field: str
) -> ColumnElement[bool]:
    if isinstance(value, bool) or value is None:
        raise InvalidFilterError(
            f"filter on {field!r}: {operator} compares numbers or strings, not {value!r}"
        )
    kind = func.json_type(content, path)
    wanted = kind == "text" if isinstance(value, str) else kind.in_(_NUMBER_TYPES)
    compared: ColumnElement[bool] = getattr(func.json_extract(content, path), _ORDERING[operator])(
        value
    )
    return and_(wanted, compared)


def _condition(
    content: ColumnClause[Any], field: str, condition: object
) -> list[ColumnElement[bool]]:
    path = _json_path(field)
    if not isinstance(condition, Mapping):
        return [_equal(content, path, _scalar(field, condition))]
    if not condition:
        raise InvalidFilterError(f"filter on {field!r}: an empty object of operators")
    found: list[ColumnElement[bool]] = []
    for operator, operand in condition.items():
        if operator not in OPERATORS:
            raise InvalidFilterError(
                f"filter on {field!r}: unknown operator {operator!r} (use {sorted(OPERATORS)})"
            )
        value = _scalar(field, operand)
        if operator == "$eq":
            found.append(_equal(content, path, value))
        elif operator == "$ne":
            different = not_(_equal(content, path, value))
            if value is not None:
                # An absent field makes json_type NULL, and NOT NULL is not true: say it.
                different = or_(func.json_type(content, path).is_(None), different)
            found.append(different)
        else:
            found.append(_ordered(content, path, operator, value, field))
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
