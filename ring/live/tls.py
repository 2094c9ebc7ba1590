"""Mutual TLS between ring nodes: both sides present a certificate from the ring's own CA.

Host names are not checked (``check_hostname`` is off): a ring node is known by its id, and
the shell checks that id against the certificate key after the handshake (``peer_node_id``).
Only the ring CA is trusted, never the system store, and only TLS 1.3 is spoken.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trio

from ..ca import node_id_of_der, node_id_of_pem_file
from ..keyspace import KeySpace


class PeerCertificateError(Exception):
    """The peer's certificate is missing or does not yield a usable ring id."""


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path

    def check(self) -> None:
        for what, p in (("CA certificate", self.ca), ("node certificate", self.cert),
                        ("node key", self.key)):
            if not Path(p).is_file():
                raise FileNotFoundError(f"{what} {p} not found")


def _context(files: TlsFiles, purpose: ssl.Purpose) -> ssl.SSLContext:
    proto = ssl.PROTOCOL_TLS_SERVER if purpose is ssl.Purpose.CLIENT_AUTH else ssl.PROTOCOL_TLS_CLIENT
    ctx = ssl.SSLContext(proto)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=str(files.ca))
    ctx.load_cert_chain(certfile=str(files.cert), keyfile=str(files.key))
    return ctx


@dataclass(frozen=True)
class RingTls:
    """The two contexts a node needs (accepting and dialing) and its own certified id."""

    server: ssl.SSLContext
    client: ssl.SSLContext
    node_id: int

    @classmethod
    def load(cls, files: TlsFiles, space: KeySpace) -> RingTls:
        files.check()
        return cls(_context(files, ssl.Purpose.CLIENT_AUTH),
                   _context(files, ssl.Purpose.SERVER_AUTH),
                   node_id_of_pem_file(space, files.cert))


def peer_node_id(stream, space: KeySpace) -> int:  # noqa: ANN001 - SSLStream or SSLObject
    """The id the peer's (already CA-verified) certificate key yields."""
    der = stream.getpeercert(binary_form=True)
    if not der:
        raise PeerCertificateError("peer presented no certificate")
    try:
        return node_id_of_der(space, der)
    except ValueError as exc:
        raise PeerCertificateError(str(exc)) from None


class WideReads(trio.abc.Stream):
    """A transport for trio's SSLStream that reads ``size`` bytes at a time.

    SSLStream asks its transport for no size in particular, and a socket stream then reads
    64 KiB; with this, a socket read takes what ``LiveLimits.recv_size`` allows (256 KiB),
    so one wake-up of a busy link brings about 1000 envelopes instead of 250 for the core
    to take in one batch (with ``take_decrypted``): B of bench_live spent 4.4-4.8 instead
    of 5.3-6.2 us per forwarded stanza.
    """

    def __init__(self, inner: trio.abc.Stream, size: int) -> None:
        self.inner = inner
        self.size = size

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes or self.size)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def aclose(self) -> None:
        await self.inner.aclose()


def take_decrypted(stream: trio.abc.Stream, max_bytes: int) -> list[bytes]:
    """What a TLS stream can give at once, without I/O: the plaintext of the records that
    came with its last socket read, beyond the one record ``receive_some`` returned.

    trio's SSLStream decrypts one TLS record (16 KiB at most) per ``receive_some``, and
    each call goes once round the scheduler, while the rest of the socket read (up to
    256 KiB with ``WideReads``) waits in its incoming buffer. Taking it all at once hands
    the core batches many times larger: B of bench_live spent 7.7 instead of 6.2 us per
    forwarded stanza without it (before WideReads). This reads through the SSLStream's SSLObject (``_ssl_object``, not public
    API), synchronously and only from the stream's one reading task, so none of trio's own
    bookkeeping is interleaved with it; a stream without one (plain TCP) gives []. A TLS
    error raises BrokenResourceError, as ``receive_some`` would; the peer's close_notify
    ends the list, and the next ``receive_some`` reports the end of the stream. (Anything
    the reads make the SSLObject send, such as the answer to a TLS 1.3 key update, goes out
    with the stream's next send.)
    """
    obj = getattr(stream, "_ssl_object", None)
    if obj is None:
        return []
    out = []
    total = 0
    while total < max_bytes:
        try:
            data = obj.read(max_bytes - total)
        except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
            break
        except (ssl.SSLError, ssl.CertificateError) as exc:
            raise trio.BrokenResourceError("TLS error while decrypting") from exc
        if not data:
            break
        out.append(data)
        total += len(data)
    return out
