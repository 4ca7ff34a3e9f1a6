"""Running the Alembic migrations that ship with memrepl, on open, over the store's connection.

Alembic owns the schema (ARCHITECTURE.md, "Storage"): the scripts live in the repository's
``migrations/`` and ship in the wheel as the package ``memrepl._migrations``. The rules that keep
it right:

- **At head, Alembic is not even imported.** :func:`upgrade` reads ``alembic_version``; equal to
  :data:`HEAD_REVISION` means nothing to do (a test checks the constant is the scripts' only
  head).
- **Older or empty: upgrade over the caller's connection**, inside its write transaction
  (``BEGIN IMMEDIATE`` on SQLite, the advisory write lock on PostgreSQL, whose DDL is
  transactional too; Alembic's cookbook, "Sharing a Connection"), so two processes opening one
  new store migrate it once, and a failed migration leaves the store as it was.
- **Unknown revision: refuse.** A revision this memrepl does not know was written by a newer
  one; :class:`~memrepl.errors.SchemaTooNewError` says so and what to do.
- **Peers compare the replication revision, not the head.** Every script declares
  ``changes_replication``: True when it changes what nodes exchange or how they merge or collect
  it, False when it only changes this node's storage (an index). The handshake carries
  :data:`REPLICATION_REVISION`, the newest script that said True, so a storage-only migration
  is a rolling upgrade: nodes before and after it keep syncing. A test checks every script
  declares it and that the constant names the newest True one.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import Connection

from memrepl.errors import SchemaTooNewError, StoreError
from memrepl.storage.backends import backend_of
from memrepl.storage.keyword import is_index_table

if TYPE_CHECKING:
    from alembic.config import Config

#: The revision the schema of this memrepl is at (the single head of ``migrations/``).
HEAD_REVISION = "0010"

#: The newest revision that changed replication (its script says ``changes_replication = True``):
#: what the mesh handshake carries and peers must agree on. Nodes whose stores differ only by
#: later, storage-only revisions still sync.
REPLICATION_REVISION = "0009"

#: The package the migrations ship as inside the wheel.
MIGRATIONS_PACKAGE = "memrepl._migrations"


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's ``include_name`` hook: leave the keyword indexes alone -- FTS5 virtual tables
    (and FTS5's shadow tables; on PostgreSQL, tsvector tables) that migration 0006 creates with
    raw DDL, which the metadata does not describe (:mod:`memrepl.storage.keyword`)."""
    return not (type_ == "table" and name is not None and is_index_table(name))


def current_revision(conn: Connection) -> str | None:
    """The database's Alembic revision, None for a database Alembic never touched."""
    if not backend_of(conn).has_table(conn, "alembic_version"):
        return None
    revisions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(revisions) > 1:
        raise StoreError(f"the database has several schema revisions {sorted(revisions)}")
    return revisions[0] if revisions else None


def migrations_location() -> Path:
    """The directory of the migration scripts: the installed package, else the checkout's."""
    try:
        found = resources.files(MIGRATIONS_PACKAGE)
    except ModuleNotFoundError:
        # Running from a source tree that was never installed: memrepl/../migrations.
        found = Path(__file__).resolve().parents[2] / "migrations"
    location = Path(str(found))
    if not (location / "env.py").is_file():
        raise StoreError(f"memrepl's migrations are missing (looked in {location})")
    return location


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic Config built in code (no ini file: the host's logging is left alone)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_location()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def known_revisions() -> set[str]:
    """Every revision the shipped migration scripts define."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config())
    return {revision.revision for revision in script.walk_revisions()}


def upgrade(conn: Connection) -> None:
    """Bring the schema to :data:`HEAD_REVISION` in the caller's transaction.

    Raises :class:`~memrepl.errors.SchemaTooNewError` for a revision unknown to this memrepl.
    """
    revision = current_revision(conn)
    if revision == HEAD_REVISION:
        return
    if revision is not None and revision not in known_revisions():
        raise SchemaTooNewError(
            f"the database is at schema revision {revision!r}, which this memrepl does not know "
            f"(it knows up to {HEAD_REVISION!r}): it was written by a newer memrepl; "
            "upgrade memrepl (pip install -U memrepl) to open it",
            revision=revision,
        )
    from alembic import command

    command.upgrade(alembic_config(conn), "head")
