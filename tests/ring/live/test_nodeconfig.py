"""Node configuration: TOML in, validated settings out; command-line overrides win."""

from __future__ import annotations

import pytest

from ring.nodeconfig import ConfigError, load_node_config, parse_override

GOOD = """
name = "ring1"
[node]
listen = "0.0.0.0:7700"
advertise = "ring1.example.net:7700"
bootstrap = ["ring0.example.net:7700", "10.0.0.3:7700"]
admin = "unix:run/ring1.sock"
log_level = "debug"
[tls]
ca = "ca/ca.pem"
cert = "ca/nodes/ring1.pem"
key = "ca/nodes/ring1.key"
[ring]
bits = 64
stabilize_interval = 2
expected_nodes = 500
[limits]
max_links = 64
handshake_timeout = 1.5
"""


def write(tmp_path, text):
    p = tmp_path / "node.toml"
    p.write_text(text)
    return p


def test_reads_every_section_and_resolves_paths_next_to_the_file(tmp_path):
    cfg = load_node_config(write(tmp_path, GOOD))
    assert cfg.name == "ring1"
    assert cfg.listen == "0.0.0.0:7700" and cfg.advertise == "ring1.example.net:7700"
    assert cfg.bootstrap == ("ring0.example.net:7700", "10.0.0.3:7700")
    assert cfg.admin == f"unix:{tmp_path / 'run/ring1.sock'}"
    assert cfg.tls.cert == tmp_path / "ca/nodes/ring1.pem"
    assert cfg.ring.space.bits == 64
    assert cfg.ring.stabilize_interval == 2.0 and cfg.ring.expected_nodes == 500
    assert cfg.limits.max_links == 64 and cfg.limits.handshake_timeout == 1.5
    assert cfg.log_level == "debug" and not cfg.insecure_plain


def test_command_line_overrides_win(tmp_path):
    cfg = load_node_config(write(tmp_path, GOOD), overrides=["ring.stabilize_interval=0.25",
                                                             "limits.max_links=8"],
                           listen="127.0.0.1:9000", bootstrap=["127.0.0.1:9001"],
                           admin="127.0.0.1:9100", log_level="warning")
    assert cfg.listen == "127.0.0.1:9000"
    assert cfg.bootstrap == ("127.0.0.1:9001",)
    assert cfg.admin == "127.0.0.1:9100"
    assert cfg.ring.stabilize_interval == 0.25 and cfg.limits.max_links == 8
    assert cfg.log_level == "warning"


def test_plain_tcp_only_when_asked(tmp_path):
    p = write(tmp_path, "[node]\nlisten = '127.0.0.1:0'\n")
    with pytest.raises(ConfigError, match="insecure_plain"):
        load_node_config(p)
    cfg = load_node_config(p, insecure_plain=True)
    assert cfg.insecure_plain and cfg.tls is None


@pytest.mark.parametrize("text, msg", [
    ("[node]\nlisen = '1.2.3.4:5'\n", "unknown key"),
    ("[nodes]\n", "unknown key"),
    ("[ring]\nstabilize_interval = 'fast'\n", "expected float"),
    ("[ring]\nstabilize_interval = -1\n", "must be positive"),
    ("[limits]\nmax_links = 0\n", "must be positive"),
    ("[node]\nlisten = 'nohostport'\n", "host:port"),
    ("[node]\nbootstrap = [1, 2]\n", "bootstrap"),
    ("[tls]\nca = 'a.pem'\n", "needs all of"),
    ("[node]\nlog_level = 'loud'\n", "log_level"),
    ("this is not toml", "node.toml"),
])
def test_bad_configuration_is_a_clear_error(tmp_path, text, msg):
    with pytest.raises(ConfigError, match=msg):
        load_node_config(write(tmp_path, text + "\n[tls]\ninsecure_plain = true\n"
                               if "[tls]" not in text and "toml" not in text else text))


def test_override_syntax():
    assert parse_override("ring.jitter=0.1") == ("ring", "jitter", 0.1)
    assert parse_override("node.listen=127.0.0.1:1") == ("node", "listen", "127.0.0.1:1")
    with pytest.raises(ConfigError):
        parse_override("jitter=0.1")


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_node_config(tmp_path / "nope.toml")
