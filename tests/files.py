"""Reading a store's database file the way a user would: plain sqlite3, no memrepl in between.

Shared by every test package (``from ..files import dump, query``): each compares a file before
and after an operation, or checks rows with SQL, as the README tells users to.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def query(path: Path | None, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on the file at ``path``; ``params`` are the ``?`` values, or one mapping
    of the ``:name`` values."""
    assert path is not None, "a store on a file"
    values = params[0] if len(params) == 1 and isinstance(params[0], Mapping) else params
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, values).fetchall()
    finally:
        conn.close()


def dump(path: Path | None, *, skip_refusals: bool = False) -> str:
    """Every table's schema and rows (the node row and its clock included), as SQL text: equal
    dumps mean nothing was written. ``skip_refusals`` leaves out the rows of ``sync_refusals``,
    the one write a refused batch makes (it counts the refusal)."""
    assert path is not None, "a store on a file"
    conn = sqlite3.connect(path)
    try:
        lines = conn.iterdump()
        if skip_refusals:
            lines = (line for line in lines if not line.startswith('INSERT INTO "sync_refusals"'))
        return "\n".join(lines)
    finally:
        conn.close()
