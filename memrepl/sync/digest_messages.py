"""The messages of the anti-entropy exchange: digest queries and their answers, strictly decoded.

A query travels as a MEMORY_QUERY frame, its answer as a MEMORY_RESPONSE frame, each a JSON
object (never a VECTOR_SYNC frame, so nothing reads them as data; the items that repair a
difference travel as ordinary batches). A query names its ``id`` and its ``op``:

======================  ===================================================  =====================
query                   fields                                               answer fields
======================  ===================================================  =====================
``summary``             --                                                   ``tiers``: ``{tier:
                                                                             [digest, rows]}``
``groups``              ``tier``                                             ``nodes``: GROUPS
                                                                             ``[digest, rows]``
``leaves``              ``tier``, ``groups`` (group numbers)                 ``nodes``: per group,
                                                                             GROUP_BUCKETS pairs
``entries``             ``tier``, ``buckets`` (bucket numbers)               ``entries``: ``[id,
                                                                             hash, version_ts]``,
                                                                             ``horizon``, ``room``
``fetch``               ``tier``, ``ids``: send me these items               ``sent``, ``applied``
======================  ===================================================  =====================

Every answer repeats the query's ``id``. A query that cannot be answered gets a NACK
(``{"batch_id": <query id>, "code", "reason"}``) whose code names the fault. A peer asks
``entries`` and ``fetch`` one at a time: another one while the first is answered is refused
(``query-busy``). The rule that keeps
it right: everything a peer sends is checked here -- types, ranges, sizes -- before anything
reads the store, and a bad message raises :class:`~memrepl.errors.ProtocolError` with a stable
``.code``, never another exception.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from memrepl.errors import InvalidItemIdError, ProtocolError
from memrepl.protocol.item import check_item_id
from memrepl.storage.digests import (
    BUCKETS,
    GROUP_BUCKETS,
    GROUPS,
    MODULUS,
    Entry,
    Node,
    bucket_of,
)

#: At most this many ids in one ``fetch`` query, buckets in one ``entries`` query, and entries
#: in one answer (a few MB of JSON at most).
MAX_FETCH_IDS = 1000
MAX_QUERY_BUCKETS = BUCKETS
MAX_ANSWER_ENTRIES = 50_000
#: The code of every malformed anti-entropy message.
BAD_QUERY = "bad-digest-query"
BAD_ANSWER = "bad-digest-answer"
#: The code of an ``entries`` or ``fetch`` query sent while another one of the same peer is
#: being answered (they are answered one at a time per peer).
BUSY = "query-busy"

OPS = ("summary", "groups", "leaves", "entries", "fetch")


@dataclass(frozen=True, slots=True)
class Query:
    """A decoded digest query (only the fields its ``op`` uses are set)."""

    id: str
    op: str
    tier: int = 0
    numbers: tuple[int, ...] = ()
    ids: tuple[str, ...] = ()

    def encode(self) -> bytes:
        body: dict[str, Any] = {"id": self.id, "op": self.op}
        if self.op != "summary":
            body["tier"] = self.tier
        if self.op == "leaves":
            body["groups"] = list(self.numbers)
        if self.op == "entries":
            body["buckets"] = list(self.numbers)
        if self.op == "fetch":
            body["ids"] = list(self.ids)
        return json.dumps(body, separators=(",", ":")).encode()


def _object(data: bytes, code: str) -> dict[str, Any]:
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"digest message: not UTF-8 JSON ({exc})", code=code) from exc
    if not isinstance(obj, dict):
        raise ProtocolError("digest message: expected a JSON object", code=code)
    return obj


def _int(value: object, what: str, low: int, high: int, code: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value < high:
        raise ProtocolError(f"digest message: {what} must be an int in [{low}, {high})", code=code)
    return value


def _numbers(value: object, what: str, high: int, limit: int) -> tuple[int, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= limit:
        raise ProtocolError(f"digest query: {what} must be a list of 1..{limit}", code=BAD_QUERY)
    numbers = tuple(_int(n, what, 0, high, BAD_QUERY) for n in value)
    if len(set(numbers)) != len(numbers):
        raise ProtocolError(f"digest query: {what} repeats a number", code=BAD_QUERY)
    return numbers


def request_id(obj: dict[str, Any]) -> str:
    """The ``id`` of a decoded message, checked: 1-64 characters."""
    value = obj.get("id")
    if not isinstance(value, str) or not 1 <= len(value) <= 64:
        raise ProtocolError("digest message: 'id' must be a string of 1-64", code=BAD_QUERY)
    return value


def decode_query(data: bytes) -> Query:
    """A query from a peer; :class:`ProtocolError` (code ``bad-digest-query``) if malformed."""
    obj = _object(data, BAD_QUERY)
    query_id = request_id(obj)
    op = obj.get("op")
    if op not in OPS:
        raise ProtocolError(f"digest query: unknown op {op!r}", code=BAD_QUERY)
    if op == "summary":
        return Query(query_id, op)
    tier = _int(obj.get("tier"), "tier", 1, 4, BAD_QUERY)
    if op == "groups":
        return Query(query_id, op, tier)
    if op == "leaves":
        return Query(query_id, op, tier, _numbers(obj.get("groups"), "groups", GROUPS, GROUPS))
    if op == "entries":
        buckets = _numbers(obj.get("buckets"), "buckets", BUCKETS, MAX_QUERY_BUCKETS)
        return Query(query_id, op, tier, buckets)
    ids = obj.get("ids")
    if not isinstance(ids, list) or not 1 <= len(ids) <= MAX_FETCH_IDS:
        raise ProtocolError(
            f"digest query: ids must be a list of 1..{MAX_FETCH_IDS}", code=BAD_QUERY
        )
    return Query(query_id, op, tier, ids=tuple(_item_id(i, BAD_QUERY) for i in ids))


def _item_id(value: object, code: str) -> str:
    if not isinstance(value, str):
        raise ProtocolError("digest message: an item id must be a string", code=code)
    try:
        return check_item_id(value)
    except InvalidItemIdError as exc:
        raise ProtocolError(f"digest message: {exc}", code=code) from exc


def encode_answer(query_id: str, **fields: Any) -> bytes:
    """An answer: ``{"id": query_id, **fields}``."""
    return json.dumps({"id": query_id, **fields}, separators=(",", ":")).encode()


def _pair(value: object) -> Node:
    if not isinstance(value, list) or len(value) != 2:
        raise ProtocolError("digest answer: a node is [digest, rows]", code=BAD_ANSWER)
    return Node(
        _int(value[0], "digest", 0, MODULUS, BAD_ANSWER),
        _int(value[1], "rows", 0, 1 << 62, BAD_ANSWER),
    )


def nodes(value: object, count: int) -> list[Node]:
    """Exactly ``count`` tree nodes from an answer."""
    if not isinstance(value, list) or len(value) != count:
        raise ProtocolError(f"digest answer: expected {count} nodes", code=BAD_ANSWER)
    return [_pair(v) for v in value]


def encode_nodes(found: Sequence[Node]) -> list[list[int]]:
    return [[node.digest, node.items] for node in found]


def tier_roots(value: object) -> dict[int, Node]:
    """The ``tiers`` of a summary answer."""
    if not isinstance(value, dict) or len(value) > 3:
        raise ProtocolError("digest answer: 'tiers' must be an object", code=BAD_ANSWER)
    roots: dict[int, Node] = {}
    for key, pair in value.items():
        if key not in ("1", "2", "3"):
            raise ProtocolError(f"digest answer: unknown tier {key!r}", code=BAD_ANSWER)
        roots[int(key)] = _pair(pair)
    return roots


def leaf_groups(value: object, groups: Sequence[int]) -> dict[int, list[Node]]:
    """The ``nodes`` of a leaves answer: for each asked group, its buckets."""
    if not isinstance(value, dict) or sorted(value) != sorted(str(g) for g in groups):
        raise ProtocolError("digest answer: leaves for other groups than asked", code=BAD_ANSWER)
    return {int(key): nodes(found, GROUP_BUCKETS) for key, found in value.items()}


def entries(value: object, buckets: Sequence[int]) -> list[Entry]:
    """The ``entries`` of an entries answer, each in one of the asked ``buckets``."""
    if not isinstance(value, list) or len(value) > MAX_ANSWER_ENTRIES:
        raise ProtocolError("digest answer: 'entries' must be a list", code=BAD_ANSWER)
    asked = set(buckets)
    found: list[Entry] = []
    for entry in value:
        if not isinstance(entry, list) or len(entry) != 3:
            raise ProtocolError("digest answer: an entry is [id, hash, version]", code=BAD_ANSWER)
        item_id = _item_id(entry[0], BAD_ANSWER)
        if bucket_of(item_id) not in asked:
            raise ProtocolError(
                f"digest answer: {item_id!r} is not in an asked bucket", code=BAD_ANSWER
            )
        found.append(
            Entry(
                item_id,
                _int(entry[1], "hash", 0, MODULUS, BAD_ANSWER),
                _int(entry[2], "version", 0, 1 << 64, BAD_ANSWER),
            )
        )
    return found


def answer_int(obj: dict[str, Any], key: str, *, optional: bool = False) -> int | None:
    """A non-negative int field of an answer (None allowed when ``optional``)."""
    value = obj.get(key)
    if value is None and optional:
        return None
    return _int(value, key, 0, 1 << 64, BAD_ANSWER)


def decode_answer(data: bytes) -> dict[str, Any]:
    """An answer's JSON object (its fields are checked by the functions above)."""
    obj = _object(data, BAD_ANSWER)
    request_id(obj)
    return obj
