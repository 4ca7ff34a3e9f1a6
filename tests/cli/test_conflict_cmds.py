"""``memrepl conflicts``: real conflicts, made by applying batches between stores."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from memrepl.protocol.enums import MemoryTier

from .conftest import Cli, Nodes


class Logged:
    """Node c's conflict log after concurrent writes of a, b and c (c wrote last, so it wins).

    c applied a's batches (working, semantic), then -- after ``between`` -- b's: four conflicts,
    ids 1-2 brought by node-a, ids 3-4 by node-b.
    """

    def __init__(self, nodes: Nodes) -> None:
        stores = [nodes.add(node_id) for node_id in ("node-a", "node-b", "node-c")]
        for store in stores:
            store.working.add("shared", {"by": store.node_id})
            store.semantic.add("concept-x", {"kind": "concept", "name": store.node_id})
        stores[0].working.add("only-a", {"quiet": True})
        for tier in (MemoryTier.WORKING, MemoryTier.SEMANTIC):
            assert nodes.ship("node-a", "node-c", tier)[1] == 1
        self.between = time.time_ns()
        for tier in (MemoryTier.WORKING, MemoryTier.SEMANTIC):
            assert nodes.ship("node-b", "node-c", tier) == (1, 1)
        self.path = nodes.path("node-c")


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    # Built once: the conflicts command only reads (each test checks what it printed).
    nodes = Nodes(tmp_path_factory.mktemp("conflicts"))
    made = Logged(nodes)
    nodes.close()
    yield made


def _ids(cli: Cli, logged: Logged, *filters: str) -> list[int]:
    result = cli("conflicts", "--json", "--db", logged.path, *filters)
    assert result.code == 0, result.err
    return [row["id"] for row in result.json()]


def test_every_conflict_as_json(cli: Cli, logged: Logged) -> None:
    records = cli("conflicts", "--nl", "--db", logged.path).json_lines()
    assert [(r["id"], r["tier"], r["item_id"], r["peer_id"]) for r in records] == [
        (1, "working", "shared", "node-a"),
        (2, "semantic", "concept-x", "node-a"),
        (3, "working", "shared", "node-b"),
        (4, "semantic", "concept-x", "node-b"),
    ]
    first = records[0]
    assert first["rule"] == "lww"
    assert first["winner"]["origin"] == "node-c"
    assert first["winner"]["content"] == {"by": "node-c"}
    assert first["loser"]["origin"] == "node-a"
    assert first["loser"]["content"] == {"by": "node-a"}
    assert first["loser"]["deleted"] is False
    assert first["loser"]["context"] == {"node-a": first["loser"]["timestamp_ns"]}
    assert first["winner"]["timestamp_ns"] > first["loser"]["timestamp_ns"]
    assert first["resolved_content"] == {"by": "node-c"}
    assert isinstance(first["batch_id"], str)
    assert first["detected_at_ns"] < logged.between < records[2]["detected_at_ns"]


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["--tier", "working"], [1, 3]),
        (["--tier", "L3"], [2, 4]),
        (["--tier", "episodic"], []),
        (["--item", "concept-x"], [2, 4]),
        (["--item", "only-a"], []),
        (["--peer", "node-a"], [1, 2]),
        (["--peer", "node-b"], [3, 4]),
        (["--lost-by", "node-b"], [3, 4]),
        (["--lost-by", "node-c"], []),
        (["--won-by", "node-c"], [1, 2, 3, 4]),
        (["--tier", "semantic", "--peer", "node-b"], [4]),
        (["--limit", "1"], [4]),
        (["--limit", "3", "--tier", "working"], [1, 3]),
        (["--since", "1h"], [1, 2, 3, 4]),
        (["--until", "1h"], []),
    ],
)
def test_filters(cli: Cli, logged: Logged, filters: list[str], expected: list[int]) -> None:
    assert _ids(cli, logged, *filters) == expected


def test_time_window_as_stamps_and_as_iso(cli: Cli, logged: Logged) -> None:
    stamp = str(logged.between)
    assert _ids(cli, logged, "--since", stamp) == [3, 4]
    assert _ids(cli, logged, "--until", stamp) == [1, 2]
    seconds, nanos = divmod(logged.between, 1_000_000_000)
    iso = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    assert _ids(cli, logged, "--since", f"{iso}.{nanos:09d}Z") == [3, 4]
    assert _ids(cli, logged, "--until", f"{iso}.{nanos:09d}+00:00") == [1, 2]
    assert _ids(cli, logged, "--since", stamp, "--until", stamp) == []


def test_the_table(cli: Cli, logged: Logged) -> None:
    result = cli("conflicts", "--db", logged.path, "--tier", "working")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].split() == [
        "id", "detected", "tier", "item", "peer", "rule", "winner", "loser", "lost", "content",
    ]  # fmt: skip
    assert len(lines) == 4
    first = lines[2].split()
    assert first[0] == "1"
    assert first[2:6] == ["working", "shared", "node-a", "lww"]
    assert first[6] == "node-c" and first[8] == "node-a"
    assert first[-1] == '{"by":"node-a"}'
    empty = cli("conflicts", "--db", logged.path, "--item", "nothing").out.splitlines()
    assert len(empty) == 2


def test_a_bad_filter_is_a_usage_error(cli: Cli, logged: Logged) -> None:
    result = cli("conflicts", "--db", logged.path, "--since", "last tuesday")
    assert result.code == 2
    assert len(result.error_lines) == 1
    assert "argument --since: not a time" in result.err
