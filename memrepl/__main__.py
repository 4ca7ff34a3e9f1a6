"""``python -m memrepl``: the ``memrepl`` command (see :mod:`memrepl.cli`)."""

from __future__ import annotations

from memrepl.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
