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
    ("memrepl.protocol", 1),
    ("memrepl.clock", 2),
    ("memrepl.merge", 2),
    ("memrepl.storage", 3),
    ("memrepl.aio", 3),
    ("memrepl.sync", 4),
    ("memrepl.policy", 4),
    ("memrepl.mesh", 5),
    ("memrepl.node", 6),
    ("memrepl.cli", 6),
    ("memrepl.demo", 6),
    ("memrepl.__main__", 6),
    ("memrepl", 6),  # the top-level package re-exports the public API
]

#: Third-party and standard modules each layer must not import.
FORBIDDEN: dict[int, set[str]] = {
    1: {"asyncio", "sqlalchemy", "aiosqlite", "networkx", "socket", "alembic", "ssl"},
    2: {"asyncio", "sqlalchemy", "aiosqlite", "networkx", "socket", "alembic", "ssl"},
    3: {"socket", "ssl"},
    4: {"socket", "ssl"},
}


#: The only upward imports, each inside a function (on use): convenience entry points that the
#: layer above implements. ``Store.consolidate()`` runs ``memrepl.policy.consolidate``.
UPWARD_ON_USE: set[tuple[str, str]] = {("memrepl.storage.store", "memrepl.policy")}


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


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize(("module", "path"), modules(), ids=[m for m, _ in modules()])
def test_module_imports_only_lower_layers(module: str, path: Path) -> None:
    own = layer_of(module)
    for name in imports_of(path):
        root = name.split(".")[0]
        if root == "memrepl":
            if own == 6 and module == "memrepl":
                continue
            if (module, name) in UPWARD_ON_USE:
                continue
            assert layer_of(name) <= own, f"{module} (layer {own}) imports {name}"
        else:
            assert root not in FORBIDDEN.get(own, set()), f"{module} imports {name}"


def test_the_protocol_layer_has_modules_to_check() -> None:
    assert any(m.startswith("memrepl.protocol.") for m, _ in modules())
