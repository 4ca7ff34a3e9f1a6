"""An item's state on the wire: the payload is the content's one encoding, the stored text."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from memrepl.merge import Version, apply_local_write
from memrepl.protocol.enums import MemoryTier, SyncOperation, SyncPriority
from memrepl.storage.fastjson import encode_content
from memrepl.sync.wire import decode_item, item_from_state

finite = st.floats(allow_nan=False, allow_infinity=False)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


def state_of(content: dict[str, Any]) -> Any:
    return apply_local_write(None, SyncOperation.INSERT, content, Version(1_000, "node-a"))


@given(st.dictionaries(st.text(), json_values, max_size=4))
def test_the_payload_is_the_stored_text(content: dict[str, Any]) -> None:
    item = item_from_state("x", state_of(content), MemoryTier.WORKING, SyncPriority.NORMAL)
    assert item.payload == encode_content(content).encode()
    assert item.payload == json.dumps(content, allow_nan=False).encode()
    decoded, text = decode_item(item, source_node="node-a")
    assert (decoded.content, text) == (content, item.payload.decode())


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_content_that_is_not_json_is_never_sent(number: float) -> None:
    # The same rule as a local write: no NaN or Infinity, which every receiver would refuse.
    with pytest.raises(ValueError, match="not JSON compliant"):
        item_from_state("x", state_of({"v": number}), MemoryTier.WORKING, SyncPriority.NORMAL)
