"""The control channel of a running node: how ``memrepl sync`` works beside ``memrepl serve``.

``memrepl sync --db a.db --peer node-b=...`` used to start a second node process on ``a.db``. It
claimed ``node-a`` on the mesh too, displaced the daemon's connection to ``node-b`` (the duplicate
rule) and its round ended ``unreachable``. Now a store has one node process (memrepl.node.lock),
and ``memrepl sync`` asks it to do the round: the daemon already holds the connection, the
credentials and the round lock of each (peer, tier), so a round asked for this way never races
the daemon's own, never changes who is connected, and needs no key on the command line.

The channel is a unix socket (:class:`ControlServer`): ``<db>-node.sock`` next to the store, or,
when that path is too long for a unix socket, one in a private temporary directory; its path is in
the node lock file. It is created with mode 0600 -- whoever may use it is whoever may write the
store. The protocol is JSON lines: one request, ``{"command": "sync", "peer": ID, "address":
"HOST:PORT" | null, "tiers": [names], "connect_timeout_s": S, "check": true|false}``; then the
answers: ``{"progress": {"tier", "done", "total", "items_per_s", "eta_s"}}`` now and then during
a long round (the node's monitor: memrepl.node.monitor.Snapshot),
``{"result": {...}}`` per tier (memrepl.sync.results.result_to_json), with ``"check"`` the
anti-entropy check's ``{"check": {...}}`` (memrepl.sync.antientropy.CheckResult.as_dict), and
``{"done": true}`` -- or ``{"error": MESSAGE}``. A peer named with an address the node did not
know is added to its dial list, as ``--peer`` would have (it stays there until the node stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memrepl.errors import ControlError, MemreplError
from memrepl.mesh.advice import advice
from memrepl.mesh.tcp import TcpMesh
from memrepl.node.config import NodeConfigError, parse_address
from memrepl.node.monitor import SEND, Snapshot
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.engine import is_url
from memrepl.sync.results import SyncResult, result_from_json, result_to_json

if TYPE_CHECKING:
    from memrepl.node.node import Node

__all__ = ["ControlServer", "Progress", "control_path", "request_sync", "unreachable"]

log = logging.getLogger(__name__)

#: The socket is the store's path with this suffix, when that fits a unix socket address.
SOCKET_SUFFIX = "-node.sock"
#: Bytes a unix socket path may take (108 on Linux with the NUL; 104 on macOS): leave room.
MAX_SOCKET_PATH_BYTES = 100
#: A request line is small: anything longer is refused.
MAX_REQUEST_BYTES = 64 * 1024
#: Seconds before progress is reported, and between reports.
PROGRESS_AFTER_S = 1.0
PROGRESS_EVERY_S = 0.5

Write = Callable[[dict[str, Any]], Awaitable[None]]
#: ``(tier, the round's progress so far)``, as a round reports it.
Progress = Callable[[str, Snapshot], None]


def control_path(db: str | os.PathLike[str]) -> Path:
    """Where the control socket of the store at ``db`` goes when the path is short enough."""
    return Path(os.fspath(db) + SOCKET_SUFFIX)


class ControlServer:
    """Serves the control channel of one running :class:`~memrepl.node.Node`."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.path: Path | None = None
        self._private_dir: Path | None = None
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> Path:
        """Listen; returns the socket's path. Raises OSError if it cannot bind."""
        path = control_path(self.node.db)
        # A store on a server has no directory to put the socket beside.
        if is_url(self.node.db) or len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
            self._private_dir = Path(tempfile.mkdtemp(prefix="memrepl-"))
            path = self._private_dir / "node.sock"
        # Only the holder of the node lock gets here: a socket file left by a killed node is
        # stale, and safe to replace.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(os.fspath(path))
            # Before listen(): nobody can connect while it is still open to others.
            os.chmod(path, 0o600)
            self._server = await asyncio.start_unix_server(
                self._serve, sock=sock, limit=MAX_REQUEST_BYTES
            )
        except BaseException:
            sock.close()
            self._remove(path)
            raise
        self.path = path
        return path

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None
        if self.path is not None:
            self._remove(self.path)
            self.path = None

    def _remove(self, path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()
        if self._private_dir is not None:
            shutil.rmtree(self._private_dir, ignore_errors=True)
            self._private_dir = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def write(answer: dict[str, Any]) -> None:
            writer.write(json.dumps(answer).encode() + b"\n")
            await writer.drain()

        try:
            try:
                line = await reader.readline()
                request = json.loads(line)
                if not isinstance(request, dict) or request.get("command") != "sync":
                    raise ControlError('the control channel knows one command: "sync"')
                await self._sync(request, write)
            except (ValueError, asyncio.LimitOverrunError) as exc:
                await write({"error": f"not a control request: {exc}"})
            except MemreplError as exc:
                await write({"error": str(exc)})
        except (ConnectionError, OSError):
            log.info("control client went away")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    async def _sync(self, request: dict[str, Any], write: Write) -> None:
        node = self.node
        peer_id, tiers, timeout_s, address = _sync_request(request)
        mesh = node.mesh
        if address is not None and isinstance(mesh, TcpMesh):
            mesh.add_peer(peer_id, *address)
        try:
            await node.wait_for_peer(peer_id, timeout_s)
        except TimeoutError:
            raise ControlError(unreachable(node, peer_id, timeout_s)) from None
        for tier in tiers:
            reporter = asyncio.create_task(_report_progress(node, peer_id, tier, write))
            try:
                (result,) = await node.sync_now([peer_id], [tier])
            finally:
                reporter.cancel()
                await asyncio.gather(reporter, return_exceptions=True)
            await write({"result": result_to_json(result)})
        if request.get("check"):
            check = await node.check_now(peer_id)
            await write({"check": check.as_dict()})
        await write({"done": True})


def _sync_request(
    request: dict[str, Any],
) -> tuple[str, list[MemoryTier], float, tuple[str, int] | None]:
    peer_id = request.get("peer")
    if not isinstance(peer_id, str) or not peer_id:
        raise ControlError("sync: 'peer' must be a node id")
    names = request.get("tiers") or [tier.name.lower() for tier in MemoryTier]
    if not isinstance(names, list):
        raise ControlError("sync: 'tiers' must be a list of tier names")
    try:
        tiers = [MemoryTier[str(name).upper()] for name in names]
    except KeyError as exc:
        raise ControlError(f"sync: unknown tier {exc.args[0]!r}") from None
    timeout_s = request.get("connect_timeout_s", 10.0)
    if (
        not isinstance(timeout_s, int | float)
        or isinstance(timeout_s, bool)
        or not 0 < timeout_s < math.inf
    ):
        raise ControlError("sync: 'connect_timeout_s' must be a positive number")
    address = None
    if request.get("address") is not None:
        try:
            address = parse_address(str(request["address"]), what="peer address")
        except NodeConfigError as exc:
            raise ControlError(f"sync: {exc}") from None
    return peer_id, tiers, float(timeout_s), address


def unreachable(node: Node, peer_id: str, timeout_s: float) -> str:
    """Why a sync could not start, in words to act on: the mesh's last error for the peer and
    what to do about it (memrepl.mesh.advice) -- the same words ``memrepl status`` shows."""
    words = f"could not connect to {peer_id!r} within {timeout_s:g} s"
    mesh = node.mesh
    peer = mesh.stats().peers.get(peer_id) if isinstance(mesh, TcpMesh) else None
    if peer is None or not peer.traffic.last_error:
        return words
    words += f" (last error: {peer.traffic.last_error})"
    todo = advice(peer.traffic.last_error_code)
    return f"{words}: {todo}" if todo else words


async def _report_progress(node: Node, peer_id: str, tier: MemoryTier, write: Write) -> None:
    """While the round runs (after PROGRESS_AFTER_S): its progress from the node's monitor."""
    await asyncio.sleep(PROGRESS_AFTER_S)
    while True:
        found = node.monitor.progress(peer_id, tier, SEND)
        if found is not None:
            shown = found.at(time.monotonic()).to_json()
            await write({"progress": {"tier": tier.name.lower(), **shown}})
        await asyncio.sleep(PROGRESS_EVERY_S)


async def request_sync(
    socket_path: str | os.PathLike[str],
    *,
    peer_id: str,
    address: str | None,
    tiers: list[MemoryTier],
    connect_timeout_s: float,
    check: bool = False,
    progress: Progress | None = None,
) -> tuple[list[SyncResult], dict[str, Any] | None]:
    """Ask the node listening on ``socket_path`` for one round with ``peer_id`` per tier (and,
    with ``check``, an anti-entropy check after them).

    Returns the results and the check's (as ``CheckResult.as_dict()``); raises
    :class:`ControlError` with the node's message if it refused, or if the channel failed.
    """
    try:
        reader, writer = await asyncio.open_unix_connection(os.fspath(socket_path))
    except OSError as exc:
        raise ControlError(f"cannot reach the running node at {socket_path}: {exc}") from exc
    request = {
        "command": "sync",
        "peer": peer_id,
        "address": address,
        "tiers": [tier.name.lower() for tier in tiers],
        "connect_timeout_s": connect_timeout_s,
        "check": check,
    }
    results: list[SyncResult] = []
    checked: dict[str, Any] | None = None
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        async for answer in _answers(reader):
            if "error" in answer:
                raise ControlError(str(answer["error"]))
            if "progress" in answer and progress is not None:
                shown = answer["progress"]
                progress(str(shown["tier"]), Snapshot.from_json(shown))
            if "result" in answer:
                results.append(result_from_json(answer["result"]))
            if isinstance(answer.get("check"), dict):
                checked = answer["check"]
            if answer.get("done"):
                return results, checked
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ControlError(f"the running node's control channel failed: {exc!r}") from exc
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
    raise ControlError("the running node closed the control channel before the round ended")


async def _answers(reader: asyncio.StreamReader) -> AsyncIterator[dict[str, Any]]:
    while line := await reader.readline():
        answer = json.loads(line)
        if not isinstance(answer, dict):
            raise ValueError(f"not a JSON object: {line[:80]!r}")
        yield answer
