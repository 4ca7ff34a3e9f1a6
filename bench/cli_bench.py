"""CLI start-up bench: how long ``memrepl --help`` and ``memrepl get`` take, before and after
importing only what a command uses.

Run: ``.venv/bin/python bench/cli_bench.py`` (about a minute; ``--rounds N``). Each figure is a
whole process, start to exit, the way a user (or a shell script calling memrepl in a loop) pays
for it: wall-clock time of ``subprocess.run``, the fastest and the median of N rounds. The
sides alternate within each round, so a busy machine slows both alike.

- **after**: the command as it ships -- ``memrepl --help``; ``memrepl get working ID`` (reads the
  file read-only through ``memrepl.storage.peek``, sqlite3 only).
- **before**: the previous approach in the same run: an interpreter that first imports what the
  command used to import eagerly (every command module's dependencies: SQLAlchemy through the
  storage layer, networkx, the policy package, the node and mesh), then runs the same command;
  for ``get``, the previous read path too (``memrepl.open`` + ``get_by_id``, which is
  ``get --count-access`` now).
- **python**: ``python -c pass``, the floor no command goes below.

The goal (issue 15): ``--help`` and ``get`` under 0.25 s on this project's 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import memrepl

#: What the command modules imported at module level before they imported on use.
EAGER_IMPORTS = (
    "import memrepl.policy, memrepl.node, memrepl.mesh, memrepl.storage.store, "
    "memrepl.sync.manager, memrepl.storage.schema, networkx, sqlalchemy"
)
RUN_MAIN = "import sys; from memrepl.cli.main import main; sys.exit(main(sys.argv[1:]))"

GOAL_S = 0.25


def timed(argv: list[str]) -> float:
    """Seconds one process takes, start to exit (its output discarded)."""
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15, help="alternating rounds (15)")
    options = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "bench.db"
        with memrepl.open(path, node_id="node-bench") as store:
            for n in range(1000):
                store.working.add(f"wm-{n}", {"n": n, "text": "some content " * 4})
        get = ["get", "working", "wm-500", "--db", str(path)]
        cases = {
            "python -c pass": [python, "-c", "pass"],
            "--help, before": [python, "-c", f"{EAGER_IMPORTS}; {RUN_MAIN}", "--help"],
            "--help, after": [python, "-m", "memrepl", "--help"],
            "get, before": [python, "-c", f"{EAGER_IMPORTS}; {RUN_MAIN}", *get, "--count-access"],
            "get, after": [python, "-m", "memrepl", *get],
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        for argv in cases.values():
            timed(argv)  # warm the file cache and the bytecode cache
        for _ in range(options.rounds):
            for name, argv in cases.items():
                times[name].append(timed(argv))
    print(f"CLI start-up, {options.rounds} alternating rounds (seconds; machine may be shared)")
    print(f"{'case':<18} {'fastest':>8} {'median':>8}")
    for name, found in times.items():
        print(f"{name:<18} {min(found):8.3f} {statistics.median(found):8.3f}")
    for command in ("--help", "get"):
        before = statistics.median(times[f"{command}, before"])
        after = statistics.median(times[f"{command}, after"])
        verdict = "met" if after < GOAL_S else "MISSED"
        print(
            f"{command}: median {before:.3f} s -> {after:.3f} s ({before / after:.1f}x faster); "
            f"goal < {GOAL_S} s: {verdict}"
        )


if __name__ == "__main__":
    main()
