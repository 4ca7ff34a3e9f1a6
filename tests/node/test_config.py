"""Node settings from a TOML file and flags, and ``memrepl serve``'s refusals before it starts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from memrepl.cli.main import main
from memrepl.mesh.config import TcpMeshConfig
from memrepl.node import NodeConfig, NodeConfigError, NodeSettings
from memrepl.node.config import load_toml, parse_address, parse_peer, read_key_file

TOML = """\
db = "data/a.db"
node_id = "node-a"
listen = "0.0.0.0:7401"
key_file = "cluster.key"
sync_interval = 5.0
high_delay = 0.5
tombstone_grace = 0
forget_peer_after = 3600

[peers]
node-b = "10.0.0.2:7401"

[mesh]
heartbeat_interval_s = 2.0
idle_timeout_s = 8.0
"""


def test_a_config_file_with_flags_on_top(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(TOML)
    config = NodeConfig.from_sources(
        load_toml(path),
        {"high_delay": 0.25, "peers": {"node-c": ("10.0.0.3", 7401)}, "sync_interval": None},
        base=tmp_path,
    )
    assert config.db == tmp_path / "data" / "a.db"
    assert config.key_file == tmp_path / "cluster.key"
    assert config.node_id == "node-a"
    assert config.listen == ("0.0.0.0", 7401)
    assert dict(config.peers) == {"node-b": ("10.0.0.2", 7401), "node-c": ("10.0.0.3", 7401)}
    assert config.settings == NodeSettings(
        sync_interval_s=5.0, high_delay_s=0.25, tombstone_grace_s=0, forget_peer_after_s=3600
    )
    assert config.mesh == TcpMeshConfig(heartbeat_interval_s=2.0, idle_timeout_s=8.0)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"db": "x.db", "sync_intervall": 1}, "unknown config key 'sync_intervall'"),
        ({"db": "x.db", "sync_interval": 0}, "sync_interval_s must be a positive number"),
        ({"db": "x.db", "high_delay": -1}, "high_delay_s must be a non-negative number"),
        ({"db": "x.db", "max_batch_items": 300}, "max_batch_items must be an integer 1..255"),
        ({"db": "x.db", "peers": ["b=host"]}, "is not HOST:PORT"),
        ({"db": "x.db", "peers": {"b": "h:0"}}, "port 0 cannot be dialled"),
        ({"db": "x.db", "mesh": {"heartbeat": 1}}, "[mesh]"),
        ({"db": "x.db", "bootstrap_replicate": "yes"}, "bootstrap_replicate must be true"),
        ({"node_id": "a"}, "no database"),
        ({"db": "x.db", "log_format": "xml"}, "log_format must be one of text, json"),
        ({"db": "x.db", "metrics": "9464"}, "metrics '9464' is not HOST:PORT"),
        ({"db": "x.db", "metrics": 9464}, "metrics must be HOST:PORT"),
        ({"db": "x.db", "progress_interval": 0}, "progress_interval_s must be a positive"),
    ],
)
def test_bad_settings_are_refused_by_name(values: dict[str, object], message: str) -> None:
    with pytest.raises(NodeConfigError) as caught:
        NodeConfig.from_sources(values, {})
    assert message in str(caught.value)


def test_addresses_and_keys(tmp_path: Path) -> None:
    assert parse_address("[::1]:7400") == ("::1", 7400)
    assert parse_peer(" b = 127.0.0.1:9 ") == ("b", ("127.0.0.1", 9))
    with pytest.raises(NodeConfigError, match="is not ID=HOST:PORT"):
        parse_peer("127.0.0.1:9")
    with pytest.raises(NodeConfigError, match="cannot read the key file"):
        read_key_file(tmp_path / "missing")


def test_serve_refuses_to_run_without_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["serve", "--db", str(tmp_path / "a.db"), "--node-id", "a"])
    assert code == 1
    assert "needs credentials: --certs-dir DIR" in capsys.readouterr().err
    assert not (tmp_path / "a.db").exists()


def test_serve_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--peer", "nonsense"]) == 2
    assert "ID=HOST:PORT" in capsys.readouterr().err
    assert main(["serve", "--db", str(tmp_path / "new.db"), "--key-file", "k"]) == 2
    assert "pass --node-id ID to create the store" in capsys.readouterr().err
    (tmp_path / "bad.toml").write_text("db = [")
    assert main(["serve", "--config", str(tmp_path / "bad.toml")]) == 1
    assert "bad.toml" in capsys.readouterr().err


def test_metrics_without_their_library_is_refused_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    key = tmp_path / "cluster.key"
    key.write_text("0123456789abcdef0123\n")
    args = ["serve", "--db", str(tmp_path / "a.db"), "--node-id", "a", "--key-file", str(key)]
    assert main([*args, "--metrics", "127.0.0.1:0"]) == 1
    assert "pip install 'memrepl[metrics]'" in capsys.readouterr().err
    assert not (tmp_path / "a.db").exists()
