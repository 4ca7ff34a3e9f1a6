"""The numbers of the MEMSHADOW v2 wire format and the bounds memrepl enforces on it.

Every limit here follows from a field width in PROTOCOL.md (a u8 count, a u16 length, a 32-byte
id slot) or from a bound memrepl adds where v2 had none (the metadata size, the decompressed
size). Packing refuses a value past a limit; unpacking refuses bytes past one. Nothing is ever
truncated to fit.
"""

from __future__ import annotations

#: The v2 header's magic, a u64 whose last four bytes are ASCII ``MSHW`` (PROTOCOL.md §1).
MAGIC = 0x4D534857
#: The only protocol version memrepl speaks.
PROTOCOL_VERSION = 2
#: Bytes in the v2 message header (``>QHHHHQQ``).
HEADER_SIZE = 32
#: Bytes in an item's fixed part: ``!32sQBBHH`` plus 2 bytes of padding (PROTOCOL.md §2).
ITEM_HEADER_SIZE = 48
#: An id travels in a 32-byte NUL-padded slot.
MAX_ITEM_ID_BYTES = 32
#: An item's payload length is a u16.
MAX_ITEM_PAYLOAD_BYTES = 65535
#: The header's batch count is one byte.
MAX_BATCH_ITEMS = 255
#: The most items data a valid batch can hold once decompressed (PROTOCOL.md §6).
MAX_ITEMS_DATA_BYTES = MAX_BATCH_ITEMS * (ITEM_HEADER_SIZE + MAX_ITEM_PAYLOAD_BYTES)
#: memrepl's bound on a batch's JSON metadata; v2 has none, a u32 would allow 4 GiB.
MAX_METADATA_BYTES = 8 * 1024 * 1024
#: Items data longer than this is gzip-compressed (PROTOCOL.md §3, the seed's 1 KB).
DEFAULT_COMPRESS_THRESHOLD_BYTES = 1024
#: The one metadata key under which memrepl's additions to v2 travel (PROTOCOL.md §3).
EXTENSION_KEY = "memrepl"
#: The version of the data under :data:`EXTENSION_KEY`; a reader refuses one it does not know.
EXTENSION_VERSION = 1
#: The largest value of a u64 field (timestamps, payload_len, stamps in clocks).
U64_MAX = 2**64 - 1
