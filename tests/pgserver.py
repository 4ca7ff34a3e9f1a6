"""A throwaway PostgreSQL server for the tests and the benches, started from the installed binaries.

``initdb`` and ``pg_ctl`` refuse to run as root, and CI runs as root: then the server runs as
the unprivileged ``postgres`` user (``runuser``), its data directory owned by that user. It
listens on 127.0.0.1 on a free port and on a unix socket in its own temporary directory, trusts
local connections (user ``postgres``), and is stopped -- and its directory removed -- by
:meth:`TemporaryServer.stop`, or by a watchdog process if the process that started it dies
first (SIGKILL included): a server never outlives its test session.

Databases are cheap: :meth:`TemporaryServer.create_database` copies a template (migrated once,
by the caller) with ``STRATEGY FILE_COPY``, about a tenth of a second.

Set ``MEMREPL_SKIP_POSTGRES=1`` to run the suite on SQLite only (the PostgreSQL cases are then
skipped, and say why); without it, a machine where PostgreSQL cannot start fails those cases.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Where Debian and most packages put the server binaries when they are not on PATH.
_BINARY_GLOBS = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin", "/opt/homebrew/bin")
#: The unprivileged user the server runs as when the tests run as root.
SERVER_USER = "postgres"

#: Settings for a test server: no fsync (a server of throwaway data), room for many stores.
TEST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "400",
    "shared_buffers": "64MB",
}

_WATCHDOG = """
import shutil, subprocess, sys
sys.stdin.read()  # returns when the process that started the server is gone
data, directory, *pg_ctl = sys.argv[1:]
subprocess.run([*pg_ctl, "-D", data, "-m", "immediate", "stop"], capture_output=True)
shutil.rmtree(directory, ignore_errors=True)
"""


class ServerUnavailableError(RuntimeError):
    """PostgreSQL cannot be started here (not installed, or it failed to start)."""


def find_binary(name: str) -> str:
    """The path of a PostgreSQL server binary (``initdb``, ``pg_ctl``)."""
    found = shutil.which(name)
    if found:
        return found
    for pattern in _BINARY_GLOBS:
        for directory in sorted(glob.glob(pattern), reverse=True):
            candidate = Path(directory) / name
            if candidate.is_file():
                return str(candidate)
    raise ServerUnavailableError(f"PostgreSQL's {name} was not found (on PATH or {_BINARY_GLOBS})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class TemporaryServer:
    """A PostgreSQL server in a temporary directory, for one test session or bench run."""

    def __init__(self, *, settings: dict[str, str] | None = None) -> None:
        self.settings = dict(TEST_SETTINGS if settings is None else settings)
        self.directory: Path | None = None
        self.port = 0
        self._as_user: list[str] = []
        self._watchdog: subprocess.Popen[bytes] | None = None

    # -- life cycle ----------------------------------------------------------------------------

    def start(self) -> TemporaryServer:
        initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
        self.directory = Path(tempfile.mkdtemp(prefix="memrepl-pg-"))
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam(SERVER_USER)
            except KeyError as exc:
                raise ServerUnavailableError(
                    f"running as root and no {SERVER_USER!r} user"
                ) from exc
            os.chown(self.directory, user.pw_uid, user.pw_gid)
            self._as_user = ["runuser", "-u", SERVER_USER, "--"]
        data = self.directory / "data"
        self._pg_ctl = [*self._as_user, pg_ctl]
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(data), str(self.directory), *self._pg_ctl],
            stdin=subprocess.PIPE,
            start_new_session=True,
        )
        self._run(
            [
                *self._as_user,
                initdb,
                "-D",
                str(data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            "initdb",
        )
        for attempt in range(3):
            self.port = free_port()
            options = [f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.directory}"]
            options += [f"-c {name}={value}" for name, value in self.settings.items()]
            try:
                self._run(
                    [
                        *self._pg_ctl,
                        "-D",
                        str(data),
                        "-l",
                        str(self.directory / "server.log"),
                        "-w",
                        "-t",
                        "60",
                        "-o",
                        " ".join(options),
                        "start",
                    ],
                    "pg_ctl start",
                )
                return self
            except ServerUnavailableError:
                if attempt == 2:
                    raise
        return self

    def stop(self) -> None:
        if self.directory is None:
            return
        data = self.directory / "data"
        with contextlib.suppress(OSError):
            subprocess.run(
                [*self._pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=60,
                check=False,
            )
        if self._watchdog is not None:
            assert self._watchdog.stdin is not None
            self._watchdog.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._watchdog.wait(timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None

    def __enter__(self) -> TemporaryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, command: list[str], what: str) -> None:
        done = subprocess.run(command, capture_output=True, text=True, cwd="/", check=False)
        if done.returncode != 0:
            log = ""
            if self.directory is not None and (self.directory / "server.log").exists():
                log = (self.directory / "server.log").read_text(errors="replace")[-2000:]
            raise ServerUnavailableError(f"{what} failed: {done.stderr.strip()}\n{log}")

    # -- databases -----------------------------------------------------------------------------

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` on this server (what ``memrepl.open`` takes)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def conninfo(self, database: str = "postgres") -> str:
        """The libpq connection string of ``database`` (what ``psycopg.connect`` takes)."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={database}"

    def execute(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE) on ``postgres``."""
        import psycopg

        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]

    def create_database(self, name: str, *, template: str | None = None) -> str:
        """Create ``name`` (empty, or a copy of ``template``); its URL."""
        copy = f" TEMPLATE {template} STRATEGY FILE_COPY" if template else ""
        for attempt in range(50):
            try:
                self.execute(f"CREATE DATABASE {name}{copy}")
                break
            except Exception as exc:  # the template is briefly in use by another session
                if "is being accessed by other users" not in str(exc) or attempt == 49:
                    raise
                time.sleep(0.1)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending the sessions still connected to it."""
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


