"""The s2s TLS layer over real sockets on 127.0.0.1: serverAuth-only certificates are
requested, accepted and then trusted in both roles; bad certificates are verdicts, never
broken connections; the stream itself behaves (concurrent send/receive, close, garbage)."""

import ssl

import pytest
import trio
import trio.testing

from edge.s2s_tls import S2STLS, TLSConfigError

from .certs import issue, make_ca, write_ca

RING, PEER = "ring.test", "peer.test"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = make_ca("s2s test root")
    directory = tmp_path_factory.mktemp("pki")
    roots = write_ca(root, directory)
    ring = issue(RING, dns=(RING,), eku=("server",), issuer=root).write(directory, "ring")
    peer = issue(PEER, dns=(PEER,), eku=("server",), issuer=root).write(directory, "peer")
    return root, roots, ring, peer, directory


async def handshake_over_tcp(server_tls: S2STLS, client_tls: S2STLS, server_name: str | None):
    """One TCP connection on loopback; returns ((server stream, verdict), (client stream, verdict))."""
    done: dict = {}
    with trio.fail_after(10):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:

            async def server():
                transport = await listeners[0].accept()
                done["server"] = await server_tls.start(transport, server_side=True)

            async def client():
                transport = await trio.open_tcp_stream("127.0.0.1", port)
                done["client"] = await client_tls.start(transport, server_side=False, server_name=server_name)

            nursery.start_soon(server)
            nursery.start_soon(client)
        await listeners[0].aclose()
    return done["server"], done["client"]


async def test_serverauth_only_certificates_are_trusted_in_both_roles(pki):
    root, roots, ring, peer, _ = pki
    ring_tls = S2STLS.from_files(*ring, cafile=roots)
    peer_tls = S2STLS.from_files(*peer, cafile=roots)
    (s_stream, seen_by_ring), (c_stream, seen_by_peer) = await handshake_over_tcp(ring_tls, peer_tls, RING)
    assert seen_by_ring.trusted and seen_by_ring.valid_for(PEER) and not seen_by_ring.valid_for(RING)
    assert seen_by_peer.trusted and seen_by_peer.valid_for(RING)
    assert s_stream.version in ("TLSv1.2", "TLSv1.3")
    # One task receives while another sends, both ways at once.
    payload = bytes(range(256)) * 8000  # 2 MB each way: more than the sockets buffer
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            got = {"server": bytearray(), "client": bytearray()}

            async def pull(stream, key):
                while len(got[key]) < len(payload):
                    got[key] += await stream.receive_some()

            nursery.start_soon(pull, s_stream, "server")
            nursery.start_soon(pull, c_stream, "client")
            nursery.start_soon(c_stream.send_all, payload)
            nursery.start_soon(s_stream.send_all, payload)
        assert got["server"] == payload and got["client"] == payload
        await c_stream.aclose()
        assert await s_stream.receive_some() == b""  # close_notify is a clean end
        await s_stream.aclose()


def test_pythons_ssl_refuses_the_same_certificate_in_the_handshake(pki):
    """Why the edge does not use Python's ssl: with verification on, OpenSSL insists on the
    clientAuth purpose and the handshake itself fails."""
    root, roots, ring, peer, _ = pki
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*ring)
    server.verify_mode = ssl.CERT_OPTIONAL
    server.load_verify_locations(roots)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    client.load_cert_chain(*peer)
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    s = server.wrap_bio(s_in, s_out, server_side=True)
    c = client.wrap_bio(c_in, c_out)
    with pytest.raises(ssl.SSLError, match="certificate purpose"):
        for _ in range(10):
            for side in (c, s):
                try:
                    side.do_handshake()
                except ssl.SSLWantReadError:
                    pass
            s_in.write(c_out.read())
            c_in.write(s_out.read())


async def test_untrusted_and_misnamed_certificates_still_connect(pki, tmp_path):
    root, roots, ring, peer, _ = pki
    ring_tls = S2STLS.from_files(*ring, cafile=roots)
    self_signed = S2STLS.self_signed([PEER])
    (s_stream, verdict), (c_stream, _) = await handshake_over_tcp(ring_tls, self_signed, RING)
    assert verdict.presented and not verdict.trusted and "self-signed" in verdict.reason
    assert verdict.names.matches(PEER) and not verdict.valid_for(PEER)
    with trio.fail_after(5):
        await c_stream.send_all(b"<stream:stream>")
        assert await s_stream.receive_some() == b"<stream:stream>"
    misnamed = issue("other.test", dns=("other.test",), eku=("server",), issuer=root).write(tmp_path, "other")
    (_, verdict), _ = await handshake_over_tcp(ring_tls, S2STLS.from_files(*misnamed), RING)
    assert verdict.trusted and not verdict.valid_for(PEER) and verdict.valid_for("other.test")


async def test_a_client_without_certificate_gets_a_no_certificate_verdict(pki):
    root, roots, ring, peer, _ = pki
    ring_tls = S2STLS.from_files(*ring, cafile=roots)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    with trio.fail_after(10):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            result = {}

            async def server():
                result["server"] = await ring_tls.start(await listeners[0].accept(), server_side=True)

            nursery.start_soon(server)
            stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port), client, server_hostname=RING)
            await stream.do_handshake()
        await listeners[0].aclose()
    _, verdict = result["server"]
    assert not verdict.presented and not verdict.trusted
    await stream.aclose()


async def test_garbage_instead_of_a_handshake_is_a_broken_resource(pki):
    root, roots, ring, peer, _ = pki
    ring_tls = S2STLS.from_files(*ring, cafile=roots)
    left, right = trio.testing.memory_stream_pair()
    with trio.fail_after(5):
        await right.send_all(b"<stream:stream xmlns='jabber:server'>" * 10)
        with pytest.raises(trio.BrokenResourceError, match="handshake"):
            await ring_tls.start(left, server_side=True)
    silent_left, silent_right = trio.testing.memory_stream_pair()
    await silent_right.aclose()  # the peer hangs up before saying anything
    with trio.fail_after(5), pytest.raises(trio.BrokenResourceError, match="closed"):
        await ring_tls.start(silent_left, server_side=True)


def test_unusable_own_certificate_is_a_clear_error(pki, tmp_path):
    root, roots, ring, peer, _ = pki
    with pytest.raises(TLSConfigError, match="does not fit"):
        S2STLS.from_files(ring[0], peer[1])
    with pytest.raises(TLSConfigError, match="cannot read"):
        S2STLS.from_files(tmp_path / "missing.crt", ring[1])
    with pytest.raises(TLSConfigError, match="private key"):
        S2STLS.from_files(ring[0], tmp_path / "missing.key")
    with pytest.raises(TLSConfigError, match="at least one domain"):
        S2STLS.self_signed([])
