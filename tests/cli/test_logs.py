"""``--log-format json``: one object per record, the stable fields first, an event's own after."""

from __future__ import annotations

import json
import logging

from memrepl.cli.logs import JsonFormatter


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("memrepl.node.monitor", logging.INFO, __file__, 1, message, (), None)
    made.__dict__.update(extra)
    return made


def test_the_stable_fields_then_the_events() -> None:
    formatter = JsonFormatter("node-a")
    plain = json.loads(formatter.format(record("hello %s")))
    assert list(plain) == ["time", "level", "logger", "node", "message"]
    assert (plain["level"], plain["logger"], plain["node"]) == (
        "INFO", "memrepl.node.monitor", "node-a"
    )  # fmt: skip
    fields = {"event": "round-progress", "peer": "node-b", "items_done": 5, "message": "nope"}
    event = json.loads(formatter.format(record("progress", fields=fields)))
    assert event["event"] == "round-progress" and event["items_done"] == 5
    # An event's field never replaces a stable one.
    assert event["message"] == "progress"


def test_a_traceback_is_one_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        made = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), None)
        import sys

        made.exc_info = sys.exc_info()
    line = JsonFormatter("node-a").format(made)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]
