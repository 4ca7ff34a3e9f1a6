"""The layers of ARCHITECTURE.md, kept honest: each package imports only the layers below it.

The protocol layer additionally imports no I/O library at all: it is a codec over bytes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "memrepl"

#: Layer of each memrepl module or package (the first matching prefix wins).
LAYERS: list[tuple[str, int]] = [
    ("memrepl.errors", 0),
    ("memrepl.lazy", 0),
    ("memrepl.protocol", 1),
    ("memrepl.clock", 2),
    ("memrepl.merge", 2),
    ("memrepl.namespaces", 2),
    ("memrepl.filing", 2),
    ("memrepl.storage", 3),
    ("memrepl.aio", 3),
    ("memrepl.sync", 4),
    ("memrepl.policy", 4),
    ("memrepl.mesh", 5),
    ("memrepl.node", 6),
    ("memrepl.cli", 6),
    ("memrepl.demo", 6),
    ("memrepl.__main__", 6),
    # Adapters for other frameworks (LangGraph's store): above everything they translate to.
    ("memrepl.integrations", 7),
    ("memrepl", 6),  # the top-level package re-exports the public API
]

#: Third-party and standard modules each layer must not import.
FORBIDDEN: dict[int, set[str]] = {
    1: {"asyncio", "sqlalchemy", "aiosqlite", "networkx", "socket", "alembic", "ssl"},
    2: {"asyncio", "sqlalchemy", "aiosqlite", "networkx", "socket", "alembic", "ssl"},
    3: {"socket", "ssl"},
    4: {"socket", "ssl"},
}


def layer_of(module: str) -> int:
    for prefix, layer in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer
    raise AssertionError(f"{module} has no layer: add it to LAYERS")


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.append((".".join(parts), path))
    return found


def imports_of(source: str, module: str, *, is_package: bool = False) -> set[str]:
    """Every module ``source`` imports, anywhere in it (functions and ``TYPE_CHECKING`` blocks
    too); relative imports resolved against ``module`` (a package's ``__init__`` if
    ``is_package``)."""
    names: set[str] = set()
    parts = module.split(".") + ([""] if is_package else [])
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = ".".join(parts[: -node.level])
                if node.module:
                    names.add(f"{package}.{node.module}")
                else:  # from . import x, y: each may be a module
                    names.update(f"{package}.{alias.name}" for alias in node.names)
            elif node.module:
                names.add(node.module)
    return names


def violations(module: str, source: str, *, is_package: bool = False) -> list[str]:
    """What in ``source`` (the text of ``module``) breaks the layering."""
    own = layer_of(module)
    found = []
    for name in sorted(imports_of(source, module, is_package=is_package)):
        root = name.split(".")[0]
        if root == "memrepl":
            if layer_of(name) > own:
                found.append(f"{module} (layer {own}) imports {name} (layer {layer_of(name)})")
        elif root in FORBIDDEN.get(own, set()):
            found.append(f"{module} (layer {own}) imports {name}")
    return found


@pytest.mark.parametrize(("module", "path"), modules(), ids=[m for m, _ in modules()])
def test_module_imports_only_lower_layers(module: str, path: Path) -> None:
    assert violations(module, path.read_text(), is_package=path.name == "__init__.py") == []


def test_an_upward_import_is_caught_wherever_it_hides() -> None:
    hidden = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from memrepl.policy import PolicyConfig\n"
        "def consolidate():\n"
        "    from ..sync import manager\n"
        "    import socket\n"
    )
    assert violations("memrepl.storage.store", hidden) == [
        "memrepl.storage.store (layer 3) imports memrepl.policy (layer 4)",
        "memrepl.storage.store (layer 3) imports memrepl.sync (layer 4)",
        "memrepl.storage.store (layer 3) imports socket",
    ]
    # In a package's __init__, "." is the package itself.
    assert violations("memrepl.storage", "from .. import cli\n", is_package=True) == [
        "memrepl.storage (layer 3) imports memrepl.cli (layer 6)"
    ]


def test_the_protocol_layer_has_modules_to_check() -> None:
    assert any(m.startswith("memrepl.protocol.") for m, _ in modules())
