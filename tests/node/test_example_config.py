"""The example configuration that ships with the repository (``examples/node.toml``) is complete
-- every setting a node takes is in it, set or shown commented out -- and loads as written, with
its optional settings turned on too."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from memrepl.mesh.config import TcpMeshConfig
from memrepl.node import NodeConfig, NodeSettings
from memrepl.node.config import KNOWN_KEYS, load_toml

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "node.toml"


def test_the_example_names_every_setting() -> None:
    text = EXAMPLE.read_text()
    named = set(re.findall(r"^#? ?([a-z_]+) = ", text, flags=re.MULTILINE))
    tables = set(re.findall(r"^\[([a-z]+)\]", text, flags=re.MULTILINE))
    mesh_fields = {field.name for field in dataclasses.fields(TcpMeshConfig)}
    assert named | tables >= KNOWN_KEYS, KNOWN_KEYS - named - tables
    assert mesh_fields <= named, mesh_fields - named


def test_the_example_loads_as_written() -> None:
    config = NodeConfig.from_sources(load_toml(EXAMPLE), {}, base=EXAMPLE.parent)
    assert config.node_id == "node-a"
    assert config.db == EXAMPLE.parent / "node-a.db"
    assert config.key_file == EXAMPLE.parent / "cluster.key"
    assert config.listen == ("127.0.0.1", 7401)
    assert dict(config.peers) == {"node-b": ("127.0.0.1", 7402), "node-c": ("127.0.0.1", 7403)}
    # The values it writes out are the defaults.
    assert config.settings == NodeSettings()
    assert config.mesh == TcpMeshConfig()
    assert (config.log_format, config.metrics, config.status_file) == ("text", None, None)


def test_every_commented_setting_is_valid_too(tmp_path: Path) -> None:
    text = re.sub(r"^# ([a-z_]+ = )", r"\1", EXAMPLE.read_text(), flags=re.MULTILINE)
    # certs_dir is the alternative to key_file: one or the other.
    text = text.replace("\nkey_file = ", "\n# key_file = ")
    opened = tmp_path / "node.toml"
    opened.write_text(text)
    config = NodeConfig.from_sources(load_toml(opened), {}, base=tmp_path)
    assert config.metrics == ("127.0.0.1", 9464)
    assert config.settings.forget_peer_after_s == 604800.0
    assert config.tls_ca == tmp_path / "cluster-ca.crt"
    assert config.port_file == tmp_path / "node-a.port"
    assert config.revocation_list == tmp_path / "revoked.txt"
