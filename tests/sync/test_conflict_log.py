"""What a conflict row says: both sides as they were sent or held, and the state that was kept."""

from __future__ import annotations

import json

from memrepl.merge import ConflictRule, ItemState, Version, merge_remote
from memrepl.protocol.enums import MemoryTier
from memrepl.storage.fastjson import encode_content
from memrepl.storage.store import Store
from memrepl.sync.conflicts import DetectedConflict, record_conflicts

from ..conftest import Locator


def logged(store: Store, local: ItemState, remote: ItemState, remote_text: str) -> tuple[str, ...]:
    verdict = merge_remote(local, remote)
    conflict = DetectedConflict("i", verdict, remote, remote_text)
    with store.write() as conn:
        record_conflicts(
            conn, MemoryTier.WORKING, [conflict], peer_id="R", batch_id="b", detected_at_ns=1
        )
        row = conn.exec_driver_sql(
            "SELECT winner_content, loser_content, resolved_content, rule FROM conflicts"
        ).one()
    return tuple(row)


def test_resolved_content_is_the_kept_state_even_when_lww_kept_an_equal_one(
    locate: Locator,
) -> None:
    """LWW keeps content EQUAL to the winner's, which is not always the same JSON: the local
    side's newer ``True`` survives where the winner says ``1``. The log shows what was kept."""
    import memrepl

    store = memrepl.open(locate("c"), node_id="L")
    try:
        remote = ItemState(
            {"a": 1, "b": 5}, Version(10, "R"), False, {"b": Version(30, "R")}, {"R": 30}
        )
        local = ItemState({"a": True}, Version(1, "L"), False, {"a": Version(20, "L")}, {"L": 20})
        verdict = merge_remote(local, remote)
        assert verdict.rule == ConflictRule.LWW
        winner, loser, resolved, rule = logged(store, local, remote, '{"a":1,"b":5}')
        assert resolved == encode_content(verdict.state.content)
        assert json.loads(resolved) == {"a": True, "b": 5}
        # The remote side as it was received; the local side as it was held.
        assert winner == '{"a":1,"b":5}'
        assert loser == encode_content(local.content)
        assert rule == "lww"
    finally:
        store.close()
