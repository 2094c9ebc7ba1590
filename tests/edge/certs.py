"""Certificates made to measure for the TLS and SASL EXTERNAL tests (cryptography, in memory)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge.cert_names import ID_ON_DNSSRV, ID_ON_XMPPADDR

USAGES = {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH,
          "email": ExtendedKeyUsageOID.EMAIL_PROTECTION, "any": ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}


@dataclass(frozen=True)
class Issued:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    def write(self, directory: Path, name: str) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
        cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
        return cert_path, key_path


def der_string(tag: int, text: str) -> bytes:
    raw = text.encode("utf-8")
    assert len(raw) < 128
    return bytes([tag, len(raw)]) + raw


def xmpp_addr(jid: str) -> x509.OtherName:
    return x509.OtherName(ID_ON_XMPPADDR, der_string(0x0C, jid))


def srv_id(name: str) -> x509.OtherName:
    return x509.OtherName(ID_ON_DNSSRV, der_string(0x16, name))


def issue(cn: str, *, dns: tuple[str, ...] = (), other: tuple[x509.OtherName, ...] = (),
          eku: tuple[str, ...] | None = ("server",), issuer: Issued | None = None, ca: bool = False,
          valid: tuple[dt.datetime, dt.datetime] | None = None) -> Issued:
    """A certificate for ``cn`` with the given SANs and extended key usages (None: no EKU
    extension), self-signed unless ``issuer`` is given; ``ca`` makes it a CA. Valid from a
    day ago for 30 days unless ``valid`` says otherwise (live handshakes judge at wall time)."""
    if valid is None:
        today = dt.datetime.now(dt.timezone.utc)
        valid = (today - dt.timedelta(days=1), today + dt.timedelta(days=30))
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    builder = (x509.CertificateBuilder().subject_name(name)
               .issuer_name(issuer.cert.subject if issuer else name).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(valid[0]).not_valid_after(valid[1])
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    sans = [x509.DNSName(d) for d in dns] + list(other)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([USAGES[u] for u in eku]), critical=False)
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False), critical=True)
    return Issued(builder.sign(issuer.key if issuer else key, hashes.SHA256()), key)


def make_ca(cn: str = "test root", valid: tuple[dt.datetime, dt.datetime] | None = None) -> Issued:
    return issue(cn, eku=None, ca=True, valid=valid)


def write_ca(ca: Issued, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "roots.pem"
    path.write_bytes(ca.cert.public_bytes(serialization.Encoding.PEM))
    return path