#: What a database's schema is, as text: its relations, columns, functions and triggers (the
#: objects of the public schema), and its Alembic revision. Equal to the template's: reusable.
_SCHEMA_FINGERPRINT = """
SELECT md5(
  coalesce((SELECT string_agg(relname || ':' || relkind::text, ',' ORDER BY relname)
            FROM pg_class WHERE relnamespace = 'public'::regnamespace), '') || '|' ||
  coalesce((SELECT string_agg(c.relname || '.' || a.attname || ':' || a.atttypid::regtype,
                              ',' ORDER BY c.relname, a.attnum)
            FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
            WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0
              AND NOT a.attisdropped), '') || '|' ||
  coalesce((SELECT string_agg(proname, ',' ORDER BY proname)
            FROM pg_proc WHERE pronamespace = 'public'::regnamespace), '') || '|' ||
  coalesce((SELECT string_agg(tgname, ',' ORDER BY tgname) FROM pg_trigger t
            JOIN pg_class c ON c.oid = t.tgrelid
            WHERE c.relnamespace = 'public'::regnamespace), '') || '|' ||
  coalesce((SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension), '') || '|' ||
  CASE WHEN to_regclass('alembic_version') IS NULL THEN ''
       ELSE (SELECT string_agg(version_num, ',') FROM alembic_version) END)
"""


class Databases:
    """Per-test databases on a :class:`TemporaryServer`: copies of a migrated template, reused.

    ``template`` is created once, migrated to head by ``migrate`` (the caller's: this module
    knows nothing of memrepl), and copied for :meth:`create`. A copy costs a checkpoint (about
    0.1-0.3 s); so :meth:`release_created`, at a test's end, empties each migrated database it
    gave out (its sessions ended, every table emptied) and keeps it for the next test -- if its
    schema is still the template's. One a test changed (a table added, a downgrade, another
    revision) is dropped instead.
    """

    TEMPLATE = "memrepl_template"

    def __init__(self, server: TemporaryServer) -> None:
        self.server = server
        self._count = 0
        self._created: list[tuple[str, bool]] = []
        self._clean: list[str] = []
        self._fingerprint = ""

    def prepare_template(self, migrate: object) -> None:
        """Create the template and let ``migrate(url)`` bring it to head."""
        self.server.create_database(self.TEMPLATE)
        assert callable(migrate)
        migrate(self.server.url(self.TEMPLATE))
        self._fingerprint = self._schema_of(self.TEMPLATE)

    def create(self, *, migrated: bool = True, template: str | None = None) -> str:
        """A new database (an empty copy of the migrated template, a copy of ``template``, or
        an empty one); its URL."""
        if migrated and template is None and self._clean:
            name = self._clean.pop()
            self._created.append((name, True))
            return self.server.url(name)
        self._count += 1
        name = f"t{os.getpid()}_{self._count}"
        source = template if template is not None else (self.TEMPLATE if migrated else None)
        url = self.server.create_database(name, template=source)
        self._created.append((name, migrated and template is None))
        return url

    @staticmethod
    def name_of(url: str) -> str:
        """The database name in a URL this class gave out."""
        return url.rsplit("/", 1)[1]

    def create_untracked(self, *, template: str | None = None) -> str:
        """A database the caller drops (:meth:`drop`) or leaves to the session's end: not given
        back at a test's end (a module's fixture, a template of its own)."""
        self._count += 1
        name = f"t{os.getpid()}_{self._count}"
        return self.server.create_database(name, template=template or self.TEMPLATE)

    def drop(self, url: str) -> None:
        """Drop the database of ``url`` now."""
        self.server.drop_database(self.name_of(url))

    def release_created(self) -> None:
        """At a test's end: keep the databases :meth:`create` gave out for reuse, emptied, when
        their schema is the template's; drop the others."""
        created, self._created = self._created, []
        for name, reusable in reversed(created):
            if reusable and self._empty(name):
                self._clean.append(name)
            else:
                self.server.drop_database(name)

    def _schema_of(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.server.conninfo(name), autocommit=True) as conn:
            row = conn.execute(_SCHEMA_FINGERPRINT).fetchone()  # type: ignore[arg-type]
            return str(row[0]) if row else ""

    def _empty(self, name: str) -> bool:
        """End the database's sessions and empty its tables, if its schema is unchanged."""
        import psycopg

        self.server.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        with psycopg.connect(self.server.conninfo(name), autocommit=True) as conn:
            row = conn.execute(_SCHEMA_FINGERPRINT).fetchone()  # type: ignore[arg-type]
            if row is None or row[0] != self._fingerprint:
                return False
            tables = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
                "AND tablename <> 'alembic_version'"
            ).fetchall()
            sequences = conn.execute(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
            ).fetchall()
            # DELETE, not TRUNCATE: on a test's few rows it is several times faster (TRUNCATE
            # swaps every table's and index's files).
            statements = [f"DELETE FROM {table}" for (table,) in tables]
            statements += [f"ALTER SEQUENCE {sequence} RESTART" for (sequence,) in sequences]
            conn.execute("; ".join(statements))  # type: ignore[arg-type]
        return True
