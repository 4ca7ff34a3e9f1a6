"""SQL constructs that each backend spells its own way, for statements written once in Core.

Each class here is a Core expression with no SQL of its own: the backend modules
(:mod:`memrepl.storage.backends.sqlite`, :mod:`~memrepl.storage.backends.postgresql`) register
how their dialect compiles it (``sqlalchemy.ext.compiler.compiles``), so a statement that uses
one runs unchanged on both databases, and the SQL that differs stays in the backend's module.

- :class:`greatest` and :class:`least`: the larger and the smaller of two values (SQLite's
  two-argument ``max`` and ``min``, PostgreSQL's ``greatest`` and ``least``).
- :class:`JsonIs`, :class:`JsonCompare` and :class:`JsonSize`: conditions on a field of a JSON
  text column, by path (the search filters, :mod:`memrepl.storage.filters`): whether the field
  is of a JSON kind, how its value compares with a number or a string (strings by code point),
  and how many elements an array (or keys an object) has. A path is a tuple of object keys
  (str) and array positions (int).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean
from sqlalchemy.sql.functions import FunctionElement, GenericFunction

from memrepl.storage.sqltypes import Int64

#: The kinds :class:`JsonIs` tells apart (``absent``: no field at that path).
JSON_KINDS = ("string", "number", "true", "false", "null", "array", "object", "absent")
#: A field's path: object keys and array positions, from the column's value down.
JsonPath = tuple[str | int, ...]
#: The comparisons :class:`JsonCompare` makes.
COMPARISONS = ("=", "<", "<=", ">", ">=")


class greatest(GenericFunction[Any]):  # noqa: N801 - named like the SQL function it stands for
    """``greatest(a, b)``: the larger of two values."""

    inherit_cache = True
    type = Int64


class least(GenericFunction[Any]):  # noqa: N801 - named like the SQL function it stands for
    """``least(a, b)``: the smaller of two values."""

    inherit_cache = True
    type = Int64


class JsonIs(FunctionElement[bool]):
    """Whether the field at ``path`` (a tuple of keys) of the JSON text ``content`` is of
    ``kind`` (one of :data:`JSON_KINDS`)."""

    # The path and kind are not part of SQLAlchemy's cache key: never cache the statement.
    inherit_cache = False
    type = Boolean()

    def __init__(self, content: Any, path: JsonPath, kind: str) -> None:
        assert kind in JSON_KINDS, kind
        self.path = path
        self.kind = kind
        super().__init__(content)


class JsonCompare(FunctionElement[bool]):
    """``<field at path> <operator> operand``, for a field already known to be of the operand's
    kind (a str, or a number: :class:`JsonIs` first); ``operator`` one of :data:`COMPARISONS`."""

    inherit_cache = False
    type = Boolean()

    def __init__(self, content: Any, path: JsonPath, operator: str, operand: Any) -> None:
        assert operator in COMPARISONS, operator
        self.path = path
        self.operator = operator
        self.operand = operand
        super().__init__(content)


class JsonSize(FunctionElement[bool]):
    """Whether the field at ``path``, known to be of ``kind`` (``"array"`` or ``"object"``:
    :class:`JsonIs` first), has ``size`` elements (or keys)."""

    inherit_cache = False
    type = Boolean()

    def __init__(self, content: Any, path: JsonPath, kind: str, size: int) -> None:
        assert kind in ("array", "object"), kind
        self.path = path
        self.kind = kind
        self.size = size
        super().__init__(content)
