"""Fixtures every test package may use: stores on real databases -- SQLite files under
``tmp_path``, and PostgreSQL databases on a server the session starts -- and each tier in turn.

**Both backends.** The storage and sync tests (``tests/storage``, ``tests/sync``: storage,
sync, conflicts, crashes) run once per backend: ``test_x[sqlite]`` and ``test_x[postgresql]``
(the fixture ``backend``). A test that is about SQLite itself (its pragmas, its files) is
marked ``@pytest.mark.sqlite_only``; a test elsewhere that should run on both is marked
``@pytest.mark.backends("sqlite", "postgresql")``. Tests of other packages run on SQLite.

**The PostgreSQL server** (:mod:`tests.pgserver`) starts once per session, the first time a
test needs it, in a temporary directory; every test gets fresh databases (``locate``): copies
of a template migrated once, emptied at the test's end and given to a later test.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import memrepl
from memrepl.protocol.enums import MemoryTier
from memrepl.storage import Store

from .clocks import Wall
from .pgserver import Databases, ServerUnavailableError, TemporaryServer

#: Every backend a store can live in.
BACKENDS = ("sqlite", "postgresql")
#: The test packages whose tests run on every backend.
BOTH_BACKENDS = frozenset({"storage", "sync"})
TESTS = Path(__file__).resolve().parent

#: A store's location: a SQLite file, or a PostgreSQL database's URL.
Location = Path | str
#: ``locate(name)``: the location of a fresh store called ``name`` (the same one on every call
#: with that name in one test); ``migrated=False`` gives PostgreSQL an empty database.
Locator = Callable[..., Location]


def backends_of(definition: pytest.Function | Any) -> tuple[str, ...]:
    marker = definition.get_closest_marker("backends")
    if marker is not None:
        return tuple(marker.args)
    if definition.get_closest_marker("sqlite_only") is not None:
        return ("sqlite",)
    package = Path(str(definition.path)).resolve().relative_to(TESTS).parts[0]
    return BACKENDS if package in BOTH_BACKENDS else ("sqlite",)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    chosen = backends_of(metafunc.definition)
    if chosen != ("sqlite",):
        metafunc.parametrize("backend", chosen, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The backend this run of the test uses: ``"sqlite"`` or ``"postgresql"``."""
    return str(getattr(request, "param", "sqlite"))


def _migrate(url: str) -> None:
    from memrepl.storage import migrate
    from memrepl.storage.engine import create_engine, write_engine

    engine = create_engine(url)
    try:
        with write_engine(engine).begin() as conn:
            migrate.upgrade(conn)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def postgres() -> Iterator[Databases]:
    """The session's PostgreSQL server, with a template migrated to head."""
    if os.environ.get("MEMREPL_SKIP_POSTGRES"):
        pytest.skip("MEMREPL_SKIP_POSTGRES is set: the PostgreSQL cases are not run")
    server = TemporaryServer()
    try:
        server.start()
    except ServerUnavailableError as exc:
        server.stop()
        pytest.fail(f"PostgreSQL could not start ({exc}); MEMREPL_SKIP_POSTGRES=1 skips it")
    databases = Databases(server)
    try:
        databases.prepare_template(_migrate)
        yield databases
    finally:
        server.stop()


@pytest.fixture
def locate(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Locator]:
    """``locate(name, migrated=True)``: a fresh store location of this test's backend."""
    found: dict[str, Location] = {}
    databases: Databases | None = None
    if backend == "postgresql":
        databases = request.getfixturevalue("postgres")

    def locate(name: str = "node", *, migrated: bool = True) -> Location:
        if name not in found:
            if databases is None:
                found[name] = tmp_path / f"{name}.db"
            else:
                found[name] = databases.create(migrated=migrated)
        return found[name]

    yield locate
    if databases is not None:
        databases.release_created()


@pytest.fixture
def db_path(locate: Locator) -> Location:
    """The store ``opener`` opens unless told another (a file, or a database URL)."""
    return locate("node")


@pytest.fixture
def opener(db_path: Location) -> Iterator[Callable[..., Store]]:
    """``opener(node_id="node-a", path=db_path, **options)``: ``memrepl.open`` on a real
    database; every store it opened is closed at teardown."""
    opened: list[Store] = []

    def opener(node_id: str = "node-a", path: Location | None = None, **options: Any) -> Store:
        store = memrepl.open(path or db_path, node_id=node_id, **options)
        opened.append(store)
        return store

    yield opener
    for store in opened:
        store.close()


@pytest.fixture(params=list(MemoryTier), ids=lambda tier: tier.name.lower())
def tier(request: pytest.FixtureRequest) -> MemoryTier:
    """Each tier in turn (a test asking for ``tier`` runs once per tier)."""
    chosen: MemoryTier = request.param
    return chosen


@pytest.fixture
def wall() -> Wall:
    """A wall clock the test moves by hand (:class:`tests.clocks.Wall`)."""
    return Wall()
