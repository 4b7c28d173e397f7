"""A throwaway X.509 certificate authority, for tests and the demo (IAM Roles Anywhere).

:class:`ThrowawayCA` plays a partner's private CA: a root (or, through :meth:`~ThrowawayCA.
intermediate`, a subordinate CA) that issues client certificates for IAM Roles Anywhere's
CreateSession (:mod:`localaws.roles_anywhere`). Keys live in memory only and are never written
anywhere by this module. It depends on ``cryptography`` alone (no moto), so a test or demo
process can import it without loading the emulator.

What it issues, as IAM Roles Anywhere expects of a CA and of an end-entity certificate:

- a CA: X.509 v3, ``basicConstraints`` critical ``CA:TRUE``, ``keyUsage`` critical
  ``keyCertSign`` + ``cRLSign``, subject key identifier; EC P-256 (default) or P-384, or RSA
  2048 (or larger); signed with SHA-256 (SHA-384 for a P-384 issuer key);
- an end-entity certificate: ``basicConstraints`` critical ``CA:FALSE``, ``keyUsage`` critical
  ``digitalSignature``, ``extendedKeyUsage`` ``clientAuth``, authority key identifier, a random
  positive 159-bit serial number, signed by the issuing CA with SHA-256.

``ThrowawayCA.create(...)`` and ``issue(...)`` accept ``not_before`` so that tests can make a
certificate that is expired or not yet valid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KeyType = Literal["ec", "rsa"]
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

# Subject attribute names accepted in a subject mapping, as in RFC 4514 and AWS's tag names
# (aws:PrincipalTag/x509Subject/<name>).
ATTRIBUTES: Mapping[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "C": NameOID.COUNTRY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "L": NameOID.LOCALITY_NAME,
    "DC": NameOID.DOMAIN_COMPONENT,
}
# Backdating absorbs clock skew between the issuer and the verifier.
_BACKDATE = timedelta(minutes=5)


def _new_key(key: KeyType, *, curve: ec.EllipticCurve | None = None,
             rsa_bits: int = 2048) -> PrivateKey:
    if key == "ec":
        return ec.generate_private_key(curve or ec.SECP256R1())
    if key == "rsa":
        if rsa_bits < 2048:
            raise ValueError("RSA keys must have at least 2048 bits")
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    raise ValueError(f"key must be 'ec' or 'rsa', not {key!r}")


def name(subject: Mapping[str, str | Sequence[str]]) -> x509.Name:
    """An X.509 name from ``{"CN": "hooli-transfer", "OU": "Lab Results"}`` (a sequence of
    values gives the attribute once per value, e.g. two OUs), in the mapping's order."""
    attributes = []
    for key, values in subject.items():
        oid = ATTRIBUTES.get(key.upper())
        if oid is None:
            raise ValueError(f"unknown subject attribute {key!r}; known: {', '.join(ATTRIBUTES)}")
        for value in [values] if isinstance(values, str) else list(values):
            attributes.append(x509.NameAttribute(oid, value))
    if not attributes:
        raise ValueError("a subject needs at least one attribute")
    return x509.Name(attributes)


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _signing_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384:
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size >= 384:
        return hashes.SHA384()
    return hashes.SHA256()


def _validity(not_before: datetime | None, valid_days: float) -> tuple[datetime, datetime]:
    start = not_before if not_before is not None else datetime.now(UTC) - _BACKDATE
    return start, start + timedelta(days=valid_days)


@dataclass(frozen=True)
class IssuedCertificate:
    """An end-entity certificate and its private key, PEM-encoded. ``chain_pem`` holds the
    intermediate CA certificates between it and the root, nearest first (empty when the root
    issued it): what a client sends along (``X-Amz-X509-Chain``)."""

    certificate: x509.Certificate
    private_key_pem: bytes = field(repr=False)
    chain_pem: bytes = b""

    @property
    def certificate_pem(self) -> bytes:
        return _pem(self.certificate)

    @property
    def serial_hex(self) -> str:
        """The serial number in lowercase hex: the role session name IAM Roles Anywhere gives
        the sessions of this certificate."""
        return f"{self.certificate.serial_number:x}"


