"""How ``memrepl serve`` logs: text for people, or JSON lines for a log pipeline.

The library never configures logging (STYLE.md); the daemon does, here, once. ``--log-format
json`` writes one JSON object per line on stderr with these stable fields:

==============  ===========================================================================
``time``        when, ISO 8601 UTC to the millisecond (``2026-05-09T07:35:25.123Z``)
``level``       ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR`` or ``CRITICAL``
``logger``      the module that logged (``memrepl.node.scheduler``, ``memrepl.mesh.tcp``...)
``node``        this node's id
``message``     the line a person would read (the text format's message)
``exception``   the traceback, when one was logged
==============  ===========================================================================

and, for the events a pipeline may want to count or alert on, the event's own fields next to
them (never replacing the ones above): ``event`` names it (``round-progress``, ``round-ended``,
``caught-up``, ``handshake-failed``), with ``peer``, ``tier``, ``direction`` (``send`` or
``receive``), ``items_done``, ``items_total``, ``items_per_s``, ``eta_s``, ``status``,
``duration_s``, ``code``, ``remote``, ``repeats`` as they apply. Library code attaches them as
``extra={"fields": {...}}``; the text format shows the message only.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

__all__ = ["FORMATS", "JsonFormatter", "configure"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
FORMATS = ("text", "json")
#: The fields every JSON line has, in this order; an event's fields never replace them.
BASE_FIELDS = ("time", "level", "logger", "node", "message")


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def __init__(self, node_id: str) -> None:
        super().__init__()
        self.node_id = node_id

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, tz=UTC)
        line: dict[str, Any] = {
            "time": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "node": self.node_id,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                line.setdefault(str(key), value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def _drop_tls_eof_race(record: logging.LogRecord) -> bool:
    """Drop asyncio's "returning true from eof_received() has no effect when using ssl".

    The mesh starts TLS on accepted connections itself (``StreamWriter.start_tls``, so that a
    refused certificate is counted and throttled); when a peer closes in the instant between
    the TLS handshake and the stream noticing it is now TLS (a refused peer usually does),
    CPython 3.11's streams log that line. It says nothing about the node: the connection is
    ending either way.
    """
    return "eof_received() has no effect when using ssl" not in record.getMessage()


def configure(*, level: str, fmt: str, node_id: str) -> None:
    """Log to stderr at ``level`` in ``fmt`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(node_id))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    if level != "DEBUG":
        # Alembic narrates every migration step at INFO; the node says what matters.
        logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("asyncio").addFilter(_drop_tls_eof_race)
