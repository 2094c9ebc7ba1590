"""Judging a peer's certificate after the TLS handshake: chain, validity, purpose, names.

Why after the handshake: OpenSSL checks the peer's *purpose* while verifying during the
handshake, and a server verifying a client certificate asks for the clientAuth extended key
usage. Most XMPP server certificates carry serverAuth only (public CAs no longer issue
clientAuth), and Python's ssl offers no way to relax that, so such peers could never use SASL
EXTERNAL. The edge therefore accepts whatever certificate the peer presents during the
handshake and decides here, once the handshake is done, with OpenSSL's own chain
verification (through pyOpenSSL) and no purpose set — the same choice Prosody makes
(LuaSec's ``lsec_ignore_purpose``). The purpose is then checked by hand, and leniently as
XEP-0178 wants: an extended key usage, if present, must allow serverAuth or clientAuth.

The verdict is a :class:`edge.cert_names.PeerCertificate`. An untrusted, expired or
misnamed certificate is not an error: the stream just does not offer SASL EXTERNAL.

Resource handling: trust roots are loaded once, when the verifier is made (files are read
then); :meth:`PeerCertificateVerifier.verify` does no I/O beyond OpenSSL's hashed-directory
lookups for a ``capath``. Each verification gets a fresh ``X509Store`` over the loaded roots,
because OpenSSL keeps the first verification time set on a store.
"""

from __future__ import annotations

import datetime as _dt
import logging
import ssl
import warnings
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import crypto

from .cert_names import CertificateNames, PeerCertificate

log = logging.getLogger(__name__)
MAX_CHAIN = 10  # certificates accepted from a peer (leaf included)
_TLS_USAGES = {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}

StrPath = str | PathLike[str]


class TrustError(ValueError):
    """Trust roots could not be loaded (a missing or unreadable CA file)."""


def load_pem_certificates(path: StrPath, *, skip_bad: bool = False) -> list[x509.Certificate]:
    """Every certificate of a PEM file. ``skip_bad`` (for the system bundle) drops the ones
    that do not parse instead of refusing the whole file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TrustError(f"cannot read CA certificates {path}: {exc}") from None
    if not skip_bad:
        try:
            return x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise TrustError(f"{path} holds no valid PEM certificate: {exc}") from None
    certs = []
    end = b"-----END CERTIFICATE-----"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # old roots with odd encodings still work in OpenSSL
        for block in data.split(end)[:-1]:
            try:
                certs.append(x509.load_pem_x509_certificate(block + end))
            except ValueError:
                continue
    return certs


class PeerCertificateVerifier:
    """Trust roots for peer certificates, and the post-handshake check against them.

    ``cafile``: PEM file(s) of CA certificates; ``capath``: an OpenSSL hashed directory;
    ``system_roots``: also trust the operating system's CAs (what public XMPP servers'
    certificates chain to). With no roots at all nothing is trusted and SASL EXTERNAL is
    never offered.
    """

    def __init__(self, *, cafile: StrPath | Sequence[StrPath] | None = None, capath: StrPath | None = None,
                 system_roots: bool = False) -> None:
        self._roots: list[crypto.X509] = []
        self._seen: set[bytes] = set()
        self._dirs: list[str] = []
        files = [] if cafile is None else [cafile] if isinstance(cafile, (str, PathLike)) else list(cafile)
        for path in files:
            for cert in load_pem_certificates(path):
                self._add(cert)
        if capath is not None:
            if not Path(capath).is_dir():
                raise TrustError(f"CA directory {capath} does not exist")
            self._dirs.append(str(capath))
        if system_roots:
            paths = ssl.get_default_verify_paths()
            for candidate in (paths.cafile, paths.openssl_cafile):
                if candidate and Path(candidate).is_file():
                    for cert in load_pem_certificates(candidate, skip_bad=True):
                        self._add(cert)
                    break
            for candidate in (paths.capath, paths.openssl_capath):
                if candidate and Path(candidate).is_dir():
                    self._dirs.append(candidate)
                    break

    @property
    def roots(self) -> int:
        """How many root certificates and CA directories peers' certificates may chain to."""
        return len(self._roots) + len(self._dirs)

    def _add(self, cert: x509.Certificate) -> None:
        fingerprint = cert.fingerprint(hashes.SHA256())
        if fingerprint not in self._seen:
            self._seen.add(fingerprint)
            self._roots.append(crypto.X509.from_cryptography(cert))

    def _store(self, at: _dt.datetime) -> crypto.X509Store:
        store = crypto.X509Store()
        for root in self._roots:
            store.add_cert(root)
        for directory in self._dirs:
            store.load_locations(None, directory)
        store.set_time(at.astimezone(_dt.timezone.utc).replace(tzinfo=None))
        return store

    def verify(self, leaf_der: bytes | None, chain_der: Sequence[bytes], at: _dt.datetime) -> PeerCertificate:
        """The verdict on a presented certificate (DER) with the peer's other certificates,
        at time ``at`` (timezone-aware). Never raises for anything the peer sent."""
        if not leaf_der:
            return PeerCertificate.none()
        try:
            leaf = x509.load_der_x509_certificate(leaf_der)
        except ValueError as exc:
            return PeerCertificate(True, False, CertificateNames(), f"unparsable certificate: {exc}")
        names = CertificateNames.of(leaf)
        if len(chain_der) >= MAX_CHAIN:
            return PeerCertificate(True, False, names, "certificate chain too long")
        try:
            extra = [crypto.X509.from_cryptography(x509.load_der_x509_certificate(d))
                     for d in chain_der if d != leaf_der]
        except ValueError as exc:
            return PeerCertificate(True, False, names, f"unparsable chain certificate: {exc}")
        if self.roots == 0:
            return PeerCertificate(True, False, names, "no trust roots configured")
        reason = self._usage_problem(leaf)
        if reason:
            return PeerCertificate(True, False, names, reason)
        try:
            crypto.X509StoreContext(self._store(at), crypto.X509.from_cryptography(leaf), extra).verify_certificate()
        except crypto.X509StoreContextError as exc:
            return PeerCertificate(True, False, names, str(exc))
        except crypto.Error as exc:  # anything else OpenSSL could not make sense of
            return PeerCertificate(True, False, names, f"verification failed: {exc}")
        return PeerCertificate(True, True, names)

    @staticmethod
    def _usage_problem(leaf: x509.Certificate) -> str:
        try:
            eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            return ""
        except ValueError as exc:
            return f"malformed extended key usage: {exc}"
        if not _TLS_USAGES & set(eku):
            return "extended key usage allows neither serverAuth nor clientAuth"
        return ""
