"""Filing options: how an item is filed besides where -- what the vector index embeds of it, and
how long it lives without a write. Pure, without a database.

An item's **placement** (:class:`memrepl.merge.Placement`: its namespace and key) carries these
options with it: they are set by the write that files the item, travel with it and merge with the
placement as one last-writer-wins register, so every node embeds and expires the item alike.

- ``embed``: which parts of the content the vector index embeds. None (the default): the index's
  default text, every string value. A tuple of **content paths**, each giving zero or more texts,
  each text embedded on its own (a search scores the item by its best text). ``()``: nothing,
  the item is never found by meaning (still by keyword and by filter).
- ``ttl_ns``: None, or how long the item lives after its latest write: every node forgets its copy
  (locally, no tombstone) once ``ttl_ns`` has passed since the write's stamp or since the node
  last read the item, whichever is later (:mod:`memrepl.storage.expiry`).

The path syntax is LangGraph's (``IndexConfig.fields``), so a LangGraph store can hand its paths
over as they are: ``"$"`` is the whole object as one JSON text; ``"a.b"`` a nested field;
``"a[0]"``, ``"a[-1]"`` an element of a list; ``"a[*]"`` every element, each its own text; ``"*"``
every value of an object (or element of a list); ``"{a,b.c}"`` several fields of one object. A
path ends on a scalar (its ``str``: ``1.5``, ``True``), an object or a list (JSON text, keys sorted,
non-ASCII kept); a path that finds nothing, or ends on null, gives no text.

The rules that keep it right: one text per options and one options per text
(:func:`encode_options` is canonical: compact JSON, keys sorted, ``""`` for the defaults, so
replicas that hold the same options hold the same text and the same row hash), and nothing is
accepted that a peer could not hold (:func:`check_options`: at most :data:`MAX_PATHS` paths,
:data:`MAX_OPTIONS_BYTES` bytes of text).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from memrepl.errors import FilingOptionsError

#: The most content paths one item may name.
MAX_PATHS = 64
#: The longest options text, in UTF-8 bytes (it travels in the batch metadata with each item).
MAX_OPTIONS_BYTES = 4096
#: The longest TTL: about 292 years of nanoseconds, so that a stamp plus it fits a signed 64-bit.
MAX_TTL_NS = 2**63 // 1000
#: The path of the whole object.
WHOLE = "$"


@dataclass(frozen=True, slots=True)
class FilingOptions:
    """An item's filing options (see the module docstring); the defaults are no options."""

    #: Content paths the vector index embeds; None: the default text; (): nothing.
    embed: tuple[str, ...] | None = None
    #: Lifetime after the latest write, in nanoseconds; None: no TTL.
    ttl_ns: int | None = None


#: No options: the default embedding, no TTL.
DEFAULT_OPTIONS = FilingOptions()


def _check_paths(embed: object) -> tuple[str, ...] | None:
    if embed is None:
        return None
    if embed is False:
        return ()
    if isinstance(embed, str) or not isinstance(embed, Sequence):
        raise FilingOptionsError(
            f"embed must be None, False or a list of content paths, not {type(embed).__name__}"
        )
    paths = tuple(embed)
    if len(paths) > MAX_PATHS:
        raise FilingOptionsError(f"embed names {len(paths)} paths, over the limit of {MAX_PATHS}")
    for path in paths:
        if not isinstance(path, str) or not path or "\x00" in path:
            raise FilingOptionsError(f"embed path {path!r} is not a non-empty str without NUL")
    return paths


def _check_ttl(ttl_s: object) -> int | None:
    if ttl_s is None:
        return None
    if (
        isinstance(ttl_s, bool)
        or not isinstance(ttl_s, int | float)
        or not math.isfinite(ttl_s)
        or ttl_s <= 0
    ):
        raise FilingOptionsError(f"a TTL must be a positive number of seconds, not {ttl_s!r}")
    if ttl_s > MAX_TTL_NS / 1_000_000_000:
        raise FilingOptionsError(
            f"a TTL of {ttl_s!r} s is longer than the longest ({MAX_TTL_NS} ns)"
        )
    return max(1, int(ttl_s * 1_000_000_000))


def check_options(embed: object = None, ttl_s: object = None) -> FilingOptions:
    """Options from a caller's ``embed`` (None, False or a list of paths) and ``ttl_s`` (None or
    positive seconds); :class:`~memrepl.errors.FilingOptionsError` naming the fault otherwise
    (or when the text would exceed :data:`MAX_OPTIONS_BYTES`)."""
    options = FilingOptions(_check_paths(embed), _check_ttl(ttl_s))
    size = len(encode_options(options).encode("utf-8"))
    if size > MAX_OPTIONS_BYTES:
        raise FilingOptionsError(
            f"filing options are {size} bytes, over the {MAX_OPTIONS_BYTES} limit"
        )
    return options


