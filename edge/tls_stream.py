"""TLS over any trio stream with pyOpenSSL and memory BIOs.

Why not ``trio.SSLStream``: it is built on Python's ssl, which cannot accept a peer
certificate during the handshake and judge it afterwards (see :mod:`edge.cert_trust`).
pyOpenSSL exposes the same OpenSSL with a verify callback we control; this class moves its
records between memory BIOs and the transport, so it works over TCP, memory streams and
STARTTLS alike.

Concurrency: one task may receive while another sends (the s2s shell reads in one task and
writes from others). OpenSSL calls are synchronous, so they never interleave; every write
to the transport goes through one FIFO lock, so records leave in the order OpenSSL made
them. A sender hands its data to OpenSSL only while holding the lock and drains OpenSSL
again after each write before letting go, so what a receiver finds in OpenSSL's buffer is
only what reading produced. A receiver never waits for that lock: if a sender holds it, the sender will carry whatever
the read produced (a key update, an alert). Otherwise two peers both blocked in sending
could each stop reading, and neither would ever finish. Renegotiation is disabled, so a
write never has to wait for a read.

Error handling: every TLS failure (bad record, alert, handshake failure) surfaces as
``trio.BrokenResourceError``; a clean close (close_notify or EOF) as ``b""``.
"""

from __future__ import annotations

import trio
from OpenSSL import SSL, crypto

DEFAULT_READ = 65536
_BIO_READ = 65536


class OpenSSLStream(trio.abc.Stream):
    """A TLS session (client or server, as ``connection`` was set up) over ``transport``.

    Call :meth:`do_handshake` first. ``connection`` must have been made with
    ``SSL.Connection(context, None)`` (memory BIOs) and ``set_accept_state`` or
    ``set_connect_state``.
    """

    def __init__(self, transport: trio.abc.Stream, connection: SSL.Connection) -> None:
        self.transport = transport
        self.connection = connection
        self._send_lock = trio.StrictFIFOLock()
        self._receiving = False
        self._handshook = False
        self._closed = False

    # -- handshake and certificates ---------------------------------------------------------

    async def do_handshake(self) -> None:
        """Run the handshake to completion (idempotent). Raises BrokenResourceError."""
        if self._handshook:
            return
        self._enter_receive()
        try:
            while True:
                try:
                    self.connection.do_handshake()
                    break
                except SSL.WantReadError:
                    await self._flush()
                    if not await self._fill():
                        raise trio.BrokenResourceError("peer closed the connection during the TLS handshake")
                except SSL.Error as exc:
                    await self._flush_quietly()  # let the peer see our alert
                    raise trio.BrokenResourceError(f"TLS handshake failed: {_describe(exc)}") from exc
            self._handshook = True
            await self._flush()
        finally:
            self._receiving = False

    def peer_certificates(self) -> tuple[bytes | None, list[bytes]]:
        """The peer's certificate and the other certificates it sent (DER), unverified.

        Taken as OpenSSL holds them, without parsing: a certificate OpenSSL accepted but
        stricter parsers refuse must become an "untrusted" verdict, not an exception here."""
        leaf = self.connection.get_peer_certificate()
        chain = self.connection.get_peer_cert_chain() or []
        leaf_der = crypto.dump_certificate(crypto.FILETYPE_ASN1, leaf) if leaf is not None else None
        return leaf_der, [crypto.dump_certificate(crypto.FILETYPE_ASN1, c) for c in chain]

    @property
    def version(self) -> str:
        return self.connection.get_protocol_version_name()

    @property
    def server_name(self) -> str | None:
        """The name the client asked for with SNI (server side), or None."""
        name = self.connection.get_servername()
        return name.decode("ascii", "replace") if name else None

    @property
    def alpn(self) -> str | None:
        """The application protocol agreed with ALPN, or None if none was."""
        proto = self.connection.get_alpn_proto_negotiated()
        return proto.decode("ascii", "replace") if proto else None

    # -- trio.abc.Stream --------------------------------------------------------------------

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise trio.ClosedResourceError("TLS stream is closed")
        if not self._handshook:
            await self.do_handshake()
        async with self._send_lock:  # records enter OpenSSL's buffer only under the lock
            if data:
                try:
                    self.connection.sendall(bytes(data))
                except SSL.Error as exc:
                    raise trio.BrokenResourceError(f"TLS write failed: {_describe(exc)}") from exc
            await self._send_drained()

    async def wait_send_all_might_not_block(self) -> None:
        async with self._send_lock:
            await self.transport.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if self._closed:
            raise trio.ClosedResourceError("TLS stream is closed")
        if not self._handshook:
            await self.do_handshake()
        self._enter_receive()
        try:
            size = max_bytes or DEFAULT_READ
            eof = False
            while True:
                try:
                    data = self.connection.recv(size)
                except SSL.WantReadError:
                    if eof:
                        return b""
                    await self._flush(from_reader=True)  # reading may have produced records
                    eof = not await self._fill()  # at EOF the next recv says how the peer ended
                    continue
                except SSL.ZeroReturnError:
                    return b""
                except SSL.SysCallError as exc:
                    if exc.args and exc.args[0] == -1:  # EOF without close_notify: the transport ended
                        return b""
                    raise trio.BrokenResourceError(f"TLS read failed: {_describe(exc)}") from exc
                except SSL.Error as exc:
                    await self._flush_quietly()
                    raise trio.BrokenResourceError(f"TLS read failed: {_describe(exc)}") from exc
                await self._flush(from_reader=True)
                return data
        finally:
            self._receiving = False

    async def aclose(self) -> None:
        """Send close_notify if possible, then close the transport (always)."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._handshook:
                try:
                    self.connection.shutdown()
                except SSL.Error:
                    pass
                with trio.move_on_after(1):
                    await self._flush_quietly()
        finally:
            await self.transport.aclose()

    # -- internals --------------------------------------------------------------------------

    def _enter_receive(self) -> None:
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this TLS stream")
        self._receiving = True

    async def _fill(self) -> bool:
        """Read from the transport into OpenSSL; False once the transport is at EOF."""
        try:
            data = await self.transport.receive_some(_BIO_READ)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            self.connection.bio_shutdown()
            return False
        self.connection.bio_write(data)
        return True

    def _drain(self) -> bytes:
        chunks = []
        while True:
            try:
                chunk = self.connection.bio_read(_BIO_READ)
            except SSL.WantReadError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    async def _send_drained(self) -> None:
        """With the send lock held: send what OpenSSL produced, until nothing is left."""
        while data := self._drain():
            await self.transport.send_all(data)

    async def _flush(self, *, from_reader: bool = False) -> None:
        """Send every record OpenSSL has produced, in order (see the module docstring)."""
        if from_reader and self._send_lock.locked():
            return  # the holder drains again before it releases the lock
        async with self._send_lock:
            await self._send_drained()

    async def _flush_quietly(self) -> None:
        try:
            await self._flush()
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass


def _describe(exc: SSL.Error) -> str:
    parts = []
    for item in exc.args[0] if exc.args and isinstance(exc.args[0], list) else []:
        if isinstance(item, tuple) and item:
            parts.append(str(item[-1]))
    return "; ".join(parts) or repr(exc)