@dataclass(frozen=True)
class ThrowawayCA:
    """A certificate authority whose key exists only in this object. Create one with
    :meth:`create`; :meth:`intermediate` makes a subordinate CA; :meth:`issue` makes client
    certificates."""

    certificate: x509.Certificate
    _key: PrivateKey = field(repr=False)
    # The CA certificates above this one up to (not including) the root, nearest first.
    _parents: tuple[x509.Certificate, ...] = ()

    @classmethod
    def create(cls, common_name: str, *, key: KeyType = "ec", valid_days: float = 30,
               not_before: datetime | None = None, curve: Literal["P-256", "P-384"] = "P-256",
               organization: str | None = None) -> ThrowawayCA:
        """A self-signed root CA named ``CN=<common_name>`` (and ``O=<organization>`` when
        given). ``key``: "ec" (default, ``curve`` P-256 by default) or "rsa" (2048 bits);
        ``valid_days`` (default 30) from ``not_before`` (default: five minutes ago)."""
        private = _new_key(key, curve=ec.SECP384R1() if curve == "P-384" else ec.SECP256R1())
        subject = name({"CN": common_name, **({"O": organization} if organization else {})})
        certificate = cls._ca_certificate(subject, private.public_key(), subject, private,
                                          not_before, valid_days, path_length=None)
        return cls(certificate, private)

    def intermediate(self, common_name: str, *, key: KeyType = "ec", valid_days: float = 30,
                     not_before: datetime | None = None) -> ThrowawayCA:
        """A subordinate CA named ``CN=<common_name>``, issued by this CA (path length 0: it
        issues end-entity certificates only)."""
        private = _new_key(key)
        certificate = self._ca_certificate(
            name({"CN": common_name}), private.public_key(), self.certificate.subject,
            self._key, not_before, valid_days, path_length=0,
            issuer_public_key=self.certificate.public_key())
        return ThrowawayCA(certificate, private, (self.certificate, *self._parents)
                           if not self.is_root else ())

    @property
    def is_root(self) -> bool:
        return self.certificate.issuer == self.certificate.subject

    @property
    def certificate_pem(self) -> bytes:
        """This CA's certificate, PEM: what a trust anchor's ``X509CertificateData`` holds
        (for an intermediate, the root's :attr:`certificate_pem` is the usual anchor)."""
        return _pem(self.certificate)

    @property
    def chain_pem(self) -> bytes:
        """The intermediates a certificate issued by this CA is sent with: this CA itself
        when it is an intermediate, and the intermediates above it; empty for a root."""
        if self.is_root:
            return b""
        return b"".join(_pem(c) for c in (self.certificate, *self._parents)
                        if c.issuer != c.subject)

    def issue(self, subject: Mapping[str, str | Sequence[str]], *, key: KeyType = "ec",
              valid_days: float = 7, not_before: datetime | None = None,
              dns_names: Sequence[str] = (), uris: Sequence[str] = (),
              signature_hash: Literal["sha256", "sha384"] = "sha256") -> IssuedCertificate:
        """An end-entity (client) certificate for ``subject`` (e.g. ``{"CN": "hooli-transfer",
        "OU": "Lab Results"}``), with a new ``key`` ("ec" P-256 by default, or "rsa" 2048),
        valid ``valid_days`` (default 7) from ``not_before`` (default: five minutes ago);
        optional subject alternative names (``dns_names``, ``uris``); signed by this CA with
        ``signature_hash`` (default SHA-256; SHA-384 is what P-384 CAs often use)."""
        private = _new_key(key)
        start, end = _validity(not_before, valid_days)
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(subject))
            .issuer_name(self.certificate.subject)
            .public_key(private.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.certificate.public_key()), critical=False)  # type: ignore[arg-type]
        )
        alternative: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
        alternative += [x509.UniformResourceIdentifier(u) for u in uris]
        if alternative:
            builder = builder.add_extension(x509.SubjectAlternativeName(alternative),
                                            critical=False)
        digest = hashes.SHA384() if signature_hash == "sha384" else hashes.SHA256()
        certificate = builder.sign(self._key, digest)
        return IssuedCertificate(certificate, _key_pem(private), self.chain_pem)

    def issue_ca_as_client(self, common_name: str) -> IssuedCertificate:
        """A CA certificate (``CA:TRUE``) issued by this CA, with its key, packaged as if it
        were a client certificate: what CreateSession must refuse as an end-entity."""
        private = _new_key("ec")
        certificate = self._ca_certificate(
            name({"CN": common_name}), private.public_key(), self.certificate.subject,
            self._key, None, 7, path_length=0, issuer_public_key=self.certificate.public_key())
        return IssuedCertificate(certificate, _key_pem(private), self.chain_pem)

    @staticmethod
    def _ca_certificate(subject: x509.Name, public_key: object, issuer: x509.Name,
                        issuer_key: PrivateKey, not_before: datetime | None, valid_days: float,
                        *, path_length: int | None,
                        issuer_public_key: object | None = None) -> x509.Certificate:
        start, end = _validity(not_before, valid_days)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=path_length),
                           critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(
                public_key), critical=False)  # type: ignore[arg-type]
        )
        if issuer_public_key is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    issuer_public_key), critical=False)  # type: ignore[arg-type]
        return builder.sign(issuer_key, _signing_hash(issuer_key))