def encode_options(options: FilingOptions) -> str:
    """The canonical text of ``options`` (``""`` for the defaults)."""
    found: dict[str, Any] = {}
    if options.embed is not None:
        found["embed"] = list(options.embed)
    if options.ttl_ns is not None:
        found["ttl_ns"] = options.ttl_ns
    if not found:
        return ""
    return json.dumps(found, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@lru_cache(maxsize=1024)
def decode_options(text: str) -> FilingOptions:
    """The options of a canonical text; :class:`FilingOptionsError` for any text
    :func:`encode_options` does not produce (so a peer's text is checked whole)."""
    if not text:
        return DEFAULT_OPTIONS
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise FilingOptionsError(f"filing options {text!r} are not JSON") from exc
    if not isinstance(raw, dict) or not raw or set(raw) - {"embed", "ttl_ns"}:
        raise FilingOptionsError(f"filing options {text!r} are not an object of embed and ttl_ns")
    ttl = raw.get("ttl_ns")
    if ttl is not None and (type(ttl) is not int or not 0 < ttl <= MAX_TTL_NS):
        raise FilingOptionsError(f"filing options {text!r}: ttl_ns is not a positive int in range")
    embed = raw.get("embed")
    if "embed" in raw and not isinstance(embed, list):
        raise FilingOptionsError(f"filing options {text!r}: embed is not a list")
    options = FilingOptions(_check_paths(embed), ttl)
    if encode_options(options) != text or len(text.encode("utf-8")) > MAX_OPTIONS_BYTES:
        raise FilingOptionsError(f"filing options {text!r} are not in canonical form")
    return options


# -- content paths -------------------------------------------------------------------------------


def tokenize(path: str) -> list[str]:
    """The steps of a content path: field names, ``[...]`` indexes and ``{...}`` field sets
    (each kept whole, brackets included), split on the dots between them."""
    tokens: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(path):
        char = path[index]
        if char in "[{":
            if current:
                tokens.append("".join(current))
                current = []
            close = "]" if char == "[" else "}"
            depth, end = 0, index
            while end < len(path):
                if path[end] == char:
                    depth += 1
                elif path[end] == close:
                    depth -= 1
                    if depth == 0:
                        break
                end += 1
            tokens.append(path[index : end + 1])
            index = end + 1
            continue
        if char == ".":
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(char)
        index += 1
    if current:
        tokens.append("".join(current))
    return tokens


def _as_text(value: object) -> str | None:
    """The text a path that ends on ``value`` gives (None: no text)."""
    if value is None:
        return None
    if isinstance(value, str | int | float | bool):
        return str(value)
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return None


def _field_set(value: object, token: str) -> list[str]:
    """``{a,b.c}``: the text of each named field of the object ``value`` (dotted names walk
    nested objects), in the order named."""
    if not isinstance(value, dict):
        return []
    found: list[str] = []
    for name in token[1:-1].split(","):
        steps = tokenize(name.strip())
        if not steps:
            continue
        current: object = value
        for step in steps:
            if not isinstance(current, dict) or step not in current:
                current = None
                break
            current = current[step]
        text = _as_text(current)
        if text is not None:
            found.append(text)
    return found


def _walk(value: object, tokens: Sequence[str], position: int) -> list[str]:
    if position == len(tokens):
        text = _as_text(value)
        return [] if text is None else [text]
    token = tokens[position]
    following = position + 1
    if token.startswith("[") and token.endswith("]"):
        if not isinstance(value, list):
            return []
        inner = token[1:-1]
        if inner == "*":
            return [text for element in value for text in _walk(element, tokens, following)]
        try:
            number = int(inner)
        except ValueError:
            return []
        if number < 0:
            number += len(value)
        return _walk(value[number], tokens, following) if 0 <= number < len(value) else []
    if token.startswith("{") and token.endswith("}"):
        return _field_set(value, token)
    if token == "*":
        if isinstance(value, dict):
            value = list(value.values())
        if not isinstance(value, list):
            return []
        return [text for child in value for text in _walk(child, tokens, following)]
    if isinstance(value, dict) and token in value:
        return _walk(value[token], tokens, following)
    return []


def path_texts(content: object, path: str) -> list[str]:
    """The texts ``path`` selects in ``content`` (see the module docstring)."""
    if path == WHOLE:
        return [json.dumps(content, sort_keys=True, ensure_ascii=False)]
    return _walk(content, tokenize(path), 0)


def embed_texts(content: object, paths: Sequence[str]) -> list[str]:
    """Every text ``paths`` select in ``content``, path by path."""
    return [text for path in paths for text in path_texts(content, path)]


# -- lifetimes -----------------------------------------------------------------------------------


def stored_options(text: str) -> FilingOptions:
    """The options of a stored text; a text that is not valid options (a cell edited by hand)
    counts as none, so reading a row never fails on it."""
    try:
        return decode_options(text)
    except FilingOptionsError:
        return DEFAULT_OPTIONS


def deadline_after_write(
    options: str, written_ns: int, previous_options: str | None, kept: int | None
) -> int | None:
    """When a node forgets an item after a write (local or from a peer) that leaves it with the
    options text ``options``, its latest write stamped ``written_ns``: that stamp plus its TTL.
    Without a TTL: none if the item had one before (``previous_options``: the write took it
    off), else ``kept``, a deadline set locally (working memory's ``ttl_s``)."""
    ttl = stored_options(options).ttl_ns
    if ttl is not None:
        return written_ns + ttl
    if previous_options is not None and stored_options(previous_options).ttl_ns is not None:
        return None
    return kept
