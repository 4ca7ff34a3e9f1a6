"""``memrepl clock show`` says where the node's clock stands, also before the first write."""

from __future__ import annotations

from pathlib import Path

from .conftest import Cli


def test_a_store_that_never_wrote_has_not_started_its_clock(db: Path, cli: Cli) -> None:
    shown = cli("clock", "show", "--db", db)
    assert shown.code == 0, shown.err
    assert "clock not started (no write yet)" in shown.out
    rewind = cli("clock", "rewind", "--db", db)
    assert rewind.code == 0, rewind.err
    assert "clock not started (no write yet), not ahead of wall time" in rewind.out
    assert cli("put", "working", "w", '{"a": 1}', "--db", db).code == 0
    after = cli("clock", "show", "--db", db)
    assert "clock at 20" in after.out  # an ISO 8601 date
    assert "the clock is not ahead of wall time" in after.out
