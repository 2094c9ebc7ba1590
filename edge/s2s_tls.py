"""The edge's TLS for s2s streams: its certificate, its trust roots, and the handshake.

One object serves both roles of STARTTLS (and XEP-0368 direct TLS): as TLS server for
inbound streams and as TLS client for outbound ones, presenting the same certificate either
way (a peer authenticates our outbound streams with it through SASL EXTERNAL).

In both roles the peer's certificate is requested and *accepted* during the handshake, then
judged by :class:`edge.cert_trust.PeerCertificateVerifier` once the handshake is done. That
is what lets a peer whose certificate carries only the serverAuth purpose authenticate with
SASL EXTERNAL (XEP-0178), and what keeps a bad certificate from ever breaking a connection:
the stream merely falls back to dialback.

Direct TLS (XEP-0368) uses contexts of its own that negotiate ALPN ``xmpp-server``: the
client offers it, the server selects it, and refuses a client that offers other protocols
only (an HTTPS client sent to the wrong port, say) with a fatal alert; a client that offers
no ALPN at all is served, as many servers' outbound code does not offer it. STARTTLS streams
are already XMPP by then and negotiate no ALPN.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import logging
from collections.abc import Iterable, Sequence

import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL, crypto

from .cert_names import PeerCertificate, to_ascii
from .cert_trust import PeerCertificateVerifier, StrPath, TrustError, load_pem_certificates
from .tls_stream import OpenSSLStream

log = logging.getLogger(__name__)
SELF_SIGNED_DAYS = 365
ALPN_XMPP_SERVER = b"xmpp-server"
_OPTIONS = (SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_IGNORE_UNEXPECTED_EOF
            | SSL.OP_CIPHER_SERVER_PREFERENCE)


class TLSConfigError(ValueError):
    """The edge's own certificate or key cannot be used (missing, unreadable, mismatched)."""


def _accept_any(connection: SSL.Connection, cert: crypto.X509, errnum: int, depth: int, ok: int) -> bool:
    """Handshake-time verification: accept, the verdict comes after (see module docstring)."""
    return True


class ALPNMismatch(SSL.Error):
    """The client offered ALPN protocols, none of them ``xmpp-server``."""


def _select_xmpp_server(connection: SSL.Connection, offered: list[bytes]) -> bytes:
    if ALPN_XMPP_SERVER in offered:
        return ALPN_XMPP_SERVER
    # Raising makes OpenSSL send a fatal alert; pyOpenSSL re-raises it from the handshake.
    raise ALPNMismatch(f"client offered ALPN {[p.decode('ascii', 'replace') for p in offered[:8]]}, "
                       f"not xmpp-server")


