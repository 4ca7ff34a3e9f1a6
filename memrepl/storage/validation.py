"""Validation of what a local write may store: ids that travel intact, content that is JSON.

The rule that keeps it right: everything is checked BEFORE a transaction writes, and the content
kept is exactly what reading it back gives (a fresh dict from its JSON text), so a stored item
equals what its peers will decode. Each refusal is a specific :class:`~memrepl.errors.ItemError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from memrepl.errors import InvalidContentError, ItemTooLargeError
from memrepl.protocol.limits import MAX_ITEM_PAYLOAD_BYTES
from memrepl.storage.fastjson import decode_json, encode_content


def _check_keys(value: object, item_id: str) -> None:
    # json.dumps would turn int/float/bool/None keys into strings: the content would not round
    # trip, so such keys are refused rather than silently changed. Only dict, list and tuple
    # hold other values in something json.dumps accepted.
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            for key, inner in current.items():
                if not isinstance(key, str):
                    raise InvalidContentError(
                        f"item {item_id!r}: content keys must be str, not {key!r}", item_id=item_id
                    )
                if isinstance(inner, dict | list | tuple):
                    stack.append(inner)
        elif isinstance(current, list | tuple):
            stack.extend(inner for inner in current if isinstance(inner, dict | list | tuple))


def check_content(content: object, item_id: str) -> tuple[dict[str, Any], str]:
    """Validate content; return it as stored (a fresh dict, as read back) and its JSON text.

    Raises :class:`~memrepl.errors.InvalidContentError` for anything but a JSON object and
    :class:`~memrepl.errors.ItemTooLargeError` past :data:`MAX_ITEM_PAYLOAD_BYTES`.
    """
    if not isinstance(content, Mapping):
        raise InvalidContentError(
            f"item {item_id!r}: content must be a JSON object (a dict), "
            f"not {type(content).__name__}",
            item_id=item_id,
        )
    if not isinstance(content, dict):
        content = dict(content)
    try:
        # Encoding first also refuses circular references, which the key walk would loop on.
        text = encode_content(content)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidContentError(
            f"item {item_id!r}: content is not JSON: {exc}", item_id=item_id
        ) from exc
    check_size(text, item_id)
    loaded: dict[str, Any] = decode_json(text)
    # Equal after the round trip: every key was a str. Unequal: tuples (which become lists,
    # and are fine) or keys json.dumps turned into strings (which are not): walk to tell.
    if loaded != content:
        _check_keys(content, item_id)
    return loaded, text


def check_size(text: str, item_id: str) -> None:
    """Refuse encoded content over one payload (:class:`~memrepl.errors.ItemTooLargeError`)."""
    # Each char is 1-4 bytes of UTF-8; only a long text needs encoding to know.
    if len(text) * 4 <= MAX_ITEM_PAYLOAD_BYTES:
        return
    size = len(text.encode("utf-8"))
    if size > MAX_ITEM_PAYLOAD_BYTES:
        raise ItemTooLargeError(
            f"item {item_id!r}: content is {size} bytes as JSON, over the "
            f"{MAX_ITEM_PAYLOAD_BYTES}-byte payload limit",
            item_id=item_id,
            limit=MAX_ITEM_PAYLOAD_BYTES,
            size=size,
        )
