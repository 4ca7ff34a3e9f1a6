"""A fault-injecting TCP proxy on 127.0.0.1, between a node that dials and the node it dials.

The tests and ``bench/liveness_bench.py`` put it on the path of a mesh connection and break the
network on command, the way a bad link or a middlebox would:

- :meth:`FaultProxy.partition` / :meth:`FaultProxy.heal`: nothing gets through either way, as
  when every packet is lost. A connection that survives the partition gets what was held back
  as TCP would deliver it: at the first retransmission after the heal, its timer having doubled
  from 200 ms on each try since the partition began (Linux's minimum RTO), so after a partition
  of 12 s the held bytes flow 0.6 s after the heal, after one of 13 s, 12.4 s after it. A
  connection made during a partition is reset at once, so its dialler tries again after its
  own back-off, as it would after a connect timeout;
- :meth:`FaultProxy.drop_connections`: every connection is cut at once, both ways;
- :meth:`FaultProxy.corrupt_next`: alter the next frame of a type going one way -- flip a bit of
  its payload, or of its length field (still under the frame limit, and larger, so a reader
  that believed it would wait for bytes that never come); or swallow it whole;
- ``delay_s``: hold every chunk that long (with up to as much again at random) before passing it.

It reads the mesh's framing (memrepl.mesh.framing, memrepl.mesh.auth): HANDSHAKE frames are
plain, the frames after them sealed. With ``tls=True`` (certificate mode: the frames are inside
TLS records it cannot read) it reads TLS records instead, and alters the next application-data
record big enough to hold a batch: a bit of its ciphertext ("payload"), or its length field
("length", larger by 64 bytes, still a valid record length), or drops it ("swallow").
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import struct
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from memrepl.mesh.auth import HEADER_SEAL_BYTES, TRAILER_BYTES
from memrepl.protocol.enums import MessageTypes
from memrepl.protocol.limits import HEADER_SIZE

#: Directions, named for where the bytes go.
TO_NODE, TO_DIALLER = "to-node", "to-dialler"
_MSG_TYPE = struct.Struct(">H")
_LENGTH = struct.Struct(">Q")
#: A TLS record: type (1 byte), version (2), length (2), then the record.
TLS_HEADER = 5
TLS_APPLICATION_DATA = 23
#: An application-data record at least this long carries a batch (heartbeats are far smaller).
TLS_BATCH_BYTES = 200
#: TCP's first retransmission timeout, doubled on each further try (Linux: 200 ms).
FIRST_RTO_S = 0.2


def first_retransmission_after(lost_for_s: float) -> float:
    """Seconds from the start of a loss to TCP's first retransmission after ``lost_for_s``: the
    tries go out at 0.2, 0.6, 1.4, 3.0, 6.2, 12.6, 25.4 ... s."""
    at, rto = FIRST_RTO_S, FIRST_RTO_S
    while at < lost_for_s:
        rto *= 2
        at += rto
    return at


@dataclass(slots=True)
class Fault:
    """One armed fault: what to do to the next frame of ``msg_type`` going ``direction``."""

    direction: str
    msg_type: MessageTypes
    #: "payload" (flip a payload bit), "length" (grow the length field), "swallow" (drop it).
    kind: str
    done: asyncio.Event = field(default_factory=asyncio.Event)


class _Pump:
    """One direction of one proxied connection."""

    def __init__(self, proxy: FaultProxy, direction: str, writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.direction = direction
        self.writer = writer
        self.buffer = bytearray()
        self.plain_frames = 2  # HANDSHAKE frames each way before the sealed ones

    def feed(self, data: bytes) -> bytes:
        """What to pass on for ``data`` received (frames or records altered as armed)."""
        self.buffer += data
        out = bytearray()
        while True:
            unit = self._next_record() if self.proxy.tls else self._next_frame()
            if unit is None:
                return bytes(out)
            out += self.proxy.alter(self.direction, unit)

    def _next_record(self) -> bytes | None:
        buffer = self.buffer
        if len(buffer) < TLS_HEADER:
            return None
        size = TLS_HEADER + int.from_bytes(buffer[3:5], "big")
        if len(buffer) < size:
            return None
        record = bytes(buffer[:size])
        del buffer[:size]
        return record

    def _next_frame(self) -> bytes | None:
        buffer = self.buffer
        if len(buffer) < HEADER_SIZE:
            return None
        (length,) = _LENGTH.unpack_from(buffer, 16)
        sealed = self.plain_frames == 0
        seals = self.proxy.header_seal_bytes + self.proxy.trailer_bytes
        size = HEADER_SIZE + length + (seals if sealed else 0)
        if len(buffer) < size:
            return None
        frame = bytes(buffer[:size])
        del buffer[:size]
        if not sealed:
            self.plain_frames -= 1
        return frame


class FaultProxy:
    """Listens on 127.0.0.1 (``port`` once started) and passes connections on to ``target``."""

    def __init__(
        self,
        target_port: int,
        *,
        tls: bool = False,
        seed: int = 7,
        seals: tuple[int, int] = (HEADER_SEAL_BYTES, TRAILER_BYTES),
    ) -> None:
        self.target_port = target_port
        self.tls = tls
        #: The sealed frames' layout: bytes after each header, and after each payload (another
        #: release's layout may be given, for a bench that runs it).
        self.header_seal_bytes, self.trailer_bytes = seals
        self.delay_s = 0.0
        self.port = 0
        self._rng = random.Random(seed)
        self._cut = False
        self._healed = asyncio.Event()
        self._healed.set()
        self._cut_at = 0.0
        #: When bytes held back by the last partition go on (loop time).
        self._release_at = 0.0
        self._faults: list[Fault] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        #: Connections accepted, and faults fired.
        self.accepted = 0
        self.fired_faults: list[Fault] = []

    async def start(self) -> FaultProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self._healed.set()
        self.drop_connections()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    # -- faults ---------------------------------------------------------------------------------

    def partition(self) -> None:
        self._cut = True
        self._healed.clear()
        self._cut_at = asyncio.get_running_loop().time()

    def heal(self) -> None:
        if self._cut:
            lost_for_s = asyncio.get_running_loop().time() - self._cut_at
            self._release_at = self._cut_at + first_retransmission_after(lost_for_s)
        self._cut = False
        self._healed.set()

    def drop_connections(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()

    def corrupt_next(self, msg_type: MessageTypes, kind: str, direction: str = TO_NODE) -> Fault:
        """Arm a fault for the next frame of ``msg_type`` going ``direction`` (with ``tls``: the
        next application-data record of at least :data:`TLS_BATCH_BYTES`)."""
        fault = Fault(direction, msg_type, kind)
        self._faults.append(fault)
        return fault

    def armed(self, direction: str) -> Fault | None:
        for fault in self._faults:
            if fault.direction == direction:
                return fault
        return None

    def fired(self, fault: Fault) -> None:
        self._faults.remove(fault)
        self.fired_faults.append(fault)
        fault.done.set()

    def alter(self, direction: str, unit: bytes) -> bytes:
        """A frame (or TLS record) as it goes on (see :meth:`corrupt_next`)."""
        fault = self.armed(direction)
        if fault is None:
            return unit
        if self.tls:
            if unit[0] != TLS_APPLICATION_DATA or len(unit) < TLS_BATCH_BYTES:
                return unit
            body_start, length_at, grow = TLS_HEADER, 3, 64
            length_field = struct.Struct(">H")
        else:
            (code,) = _MSG_TYPE.unpack_from(unit, 12)
            if code != fault.msg_type:
                return unit
            body_start, length_at, grow = HEADER_SIZE + self.header_seal_bytes, 16, 1 << 20
            length_field = _LENGTH
        self.fired(fault)
        if fault.kind == "swallow":
            return b""
        altered = bytearray(unit)
        if fault.kind == "length":
            # Larger, and still a valid length: a reader that believes it waits for the rest.
            (length,) = length_field.unpack_from(unit, length_at)
            length_field.pack_into(altered, length_at, length + grow)
        else:
            end = len(unit) - (0 if self.tls else self.trailer_bytes)
            position = self._rng.randrange(body_start, end)
            altered[position] ^= 1 << self._rng.randrange(8)
        return bytes(altered)

    # -- forwarding -----------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        try:
            if self._cut:
                # Into a partition: the node never hears of it; the dialler tries again later.
                writer.transport.abort()
                self._writers.discard(writer)
                return
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        pumps = [
            self._spawn(self._pump(reader, up_writer, _Pump(self, TO_NODE, up_writer))),
            self._spawn(self._pump(up_reader, writer, _Pump(self, TO_DIALLER, writer))),
        ]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for each in (writer, up_writer):
            each.transport.abort()
            self._writers.discard(each)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, pump: _Pump
    ) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(1 << 16):
                if self._cut:
                    # A partition holds what it gets until TCP would send it again after the
                    # heal (see the module docstring).
                    await self._healed.wait()
                    await asyncio.sleep(self._release_at - asyncio.get_running_loop().time())
                if self.delay_s:
                    await asyncio.sleep(self.delay_s * (1 + self._rng.random()))
                out = pump.feed(data)
                if out:
                    writer.write(out)
                    await writer.drain()
            await self._healed.wait()
