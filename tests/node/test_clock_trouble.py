"""Clock trouble is visible on both sides, and fixing a fast clock does not mean waiting it out.

Issue 12: a node an hour ahead had its batches refused (rightly), but the refusing node's status
showed nothing, and after the fast clock was fixed the node stayed one-way for about an hour.
Here, with real processes (f's wall clock an hour fast, through fastclock.py): a's ``memrepl
status`` names f, the ``clock-skew`` refusal and the skew; f's status shows a refused it, and,
once its wall clock is right, that its clock is an hour ahead; ``memrepl clock rewind`` brings f
back, and a gets f's writes at once.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import memrepl
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.items import LocalWrite

from .helpers import Processes, converged, count, rows

FAST = ("--sync-interval", "0.5", "--high-delay", "0.1", "--ack-timeout", "5")
AHEAD_S = 3600
FASTCLOCK = str(Path(__file__).with_name("fastclock.py"))


def memrepl_cli(*args: str | Path, fast: bool = False) -> subprocess.CompletedProcess[str]:
    launcher = [FASTCLOCK, str(AHEAD_S)] if fast else ["-m", "memrepl"]
    return subprocess.run(
        [sys.executable, *launcher, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def status(db: Path, *, fast: bool = False) -> dict[str, object]:
    done = memrepl_cli("status", "--db", db, "--json", fast=fast)
    assert done.returncode == 0, done.stderr
    found: dict[str, object] = json.loads(done.stdout)
    return found


def test_a_fast_clock_is_visible_on_both_sides_and_rewound(processes: Processes) -> None:
    a = processes.node("a", *FAST).start()
    f = processes.node("f", *FAST)
    f.launcher = [FASTCLOCK, str(AHEAD_S)]
    f.start("--peer", a.address)
    with memrepl.open(f.db, node_id="f", wall=lambda: time.time_ns() + AHEAD_S * 10**9) as store:
        store.episodic.write_many([LocalWrite.add(f"f-{i}", {"i": i}) for i in range(20)])

    def a_refused_f() -> bool:
        found = rows(a.db, "SELECT code FROM sync_refusals WHERE peer_id = 'f'")
        return ("clock-skew",) in found

    processes.wait(a_refused_f, 20, "a refuses f's batches")
    assert count(a.db, MemoryTier.EPISODIC) == 0
    # The refusing side: the peer, the refusal, and the skew.
    refusals = status(a.db)["refusals"]
    assert isinstance(refusals, list)
    (skew,) = [r for r in refusals if r["peer_id"] == "f" and r["code"] == "clock-skew"]
    assert skew["direction"] == "inbound" and skew["count"] >= 1
    assert AHEAD_S - 120 < skew["ahead_s"] < AHEAD_S + 120
    text = memrepl_cli("status", "--db", a.db).stdout
    assert any(line.split()[:4] == ["f", "episodic", "by", "this"] for line in text.splitlines())
    # The skewed side, its wall clock still wrong: its peer refuses it for clock skew.
    seen_by_f = status(f.db, fast=True)
    assert any(
        r["peer_id"] == "a" and r["direction"] == "outbound" and r["code"] == "clock-skew"
        for r in seen_by_f["refusals"]  # type: ignore[attr-defined]
    )
    # The operator fixes f's wall clock: f's status now shows its clock an hour ahead.
    assert f.stop() == 0
    f.launcher = ["-m", "memrepl"]
    clock = status(f.db)["clock"]
    assert isinstance(clock, dict) and AHEAD_S - 120 < clock["ahead_s"] < AHEAD_S + 120
    assert "memrepl clock rewind" in memrepl_cli("status", "--db", f.db).stdout
    # Rewinding it needs the node stopped; then replication works at once.
    rewound = memrepl_cli("clock", "rewind", "--db", f.db)
    assert rewound.returncode == 0, rewound.stderr
    assert "clock rewound from" in rewound.stdout
    assert status(f.db)["clock"]["ahead_s"] < 61  # type: ignore[index]
    f.start("--peer", a.address)
    processes.wait(converged([a.db, f.db]), 20, "a gets f's writes without waiting an hour")
    assert count(a.db, MemoryTier.EPISODIC) == 20
    assert (a.stop(), f.stop()) == (0, 0)


def test_rewind_refuses_while_the_node_runs(processes: Processes) -> None:
    a = processes.node("a", *FAST).start()
    done = memrepl_cli("clock", "rewind", "--db", a.db)
    assert done.returncode == 1
    assert done.stderr.startswith(f"memrepl: error: {a.db} is already in use by a running node")
    assert a.stop() == 0