class S2STLS:
    """TLS contexts for the s2s shell and the post-handshake certificate verdict.

    ``chain``: the edge's certificate first, then any intermediates; ``key`` its private key.
    ``verifier`` judges peers' certificates (default: trusts nothing, so SASL EXTERNAL is
    never offered to peers, though the edge still uses it towards peers that trust *it*).
    """

    def __init__(self, chain: Sequence[x509.Certificate], key: CertificateIssuerPrivateKeyTypes, *,
                 verifier: PeerCertificateVerifier | None = None) -> None:
        if not chain:
            raise TLSConfigError("no certificate given")
        self.chain = list(chain)
        self.verifier = verifier or PeerCertificateVerifier()
        self._server = self._context(SSL.TLS_SERVER_METHOD, key)
        self._client = self._context(SSL.TLS_CLIENT_METHOD, key)
        self._direct_server = self._context(SSL.TLS_SERVER_METHOD, key)
        self._direct_server.set_alpn_select_callback(_select_xmpp_server)
        self._direct_client = self._context(SSL.TLS_CLIENT_METHOD, key)
        self._direct_client.set_alpn_protos([ALPN_XMPP_SERVER])

    @classmethod
    def from_files(cls, certificate: StrPath, private_key: StrPath, *, cafile: StrPath | Sequence[StrPath] | None = None,
                   capath: StrPath | None = None, system_roots: bool = False) -> S2STLS:
        """The edge certificate (PEM, with intermediates) and key from files; peers'
        certificates are trusted when they chain to ``cafile``/``capath``/system roots."""
        try:
            chain = load_pem_certificates(certificate)
        except TrustError as exc:
            raise TLSConfigError(str(exc)) from None
        try:
            with open(private_key, "rb") as fh:
                key = serialization.load_pem_private_key(fh.read(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise TLSConfigError(f"cannot load private key {private_key}: {exc}") from None
        if not isinstance(key, CertificateIssuerPrivateKeyTypes):
            raise TLSConfigError(f"{private_key} holds a key that cannot serve TLS")
        verifier = PeerCertificateVerifier(cafile=cafile, capath=capath, system_roots=system_roots)
        return cls(chain, key, verifier=verifier)

    @classmethod
    def self_signed(cls, domains: Iterable[str], *, subdomains: bool = True,
                    verifier: PeerCertificateVerifier | None = None, now: _dt.datetime | None = None) -> S2STLS:
        """A fresh self-signed certificate for ``domains`` (and ``*.domain`` with
        ``subdomains``): what an edge uses when the operator gave none. Peers that do not
        trust it still encrypt and authenticate us with dialback."""
        names = sorted({d.lower() for d in domains})
        if not names:
            raise TLSConfigError("a certificate needs at least one domain")
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, to_ascii(names[0]) or names[0])])
        sans: list[x509.GeneralName] = []
        for name in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(name)))
                continue
            except ValueError:
                pass
            ascii_name = to_ascii(name)
            if ascii_name is None:
                raise TLSConfigError(f"{name!r} cannot be written in a certificate")
            sans.append(x509.DNSName(ascii_name))
            if subdomains:
                sans.append(x509.DNSName("*." + ascii_name))
        start = now or _dt.datetime.now(_dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(start - _dt.timedelta(hours=1))
                .not_valid_after(start + _dt.timedelta(days=SELF_SIGNED_DAYS))
                .add_extension(x509.SubjectAlternativeName(sans), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(key, hashes.SHA256()))
        return cls([cert], key, verifier=verifier)

    def _context(self, method: int, key: CertificateIssuerPrivateKeyTypes) -> SSL.Context:
        ctx = SSL.Context(method)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        ctx.set_options(_OPTIONS)
        try:
            ctx.use_certificate(self.chain[0])
            for extra in self.chain[1:]:
                ctx.add_extra_chain_cert(crypto.X509.from_cryptography(extra))
            ctx.use_privatekey(key)
            ctx.check_privatekey()
        except (SSL.Error, TypeError, ValueError) as exc:
            raise TLSConfigError(f"the private key does not fit the certificate or is unusable: {exc}") from None
        # Ask for the peer's certificate in both roles, accept it, judge it after the handshake.
        ctx.set_verify(SSL.VERIFY_PEER, _accept_any)
        ctx.set_session_id(b"ringmesh-s2s")  # needed by servers that request certificates
        return ctx

    async def start(self, transport: trio.abc.Stream, *, server_side: bool, server_name: str | None = None,
                    at: _dt.datetime | None = None, direct: bool = False) -> tuple[OpenSSLStream, PeerCertificate]:
        """Run the TLS handshake over ``transport`` and judge the peer's certificate.

        ``direct``: XEP-0368 direct TLS, with ALPN ``xmpp-server`` (see the module docstring);
        the SNI name a client asked for is then the stream's ``server_name``.

        Raises ``trio.BrokenResourceError`` if the handshake fails (an ALPN mismatch
        included); a certificate we do not trust is *not* a failure (see the returned verdict).
        """
        if direct:
            context = self._direct_server if server_side else self._direct_client
        else:
            context = self._server if server_side else self._client
        conn = SSL.Connection(context, None)
        if server_side:
            conn.set_accept_state()
        else:
            conn.set_connect_state()
            sni = to_ascii(server_name) if server_name else None
            if sni and not _is_ip(sni):
                conn.set_tlsext_host_name(sni.encode("ascii"))
        stream = OpenSSLStream(transport, conn)
        await stream.do_handshake()
        if direct and not server_side and stream.alpn not in (None, ALPN_XMPP_SERVER.decode()):
            await trio.aclose_forcefully(stream)
            raise trio.BrokenResourceError(f"the server chose ALPN {stream.alpn!r}, not xmpp-server")
        return stream, self.judge(stream, at)

    def judge(self, stream: OpenSSLStream, at: _dt.datetime | None = None) -> PeerCertificate:
        """The verdict on the peer's certificate. Whatever the peer sent, this never raises:
        a certificate that cannot be judged is an untrusted one (dialback still works)."""
        leaf, chain = stream.peer_certificates()
        try:
            return self.verifier.verify(leaf, chain, at or _dt.datetime.now(_dt.timezone.utc))
        except Exception as exc:  # a certificate no check foresaw must not take the node down
            log.exception("could not judge a peer certificate")
            return PeerCertificate(True, False, reason=f"could not be judged: {type(exc).__name__}")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
