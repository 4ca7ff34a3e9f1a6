"""The progress of a long ``memrepl sync`` round: the bar and the plain line."""

from __future__ import annotations

from memrepl.cli.progress import bar, line
from memrepl.node.monitor import Progress, Snapshot


def test_the_bar_and_the_line_say_the_total_the_rate_and_the_eta() -> None:
    progress = Progress(started=100.0, started_ns=0, total=200_000, done=50_000)
    shown = progress.at(102.0)  # 25,000 items/s: 150,000 left is 6 s
    assert shown == Snapshot(done=50_000, total=200_000, items_per_s=25_000.0, eta_s=6.0)
    assert bar("episodic -> node-b", shown) == (
        "memrepl: sync episodic -> node-b [#####---------------]  25%  50,000/200,000  "
        "25,000/s  ETA 0:06"
    )
    assert line("episodic -> node-b", shown) == (
        "memrepl: sync episodic -> node-b: 50,000 of 200,000 items (25%), 25,000 items/s, ETA 6 s"
    )


def test_before_anything_is_acknowledged_the_eta_is_unknown() -> None:
    shown = Progress(started=100.0, started_ns=0, total=10).at(100.5)
    assert shown.eta_s is None
    assert bar("working -> b", shown).endswith("ETA --:--")
    assert line("working -> b", shown).endswith("ETA unknown")
    done = Progress(started=0.0, started_ns=0, total=0).at(1.0)
    assert " 100%" in bar("working -> b", done)


def test_a_snapshot_crosses_the_control_channel_unchanged() -> None:
    shown = Snapshot(done=7, total=9, items_per_s=3.5, eta_s=None)
    assert Snapshot.from_json(shown.to_json()) == shown
