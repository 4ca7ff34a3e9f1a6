"""A long ``memrepl sync``: a bar with the total, rate and ETA on a terminal (a real pty), plain
lines with the same facts when stderr is a file."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

import memrepl
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.items import LocalWrite

from .helpers import Processes, count

ITEMS = 30_000


def big_store(path: Path) -> None:
    with memrepl.open(path, node_id="c") as store:
        for start in range(0, ITEMS, 5000):
            store.episodic.write_many(
                [LocalWrite.add(f"e{n}", {"n": n}) for n in range(start, start + 5000)]
            )


def command(processes: Processes, db: Path, peer: str, *extra: str) -> list[str]:
    key = processes.directory / "cluster.key"
    return [
        sys.executable, "-m", "memrepl", "sync", "--db", str(db), "--peer", peer,
        "--key-file", str(key), "--tier", "episodic", "--no-check", *extra,
    ]  # fmt: skip


def test_a_long_sync_shows_its_progress(processes: Processes) -> None:
    a = processes.node("a", "--sync-interval", "60").start()
    c = processes.directory / "c.db"
    big_store(c)
    main_fd, child_fd = pty.openpty()
    chunks: list[bytes] = []

    def read() -> None:
        while True:
            try:
                data = os.read(main_fd, 65536)
            except OSError:
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        done = subprocess.run(
            command(processes, c, a.address), stdout=subprocess.PIPE, stderr=child_fd,
            timeout=180, check=False,
        )  # fmt: skip
    finally:
        os.close(child_fd)
        reader.join(10)
        os.close(main_fd)
    assert done.returncode == 0
    shown = b"".join(chunks).decode(errors="replace")
    redraws = [part for part in shown.split("\r") if part.startswith("memrepl: sync episodic")]
    assert redraws, shown
    assert all(f"/{ITEMS:,}" in part and "ETA " in part and "[" in part for part in redraws)
    assert any("%" in part and "/s" in part for part in redraws)
    assert shown.rstrip().endswith(tuple(str(n) for n in range(10)))  # the bar's last state
    assert count(a.db, MemoryTier.EPISODIC) == ITEMS
    assert a.stop() == 0

    # The same store to another node, stderr to a file: plain lines with the same facts.
    b = processes.node("b", "--sync-interval", "60").start()
    done = subprocess.run(
        command(processes, c, b.address, "--progress-interval", "0.3"),
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("memrepl: sync")]
    assert lines, done.stderr
    assert "\r" not in done.stderr
    for line in lines:
        assert f" of {ITEMS:,} items (" in line and " items/s, ETA " in line
    assert b.stop() == 0
