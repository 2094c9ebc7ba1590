"""The trio shell around the s2s stream machines: sockets, TLS, timers and dialback plumbing.

It owns no protocol logic. Per connection one task reads, feeds the machine, flushes what
it wants to send and acts on its events; a lock makes each connection's writes and event
handling sequential even when another task pokes its machine (a dialback answer arriving on
an outbound stream completes an inbound one).

Dialback needs this shell to serve its listener while it waits: when the ring originates,
a peer such as Prosody verifies our key by connecting *back* to us first. Nothing here
blocks on a verification; each runs in its own task with the machines' own timeouts.

Listeners: the usual one, where streams start in clear and may negotiate STARTTLS, and
optionally a second one for XEP-0368 direct TLS, where the TLS handshake (ALPN
``xmpp-server``, SNI) runs before the stream machine exists and the machine starts secure.
Outbound, a ``tls:`` route or an ``_xmpps-server`` SRV target is reached with direct TLS; when
that fails the next target (typically the STARTTLS one) is tried.

Every accepted connection passes :class:`edge.conn_limits.ConnectionGate` first: one over the
per-address or unauthenticated cap gets the stream error the gate names and is closed.

Resource handling: every connection lives in the node's nursery and is closed when its
machine says so, when it fails, or when :meth:`S2SNode.aclose` cancels everything.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import trio
from lxml import etree

from ring.live.logfmt import log_event

from .cert_names import PeerCertificate
from .conn_limits import ConnectionGate, Refusal
from .errors import LocalProtocolError, StreamCondition
from .jid import parse_jid
from .s2s_events import (
    Authenticated,
    AuthenticationFailed,
    KeyToVerify,
    KeyVerified,
    S2SConfig,
    SecureAuthRefused,
    StanzaReceived,
    StanzaRejected,
    StanzasUnsent,
    StartTLS,
    StreamClosed,
)
from .s2s_inbound import InboundStream
from .s2s_outbound import OutboundStream
from .s2s_tls import S2STLS
from .srv import PeerResolver, Target

log = logging.getLogger(__name__)
events_log = logging.getLogger("ringmesh.edge.s2s")  # key=value lines operators read
READ_SIZE = 65536
CONNECT_TIMEOUT = 10.0
TLS_HANDSHAKE_TIMEOUT = 15.0
REFUSED_LINGER = 1.0  # after refusing: how long the peer has to read our error before we close
REFUSED_DRAIN = 65536  # bytes read (and dropped) meanwhile, so closing does not reset the error away


@dataclass
class S2SStats:
    inbound_connections: int = 0
    outbound_connections: int = 0
    stanzas_in: int = 0
    stanzas_out: int = 0
    stream_errors_sent: int = 0
    dialback_verified: int = 0
    dialback_refused: int = 0
    tls_sessions: int = 0
    peer_certificates: dict[str, int] = field(default_factory=dict)  # "in/trusted", "out/untrusted"...
    authenticated: dict[str, int] = field(default_factory=dict)  # "in/dialback", "out/sasl-external"...
    direct_tls: dict[str, int] = field(default_factory=dict)  # "in", "out", "out/failed"
    refused: dict[str, int] = field(default_factory=dict)  # connections over a cap, by reason
    secure_auth_refused: dict[str, int] = field(default_factory=dict)  # "in"/"out"
    errors: list[str] = field(default_factory=list)


def _bump(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


class _Conn:
    def __init__(self, machine: InboundStream | OutboundStream, stream: trio.abc.Stream | None) -> None:
        self.machine = machine
        self.stream = stream
        self.lock = trio.Lock()
        self.scope: trio.CancelScope | None = None
        self.connected = trio.Event()
        self.gate_key: object | None = None  # inbound: the connection as the gate counts it


class S2SNode:
    """s2s for the domains in ``config``: an inbound listener and outbound streams on demand.

    ``on_stanza(event)`` receives :class:`StanzaReceived` and :class:`StanzaRejected`;
    ``on_unsent(elements, reason)`` receives stanzas that could not leave (to bounce them).
    ``tls`` (:class:`edge.s2s_tls.S2STLS`) enables STARTTLS (``config.tls`` must then be true).
    ``direct_tls_listen`` = (host, port) adds a direct TLS (XEP-0368) listener; host None means
    the host :meth:`run` listens on, port 0 any free port (then see ``direct_tls_port``).
    """

    def __init__(self, config: S2SConfig, resolver: PeerResolver, *,
                 on_stanza: Callable[[StanzaReceived | StanzaRejected], None] | None = None,
                 on_unsent: Callable[[tuple[etree._Element, ...], str], None] | None = None,
                 tls: S2STLS | None = None,
                 id_factory: Callable[[], str] | None = None,
                 direct_tls_listen: tuple[str | None, int] | None = None) -> None:
        if direct_tls_listen is not None and tls is None:
            raise ValueError("a direct TLS listener needs TLS (a certificate)")
        self.config = config
        self.resolver = resolver
        self.on_stanza = on_stanza or (lambda ev: None)
        self.on_unsent = on_unsent or (lambda els, reason: None)
        self.tls = tls
        self.id_factory = id_factory or (lambda: secrets.token_hex(16))
        self.stats = S2SStats()
        self._nursery: trio.Nursery | None = None
        self._inbound: dict[str, _Conn] = {}  # by stream id
        self._outbound: dict[tuple[str, str, bool], _Conn] = {}
        self._waiting: dict[tuple[str, str, str], str] = {}  # verify ident -> inbound stream id
        self.listen_port: int | None = None
        self.direct_tls_listen = direct_tls_listen
        self.direct_tls_port: int | None = None
        self.gate = ConnectionGate(config.max_streams_per_ip, config.max_unauthenticated_streams)
        # Backpressure: awaited before each read, so a router that cannot keep up slows the
        # peers' TCP streams instead of queueing without bound.
        self.flow: Callable[[], Awaitable[None]] | None = None

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self, host: str = "127.0.0.1", port: int = 0, *,
                  task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen for inbound s2s until cancelled; ``task_status.started(port)``."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            listeners = await trio.open_tcp_listeners(port, host=host)
            self.listen_port = listeners[0].socket.getsockname()[1]
            nursery.start_soon(trio.serve_listeners, self._handle_inbound, listeners)
            if self.direct_tls_listen is not None:
                tls_host, tls_port = self.direct_tls_listen
                tls_listeners = await trio.open_tcp_listeners(tls_port, host=tls_host or host)
                self.direct_tls_port = tls_listeners[0].socket.getsockname()[1]
                nursery.start_soon(trio.serve_listeners, self._handle_inbound_direct_tls, tls_listeners)
                log_event(events_log, logging.INFO, "s2s_direct_tls_listening",
                          addr=f"{tls_host or host}:{self.direct_tls_port}", alpn="xmpp-server")
            task_status.started(self.listen_port)

    async def send(self, element: etree._Element) -> None:
        """Send a stanza to its remote domain, opening (or reusing) an authenticated stream."""
        local, remote = parse_jid(element.get("from", "")).domain, parse_jid(element.get("to", "")).domain
        if not self.config.serves(local):
            raise LocalProtocolError(f"{local} is not a domain of this edge")
        conn = self._outbound_conn(local, remote, authenticate=True)
        try:
            conn.machine.send_stanza(element)
        except LocalProtocolError:
            # The stream was failing; start a fresh one and try once more.
            self._outbound.pop((local, remote, True), None)
            conn = self._outbound_conn(local, remote, authenticate=True)
            conn.machine.send_stanza(element)
        self.stats.stanzas_out += 1
        await self._pump(conn)

    # -- connections ------------------------------------------------------------------------

    async def _handle_inbound(self, stream: trio.SocketStream) -> None:
        await self._serve_inbound(stream, direct=False)

    async def _handle_inbound_direct_tls(self, stream: trio.SocketStream) -> None:
        await self._serve_inbound(stream, direct=True)

    async def _serve_inbound(self, stream: trio.abc.Stream, *, direct: bool) -> None:
        """One inbound connection: the gate, the direct TLS handshake if any, the stream."""
        address = _peer_address(stream)
        key = object()
        refusal = self.gate.admit(key, address, trio.current_time())
        if refusal is not None:
            _bump(self.stats.refused, refusal.reason)
            if refusal.log:
                log_event(events_log, logging.WARNING, "s2s_connection_refused", peer=address, cap=refusal.reason,
                          limit=refusal.limit, error=refusal.condition.value, suppressed=refusal.suppressed or None)
        machine: InboundStream | None = None
        try:
            verdict, server_name = None, None
            if direct:
                assert self.tls is not None
                try:
                    # A refused connection is not counted by the gate: keep its handshake short.
                    with trio.fail_after(TLS_HANDSHAKE_TIMEOUT if refusal is None else REFUSED_LINGER * 2):
                        tls, verdict = await self.tls.start(stream, server_side=True, direct=True)
                except (trio.TooSlowError, trio.BrokenResourceError, OSError) as exc:
                    log_event(events_log, logging.INFO, "s2s_direct_tls_failed", direction="in", peer=address,
                              reason=str(exc) or type(exc).__name__)
                    return
                stream, server_name = tls, tls.server_name
                self._count_tls("in", verdict, direct=True)
                log_event(events_log, logging.DEBUG, "s2s_direct_tls", direction="in", peer=address,
                          sni=server_name, alpn=tls.alpn, version=tls.version)
            machine = InboundStream(self.config, trio.current_time(), self.id_factory, tls=verdict,
                                    server_name=server_name)
            conn = _Conn(machine, stream)
            conn.gate_key = key
            if refusal is not None:
                await self._refuse(conn, refusal)
                return
            self.stats.inbound_connections += 1
            await self._loop(conn)
        finally:
            self.gate.release(key)
            if machine is not None and machine.stream_id:
                self._inbound.pop(machine.stream_id, None)
            await trio.aclose_forcefully(stream)

    async def _refuse(self, conn: _Conn, refusal: Refusal) -> None:
        """Over a cap: our header, the stream error, the close tag; then give the peer a moment
        to read them (reading and dropping what it sends, so closing does not reset them away)."""
        conn.machine.fail(refusal.condition, refusal.text)
        await self._flush(conn)
        stream = conn.stream
        with trio.move_on_after(REFUSED_LINGER):
            if isinstance(stream, trio.SocketStream):
                try:
                    await stream.send_eof()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    return
            drained = 0
            while drained < REFUSED_DRAIN:
                try:
                    data = await stream.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    return
                if not data:
                    return
                drained += len(data)

    def _outbound_conn(self, local: str, remote: str, authenticate: bool) -> _Conn:
        key = (local, remote, authenticate)
        conn = self._outbound.get(key)
        if conn is not None and not conn.machine.closed:
            return conn
        machine = OutboundStream(self.config, local, remote, trio.current_time(), authenticate=authenticate)
        conn = _Conn(machine, None)
        self._outbound[key] = conn
        assert self._nursery is not None, "S2SNode.run() is not running"
        self._nursery.start_soon(self._run_outbound, conn, key)
        return conn

    async def _run_outbound(self, conn: _Conn, key: tuple[str, str, bool]) -> None:
        machine = conn.machine
        assert isinstance(machine, OutboundStream)
        self.stats.outbound_connections += 1
        try:
            targets = self.resolver.static(machine.remote)
            if targets is None:
                targets = await trio.to_thread.run_sync(self.resolver.resolve_blocking, machine.remote)
            connected = await self._connect(machine.remote, targets)
            if connected is None:
                machine.receive_data(b"", trio.current_time())
                await self._handle_events(conn)
                return
            conn.stream, verdict = connected
            machine.start(trio.current_time(), tls=verdict)
            conn.connected.set()
            await self._loop(conn)
        finally:
            if self._outbound.get(key) is conn:
                del self._outbound[key]
            if conn.stream is not None:
                await trio.aclose_forcefully(conn.stream)

    async def _connect(self, remote: str, targets: list[Target]) -> tuple[trio.abc.Stream, PeerCertificate | None] | None:
        """The first target that connects, in order. A direct TLS target (XEP-0368) must also
        finish its handshake, else the next target (typically the STARTTLS one) is tried.
        Returns the stream and, for direct TLS, the verdict on the peer's certificate."""
        for target in targets:
            if target.direct_tls and self.tls is None:
                log.info("s2s: skipping direct TLS target %s:%s (no certificate)", target.host, target.port)
                continue
            stream: trio.abc.Stream | None = None
            with trio.move_on_after(CONNECT_TIMEOUT):
                try:
                    stream = await trio.open_tcp_stream(target.host, target.port)
                except OSError as exc:
                    log.info("s2s connect to %s:%s failed: %s", target.host, target.port, exc)
            if stream is None:
                continue
            if not target.direct_tls:
                return stream, None
            assert self.tls is not None
            try:
                with trio.fail_after(TLS_HANDSHAKE_TIMEOUT):
                    tls, verdict = await self.tls.start(stream, server_side=False, server_name=remote, direct=True)
            except (trio.TooSlowError, trio.BrokenResourceError, OSError) as exc:
                _bump(self.stats.direct_tls, "out/failed")
                log_event(events_log, logging.INFO, "s2s_direct_tls_failed", direction="out", remote=remote,
                          target=f"{target.host}:{target.port}", reason=str(exc) or type(exc).__name__)
                await trio.aclose_forcefully(stream)
                continue
            self._count_tls("out", verdict, direct=True)
            return tls, verdict
        return None

    def _count_tls(self, direction: str, verdict: PeerCertificate, *, direct: bool) -> None:
        self.stats.tls_sessions += 1
        _bump(self.stats.peer_certificates, f"{direction}/{'trusted' if verdict.trusted else 'untrusted'}")
        if direct:
            _bump(self.stats.direct_tls, direction)

    async def _loop(self, conn: _Conn) -> None:
        machine = conn.machine
        await self._pump(conn)
        while not machine.closed:
            if self.flow is not None:
                await self.flow()
            deadline = machine.get_timer()
            data: bytes | None = None
            with trio.move_on_at(deadline if deadline is not None else float("inf")) as scope:
                conn.scope = scope
                try:
                    resume = machine.read_resume_at()
                    if resume is not None:  # over its byte rate: stop reading, TCP pushes back
                        await trio.sleep_until(resume)
                    data = await conn.stream.receive_some(READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    data = b""
            if data is not None:  # fed outside the scope: a timer must never drop received bytes
                async with conn.lock:
                    machine.receive_data(data, trio.current_time())
            conn.scope = None
            if scope.cancelled_caught:
                async with conn.lock:
                    machine.handle_timer(trio.current_time())
            await self._pump(conn)
        await self._pump(conn)

    async def _pump(self, conn: _Conn) -> None:
        """Flush the machine's bytes and act on its events (serialised per connection)."""
        async with conn.lock:
            await self._flush(conn)
            await self._handle_events(conn)
            await self._flush(conn)
        if conn.scope is not None:
            if conn.machine.closed:
                conn.scope.cancel()  # wake the reader: the machine wants the transport closed
            else:
                deadline = conn.machine.get_timer()
                conn.scope.deadline = deadline if deadline is not None else float("inf")

    async def _flush(self, conn: _Conn) -> None:
        data = conn.machine.data_to_send()
        if data and conn.stream is not None:
            try:
                await conn.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                conn.machine.receive_data(b"", trio.current_time())

    async def _handle_events(self, conn: _Conn) -> None:
        machine = conn.machine
        if isinstance(machine, InboundStream) and machine.stream_id and machine.stream_id not in self._inbound:
            self._inbound[machine.stream_id] = conn
        on_stanza = self.on_stanza
        for event in machine.next_events():
            if type(event) is StanzaReceived:  # the common case, first and cheap
                self.stats.stanzas_in += 1
                on_stanza(event)
                continue
            match event:
                case StartTLS(server_side=server_side):
                    await self._flush(conn)
                    await self._start_tls(conn, server_side)
                case KeyToVerify():
                    self._inbound[event.stream_id] = conn
                    assert self._nursery is not None
                    self._nursery.start_soon(self._verify, event)
                case KeyVerified():
                    self._on_key_verified(event)
                case StanzaReceived() | StanzaRejected():
                    if isinstance(event, StanzaReceived):
                        self.stats.stanzas_in += 1
                    self.on_stanza(event)
                case StanzasUnsent():
                    self.on_unsent(event.elements, event.reason)
                case Authenticated(method=method):
                    direction = "in" if isinstance(machine, InboundStream) else "out"
                    key = f"{direction}/{method.value}"
                    self.stats.authenticated[key] = self.stats.authenticated.get(key, 0) + 1
                    if direction == "in":
                        self.stats.dialback_verified += 1
                        self.gate.authenticated(conn.gate_key)
                case SecureAuthRefused():
                    direction = "in" if event.inbound else "out"
                    _bump(self.stats.secure_auth_refused, direction)
                    log_event(events_log, logging.WARNING, "s2s_secure_auth_refused", direction=direction,
                              remote=event.remote, local=event.local, reason=event.reason)
                case AuthenticationFailed():
                    log_event(events_log, logging.INFO, "s2s_auth_failed", remote=event.remote, local=event.local,
                              reason=event.reason)
                case StreamClosed(error=error):
                    if error:
                        self.stats.stream_errors_sent += 1
                        self.stats.errors.append(error)
                case _:
                    pass
            if isinstance(machine, InboundStream) and machine.stream_id and machine.stream_id not in self._inbound:
                self._inbound[machine.stream_id] = conn

    async def _start_tls(self, conn: _Conn, server_side: bool) -> None:
        """Handshake with :class:`S2STLS`; its verdict on the peer's certificate decides SASL
        EXTERNAL, and an untrusted certificate only means dialback (see edge/s2s_tls.py)."""
        machine = conn.machine
        if self.tls is None:
            machine.fail(StreamCondition.INTERNAL_SERVER_ERROR, "no TLS context")
            return
        try:
            with trio.fail_after(TLS_HANDSHAKE_TIMEOUT):
                tls, peer = await self.tls.start(conn.stream, server_side=server_side,
                                                 server_name=None if server_side else getattr(machine, "remote", None))
        except (trio.TooSlowError, trio.BrokenResourceError, OSError) as exc:
            log.info("TLS handshake failed: %s", exc)
            machine.receive_data(b"", trio.current_time())
            return
        conn.stream = tls
        self._count_tls("in" if server_side else "out", peer, direct=False)
        log.info("TLS %s with %s: peer certificate %s", tls.version, getattr(machine, "remote", None) or "peer", peer)
        machine.tls_established(trio.current_time(), peer)

    async def _verify(self, event: KeyToVerify) -> None:
        ident = (event.originating, event.receiving, event.stream_id)
        self._waiting[ident] = event.stream_id
        conn = self._outbound_conn(event.receiving, event.originating, authenticate=False)
        try:
            async with conn.lock:
                conn.machine.verify_key(event.originating, event.receiving, event.stream_id, event.key,
                                        trio.current_time())
        except LocalProtocolError:
            self._on_key_verified(KeyVerified(*ident, False, "remote-connection-failed"))
            return
        await self._pump(conn)

    def _on_key_verified(self, event: KeyVerified) -> None:
        stream_id = self._waiting.pop((event.originating, event.receiving, event.stream_id), None)
        inbound = self._inbound.get(stream_id) if stream_id else None
        if inbound is None:
            return
        if not event.valid:
            self.stats.dialback_refused += 1
        machine = inbound.machine
        assert isinstance(machine, InboundStream)
        error = event.error if event.error and event.error != "invalid" else None
        machine.dialback_verified(event.originating, event.receiving, event.valid, trio.current_time(),
                                  error=error if not event.valid and error else None)
        assert self._nursery is not None
        self._nursery.start_soon(self._pump, inbound)


def _peer_address(stream: trio.abc.Stream) -> str:
    """The remote IP address of a socket stream ('unknown' for anything else)."""
    try:
        return str(stream.socket.getpeername()[0])  # type: ignore[attr-defined]
    except (AttributeError, OSError, IndexError):
        return "unknown"
