"""An XMPP ring node's configuration: the node's sections plus [edge], validated; a node built
from it; the edge commands on the command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.cli_edge import build_node
from edge.edgeconfig import load_edge_config
from edge.srv import Target
from ring.ca import init_ca, issue_node
from ring.nodeconfig import ConfigError

NODE = """
name = "edge1"
[node]
listen = "127.0.0.1:0"
[tls]
insecure_plain = true
[ring]
stabilize_interval = 0.5
"""

EDGE = """
[edge]
domains = ["Ring.Example", "other.example"]
s2s_listen = "127.0.0.1:0"
dialback_secret_file = "secret"
announce_interval = 2.0
edge_ttl = 7.0
trace = true
use_dns = false
[edge.peers]
"peer.example" = "127.0.0.1:15269"
peer.test = "tls:127.0.0.1:5270"
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "secret").write_text("a secret shared by every edge\n")
    p = tmp_path / "edge.toml"
    p.write_text(NODE + text)
    return p


def test_the_edge_section_is_read_and_checked(tmp_path):
    cfg = load_edge_config(write(tmp_path, EDGE))
    e = cfg.edge
    assert cfg.node.name == "edge1" and cfg.node.ring.stabilize_interval == 0.5
    assert e.domains == frozenset({"ring.example", "other.example"}) and e.is_edge
    assert e.dialback_secret == b"a secret shared by every edge"
    assert e.peers == {"peer.example": (Target("127.0.0.1", 15269),), "peer.test": (Target("127.0.0.1", 5270, True),)}
    assert e.router.announce_interval == 2.0 and e.router.edge_ttl == 7.0 and e.router.trace
    assert e.tls and e.certificate is None and not e.use_dns


def test_overrides_reach_both_the_node_and_the_edge(tmp_path):
    cfg = load_edge_config(write(tmp_path, EDGE), overrides=["edge.announce_interval=3", "ring.stabilize_interval=1"])
    assert cfg.edge.router.announce_interval == 3.0 and cfg.node.ring.stabilize_interval == 1.0


def test_a_node_without_s2s_listen_hosts_entities_but_does_not_federate(tmp_path):
    cfg = load_edge_config(write(tmp_path, '[edge]\ndomains = ["ring.example"]\n'))
    assert not cfg.edge.is_edge and cfg.edge.dialback_secret is None
    node = build_node(cfg)
    assert node.s2s is None and not node.is_edge and node.router.config.domains == {"ring.example"}


def test_an_edge_node_is_built_with_a_self_signed_certificate_by_default(tmp_path):
    node = build_node(load_edge_config(write(tmp_path, EDGE)), ["extra.test=127.0.0.1:9999"])
    assert node.is_edge and node.s2s.tls is not None and node.s2s.config.tls
    assert node.s2s.resolver.overrides["extra.test"] == (Target("127.0.0.1", 9999),)
    assert node.router.edge_domains == {"ring.example", "other.example"}


@pytest.mark.parametrize(("text", "message"), [
    ('[edge]\ns2s_listen = "127.0.0.1:0"\n', "domains"),
    ('[edge]\ndomains = ["ring.example"]\ns2s_listen = "127.0.0.1:0"\n', "dialback secret"),
    ('[edge]\ndomains = ["ring.example"]\ndialback_secret = "short"\n', "at least 16 bytes"),
    ('[edge]\ndomains = ["ring..example"]\n', "domains"),
    ('[edge]\ndomains = ["ring.example"]\nbogus = 1\n', "unknown key"),
    ('[edge]\ndomains = ["ring.example"]\ncertificate = "x.pem"\n', "go together"),
    ('[edge]\ndomains = ["ring.example"]\nannounce_interval = "soon"\n', "expected float"),
    ('[edge]\ndomains = ["ring.example"]\nannounce_interval = 40.0\n', "edge_ttl must exceed"),
    ('[edge]\ndomains = ["ring.example"]\n[edge.peers]\n"p.test" = 5\n', "host:port"),
    ('[edge]\ndomains = ["ring.example"]\n[edge.peers]\n"p.test" = "127.0.0.1:99999"\n', "port"),
    ('[edge]\ndomains = ["ring.example"]\nrequire_tls = true\ntls = false\n', "require_tls"),
    ("", "[edge] section is required"),
])
def test_mistakes_are_named(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_edge_config(write(tmp_path, text))


def test_operator_certificates_are_loaded_and_a_bad_one_is_a_clear_error(tmp_path):
    from .peers import make_certificate

    cert, key = make_certificate("ring.example", tmp_path / "certs")
    good = EDGE.replace('use_dns = false', f'use_dns = false\ncertificate = "{cert}"\nkey = "{key}"')
    node = build_node(load_edge_config(write(tmp_path, good)))
    assert node.s2s.tls is not None
    bad = EDGE.replace('use_dns = false', f'use_dns = false\ncertificate = "{key}"\nkey = "{key}"')
    with pytest.raises(ValueError, match="TLS"):
        build_node(load_edge_config(write(tmp_path, bad)))


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ring.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=Path(__file__).resolve().parents[2])


def test_the_demo_follows_stanzas_across_a_live_ring():
    done = run_cli("demo", "--nodes", "6")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "peer.example received: message from echo@ring.example: \"Hello, ring!\"" in out
    assert "service-unavailable" in out and "ringmesh" in out
    assert "in:" in out and "reply:" in out and "out:" in out and "hops]" in out
    assert "s2s authentication: in/dialback x1, out/dialback x1" in out


def test_edge_run_serves_until_signalled(tmp_path):
    ca = tmp_path / "ca"
    init_ca(ca)
    issue_node(ca, "edge1")
    cfg = write(tmp_path, EDGE.replace("[edge]", "[edge]\n", 1))
    text = cfg.read_text().replace("[tls]\ninsecure_plain = true",
                                   '[tls]\nca = "ca/ca.pem"\ncert = "ca/nodes/edge1.pem"\nkey = "ca/nodes/edge1.key"')
    cfg.write_text(text)
    proc = subprocess.Popen([sys.executable, "-m", "ring.cli", "edge", "run", "--config", str(cfg), "--s2s-tls-port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        lines = []
        for line in proc.stdout:  # bounded by the edge's own startup lines
            lines.append(line)
            if "event=edge_registered" in line or len(lines) > 50:
                break
        assert any("event=edge_listening" in x and "domains=other.example,ring.example" in x for x in lines), lines
        assert any("event=s2s_direct_tls_listening addr=127.0.0.1:" in x for x in lines), lines
        assert any("event=edge_registered" in x for x in lines), lines
        proc.send_signal(2)
        rest, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0 and "event=left" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_cluster_up_with_a_domain_starts_an_edge():
    done = run_cli("--log-level", "warning", "cluster", "up", "--nodes", "3", "--domain", "ring.test",
                   "--peer", "peer.test=tls:127.0.0.1:15270,127.0.0.1:15269", "--s2s-tls-port", "0",
                   "--duration", "0.5")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "s2s 127.0.0.1:" in done.stdout and "echo@ring.test" in done.stdout
    assert ", direct TLS 127.0.0.1:" in done.stdout
