"""The post-handshake verdict on peer certificates: serverAuth-only certificates are trusted
when they chain to our roots; wrong roots, wrong times, wrong purposes and junk are not."""

import datetime as dt

import pytest

from edge.cert_trust import PeerCertificateVerifier, TrustError

from .certs import issue, make_ca, write_ca

AT = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)
WINDOW = (AT - dt.timedelta(days=10), AT + dt.timedelta(days=80))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = make_ca("root", WINDOW)
    directory = tmp_path_factory.mktemp("roots")
    return root, PeerCertificateVerifier(cafile=write_ca(root, directory))


@pytest.mark.parametrize("eku", [("server",), ("client",), ("server", "client"), ("any",), None],
                         ids=["serverAuth-only", "clientAuth-only", "both", "anyEKU", "no-EKU"])
def test_certificates_for_tls_are_trusted_whatever_their_tls_purpose(pki, eku):
    root, verifier = pki
    peer = issue("peer.test", dns=("peer.test",), eku=eku, issuer=root, valid=WINDOW)
    verdict = verifier.verify(peer.der, [], AT)
    assert verdict.trusted, verdict.reason
    assert verdict.valid_for("peer.test") and not verdict.valid_for("other.test")


def test_a_certificate_for_another_purpose_is_not_trusted(pki):
    root, verifier = pki
    peer = issue("peer.test", dns=("peer.test",), eku=("email",), issuer=root, valid=WINDOW)
    verdict = verifier.verify(peer.der, [], AT)
    assert not verdict.trusted and "serverAuth" in verdict.reason
    assert not verdict.valid_for("peer.test")


def test_an_intermediate_sent_by_the_peer_completes_the_chain(pki):
    root, verifier = pki
    intermediate = issue("intermediate", eku=None, ca=True, issuer=root, valid=WINDOW)
    peer = issue("peer.test", dns=("peer.test",), issuer=intermediate, valid=WINDOW)
    assert verifier.verify(peer.der, [peer.der, intermediate.der], AT).trusted
    alone = verifier.verify(peer.der, [], AT)  # without it, no path to the root
    assert not alone.trusted and "issuer" in alone.reason


@pytest.mark.parametrize(("at", "word"), [(AT + dt.timedelta(days=100), "expired"),
                                           (AT - dt.timedelta(days=30), "not yet valid")])
def test_validity_period_is_checked_at_the_given_time(pki, at, word):
    root, verifier = pki
    peer = issue("peer.test", dns=("peer.test",), issuer=root, valid=WINDOW)
    verdict = verifier.verify(peer.der, [], at)
    assert not verdict.trusted and word in verdict.reason
    assert verifier.verify(peer.der, [], AT).trusted  # the time of one check does not stick


def test_self_signed_and_foreign_certificates_are_untrusted(pki):
    root, verifier = pki
    other_root = make_ca("other root", WINDOW)
    for cert in (issue("peer.test", dns=("peer.test",), valid=WINDOW),
                 issue("peer.test", dns=("peer.test",), issuer=other_root, valid=WINDOW)):
        verdict = verifier.verify(cert.der, [cert.der, other_root.der], AT)
        assert verdict.presented and not verdict.trusted and verdict.reason
        assert verdict.names.matches("peer.test")  # named, but not to be believed


def test_a_ca_presented_as_leaf_with_a_forged_chain_is_untrusted(pki):
    root, verifier = pki
    impostor = issue("root", eku=None, ca=True, valid=WINDOW)  # same name as our root, other key
    peer = issue("peer.test", dns=("peer.test",), issuer=impostor, valid=WINDOW)
    assert not verifier.verify(peer.der, [impostor.der], AT).trusted


def test_junk_and_absence_are_verdicts_not_errors(pki):
    _, verifier = pki
    assert not verifier.verify(None, [], AT).presented
    junk = verifier.verify(b"\x30\x03\x02\x01\x00", [], AT)
    assert junk.presented and not junk.trusted and "unparsable" in junk.reason
    peer = issue("peer.test", dns=("peer.test",), valid=WINDOW)
    assert not verifier.verify(peer.der, [b"junk"], AT).trusted
    assert not verifier.verify(peer.der, [peer.der] * 20, AT).trusted  # chain length is capped


def test_without_roots_nothing_is_trusted():
    root = make_ca("root", WINDOW)
    peer = issue("peer.test", dns=("peer.test",), issuer=root, valid=WINDOW)
    verdict = PeerCertificateVerifier().verify(peer.der, [], AT)
    assert not verdict.trusted and verdict.reason == "no trust roots configured"


def test_capath_and_bad_trust_files(tmp_path):
    with pytest.raises(TrustError, match="cannot read"):
        PeerCertificateVerifier(cafile=tmp_path / "missing.pem")
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(TrustError, match="no valid PEM"):
        PeerCertificateVerifier(cafile=tmp_path / "junk.pem")
    with pytest.raises(TrustError, match="does not exist"):
        PeerCertificateVerifier(capath=tmp_path / "nowhere")
