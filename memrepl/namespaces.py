"""Namespaces and keys: where an item is filed, how that is written down, and keyed ids.

An item may belong to a **namespace**: a tuple of non-empty strings such as
``("users", "alice", "facts")``; ``()`` means none. It may also carry a **key** inside that
namespace (a non-empty string, ``""`` meaning none) when its id was derived from one with
:func:`keyed_id`. Both travel with the item and merge as one last-writer-wins register
(:class:`memrepl.merge.Placement`).

What this module owns, pure and without a database:

- :func:`check_namespace` / :func:`check_key`: what a namespace or a key may be (a specific
  :class:`~memrepl.errors.InvalidNamespaceError` otherwise), for local writes, search arguments and
  items received from peers alike.
- :func:`encode_namespace` / :func:`decode_namespace`: the text form, which is the ``namespace``
  column of the tier tables AND the CLI's ``--namespace`` argument: the parts joined by ``/``,
  each part with ``%`` written ``%25`` and ``/`` written ``%2F`` (so ``("a/b", "c")`` is
  ``a%2Fb/c``). ``""`` is no namespace.
- :func:`prefix_bounds`: the text range of every namespace under a prefix, so a prefix query is
  an index range scan (``namespace >= 'users/alice/' AND namespace < 'users/alice0'``, ``0``
  being the character after ``/``).
- :func:`keyed_id`: the deterministic 32-character id of ``(namespace, key)``.

The rule that keeps it right: one text per namespace and one namespace per text.
``decode_namespace(encode_namespace(ns)) == ns`` for every valid namespace, and a prefix of a
namespace (as a tuple) is exactly a prefix of its text followed by ``/``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache
from urllib.parse import unquote

from memrepl.errors import InvalidNamespaceError

#: The item's namespace: a tuple of non-empty strings; ``()`` is none.
Namespace = tuple[str, ...]

#: No namespace.
NO_NAMESPACE: Namespace = ()
#: The separator between the parts of a namespace's text form.
SEPARATOR = "/"
#: The longest namespace, as UTF-8 bytes of its text form (it travels in the batch metadata).
MAX_NAMESPACE_BYTES = 1024
#: The longest key, as UTF-8 bytes.
MAX_KEY_BYTES = 1024
#: The prefix of the hashed key; a new layout needs a new version (ids would change).
KEYED_ID_PREFIX = "memrepl/keyed/v1"
#: Hex characters of a keyed id: 32, the most an item id may carry (PROTOCOL.md section 2).
KEYED_ID_HEX_CHARS = 32


# A '%' that does not start one of the two escapes the text form uses.
_BAD_ESCAPE = re.compile("%(?!25|2F)")


def _bad(message: str) -> InvalidNamespaceError:
    return InvalidNamespaceError(message)


def check_namespace(namespace: object, *, what: str = "namespace") -> Namespace:
    """``namespace`` as a tuple of strings, if it is a valid namespace (``()`` included).

    A namespace is a tuple (or list) of non-empty strings without NUL, whose text form is at most
    :data:`MAX_NAMESPACE_BYTES` bytes. Raises :class:`~memrepl.errors.InvalidNamespaceError`
    naming the bad part; a bare string is refused (write ``("users",)``, not ``"users"``).
    """
    if isinstance(namespace, str) or not isinstance(namespace, tuple | list):
        raise _bad(
            f"{what} {namespace!r} must be a tuple of strings such as ('users', 'alice'), "
            f"not {type(namespace).__name__}"
        )
    for index, part in enumerate(namespace):
        if not isinstance(part, str):
            raise _bad(
                f"{what} {tuple(namespace)!r}: part {index} is {type(part).__name__}, not a str"
            )
        if not part:
            raise _bad(f"{what} {tuple(namespace)!r}: part {index} is empty")
        if "\x00" in part:
            raise _bad(f"{what} {tuple(namespace)!r}: part {index} contains NUL")
    checked = tuple(namespace)
    try:
        size = len(encode_namespace(checked).encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise _bad(f"{what} {checked!r} is not valid UTF-8 ({exc.reason})") from exc
    if size > MAX_NAMESPACE_BYTES:
        raise _bad(f"{what} is {size} bytes as text, over the {MAX_NAMESPACE_BYTES}-byte limit")
    return checked


def check_key(key: object) -> str:
    """``key`` if it is a valid key: a non-empty str without NUL, at most
    :data:`MAX_KEY_BYTES` bytes of UTF-8; else :class:`~memrepl.errors.InvalidNamespaceError`."""
    if not isinstance(key, str) or not key:
        raise _bad(f"key {key!r} must be a non-empty str")
    if "\x00" in key:
        raise _bad(f"key {key!r} contains NUL")
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise _bad(f"key {key!r} is not valid UTF-8 ({exc.reason})") from exc
    if size > MAX_KEY_BYTES:
        raise _bad(f"key is {size} bytes, over the {MAX_KEY_BYTES}-byte limit")
    return key


def _encode_part(part: str) -> str:
    return part.replace("%", "%25").replace(SEPARATOR, "%2F")


def encode_namespace(namespace: Sequence[str]) -> str:
    """The text form of a (valid) namespace: parts joined by ``/``, ``%`` and ``/`` escaped."""
    return SEPARATOR.join(map(_encode_part, namespace))


@lru_cache(maxsize=4096)
def decode_namespace(text: str) -> Namespace:
    """The namespace of a text form (``""``: none). Rows repeat few namespaces: cached.

    Raises :class:`~memrepl.errors.InvalidNamespaceError` for a text no valid namespace has (an
    empty part, a ``%`` that is not ``%25`` or ``%2F``).
    """
    if not text:
        return NO_NAMESPACE
    if _BAD_ESCAPE.search(text):
        raise _bad(f"namespace text {text!r}: write a '%' as %25 and a '/' inside a part as %2F")
    parts = tuple(unquote(part, errors="strict") for part in text.split(SEPARATOR))
    return check_namespace(parts)


def parse_namespace(text: str) -> Namespace:
    """The namespace a user wrote as text (the CLI's ``users/alice``); ``""`` is none.

    The same form as the column; a leading or trailing ``/`` or ``//`` (an empty part) is an
    :class:`~memrepl.errors.InvalidNamespaceError`.
    """
    return decode_namespace(text)


def prefix_bounds(prefix: Namespace) -> tuple[str, str, str]:
    """``(exact, low, high)`` texts for a non-empty prefix: a namespace is under ``prefix`` when
    its text equals ``exact`` or lies in ``[low, high)``."""
    exact = encode_namespace(prefix)
    # '0' is the character after '/': every text that starts with exact + '/' sorts below it.
    return exact, exact + SEPARATOR, exact + chr(ord(SEPARATOR) + 1)


def is_under(namespace: Namespace, prefix: Namespace) -> bool:
    """Whether ``namespace`` starts with ``prefix`` (every namespace is under ``()``)."""
    return namespace[: len(prefix)] == prefix


def keyed_id(namespace: Sequence[str], key: str) -> str:
    """The item id of ``key`` in ``namespace``: 32 hex characters of a SHA-256.

    Deterministic, so the same ``(namespace, key)`` written on two nodes is one item: the hash
    covers :data:`KEYED_ID_PREFIX`, the number of parts, every part and the key, joined by NUL
    (which no part and no key may contain). The same key in two namespaces gives two ids.
    Raises :class:`~memrepl.errors.InvalidNamespaceError` for a bad namespace or key.
    """
    parts = check_namespace(namespace)
    check_key(key)
    text = "\x00".join((KEYED_ID_PREFIX, str(len(parts)), *parts, key))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEYED_ID_HEX_CHARS]
