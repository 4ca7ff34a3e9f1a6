"""Lazy exports (``memrepl.lazy``): every exported name resolves to the object its module owns."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import memrepl
import memrepl.storage

PACKAGES = ["memrepl", "memrepl.storage"]


@pytest.mark.parametrize("package", PACKAGES)
def test_every_exported_name_resolves(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        assert value is not None, name
    # `from package import *` works too.
    namespace: dict[str, object] = {}
    exec(f"from {package} import *", namespace)
    assert set(module.__all__) <= set(namespace)


def test_names_are_the_owning_modules_objects() -> None:
    from memrepl.storage.store import open as store_open
    from memrepl.sync.manager import MemorySyncManager

    assert memrepl.open is store_open
    assert memrepl.MemorySyncManager is MemorySyncManager
    assert memrepl.storage.open is store_open


def test_unknown_names_are_attribute_errors() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = memrepl.nothing_here  # type: ignore[attr-defined]


def test_import_memrepl_alone_loads_no_sqlalchemy() -> None:
    probe = "import sys, memrepl; print(sorted(m for m in sys.modules if 'sqlalchemy' in m))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
