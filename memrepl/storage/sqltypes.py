"""Column types that mean the same on SQLite and PostgreSQL.

SQLite has one INTEGER (signed 64-bit) and sorts TEXT by its bytes (the BINARY collation, that
is, by code point for UTF-8); PostgreSQL's INTEGER is 32-bit and its TEXT sorts by the
database's locale. memrepl stores nanosecond stamps and compares namespaces and ids as ranges,
so its columns say what they mean on both:

- :data:`Int64`: SQLite's INTEGER, PostgreSQL's BIGINT (a BIGSERIAL for an auto-increment key);
- :data:`Str`: SQLite's TEXT, PostgreSQL's TEXT COLLATE "C" (code point order, and ``LIKE
  'prefix%'`` can use a btree index).

The schema (:mod:`memrepl.storage.schema`) and every migration script use these, so one Alembic
history creates the same tables on both databases. The definitions never change: a migration
that needs another type names it itself.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Integer, Text
from sqlalchemy.dialects.postgresql import TEXT as PG_TEXT

#: A signed 64-bit integer on every backend.
Int64 = Integer().with_variant(BigInteger(), "postgresql")
#: Text compared and sorted by code point on every backend.
Str = Text().with_variant(PG_TEXT(collation="C"), "postgresql")
