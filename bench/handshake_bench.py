"""Failed handshakes per second from one address, without and with the per-address throttle.

Run: ``.venv/bin/python bench/handshake_bench.py`` (``make bench`` runs every bench script).

A node (a ``TcpMesh`` in shared-key mode on 127.0.0.1) is hammered for ``--seconds`` by a client
in the same process that opens connection after connection and runs the dialler's side of the
handshake with a wrong key, one at a time, as fast as the node answers. Two figures per run:

- **attempts/s**: connections the node answered (a refusal, or a close);
- **guesses/s**: attempts in which the node checked the client's proof -- each one tests one
  guess of the key (``auth-failed`` in the node's counters). This is what the throttle bounds.

The baseline, in the same run: the same node with the throttle out of the way
(``auth_failures_allowed`` = 10^9). The throttled node uses the defaults (5 failures in a row,
then a lockout of 1 s doubling up to 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time

from memrepl.errors import MemreplError
from memrepl.mesh.auth import Auth, Challenge, Hello, decode_handshake, new_nonce
from memrepl.mesh.config import TcpMeshConfig
from memrepl.mesh.framing import read_frame
from memrepl.mesh.tcp import TcpMesh
from memrepl.protocol.enums import MessageTypes
from memrepl.protocol.header import encode_frame
from memrepl.storage.migrate import REPLICATION_REVISION

KEY = b"the-real-cluster-key-0123456789abcdef"


async def attempt(port: int) -> None:
    """One wrong-key handshake, to its end (refused or closed)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        hello = Hello("mallory", REPLICATION_REVISION, new_nonce())
        writer.write(encode_frame(MessageTypes.HANDSHAKE, hello.encode()))
        frame = await read_frame(reader, max_payload=4096, idle_timeout_s=5)
        if frame is not None and isinstance(decode_handshake(frame.payload), Challenge):
            writer.write(encode_frame(MessageTypes.HANDSHAKE, Auth(bytes(32)).encode()))
            await read_frame(reader, max_payload=4096, idle_timeout_s=5)
    except (OSError, EOFError, MemreplError):
        pass  # closed on us: an answer too
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def hammer(config: TcpMeshConfig, seconds: float) -> tuple[float, float]:
    """(attempts/s, guesses/s) against a node with ``config``."""
    mesh = TcpMesh("node", KEY, schema_revision=REPLICATION_REVISION, config=config)
    async with mesh:
        attempts = 0
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            await attempt(mesh.port)
            attempts += 1
        took = time.perf_counter() - started
        guesses = mesh.stats().total.refused.get("auth-failed", 0)
    return attempts / took, guesses / took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    unthrottled = TcpMeshConfig(auth_failures_allowed=10**9)
    throttled = TcpMeshConfig()
    # Silence the node's per-failure WARNING lines: thousands of them are the point here.
    logging.getLogger("memrepl").setLevel(logging.CRITICAL)
    print(f"handshake: wrong-key attempts from one address, {args.seconds:g} s each")
    base_attempts, base_guesses = asyncio.run(hammer(unthrottled, args.seconds))
    attempts, guesses = asyncio.run(hammer(throttled, args.seconds))
    print(f"  no throttle    {base_attempts:>9,.1f} attempts/s  {base_guesses:>9,.1f} guesses/s")
    print(f"  throttled      {attempts:>9,.1f} attempts/s  {guesses:>9,.2f} guesses/s")
    print(f"  guesses        {base_guesses / max(guesses, 1e-9):>9,.0f} x fewer")
    return 0 if guesses < base_guesses else 1


if __name__ == "__main__":
    sys.exit(main())
