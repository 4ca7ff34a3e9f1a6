"""The migrations ship inside the wheel: build it, install it into a fresh venv, open a store.

The build copies the sources to a temporary directory first (the checkout is left untouched) and
uses pip's isolated build, which fetches setuptools and wheel from the package index. The fresh
venv gets the wheel with ``--no-deps --no-index``; its dependencies (SQLAlchemy, Alembic...) come
from this interpreter's site-packages through a ``.pth`` file, so nothing else is downloaded. The
store is opened from a directory outside the checkout with no PYTHONPATH, so only the installed
``memrepl`` and its ``memrepl._migrations`` can be found.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sysconfig
import textwrap
import venv
import zipfile
from pathlib import Path

from .conftest import PYTHON, REPO

OPEN_SCRIPT = """
    import json, sys
    import memrepl.storage
    from memrepl.storage.migrate import HEAD_REVISION, current_revision, migrations_location
    with memrepl.storage.open(sys.argv[1], node_id="node-wheel") as store:
        record = store.semantic.add("c", {"kind": "concept", "name": "wheel"})
        with store.read() as conn:
            revision = current_revision(conn)
    print(json.dumps({
        "memrepl": memrepl.storage.__file__,
        "migrations": str(migrations_location()),
        "revision": revision,
        "head": HEAD_REVISION,
        "content": record["content"],
    }))
"""


def run(*args: str | os.PathLike[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        [os.fspath(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_wheel_installs_and_migrates(tmp_path: Path) -> None:
    source = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("memrepl", "migrations"):
        shutil.copytree(REPO / name, source / name, ignore=ignore)
    shutil.copy(REPO / "pyproject.toml", source)
    shutil.copy(REPO / "LICENSE", source)
    readme = REPO / "README.md"
    (source / "README.md").write_text(readme.read_text() if readme.exists() else "memrepl\n")

    dist = tmp_path / "dist"
    run(PYTHON, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", dist, source, cwd=tmp_path)
    (wheel,) = dist.glob("memrepl-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (metadata,) = [name for name in names if name.endswith(".dist-info/METADATA")]
        headers = archive.read(metadata).decode("utf-8").split("\n\n", 1)[0]
    # The license travels with the package, and the metadata says what the project is.
    assert any(name.endswith("LICENSE") and ".dist-info/" in name for name in names)
    assert "Classifier: License :: OSI Approved :: MIT License" in headers
    assert "Classifier: Programming Language :: Python :: 3.11" in headers
    assert "Keywords: " in headers

    fresh = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=False).create(fresh)
    fresh_python = fresh / "bin" / "python"
    run(
        PYTHON, "-m", "pip", "--python", fresh_python, "install", "--no-deps", "--no-index",
        "--quiet", wheel, cwd=tmp_path,
    )  # fmt: skip
    purelib = Path(
        run(
            fresh_python,
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            cwd=tmp_path,
        ).strip()
    )
    (purelib / "memrepl_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    work = tmp_path / "elsewhere"
    work.mkdir()
    out = json.loads(
        run(fresh_python, "-c", textwrap.dedent(OPEN_SCRIPT), "w.db", cwd=work, env=env)
    )
    assert out["memrepl"].startswith(str(fresh))
    assert out["migrations"].startswith(str(fresh))
    assert Path(out["migrations"]).parts[-2:] == ("memrepl", "_migrations")
    assert out["revision"] == out["head"]
    assert out["content"] == {"kind": "concept", "name": "wheel"}
