"""How the ``memrepl`` command prints: aligned text tables, JSON, JSON lines and CSV.

The rules that keep it right:

- **Everything goes to stdout, through these functions** (errors go to stderr, from
  :mod:`memrepl.cli.main` only). They look ``sys.stdout`` up at call time, so output can be
  redirected or captured.
- **One set of flags for rows, as sqlite-utils has them.** A command that prints rows takes
  :func:`add_format_flags`: a table by default; ``--json``, one JSON array of objects (one object
  per line, so it is still greppable); ``--nl``, newline-delimited JSON (one object per line,
  nothing around them: it streams into ``jq``, ``grep`` and ``head``); ``--csv``, CSV with a
  header row (nested values as their JSON text). A command that prints one document
  (``status``, ``db current``) takes :func:`add_json_flag`.
- **JSON carries exact values; tables are for reading.** JSON keeps stamps as integers of
  nanoseconds and content as JSON objects; tables show times as ISO 8601 UTC to the millisecond
  and cut long cells (``...``). Both name tiers and priorities (``working``, ``high``), never
  their wire numbers; ``memrepl sql`` prints what the query selects.
"""

from __future__ import annotations

import argparse
import csv
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


def note(text: str) -> None:
    """Tell the user something about a command that succeeded, on stderr (``memrepl: note:``),
    so that stdout stays the command's output."""
    sys.stderr.write(f"memrepl: note: {text}\n")
    sys.stderr.flush()


def to_jsonable(value: Any) -> Any:
    """``value`` with bytes as hex strings (what SQL can return that JSON cannot carry)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return value


def emit_json(value: Any) -> None:
    """Print one JSON document, indented for reading."""
    emit(json.dumps(value, indent=2, ensure_ascii=False, default=to_jsonable))


def emit_json_lines(rows: Iterable[Mapping[str, Any]]) -> None:
    """Print each row as one compact JSON object per line (``--nl``)."""
    for row in rows:
        emit(json.dumps(row, ensure_ascii=False, default=to_jsonable))


def emit_json_array(rows: Iterable[Mapping[str, Any]]) -> None:
    """Print the rows as one JSON array, one object per line (``--json``), as sqlite-utils does:
    ``[{...},`` / `` {...}]``; ``[]`` when there are none. Streams: rows are printed as they
    come."""
    first = True
    for row in rows:
        text = json.dumps(row, ensure_ascii=False, default=to_jsonable)
        if first:
            sys.stdout.write("[" + text)
            first = False
        else:
            sys.stdout.write(",\n " + text)
    sys.stdout.write("[]\n" if first else "]\n")


def csv_cell(value: Any) -> Any:
    """A CSV cell: objects and lists as compact JSON text, bytes as hex, None as empty."""
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if value is None:
        return ""
    return to_jsonable(value)


def emit_csv(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None) -> None:
    """Print the rows as CSV with a header row: ``columns``, else the first row's keys."""
    writer: Any = None
    for row in rows:
        if writer is None:
            writer = csv.writer(sys.stdout, lineterminator="\n")
            columns = list(columns) if columns is not None else list(row)
            writer.writerow(columns)
        assert columns is not None
        writer.writerow([csv_cell(row.get(name)) for name in columns])
    if writer is None and columns:
        csv.writer(sys.stdout, lineterminator="\n").writerow(columns)


#: ``args.format`` of a command with :func:`add_format_flags`.
TABLE, JSON, NL, CSV = "table", "json", "nl", "csv"


def add_format_flags(parser: argparse.ArgumentParser) -> None:
    """``--json`` (an array), ``--nl`` (JSON lines), ``--csv``; a table without them."""
    group = parser.add_argument_group("output (default: a table)")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument(
        "--json",
        dest="format",
        action="store_const",
        const=JSON,
        help="a JSON array of objects, one per line",
    )
    choice.add_argument(
        "--nl",
        dest="format",
        action="store_const",
        const=NL,
        help="newline-delimited JSON: one object per line (for jq, grep, head)",
    )
    choice.add_argument(
        "--csv", dest="format", action="store_const", const=CSV, help="CSV with a header row"
    )
    parser.set_defaults(format=TABLE)


def emit_rows(
    fmt: str, rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None
) -> bool:
    """Print ``rows`` as ``fmt`` (json, nl or csv) and return True; False for ``table``, which
    the command prints its own way (names and times made readable)."""
    if fmt == JSON:
        emit_json_array(rows)
    elif fmt == NL:
        emit_json_lines(rows)
    elif fmt == CSV:
        emit_csv(rows, columns)
    else:
        return False
    return True


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
