"""Which domains a certificate names (RFC 6125 / XEP-0178): every kind of reference
identifier, wildcard limits, internationalised names, and the common-name fallback."""

import pytest

from edge.cert_names import CertificateNames, PeerCertificate

from .certs import issue, srv_id, xmpp_addr


@pytest.mark.parametrize(
    ("dns", "domain", "expected"),
    [
        (("peer.test",), "peer.test", True),
        (("PEER.test.",), "peer.test", True),  # case and a trailing dot do not matter
        (("peer.test",), "other.test", False),
        (("*.peer.test",), "muc.peer.test", True),
        (("*.peer.test",), "peer.test", False),  # the wildcard needs a label of its own
        (("*.peer.test",), "a.b.peer.test", False),  # and stands for exactly one label
        (("*.test",), "peer.test", False),  # never a wildcard right under a top-level name
        (("m*.peer.test",), "muc.peer.test", False),  # partial-label wildcards are not honoured
        (("muc.*.test",), "muc.peer.test", False),  # nor wildcards deeper than the first label
        (("xn--bcher-kva.test",), "bücher.test", True),  # certificates spell A-labels
    ],
)
def test_dns_ids(dns, domain, expected):
    names = CertificateNames.of(issue("unrelated.example", dns=dns).cert)
    assert names.matches(domain) is expected


def test_xmpp_addr_names_a_domain_and_only_a_bare_domain():
    cert = issue("x", other=(xmpp_addr("Peer.Test"), xmpp_addr("user@other.test"), xmpp_addr("third.test/res"))).cert
    names = CertificateNames.of(cert)
    assert names.matches("peer.test")  # prepared before comparing
    assert not names.matches("other.test") and not names.matches("third.test")


def test_srv_id_counts_for_the_xmpp_server_service_only():
    names = CertificateNames.of(issue("x", other=(srv_id("_xmpp-server.peer.test"), srv_id("_xmpp-client.c.test"))).cert)
    assert names.matches("peer.test") and not names.matches("c.test")


def test_common_name_counts_only_without_subject_alternative_names():
    assert CertificateNames.of(issue("peer.test").cert).matches("peer.test")
    with_san = CertificateNames.of(issue("peer.test", dns=("other.test",)).cert)
    assert not with_san.matches("peer.test") and with_san.matches("other.test")


def test_a_verdict_allows_external_only_when_trusted_and_named():
    names = CertificateNames(dns=frozenset({"peer.test"}))
    assert PeerCertificate(True, True, names).valid_for("peer.test")
    assert not PeerCertificate(True, False, names, "untrusted").valid_for("peer.test")
    assert not PeerCertificate(True, True, names).valid_for("other.test")
    assert not PeerCertificate(True, True, names).valid_for(None)
    assert not PeerCertificate.none().valid_for("peer.test")
