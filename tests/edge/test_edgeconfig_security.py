"""The [edge] keys for direct TLS, connection caps and secure_auth: read, checked, and
carried into the node that is built from them."""

import pytest

from edge.cli_edge import build_node
from edge.edgeconfig import load_edge_config, with_direct_tls_port
from edge.srv import Target
from ring.nodeconfig import ConfigError

from .certs import make_ca, write_ca
from .test_edgeconfig import write

BASE = """
[edge]
domains = ["ring.example"]
s2s_listen = "127.0.0.1:0"
dialback_secret = "a secret shared by every edge"
use_dns = false
"""


def test_direct_tls_caps_and_secure_auth_reach_the_s2s_node(tmp_path):
    roots = write_ca(make_ca(), tmp_path)
    text = BASE + f"""s2s_tls_listen = "127.0.0.1:0"
cafile = "{roots}"
secure_auth = true
insecure_domains = ["Lab.Example"]
secure_domains = ["bank.example"]
max_streams_per_ip = 8
max_unauthenticated_streams = 20
[edge.peers]
"tls.example" = "tls:127.0.0.1:5270, 127.0.0.1:5269"
"list.example" = ["tls:[::1]:5270", "[::1]:5269"]
"""
    e = load_edge_config(write(tmp_path, text)).edge
    assert e.s2s_tls_listen == "127.0.0.1:0" and e.secure_auth and e.insecure_domains == {"lab.example"}
    assert e.peers["tls.example"] == (Target("127.0.0.1", 5270, True), Target("127.0.0.1", 5269))
    assert e.peers["list.example"] == (Target("::1", 5270, True), Target("::1", 5269))
    node = build_node(load_edge_config(write(tmp_path, text)))
    cfg = node.s2s.config
    assert node.s2s.direct_tls_listen == ("127.0.0.1", 0)
    assert cfg.secure_auth and cfg.requires_secure_auth("bank.example") and not cfg.requires_secure_auth("lab.example")
    assert (cfg.max_streams_per_ip, cfg.max_unauthenticated_streams) == (8, 20)
    assert (node.s2s.gate.max_per_address, node.s2s.gate.max_unauthenticated) == (8, 20)


def test_defaults_are_generous_caps_no_direct_tls_and_no_secure_auth(tmp_path):
    node = build_node(load_edge_config(write(tmp_path, BASE)))
    cfg = node.s2s.config
    assert node.s2s.direct_tls_listen is None and not cfg.secure_auth and not cfg.secure_domains
    assert cfg.max_streams_per_ip == 128 and cfg.max_unauthenticated_streams == 256


def test_the_tls_port_option_listens_beside_s2s_listen(tmp_path):
    e = load_edge_config(write(tmp_path, BASE.replace("127.0.0.1:0", "192.0.2.5:5269"))).edge
    assert with_direct_tls_port(e, 5270).s2s_tls_listen == "192.0.2.5:5270"
    with pytest.raises(ConfigError, match="needs an edge"):
        with_direct_tls_port(load_edge_config(write(tmp_path, '[edge]\ndomains = ["ring.example"]\n')).edge, 5270)


@pytest.mark.parametrize(("extra", "message"), [
    ('s2s_tls_listen = "127.0.0.1:0"\ntls = false\n', "s2s_tls_listen (direct TLS) needs tls = true"),
    ("s2s_tls_listen = 5270\n", "s2s_tls_listen must be a host:port string"),
    ("secure_auth = true\n", "need trust roots"),
    ('secure_domains = ["bank.example"]\ntls = false\n', "need tls = true"),
    ('secure_domains = "bank..example"\n', "secure_domains"),
    ("insecure_domains = [1]\n", "insecure_domains must be a list"),
    ("max_streams_per_ip = 0\n", "max_streams_per_ip must be at least 1"),
    ('max_unauthenticated_streams = "many"\n', "expected int"),
    ('[edge.peers]\n"p.test" = "ssl:127.0.0.1:5270"\n', "p.test: unknown scheme 'ssl'"),
    ('[edge.peers]\n"p.test" = "tls:127.0.0.1"\n', "direct TLS route needs a port"),
    ('[edge.peers]\n"p.test" = []\n', "expected \"host:port\""),
])
def test_mistakes_are_named(tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_edge_config(write(tmp_path, BASE + extra))


def test_s2s_tls_listen_needs_s2s_listen(tmp_path):
    text = '[edge]\ndomains = ["ring.example"]\ns2s_tls_listen = "127.0.0.1:0"\n'
    with pytest.raises(ConfigError, match="s2s_tls_listen needs s2s_listen"):
        load_edge_config(write(tmp_path, text))
