"""Lazy exports for a package's ``__init__``: a name is imported when it is first used.

Why: ``import memrepl`` (and every ``memrepl`` command, which imports it) must not pay for
SQLAlchemy, networkx and the policy package unless it uses them -- importing them costs a
quarter of a second, more than the whole ``memrepl --help``. A package lists what it exports
and where each name lives; :func:`lazy_exports` gives it the module-level ``__getattr__``
(PEP 562) that imports the owning module on first access and caches the value in the package.

The rule that keeps it right: the names resolve to exactly the objects an eager import gave
(``from memrepl import MemorySyncManager`` still works, the same class), and type checkers see
the eager imports, which each package keeps under ``if TYPE_CHECKING:``. A test checks that
every exported name resolves.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: ``exports`` maps a name to ``module`` or
    ``module:attribute`` (when the attribute is named differently). Submodules of the package
    resolve too (``memrepl.storage`` after ``import memrepl``)."""

    def __getattr__(name: str) -> Any:  # noqa: N807 - the name PEP 562 looks for
        target = exports.get(name)
        if target is None:
            try:
                value: Any = importlib.import_module(f"{package}.{name}")
            except ModuleNotFoundError as exc:
                if exc.name != f"{package}.{name}":
                    raise
                raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        else:
            module, _, attribute = target.partition(":")
            value = getattr(importlib.import_module(module), attribute or name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
