"""Running ``memrepl serve``: logging, signals, the port and status files, around a
:class:`~memrepl.node.Node` (the heavy half of :mod:`memrepl.cli.serve_cmds`, imported when it
runs).

The rule that keeps it right: **SIGTERM and SIGINT stop the node cleanly** -- every round
finishes the batch in hand, the mesh says goodbye to its peers, the store is closed -- and the
command exits 0. Logs go to stderr (configured here, never in the library).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from memrepl.cli import logs
from memrepl.cli.serve_cmds import STATUS_EVERY_S
from memrepl.errors import CommandError
from memrepl.node import Node, NodeConfig
from memrepl.node.metrics import MetricsServer

log = logging.getLogger(__name__)


def run(config: NodeConfig) -> int:
    """Configure logging, build the node, run it until a signal; the exit code."""
    if config.metrics is not None:
        require_metrics_library()
    assert config.node_id is not None
    logs.configure(level=config.log_level, fmt=config.log_format, node_id=config.node_id)
    node = Node.from_config(config, control=True, command="memrepl serve")
    return asyncio.run(serve(node, config))


def require_metrics_library() -> None:
    """CommandError, before anything starts, when ``--metrics`` cannot be served."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise CommandError(
            "--metrics needs the prometheus_client package: pip install 'memrepl[metrics]'"
        ) from None


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (a temporary file renamed over it)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def write_status(node: Node, path: Path, *, stopped: bool = False) -> None:
    """Write the node's report (:mod:`memrepl.node.report`) to ``path``; a failure is logged,
    never fatal (the node replicates whether or not its status can be written)."""
    report = node.report(every_s=STATUS_EVERY_S, stopped=stopped)
    try:
        write_atomically(path, json.dumps(report.to_json(), indent=2) + "\n")
    except OSError as exc:
        log.warning("cannot write the status file %s: %s", path, exc)


async def keep_status_file(node: Node, path: Path) -> None:
    """Rewrite ``path`` every STATUS_EVERY_S until cancelled."""
    while True:
        write_status(node, path)
        await asyncio.sleep(STATUS_EVERY_S)


async def serve(node: Node, config: NodeConfig) -> int:
    """Run ``node`` until SIGTERM or SIGINT; 0 once it stopped cleanly."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    status_task: asyncio.Task[None] | None = None
    metrics: MetricsServer | None = None
    for number in signals:
        loop.add_signal_handler(number, stopping.set)
    try:
        await node.start()
        try:
            host, port = node.address
            if config.metrics is not None:
                metrics = MetricsServer(node, *config.metrics)
            if config.port_file is not None:
                write_atomically(config.port_file, f"{port}\n")
            if config.status_file is not None:
                status_task = asyncio.create_task(keep_status_file(node, config.status_file))
            sys.stderr.write(f"memrepl: listening on {host}:{port} as {node.node_id}\n")
            if metrics is not None:
                sys.stderr.write(f"memrepl: metrics on {metrics.url}\n")
            sys.stderr.flush()
            await stopping.wait()
            log.info("signal received: stopping")
        finally:
            if metrics is not None:
                # In a thread: a scrape in progress waits for this loop, which must keep
                # running until the server has finished it.
                await asyncio.to_thread(metrics.close)
            if status_task is not None:
                status_task.cancel()
                await asyncio.gather(status_task, return_exceptions=True)
                if config.status_file is not None and node.running:
                    write_status(node, config.status_file, stopped=True)
            await node.stop()
    finally:
        for number in signals:
            loop.remove_signal_handler(number)
    return 0
