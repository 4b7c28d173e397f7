"""What IAM Roles Anywhere accepts from a partner's certificate authority, written once.

The registry refuses a CA bundle AWS would refuse, or that would hand out credentials nobody
intended (a private key pasted in, an expired CA); the operator CLI shows the CA's expiry from
the same reading. AWS's requirements (https://docs.aws.amazon.com/rolesanywhere/latest/
userguide/trust-model.html, "Signature verification"): X.509 v3; a CA certificate has basic
constraints ``CA:TRUE`` and key usage *Certificate Sign*; signatures SHA-256 or stronger (MD5
and SHA-1 are rejected); RSA or EC keys. The CloudFormation resource takes at most 8,000
characters of PEM (``AWS::RolesAnywhere::TrustAnchor`` SourceData.X509CertificateData).

The key sizes are our floor, stricter than AWS's: RSA of at least 2,048 bits, EC on P-256 or
P-384 (what NIST SP 800-57 accepts beyond 2030 for RSA is 3,072; 2,048 is what partners'
CAs have, and what AWS Private CA issues by default).

It lives beside the registry (``stacks/config.py``), not in the dependency-free core
(``phi_core``, also the rotation Lambda's layer), because it needs ``cryptography``; the
registry, the operator CLI and the tests import it from here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID, NameOID

MAX_BUNDLE_CHARACTERS = 8000
MIN_RSA_BITS = 2048
EC_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}
STRONG_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512)
# The subject attributes IAM Roles Anywhere maps to principal tags aws:PrincipalTag/
# x509Subject/<name>, which a role's trust policy can require.
SUBJECT_ATTRIBUTES = {"CN": NameOID.COMMON_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
                      "O": NameOID.ORGANIZATION_NAME, "C": NameOID.COUNTRY_NAME,
                      "ST": NameOID.STATE_OR_PROVINCE_NAME, "L": NameOID.LOCALITY_NAME}
# Principal tag values: at most 256 characters of what session tags allow (letters, digits,
# spaces and _.:/=+-@). No wildcards: the trust policy compares with StringEquals, where * would
# be a literal star. No comma either: a repeated attribute (OU=A, OU=B) reaches the trust
# policy joined by commas, so "A,B" could match a certificate that has neither alone.
MAX_ATTRIBUTE_LENGTH = 256
_ATTRIBUTE_VALUE = re.compile(r"[A-Za-z0-9 _.:/=+\-@]+")
_COUNTRY = re.compile(r"[A-Z]{2}")
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")


@dataclass(frozen=True)
class CaCertificate:
    """One CA certificate of a bundle, as the operator sees it."""

    subject: str  # RFC 4514, e.g. "CN=Hooli Labs Issuing CA,O=Hooli Labs"
    not_before: datetime
    not_after: datetime
    sha256_fingerprint: str  # hex, colon-separated: what a partner reads out on the phone
    key: str  # e.g. "EC P-256", "RSA 3072"

    def days_left(self, now: datetime) -> int:
        return (self.not_after - now).days


def read_ca_bundle(pem: str, *, now: datetime | None = None, check_time: bool = True
                   ) -> tuple[list[CaCertificate], list[str]]:
    """The CA certificates of ``pem`` and every problem with it, one rule per line (empty:
    IAM Roles Anywhere would accept the bundle as a trust anchor, and it is usable now).

    Validity in time is a problem only when no certificate of the bundle is valid ``now``: a
    bundle in the middle of a rollover holds the old CA (perhaps just expired) beside its
    successor, and a registry entry must not turn every synth red the day a CA it no longer
    needs expires. ``check_time`` False (an offboarded customer) skips it altogether."""
    now = now or datetime.now(UTC)
    problems: list[str] = []
    kinds = _PEM_BLOCK.findall(pem)
    if any("PRIVATE KEY" in kind for kind in kinds):
        return [], ["contains a private key: only the CA's certificate belongs here (keep the "
                    "key with the CA, and consider it exposed if it was ever committed)"]
    if not kinds:
        return [], ["is not PEM: expected one or more -----BEGIN CERTIFICATE----- blocks"]
    if any(kind != "CERTIFICATE" for kind in kinds):
        problems.append("holds PEM blocks other than certificates: "
                        + ", ".join(sorted({k for k in kinds if k != "CERTIFICATE"})))
    if len(pem) > MAX_BUNDLE_CHARACTERS:
        problems.append(f"is {len(pem)} characters; a trust anchor takes at most "
                        f"{MAX_BUNDLE_CHARACTERS} (register fewer CA certificates)")
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as error:
        return [], [*problems, f"is not a readable PEM certificate bundle ({error})"]
    found: list[CaCertificate] = []
    untimely: list[str] = []
    for index, certificate in enumerate(certificates):
        where = f"certificate {index + 1} ({_subject(certificate)})"
        untimely.extend(f"{where}: {problem}" for problem in _time_problems(certificate, now))
        try:  # an algorithm or extension cryptography cannot read is the partner's input
            problems.extend(f"{where}: {problem}" for problem in _ca_problems(certificate))
            found.append(_describe(certificate))
        except (UnsupportedAlgorithm, ValueError) as error:
            problems.append(f"{where}: cannot be read as a CA certificate IAM Roles Anywhere "
                            f"accepts ({' '.join(str(error).split())})")
    if check_time and len(untimely) == len(certificates):
        problems.extend(untimely)
    return found, problems


def _time_problems(certificate: x509.Certificate, now: datetime) -> list[str]:
    if certificate.not_valid_after_utc <= now:
        return [f"expired on {certificate.not_valid_after_utc:%Y-%m-%d}"]
    if certificate.not_valid_before_utc > now:
        return [f"is not valid before {certificate.not_valid_before_utc:%Y-%m-%d}"]
    return []


def _ca_problems(certificate: x509.Certificate) -> list[str]:
    problems = []
    if certificate.version is not x509.Version.v3:
        problems.append("must be X.509 version 3")
    constraints = _extension(certificate, ExtensionOID.BASIC_CONSTRAINTS)
    if not (isinstance(constraints, x509.BasicConstraints) and constraints.ca):
        problems.append("is not a CA certificate (basic constraints CA:TRUE); register the "
                        "CA that issues the partner's certificates, not a certificate it issued")
    usage = _extension(certificate, ExtensionOID.KEY_USAGE)
    if isinstance(usage, x509.KeyUsage) and not usage.key_cert_sign:
        problems.append("key usage must include Certificate Sign (keyCertSign)")
    algorithm = certificate.signature_hash_algorithm
    if not isinstance(algorithm, STRONG_HASHES):
        name = algorithm.name.upper() if algorithm else "no hash"
        problems.append(f"is signed with {name}; IAM Roles Anywhere accepts SHA-256 or stronger")
    problems.extend(_key_problems(certificate))
    return problems


def _key_problems(certificate: x509.Certificate) -> list[str]:
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            return [f"has an RSA key of {key.key_size} bits; at least {MIN_RSA_BITS}"]
        return []
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in EC_CURVES:
            return [f"has an EC key on {key.curve.name}; use P-256 or P-384"]
        return []
    kind = type(key).__name__.removesuffix("PublicKey").lstrip("_") or "unknown"
    return [f"has a key of type {kind}; IAM Roles Anywhere takes RSA or EC keys"]


def _extension(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> object | None:
    try:
        return certificate.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def _subject(certificate: x509.Certificate) -> str:
    return certificate.subject.rfc4514_string() or "(empty subject)"


def _describe(certificate: x509.Certificate) -> CaCertificate:
    key = certificate.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        shown = f"RSA {key.key_size}"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        shown = f"EC {EC_CURVES.get(key.curve.name, key.curve.name)}"
    else:
        shown = type(key).__name__
    digest = certificate.fingerprint(hashes.SHA256()).hex().upper()
    return CaCertificate(
        subject=_subject(certificate), not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        sha256_fingerprint=":".join(digest[i:i + 2] for i in range(0, len(digest), 2)),
        key=shown)


def subject_problems(subject: Mapping[str, object]) -> list[tuple[str, str]]:
    """Problems of the certificate attributes a registry requires, as ``(attribute, rule)``
    pairs (empty: usable as trust-policy conditions)."""
    problems = []
    if "CN" not in subject:
        problems.append(("CN", "required (the common name of the partner's workload "
                               "certificate; AWS records it as the session's source identity)"))
    for name, value in subject.items():
        if name not in SUBJECT_ATTRIBUTES:
            rule = ("not a subject attribute IAM Roles Anywhere maps; one of "
                    + ", ".join(SUBJECT_ATTRIBUTES))
        elif not isinstance(value, str) or not value.strip():
            rule = "must be a non-empty string"
        elif value != value.strip():
            rule = "no leading or trailing spaces (the value is compared exactly)"
        elif len(value) > MAX_ATTRIBUTE_LENGTH or not _ATTRIBUTE_VALUE.fullmatch(value):
            rule = (f"must be at most {MAX_ATTRIBUTE_LENGTH} letters, digits, spaces and "
                    "_.:/=+-@ (no wildcards or commas: the value is compared exactly)")
        elif name == "C" and not _COUNTRY.fullmatch(value):
            rule = "must be a country code of two capital letters (ISO 3166)"
        else:
            continue
        problems.append((name, rule))
    return problems
