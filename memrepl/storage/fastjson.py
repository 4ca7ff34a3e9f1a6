"""JSON as the storage layer stores it, fast: the storage layer's speed tricks, in one place.

The stored and wire form of an item's content is exactly ``json.dumps(content,
allow_nan=False)`` (default separators: PROTOCOL.md section 2), field clocks and causal contexts
are compact sorted JSON, and every text read back or received is decoded strictly. What is fast
here, and why it is still exactly that (``tests/storage/test_fastjson.py`` checks each against the
``json`` module, with hypothesis):

- **The C encoder, built once** (:func:`encode_json`). ``json.dumps`` with any option builds a
  new ``JSONEncoder`` on every call; this builds the C encoder (``json.encoder.c_make_encoder``,
  a private name of CPython's ``json`` package, with a pure-Python fallback should it be
  missing) once per set of options and calls it directly: half the cost for a small object,
  the same text. Only the circular-reference check is left out (a cycle still fails, as a
  RecursionError).
- **The C scanner, without ``json.loads``'s wrapper** (:func:`decode_json`): ``json.loads``
  strips whitespace and wraps the scanner's errors; the scanner alone is faster for the compact
  texts memrepl writes, and a text it does not consume whole goes to the full decoder, which
  gives the same value or the error.
- **Strictness, at no cost**: NaN, Infinity and numbers too large for a float (which
  ``json.loads`` accepts, and no encoder could write back) are refused; with ``unique_keys``, so
  is an object that names a key twice (its last value to Python, its first to SQLite's JSON
  functions).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from functools import partial
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from json.scanner import make_scanner
from typing import Any

__all__ = [
    "decode_json",
    "encode_compact_sorted",
    "encode_content",
    "encode_json",
    "encode_string",
]


def encode_json(*, compact: bool = False, sort_keys: bool = False) -> Callable[[Any], str]:
    """A JSON encoder: ``json.dumps`` with ``allow_nan=False`` and these options, built once.

    ``json.dumps`` with any option builds a new encoder on every call; building the C encoder
    once halves the cost of encoding a small object. It raises TypeError, ValueError or
    RecursionError like ``json.dumps`` (without circular-reference markers: a reused marker dict
    could keep stale ids after a failed call; a cycle still fails, as a RecursionError).
    """
    item_separator, key_separator = (",", ":") if compact else (", ", ": ")
    if c_make_encoder is None:  # pragma: no cover - CPython always has the C encoder
        return partial(
            json.dumps,
            allow_nan=False,
            separators=(item_separator, key_separator),
            sort_keys=sort_keys,
        )

    def refuse(value: object) -> object:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")

    chunks = c_make_encoder(
        None,
        refuse,
        encode_basestring_ascii,
        None,
        key_separator,
        item_separator,
        sort_keys,
        False,
        False,
    )
    return lambda value: "".join(chunks(value, 0))


#: ``encode_content(content)``: the stored and wire form of content, exactly ``json.dumps(content,
#: allow_nan=False)`` (default separators); raises TypeError, ValueError or RecursionError.
encode_content: Callable[[Mapping[str, Any]], str] = encode_json()
#: ``encode_compact_sorted(value)``: ``json.dumps(value, allow_nan=False, sort_keys=True,
#: separators=(",", ":"))``. The stored form of field clocks and causal contexts is canonical, so
#: equal states store equal text whatever order their dicts were built in (the row hashes
#: anti-entropy compares are taken over it: memrepl.storage.digests).
encode_compact_sorted: Callable[[Any], str] = encode_json(compact=True, sort_keys=True)

#: ``encode_string(text)``: a JSON string literal, as ``json.dumps(text)`` writes it (the C
#: function json itself calls; for a one-entry object written by hand).
encode_string: Callable[[str], str] = encode_basestring_ascii


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON (no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range for a JSON number (it would be {value})")
    return value


def _object_of_unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found = dict(pairs)
    if len(found) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"key {key!r} appears twice in one object")
            seen.add(key)
    return found


# Strict: NaN, Infinity and numbers too large for a float (1e999), which json.loads accepts and
# no encoder could write back, are refused like any other non-JSON.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
_scan_json = make_scanner(_DECODER)  # type: ignore[arg-type]
# Stricter still, for text stored as it was received: an object that names a key twice means
# its last value to Python and its first to SQLite's JSON functions, so it is refused too.
_UNIQUE_DECODER = json.JSONDecoder(
    parse_constant=_refuse_constant,
    parse_float=_finite_float,
    object_pairs_hook=_object_of_unique_keys,
)
_scan_unique = make_scanner(_UNIQUE_DECODER)  # type: ignore[arg-type]


def decode_json(text: str, *, unique_keys: bool = False) -> Any:
    """The value of the JSON ``text``; ValueError if it is not JSON (NaN, Infinity and numbers
    that overflow a float neither) or, with ``unique_keys``, if an object names a key twice.

    The C scanner without ``json.loads``'s wrapper, fast for the compact texts memrepl writes;
    a text it does not consume whole (surrounding whitespace, an error) goes to the full decoder,
    which gives the same value or the error.
    """
    decoder, scan = (_UNIQUE_DECODER, _scan_unique) if unique_keys else (_DECODER, _scan_json)
    try:
        value, end = scan(text, 0)
    except StopIteration:
        return decoder.decode(text)
    return value if end == len(text) else decoder.decode(text)
