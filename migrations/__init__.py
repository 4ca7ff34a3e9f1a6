"""Alembic migrations for the memrepl schema (shipped in the wheel as memrepl._migrations)."""
