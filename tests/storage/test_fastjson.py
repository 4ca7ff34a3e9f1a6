"""The storage layer's JSON speed tricks (memrepl.storage.fastjson) agree with the json module.

The encoder is the C encoder built once: its text must be exactly ``json.dumps``'s, and it must
refuse what ``json.dumps(..., allow_nan=False)`` refuses. The decoder is the C scanner without
``json.loads``'s wrapper: it must read every text ``json.loads`` reads to the same value, and
refuse what it refuses -- and, stricter on purpose, NaN, Infinity, numbers too large for a
float and (with ``unique_keys``) repeated keys.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from memrepl.storage.fastjson import (
    decode_json,
    encode_compact_sorted,
    encode_content,
    encode_json,
    encode_string,
)

finite = st.floats(allow_nan=False, allow_infinity=False)
keys = st.text(max_size=6)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=12,
)
objects = st.dictionaries(keys, json_values, max_size=5)


@settings(max_examples=300)
@given(objects)
def test_encode_content_is_json_dumps(value: dict[str, Any]) -> None:
    assert encode_content(value) == json.dumps(value, allow_nan=False)


@settings(max_examples=200)
@given(json_values, st.booleans(), st.booleans())
def test_every_encoder_is_json_dumps_with_its_options(
    value: Any, compact: bool, sort_keys: bool
) -> None:
    separators = (",", ":") if compact else (", ", ": ")
    expected = json.dumps(value, allow_nan=False, separators=separators, sort_keys=sort_keys)
    assert encode_json(compact=compact, sort_keys=sort_keys)(value) == expected
    if compact and sort_keys:
        assert encode_compact_sorted(value) == expected


@given(st.text())
def test_a_string_literal_is_json_dumps(text: str) -> None:
    assert encode_string(text) == json.dumps(text)


REFUSED_BY_DUMPS: list[Any] = [
    {"v": math.nan},
    {"v": [math.inf]},
    {"v": -math.inf},
    {"v": object()},
    {"v": b"bytes"},
    {"v": {(1, 2): "tuple key"}},
]


@pytest.mark.parametrize("value", REFUSED_BY_DUMPS, ids=repr)
def test_the_encoder_refuses_what_json_dumps_refuses(value: Any) -> None:
    with pytest.raises((ValueError, TypeError)) as theirs:
        json.dumps(value, allow_nan=False)
    with pytest.raises(type(theirs.value)):
        encode_content(value)


def test_a_cycle_fails_as_a_recursion_error() -> None:
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    with pytest.raises(RecursionError):
        encode_content(cycle)


def spaced(value: Any, indent: int | None, separators: tuple[str, str]) -> str:
    return json.dumps(value, indent=indent, separators=separators)


@settings(max_examples=300)
@given(
    json_values,
    st.sampled_from([None, 0, 2]),
    st.sampled_from([(",", ":"), (", ", ": "), (" ,", " : ")]),
    st.sampled_from(["", " ", "\n\t "]),
)
def test_decode_reads_what_json_loads_reads(
    value: Any, indent: int | None, separators: tuple[str, str], padding: str
) -> None:
    text = padding + spaced(value, indent, separators) + padding
    assert decode_json(text) == json.loads(text)
    assert decode_json(text, unique_keys=True) == json.loads(text)


@settings(max_examples=500)
@given(st.text(alphabet='{}[]",:0123456789.eE+-tfnrulasINay \\', max_size=24))
def test_decode_refuses_what_json_loads_refuses(text: str) -> None:
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            decode_json(text)
        return
    except RecursionError:
        return
    # Texts json.loads reads: the same value, unless memrepl is stricter on purpose.
    strict = "NaN" in text or "Infinity" in text or not _all_finite(expected)
    if strict:
        with pytest.raises(ValueError):
            decode_json(text)
    else:
        assert decode_json(text) == expected


def _all_finite(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_all_finite(v) for v in value)
    if isinstance(value, dict):
        return all(_all_finite(v) for v in value.values())
    return True


@pytest.mark.parametrize(
    "text", ["NaN", '{"v": Infinity}', "[-Infinity]", '{"v": 1e999}', "-1e400", '[1, {"x": NaN}]']
)
def test_what_json_loads_accepts_but_no_encoder_writes_is_refused(text: str) -> None:
    json.loads(text)  # accepted there...
    with pytest.raises(ValueError):
        decode_json(text)  # ...refused here


@given(keys, json_values, json_values)
def test_a_repeated_key_is_refused_only_when_asked(key: str, first: Any, second: Any) -> None:
    text = f"{{{json.dumps(key)}: {json.dumps(first)}, {json.dumps(key)}: {json.dumps(second)}}}"
    assert decode_json(text) == json.loads(text)
    with pytest.raises(ValueError, match="appears twice"):
        decode_json(text, unique_keys=True)


@given(st.text())
def test_decode_of_any_text_is_json_loads_or_a_value_error(text: str) -> None:
    try:
        expected = json.loads(text)
    except (ValueError, RecursionError):
        with pytest.raises((ValueError, RecursionError)):
            decode_json(text)
        return
    assume(_all_finite(expected))
    assert decode_json(text) == expected
