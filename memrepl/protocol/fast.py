"""The protocol layer's speed tricks, in one place (as ``storage/driver.py`` is for SQL).

Each trick departs from the obvious way of writing something because a bench measured that the
obvious way costs a real share of the hot path (``bench/protocol_bench.py``, ``bench/
sync_bench.py``), and each has a property test that it gives exactly what the obvious way gives
(``tests/protocol/test_fast.py``). Modules of this layer and the layers above take these names
from here instead of repeating the trick.

1. **Frozen values built without their constructor** (:func:`mutable_twin`, :data:`new`,
   :data:`set_field`). A frozen, slotted dataclass validates in ``__post_init__`` and refuses
   plain attribute stores, so building one field by field costs an ``object.__setattr__`` call
   per field. A value the parser has already checked needs neither: it is built as a bare
   instance of a *mutable twin* -- a class with the very same ``__slots__`` -- filled with plain
   attribute stores, and then its ``__class__`` is set to the frozen class, which Python allows
   between classes of identical slot layout. That is well under half the cost of the
   ``object.__setattr__`` calls, and keeps unpacking near bare ``struct`` speed. The result is
   an ordinary instance of the frozen class: equal, hashable, immutable, copyable and
   picklable like one built by its constructor. Values built with few fields use
   :data:`new` and :data:`set_field` instead (``object.__new__``/``object.__setattr__``: the
   dataclass ``__init__`` and its checks skipped).

2. **Enum members bound to module constants** (:data:`INSERT`, :data:`UPDATE`, ...). Python
   3.11 takes about 60 ns to read a member off its enum class and about 6 ns to read a module
   constant; the merge and the incoming-item checks compare every item's operation with a few
   members, so they compare with these constants (the same objects: ``INSERT is
   SyncOperation.INSERT``).

3. **Tables instead of enum constructors** (:data:`SYNC_FLAGS_BY_BYTE`). ``IntFlag(value)`` is a
   slow constructor; every flags byte is built once, and a parser indexes the table.
"""

from __future__ import annotations

from typing import Any

from memrepl.protocol.enums import HeaderFlags, SyncFlags, SyncOperation, SyncPriority

__all__ = [
    "DELETE",
    "HEADER_BATCHED",
    "HEADER_BATCHED_COMPRESSED",
    "INSERT",
    "MERGE",
    "NORMAL",
    "REPLICATE",
    "SYNC_FLAGS_BY_BYTE",
    "UPDATE",
    "mutable_twin",
    "new",
    "set_field",
]

#: ``new(cls)``: a bare instance, no ``__init__`` (trick 1).
new = object.__new__
#: ``set_field(obj, name, value)``: a store a frozen dataclass would refuse (trick 1).
set_field = object.__setattr__


def mutable_twin(frozen: type) -> type:
    """A class with ``frozen``'s slots and nothing else (trick 1): fill a :data:`new` instance
    of it with plain attribute stores, then set its ``__class__`` to ``frozen``.

    Only for values whose every field is set and already valid: the frozen class's checks are
    skipped, not run.
    """
    slots: Any = getattr(frozen, "__slots__", None)
    if not slots:
        raise TypeError(f"{frozen.__name__} has no __slots__: no twin can share its layout")
    return type(f"Mutable{frozen.__name__}", (), {"__slots__": tuple(slots)})


# Trick 2: the members the hot paths compare with, read once.
INSERT, UPDATE, DELETE = SyncOperation.INSERT, SyncOperation.UPDATE, SyncOperation.DELETE
MERGE, REPLICATE = SyncOperation.MERGE, SyncOperation.REPLICATE
NORMAL = SyncPriority.NORMAL
HEADER_BATCHED = HeaderFlags.BATCHED
HEADER_BATCHED_COMPRESSED = HeaderFlags.BATCHED | HeaderFlags.COMPRESSED

#: Trick 3: every flags byte as a :class:`SyncFlags` (unknown bits kept).
SYNC_FLAGS_BY_BYTE: tuple[SyncFlags, ...] = tuple(SyncFlags(value) for value in range(0x100))
