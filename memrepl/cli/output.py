"""How the ``memrepl`` command prints: aligned text tables, JSON documents and JSON lines.

The rules that keep it right:

- **Everything goes to stdout, through these functions** (errors go to stderr, from
  :mod:`memrepl.cli.main` only). They look ``sys.stdout`` up at call time, so output can be
  redirected or captured.
- **JSON carries exact values; tables are for reading.** JSON keeps stamps as integers of
  nanoseconds and content as JSON objects; tables show times as ISO 8601 UTC to the millisecond
  and cut long cells (``...``). Multi-row ``--json`` output is JSON lines: one object per line,
  so it streams and works with ``jq``, ``grep`` and ``head``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

#: Longest a table cell may be before it is cut (content, SQL values).
MAX_CELL_CHARS = 60


def emit(text: str = "") -> None:
    """Print one line (or several) to stdout."""
    sys.stdout.write(text + "\n")


def to_jsonable(value: Any) -> Any:
    """``value`` with bytes as hex strings (what SQL can return that JSON cannot carry)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return value


def emit_json(value: Any) -> None:
    """Print one JSON document, indented for reading."""
    emit(json.dumps(value, indent=2, ensure_ascii=False, default=to_jsonable))


def emit_json_lines(rows: Iterable[Mapping[str, Any]]) -> None:
    """Print each row as one compact JSON object per line."""
    for row in rows:
        emit(json.dumps(row, ensure_ascii=False, default=to_jsonable))


def format_ns(stamp: int | None) -> str:
    """A stamp (nanoseconds since the epoch) as ISO 8601 UTC to the millisecond; '' for None/0."""
    if not stamp:
        return ""
    moment = datetime.fromtimestamp(stamp // 1_000_000_000, tz=UTC)
    millis = (stamp % 1_000_000_000) // 1_000_000
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{millis:03d}Z"


def cell(value: Any, *, max_chars: int = MAX_CELL_CHARS) -> str:
    """One table cell: '' for None, compact JSON for objects and lists, cut to ``max_chars``."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, dict | list):
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    elif isinstance(value, bytes | bytearray | memoryview):
        text = "x'" + bytes(value).hex() + "'"
    else:
        text = str(value)
    text = text.replace("\n", "\\n").replace("\t", " ")
    if len(text) > max_chars:
        text = text[: max_chars - 3] + "..."
    return text


def format_table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    right: Iterable[int] = (),
) -> str:
    """An aligned text table: a header line, a rule, one line per row.

    Cells go through :func:`cell`; the columns whose indexes are in ``right`` are right-aligned
    (numbers).
    """
    body = [[cell(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for line in body:
        for index, text in enumerate(line):
            widths[index] = max(widths[index], len(text))
    right_aligned = set(right)

    def render(cells: Sequence[str]) -> str:
        parts = [
            text.rjust(widths[i]) if i in right_aligned else text.ljust(widths[i])
            for i, text in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    lines = [render(headers), render(["-" * width for width in widths])]
    lines.extend(render(line) for line in body)
    return "\n".join(lines)


def emit_table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Iterable[int] = ()
) -> None:
    """Print :func:`format_table`."""
    emit(format_table(headers, rows, right=right))
