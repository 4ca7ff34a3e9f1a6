"""Helpers for the node tests: real ``memrepl serve`` processes on 127.0.0.1, port 0.

A :class:`Serve` is one child process (``python -m memrepl serve``) with its store file, log file
and port file; :class:`Processes` starts them and kills every one still running at teardown. The
test process reads and writes the same store files through ``memrepl.open`` (a second process on
a store is supported) and compares them with :func:`digest`, which covers what must converge:
every row's id, deletion, content and version.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memrepl.protocol.enums import MemoryTier

from ..files import is_postgres, query

KEY = "a-cluster-key-for-the-node-tests-0123456789"
TABLES = {tier: f"{tier.name.lower()}_items" for tier in MemoryTier}
#: How long a child may take to start listening.
START_TIMEOUT_S = 20.0


def rows(db: Path | str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of a query on ``db``, read-only, as another process would read them (a PostgreSQL
    store, named by its URL, through psycopg)."""
    if is_postgres(db):
        return query(db, sql, *params)
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def digest(db: Path | str, tier: MemoryTier, *, live_only: bool = False) -> str:
    """A hash of the tier's replicated state: (id, deleted, content, version) of every row.

    Content is compared as JSON (keys sorted): merged objects may list their keys in another
    order on each node.
    """
    where = "WHERE NOT deleted" if live_only else ""
    found = [
        (item_id, deleted, json.dumps(json.loads(content), sort_keys=True), ts, origin)
        for item_id, deleted, content, ts, origin in rows(
            db,
            f"SELECT item_id, deleted, content, version_ts, version_origin FROM {TABLES[tier]} "
            f"{where} ORDER BY item_id",
        )
    ]
    return hashlib.sha256(repr(found).encode()).hexdigest()


def count(db: Path | str, tier: MemoryTier, *, live_only: bool = True) -> int:
    where = "WHERE NOT deleted" if live_only else ""
    return int(rows(db, f"SELECT count(*) FROM {TABLES[tier]} {where}")[0][0])


def memrepl_sync(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``python -m memrepl sync ARGS...`` run to the end (at most 60 s), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "memrepl", "sync", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Poll ``check`` until it holds; the seconds it took. Fails with ``what`` on timeout."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        time.sleep(0.02)
    return time.monotonic() - started


def converged(dbs: list[Path | str], *, live_only: bool = False) -> Callable[[], bool]:
    """A check: every tier has the same digest in every store."""

    def check() -> bool:
        return all(
            len({digest(db, tier, live_only=live_only) for db in dbs}) == 1 for tier in MemoryTier
        )

    return check


@dataclass
class Serve:
    """One ``memrepl serve`` child process."""

    node_id: str
    db: Path | str
    directory: Path
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    port: int = 0
    runs: int = field(default=0)
    #: How it authenticates: the cluster key file unless given (e.g. ``--certs-dir DIR``).
    auth: list[str] | None = None
    #: What runs ``memrepl`` after the interpreter (another script: see fastclock.py).
    launcher: list[str] = field(default_factory=lambda: ["-m", "memrepl"])
    #: The process's limit of open files (None: inherited; Linux only).
    open_files: int | None = None

    @property
    def port_file(self) -> Path:
        return self.directory / f"{self.node_id}.port"

    @property
    def log(self) -> Path:
        return self.directory / f"{self.node_id}.log"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def address(self) -> str:
        return f"{self.node_id}=127.0.0.1:{self.port}"

    def start(self, *extra: str, port: int | None = None) -> Serve:
        """Start (or restart) the process and wait until it listens."""
        self.port_file.unlink(missing_ok=True)
        command = [
            sys.executable,
            *self.launcher,
            "serve",
            "--db",
            str(self.db),
            "--node-id",
            self.node_id,
            *(self.auth or ["--key-file", str(self.directory / "cluster.key")]),
            "--listen",
            f"127.0.0.1:{self.port if port is None else port}",
            "--port-file",
            str(self.port_file),
            *self.args,
            *extra,
        ]
        self.runs += 1
        with self.log.open("ab") as log:
            log.write(f"---- run {self.runs}: {' '.join(command)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(command, stdout=log, stderr=log)
        if self.open_files is not None:
            # Set from outside (Linux), before the child opens more than its first few files.
            limit = (self.open_files, self.open_files)
            resource.prlimit(self.process.pid, resource.RLIMIT_NOFILE, limit)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.port_file.exists() or not self.port_file.read_text().strip():
            if self.process.poll() is not None:
                raise AssertionError(f"{self.node_id} exited at start:\n{self.log_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.node_id} did not start:\n{self.log_text()}")
            time.sleep(0.02)
        self.port = int(self.port_file.read_text())
        return self

    def stop(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, wait, and return the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout_s)
        self.process = None
        return code

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything."""
        assert self.process is not None
        self.process.kill()
        self.process.wait(10)
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Processes:
    """The serve processes of one test; every one still running is killed at teardown."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        (directory / "cluster.key").write_text(KEY + "\n")
        os.chmod(directory / "cluster.key", 0o600)
        self.nodes: dict[str, Serve] = {}

    def node(
        self,
        node_id: str,
        *args: str,
        auth: list[str] | None = None,
        db: Path | str | None = None,
    ) -> Serve:
        """A node (not started yet) with its own store file (or ``db``: a PostgreSQL URL) and
        these extra serve flags; ``auth`` replaces ``--key-file cluster.key`` (e.g.
        ``["--certs-dir", DIR]``)."""
        store = self.directory / f"{node_id}.db" if db is None else db
        made = Serve(node_id, store, self.directory, list(args), auth=auth)
        self.nodes[node_id] = made
        return made

    def wait(self, check: Callable[[], bool], timeout_s: float, what: str) -> float:
        """:func:`wait_until`, with every node's log in the failure message."""
        try:
            return wait_until(check, timeout_s, what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.logs()}") from None

    def logs(self) -> str:
        return "\n".join(f"== {n.node_id}\n{n.log_text()}" for n in self.nodes.values())

    def close(self) -> None:
        for node in self.nodes.values():
            if node.process is not None:
                node.process.kill()
                node.process.wait(10)
                node.process = None
