"""gzip of a batch's items data, deterministic on the way out and bounded on the way in.

PROTOCOL.md §3 compresses items data longer than the threshold with gzip; §6 requires a bound
on decompression. The rule that keeps this module right: decompression never produces more than
``limit + 1`` bytes, whatever the input, so a gzip bomb costs at most one buffer of the size of
the largest valid batch; and it accepts exactly one complete gzip member, nothing before or after.
"""

from __future__ import annotations

import zlib

from memrepl.errors import CompressionError
from memrepl.protocol.limits import MAX_ITEMS_DATA_BYTES

__all__ = ["GZIP_LEVEL", "compress_items", "decompress_items"]

#: zlib's default level: most of level 9's ratio on JSON items at a fraction of its time. The
#: level only changes the bytes, not their meaning; any gzip reader inflates either.
GZIP_LEVEL = 6

# 16 + 15: a gzip wrapper around a deflate stream with the full 32 KiB window.
_GZIP_WBITS = 31


def compress_items(data: bytes) -> bytes:
    """Return ``data`` as one gzip member with mtime 0, so packing is deterministic (§3).

    (``gzip.compress(data, mtime=0)`` writes the same format; calling zlib directly saves the
    wrapper.)
    """
    return zlib.compress(data, level=GZIP_LEVEL, wbits=_GZIP_WBITS)


def decompress_items(data: bytes, *, limit: int = MAX_ITEMS_DATA_BYTES) -> bytes:
    """Inflate one gzip member that must decompress to at most ``limit`` bytes.

    Raises :class:`CompressionError`: ``"bad-gzip"`` (not gzip, corrupt, bad CRC or length),
    ``"gzip-too-large"`` (inflates past ``limit``), ``"gzip-truncated"`` (the stream ends early),
    ``"gzip-trailing-bytes"`` (bytes after the member, including a second member).
    """
    inflater = zlib.decompressobj(wbits=_GZIP_WBITS)
    # max_length=0 would mean "no limit", so ask for at least one byte; asking for limit + 1
    # tells "exactly at the limit" apart from "over it" without allocating more.
    max_length = max(limit, 0) + 1
    try:
        out = inflater.decompress(data, max_length)
    except zlib.error as exc:
        raise CompressionError(f"items data: corrupt gzip ({exc})", code="bad-gzip") from exc
    if len(out) > limit:
        raise CompressionError(
            f"items data: gzip inflates past the limit of {limit} bytes", code="gzip-too-large"
        )
    if not inflater.eof:
        raise CompressionError("items data: the gzip stream ends early", code="gzip-truncated")
    if inflater.unused_data:
        raise CompressionError(
            f"items data: {len(inflater.unused_data)} bytes after the gzip stream",
            code="gzip-trailing-bytes",
        )
    return out
