"""IAM Roles Anywhere: trust anchors, profiles and CreateSession, which moto 5.2.5 lacks.

moto has no ``rolesanywhere`` backend at all: a template's ``AWS::RolesAnywhere::TrustAnchor``
and ``Profile`` were skipped (a ``Ref`` to them resolved to nothing), and nothing answered
``POST /sessions``. This module keeps trust anchors and profiles (created through
CloudFormation, :mod:`localaws.cfn_models`) and serves CreateSession
(:func:`create_session_endpoint`, routed by :mod:`localaws.server` for ``POST /sessions``
carrying ``X-Amz-X509``), checking what AWS documents it checks:

1. the signature (https://docs.aws.amazon.com/rolesanywhere/latest/userguide/
   authentication-sign-process.html): SigV4's canonical request and string to sign, recomputed
   from the request as received (method, path, query, the ``SignedHeaders``, SHA-256 of the
   body), verified with the public key of the certificate in ``X-Amz-X509``
   (``AWS4-X509-RSA-SHA256``: PKCS#1 v1.5; ``AWS4-X509-ECDSA-SHA256``: DER-encoded ECDSA); the
   ``Credential`` names the certificate's serial number (decimal), the scope's service is
   ``rolesanywhere`` and its region the trust anchor's; ``X-Amz-Date`` within 5 minutes;
   ``host``, ``x-amz-date``, ``x-amz-x509`` (and ``x-amz-x509-chain`` when sent) must be signed;
2. the certificate: valid now, an end-entity certificate (not ``CA:TRUE``; ``keyUsage``, when
   present, with ``digitalSignature``), signed with SHA-256 or stronger; it must chain, through
   the intermediates of ``X-Amz-X509-Chain``, to a CA certificate of the trust anchor's bundle
   (https://docs.aws.amazon.com/rolesanywhere/latest/userguide/authentication.html: "a valid
   trust chain to a Certificate Authority (CA) certificate configured in the customer
   account"), each link's signature, validity and ``CA:TRUE`` checked;
3. the trust anchor exists and is enabled; the profile exists, is enabled and lists the role;
   ``durationSeconds`` (default 3600) is 900 or more and at most the profile's
   DurationSeconds and the role's MaxSessionDuration; ``roleSessionName`` only when the
   profile accepts it; ``instanceProperties`` when the profile requires them;
4. the role's trust policy, for the service principal ``rolesanywhere.amazonaws.com``, allows
   each of ``sts:AssumeRole``, ``sts:TagSession`` and ``sts:SetSourceIdentity``
   (https://docs.aws.amazon.com/rolesanywhere/latest/userguide/trust-model.html), with
   ``aws:SourceArn`` (the trust anchor), ``aws:SourceAccount``, ``aws:SecureTransport``,
   ``sts:SourceIdentity`` (the subject's CN) and the certificate's attributes as principal
   tags (:func:`principal_tags`, AWS's default attribute mapping,
   https://docs.aws.amazon.com/rolesanywhere/latest/userguide/attribute-mapping.html);
5. then a session of the role is issued through moto's STS, named after the certificate's
   serial number in hex, as AWS names it (trust-model page), lasting ``durationSeconds``, and
   carrying the principal tags as session tags (``permissions.SESSION_TAGS_ATTRIBUTE``), so
   the session's own requests see ``aws:PrincipalTag/x509Subject/CN`` and the rest.

Answers: HTTP 201 with ``credentialSet`` and ``subjectArn`` as documented
(https://docs.aws.amazon.com/rolesanywhere/latest/userguide/authentication-create-session.html);
a refusal is ``{"message": ...}`` with ``x-amzn-ErrorType``: 403 ``AccessDeniedException``
(signature, certificate, chain, trust anchor, profile, role, trust policy) or 400
``ValidationException`` (body, duration). Every decision is recorded with
:func:`localaws.permissions.record` (``GET /localaws/authorizations``), a refusal with the
precise reason.

The chain is walked here with ``Certificate.verify_directly_issued_by`` (name match and
signature) plus explicit validity, ``CA:TRUE`` and hash checks, not with
``cryptography.x509.verification.PolicyBuilder``: that verifier applies the web PKI profile
(RFC 5280 plus CA/B Forum rules: SAN required on the leaf, AKI/SKI, key usage combinations)
that AWS does not demand of a private CA, and it reports one generic error where the emulator
must say which link failed.

Not emulated: attribute-mapping customisation (the default mapping only), CRLs, trust anchors
of type ``AWS_ACM_PCA`` or ``SELF_SIGNED_REPOSITORY`` (refused at creation), the profile's
ManagedPolicyArns and SessionPolicy (stored; the session gets the role's full permissions,
as permissions.py does not enforce session policies), notification settings (stored; nothing
is sent), trusted identity propagation, ``pathLenConstraint``, the rolesanywhere control-plane
API (no GetTrustAnchor, ListProfiles...), and the session's source identity beyond
``sourceIdentity`` in the answer (moto's STS has no place for it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtensionOID, NameOID
from moto.sts.models import sts_backends
from moto.utilities.utils import get_partition

from localaws import permissions
from localaws.policy import Decision, Request, applying, evaluate, names_request, unmet_conditions

SERVICE = "rolesanywhere"
SERVICE_PRINCIPAL = "rolesanywhere.amazonaws.com"
SESSIONS_PATH = "/sessions"
# What the trust policy must allow the service principal (trust-model page).
TRUST_ACTIONS = ("sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity")
MIN_DURATION, MAX_DURATION, DEFAULT_DURATION = 900, 43200, 3600
CLOCK_SKEW = timedelta(minutes=5)
ALGORITHMS = {"AWS4-X509-RSA-SHA256": rsa.RSAPublicKey,
              "AWS4-X509-ECDSA-SHA256": ec.EllipticCurvePublicKey}
_STRONG_HASHES = frozenset({"sha256", "sha384", "sha512"})
_AUTHORIZATION = re.compile(
    r"^(?P<algorithm>\S+)\s+Credential=(?P<credential>[^,\s]+),\s*"
    r"SignedHeaders=(?P<signed>[^,\s]+),\s*Signature=(?P<signature>[0-9a-fA-F]+)$")
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
# Relative distinguished names mapped to principal tags, by AWS's short names.
_RDN_NAMES: Mapping[x509.ObjectIdentifier, str] = {
    NameOID.COMMON_NAME: "CN", NameOID.ORGANIZATIONAL_UNIT_NAME: "OU",
    NameOID.ORGANIZATION_NAME: "O", NameOID.COUNTRY_NAME: "C",
    NameOID.STATE_OR_PROVINCE_NAME: "ST", NameOID.LOCALITY_NAME: "L",
    NameOID.DOMAIN_COMPONENT: "DC",
}


class ValidationException(Exception):
    """What the Roles Anywhere API answers for a resource or request it refuses as invalid."""


# --- trust anchors and profiles -----------------------------------------------------------


@dataclass(frozen=True)
class TrustAnchor:
    """A trust anchor of type ``CERTIFICATE_BUNDLE``: the CA certificates it trusts."""

    trust_anchor_id: str
    arn: str
    account: str
    region: str
    name: str
    enabled: bool
    certificates: tuple[x509.Certificate, ...]
    notification_settings: tuple[Mapping[str, Any], ...] = ()
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Profile:
    """A profile: the roles it hands out and the session settings (module docstring for what
    is enforced)."""

    profile_id: str
    arn: str
    account: str
    region: str
    name: str
    enabled: bool
    role_arns: tuple[str, ...]
    duration_seconds: int = DEFAULT_DURATION
    managed_policy_arns: tuple[str, ...] = ()
    session_policy: str | None = None
    require_instance_properties: bool = False
    accept_role_session_name: bool = False
    tags: tuple[tuple[str, str], ...] = ()


_trust_anchors: dict[str, TrustAnchor] = {}
_profiles: dict[str, Profile] = {}
_lock = threading.Lock()


def _arn(account: str, region: str, kind: str, resource_id: str) -> str:
    return f"arn:{get_partition(region)}:{SERVICE}:{region}:{account}:{kind}/{resource_id}"


def ca_certificates(pem: str | bytes) -> tuple[x509.Certificate, ...]:
    """The CA certificates of a PEM bundle; :class:`ValidationException` for anything that is
    not PEM certificates, or a certificate that is not a CA (``basicConstraints`` CA:TRUE)."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        certificates = tuple(x509.load_pem_x509_certificates(data))
    except ValueError as error:
        raise ValidationException(
            f"X509CertificateData is not a bundle of PEM certificates ({error})") from None
    for certificate in certificates:
        if not _is_ca(certificate):
            raise ValidationException(
                f"X509CertificateData: {_describe(certificate)} is not a CA certificate "
                "(basicConstraints CA:TRUE); a trust anchor holds CA certificates only")
    return certificates


def create_trust_anchor(*, account: str, region: str, name: str, source: Mapping[str, Any],
                        enabled: bool = True,
                        notification_settings: Iterable[Mapping[str, Any]] = (),
                        tags: Iterable[tuple[str, str]] = ()) -> TrustAnchor:
    """Record a trust anchor after CreateTrustAnchor's checks (:func:`ca_certificates`); only
    ``SourceType`` ``CERTIFICATE_BUNDLE`` is emulated."""
    source_type = str(source.get("SourceType") or "")
    if source_type != "CERTIFICATE_BUNDLE":
        raise ValidationException(
            f"Source.SourceType {source_type or '(none)'} is not emulated: localaws supports "
            "CERTIFICATE_BUNDLE trust anchors only (no AWS Private CA here)")
    data = (source.get("SourceData") or {}).get("X509CertificateData")
    if not data:
        raise ValidationException("Source.SourceData.X509CertificateData is required for a "
                                  "CERTIFICATE_BUNDLE trust anchor")
    certificates = ca_certificates(data)
    anchor_id = str(uuid.uuid4())
    anchor = TrustAnchor(
        trust_anchor_id=anchor_id, arn=_arn(account, region, "trust-anchor", anchor_id),
        account=account, region=region, name=name, enabled=enabled,
        certificates=certificates, notification_settings=tuple(notification_settings),
        tags=tuple(tags))
    with _lock:
        _trust_anchors[anchor.arn] = anchor
    return anchor


def create_profile(*, account: str, region: str, name: str, role_arns: Sequence[str],
                   enabled: bool = True, duration_seconds: int = DEFAULT_DURATION,
                   managed_policy_arns: Sequence[str] = (), session_policy: str | None = None,
                   require_instance_properties: bool = False,
                   accept_role_session_name: bool = False,
                   tags: Iterable[tuple[str, str]] = ()) -> Profile:
    """Record a profile after CreateProfile's checks (DurationSeconds 900..43200, at least one
    role ARN)."""
    if not MIN_DURATION <= duration_seconds <= MAX_DURATION:
        raise ValidationException(f"DurationSeconds must be between {MIN_DURATION} and "
                                  f"{MAX_DURATION}, not {duration_seconds}")
    if not role_arns:
        raise ValidationException("RoleArns must list at least one role")
    profile_id = str(uuid.uuid4())
    profile = Profile(
        profile_id=profile_id, arn=_arn(account, region, "profile", profile_id),
        account=account, region=region, name=name, enabled=enabled,
        role_arns=tuple(role_arns), duration_seconds=duration_seconds,
        managed_policy_arns=tuple(managed_policy_arns), session_policy=session_policy,
        require_instance_properties=require_instance_properties,
        accept_role_session_name=accept_role_session_name, tags=tuple(tags))
    with _lock:
        _profiles[profile.arn] = profile
    return profile


def delete_trust_anchor(arn: str) -> None:
    with _lock:
        _trust_anchors.pop(arn, None)


def delete_profile(arn: str) -> None:
    with _lock:
        _profiles.pop(arn, None)


def find_trust_anchor(arn: str) -> TrustAnchor | None:
    """The trust anchor with this ARN, or None."""
    with _lock:
        return _trust_anchors.get(arn)


def find_profile(arn: str) -> Profile | None:
    """The profile with this ARN, or None."""
    with _lock:
        return _profiles.get(arn)


# --- certificates -------------------------------------------------------------------------


def _describe(certificate: x509.Certificate) -> str:
    return (f"{certificate.subject.rfc4514_string() or '(empty subject)'} "
            f"(serial {certificate.serial_number:x})")


def _extension(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> Any:
    try:
        return certificate.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None


def _is_ca(certificate: x509.Certificate) -> bool:
    constraints = _extension(certificate, ExtensionOID.BASIC_CONSTRAINTS)
    return bool(constraints is not None and constraints.ca)


def _check_valid_now(certificate: x509.Certificate, now: datetime, role: str) -> None:
    if now < certificate.not_valid_before_utc:
        raise Refused(403, f"the {role} {_describe(certificate)} is not valid yet (not before "
                      f"{certificate.not_valid_before_utc.isoformat()})")
    if now > certificate.not_valid_after_utc:
        raise Refused(403, f"the {role} {_describe(certificate)} has expired (not after "
                      f"{certificate.not_valid_after_utc.isoformat()})")


def _check_hash(certificate: x509.Certificate, role: str) -> None:
    try:
        algorithm = certificate.signature_hash_algorithm
    except UnsupportedAlgorithm:
        raise Refused(403, f"the {role} {_describe(certificate)} is signed with an algorithm "
                      "IAM Roles Anywhere does not accept") from None
    if algorithm is None or algorithm.name not in _STRONG_HASHES:
        raise Refused(403, f"the {role} {_describe(certificate)} is signed with "
                      f"{algorithm.name if algorithm else 'no hash'}; SHA-256 or stronger is "
                      "required")


def _issued_by(certificate: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        certificate.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def verify_chain(leaf: x509.Certificate, intermediates: Sequence[x509.Certificate],
                 anchor: TrustAnchor, now: datetime) -> list[x509.Certificate]:
    """The path from ``leaf`` through ``intermediates`` to a CA certificate of ``anchor``
    (leaf first, anchor CA last); :class:`Refused` naming the link that fails."""
    path = [leaf]
    current = leaf
    pool = list(intermediates)
    for _ in range(len(pool) + 1):
        for ca in anchor.certificates:
            if _issued_by(current, ca):
                _check_valid_now(ca, now, f"CA of trust anchor {anchor.arn},")
                return [*path, ca]
        named = [ca for ca in anchor.certificates if ca.subject == current.issuer]
        if named:
            raise Refused(403, f"{_describe(current)} names {current.issuer.rfc4514_string()} "
                          f"as its issuer, but its signature does not verify with that CA of "
                          f"trust anchor {anchor.arn}")
        parent = next((c for c in pool if _issued_by(current, c)), None)
        if parent is None:
            what = "certificate" if current is leaf else "intermediate"
            raise Refused(403, f"the {what} {_describe(current)} is not issued by a CA of trust "
                          f"anchor {anchor.arn}" + ("" if intermediates or current is not leaf
                                                    else " (and no X-Amz-X509-Chain was sent)"))
        if not _is_ca(parent):
            raise Refused(403, f"the chain certificate {_describe(parent)} is not a CA "
                          "(basicConstraints CA:TRUE)")
        _check_valid_now(parent, now, "intermediate")
        _check_hash(parent, "intermediate")
        pool.remove(parent)
        path.append(parent)
        current = parent
    raise Refused(403, f"no chain from {_describe(leaf)} to a CA of trust anchor {anchor.arn}")


def _rdn_tags(prefix: str, name: x509.Name) -> list[tuple[str, str]]:
    values: dict[str, list[str]] = {}
    for attribute in name:
        short = _RDN_NAMES.get(attribute.oid)
        if short is not None:
            values.setdefault(short, []).append(str(attribute.value))
    # An attribute present more than once (two OUs) becomes one tag, its values joined by
    # commas: one tag key carries one value in STS.
    return [(f"{prefix}/{short}", ",".join(found)) for short, found in values.items()]


def principal_tags(certificate: x509.Certificate) -> tuple[tuple[str, str], ...]:
    """The session tags of AWS's default attribute mapping: every supported RDN of the
    subject (``x509Subject/CN``...) and the issuer (``x509Issuer/CN``...), and the first DNS
    name (``x509SAN/DNS``), URI (``x509SAN/URI``) and directory name (``x509SAN/Name/CN``...)
    of the subject alternative names."""
    tags = [*_rdn_tags("x509Subject", certificate.subject),
            *_rdn_tags("x509Issuer", certificate.issuer)]
    san = _extension(certificate, ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    if san is not None:
        dns = san.get_values_for_type(x509.DNSName)
        uris = san.get_values_for_type(x509.UniformResourceIdentifier)
        directories = san.get_values_for_type(x509.DirectoryName)
        if dns:
            tags.append(("x509SAN/DNS", str(dns[0])))
        if uris:
            tags.append(("x509SAN/URI", str(uris[0])))
        if directories:
            tags.extend(_rdn_tags("x509SAN/Name", directories[0]))
    return tuple(tags)


def _common_names(certificate: x509.Certificate) -> str:
    return ",".join(str(a.value) for a in
                    certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME))


# --- CreateSession ------------------------------------------------------------------------


class Refused(Exception):
    """A refused CreateSession: HTTP ``status`` (403 AccessDeniedException, 400
    ValidationException) and the reason."""

    def __init__(self, status: int, message: str, *, action: str = "rolesanywhere:CreateSession",
                 resource: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.action, self.resource = status, message, action, resource
        self.caller: permissions.Caller | None = None  # the certificate, once it is read

    @property
    def error_type(self) -> str:
        return "ValidationException" if self.status == 400 else "AccessDeniedException"


@dataclass
class _Signed:
    """What the request's signature established."""

    certificate: x509.Certificate
    intermediates: list[x509.Certificate]
    region: str
    signed_at: datetime


def is_create_session(environ: Mapping[str, Any]) -> bool:
    """Whether a request is Roles Anywhere's CreateSession (everything else goes to moto)."""
    return (environ.get("PATH_INFO") == SESSIONS_PATH
            and environ.get("REQUEST_METHOD") == "POST"
            and bool(environ.get("HTTP_X_AMZ_X509")))


def _header(environ: Mapping[str, Any], name: str) -> str | None:
    key = name.upper().replace("-", "_")
    if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        value = environ.get(key)
    else:
        value = environ.get("HTTP_" + key)
    return None if value is None else str(value)


def _der_certificates(text: str, header: str) -> list[x509.Certificate]:
    certificates = []
    for part in text.split(","):
        try:
            certificates.append(x509.load_der_x509_certificate(
                base64.b64decode(part.strip(), validate=True)))
        except (ValueError, binascii.Error) as error:
            raise Refused(403, f"{header} is not base64-encoded DER certificates "
                          f"({error})") from None
    return certificates


def _canonical_request(environ: Mapping[str, Any], signed_headers: list[str],
                       body: bytes) -> str:
    """SigV4's canonical request for the request as received (botocore's rules for a service
    other than S3: the path URI-encoded once more, query pairs sorted)."""
    raw_uri = str(environ.get("RAW_URI") or environ.get("REQUEST_URI")
                  or quote(str(environ.get("PATH_INFO", "/"))))
    path = raw_uri.split("?", 1)[0] or "/"
    query = str(environ.get("QUERY_STRING", ""))
    pairs = sorted(tuple(p.split("=", 1)) if "=" in p else (p, "")
                   for p in query.split("&") if p)
    canonical_query = "&".join(f"{k}={v}" for k, v in pairs)
    lines = []
    for name in signed_headers:
        value = _header(environ, name)
        if value is None:
            raise Refused(403, f"signed header {name} is not in the request")
        lines.append(f"{name}:{' '.join(value.split())}")
    return "\n".join([
        str(environ.get("REQUEST_METHOD", "")).upper(), quote(path, safe="/~"),
        canonical_query, "\n".join(lines) + "\n", ";".join(signed_headers),
        hashlib.sha256(body).hexdigest()])


def authenticate(environ: Mapping[str, Any], body: bytes, now: datetime,
                 certificate: x509.Certificate) -> _Signed:
    """Check the request's X.509 signature made with ``certificate`` (module docstring, step
    1); returns it, the chain sent with it and the scope's region."""
    chain_header = _header(environ, "X-Amz-X509-Chain")
    intermediates = _der_certificates(chain_header, "X-Amz-X509-Chain") if chain_header else []
    match = _AUTHORIZATION.match(_header(environ, "Authorization") or "")
    if match is None:
        raise Refused(403, "the Authorization header is not an X.509 SigV4 authorization "
                      "(AWS4-X509-RSA-SHA256|AWS4-X509-ECDSA-SHA256 Credential=..., "
                      "SignedHeaders=..., Signature=...)")
    algorithm = match["algorithm"]
    if algorithm not in ALGORITHMS:
        raise Refused(403, f"signing algorithm {algorithm} is not AWS4-X509-RSA-SHA256 or "
                      "AWS4-X509-ECDSA-SHA256")
    parts = match["credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise Refused(403, f"Credential {match['credential']} is not "
                      "<serial>/<yyyymmdd>/<region>/rolesanywhere/aws4_request")
    serial, scope_date, region, service, _ = parts
    if serial != str(certificate.serial_number):
        raise Refused(403, f"Credential names serial number {serial}, but the certificate in "
                      f"X-Amz-X509 has serial number {certificate.serial_number}")
    if service != SERVICE:
        raise Refused(403, f"the credential scope's service is {service}, not {SERVICE}")
    amz_date = _header(environ, "X-Amz-Date") or ""
    try:
        signed_at = datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=UTC)
    except ValueError:
        raise Refused(403, f"X-Amz-Date {amz_date or '(missing)'} is not "
                      "yyyymmddThhmmssZ") from None
    if abs(now - signed_at) > CLOCK_SKEW:
        raise Refused(403, f"the request was signed at {amz_date}, more than 5 minutes from "
                      f"the server's time {now.strftime(_AMZ_DATE)}")
    if scope_date != amz_date[:8]:
        raise Refused(403, f"the credential scope's date {scope_date} is not X-Amz-Date's "
                      f"{amz_date[:8]}")
    signed_headers = match["signed"].split(";")
    required = {"host", "x-amz-date", "x-amz-x509"} | (
        {"x-amz-x509-chain"} if chain_header else set())
    if missing := sorted(required - set(signed_headers)):
        raise Refused(403, f"SignedHeaders must include {', '.join(missing)}")
    if signed_headers != sorted(signed_headers):
        raise Refused(403, "SignedHeaders must be sorted and lowercase")
    canonical = _canonical_request(environ, signed_headers, body)
    string_to_sign = "\n".join([
        algorithm, amz_date, f"{scope_date}/{region}/{service}/aws4_request",
        hashlib.sha256(canonical.encode()).hexdigest()])
    try:
        public_key = certificate.public_key()
    except (UnsupportedAlgorithm, ValueError):
        raise Refused(403, f"the certificate {_describe(certificate)} has a key IAM Roles "
                      "Anywhere does not accept") from None
    if not isinstance(public_key, ALGORITHMS[algorithm]):
        raise Refused(403, f"the request is signed with {algorithm}, but the certificate's key "
                      f"is {type(public_key).__name__.removeprefix('_')}")
    signature = bytes.fromhex(match["signature"]) if len(match["signature"]) % 2 == 0 else b""
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, string_to_sign.encode(), padding.PKCS1v15(),
                              hashes.SHA256())
        else:
            assert isinstance(public_key, ec.EllipticCurvePublicKey)
            public_key.verify(signature, string_to_sign.encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise Refused(403, f"the signature does not verify with the public key of "
                      f"{_describe(certificate)}: the request (method, path, query, signed "
                      "headers or body) is not what was signed") from None
    return _Signed(certificate, intermediates, region, signed_at)


@dataclass(frozen=True)
class _Body:
    profile_arn: str
    role_arn: str
    trust_anchor_arn: str
    duration: int
    role_session_name: str | None
    instance_properties: Mapping[str, str] | None


def _parse_body(body: bytes) -> _Body:
    try:
        data = json.loads(body or b"{}")
    except ValueError as error:
        raise Refused(400, f"the request body is not JSON ({error})") from None
    if not isinstance(data, dict):
        raise Refused(400, "the request body must be a JSON object")
    missing = [k for k in ("profileArn", "roleArn", "trustAnchorArn")
               if not isinstance(data.get(k), str) or not data[k]]
    if missing:
        raise Refused(400, f"the request body lacks {', '.join(missing)}")
    duration = data.get("durationSeconds", DEFAULT_DURATION)
    if isinstance(duration, bool) or not isinstance(duration, int):
        raise Refused(400, f"durationSeconds must be a whole number, not {duration!r}")
    properties = data.get("instanceProperties")
    if properties is not None and not isinstance(properties, dict):
        raise Refused(400, "instanceProperties must be an object of strings")
    name = data.get("roleSessionName")
    return _Body(data["profileArn"], data["roleArn"], data["trustAnchorArn"], duration,
                 str(name) if name is not None else None, properties)


def _caller(certificate: x509.Certificate, account: str) -> permissions.Caller:
    # Who asked, for the record of decisions: the certificate (no AWS principal exists yet).
    return permissions.Caller(arn=f"x509:{certificate.subject.rfc4514_string()} (serial "
                              f"{certificate.serial_number:x})", account=account)


def _trust_context(anchor: TrustAnchor, tags: Sequence[tuple[str, str]],
                   source_identity: str) -> dict[str, list[str]]:
    context = {"aws:SourceArn": [anchor.arn], "aws:SourceAccount": [anchor.account],
               "aws:SecureTransport": ["true"], "aws:PrincipalIsAWSService": ["true"]}
    if source_identity:
        context["sts:SourceIdentity"] = [source_identity]
    for key, value in tags:
        context[f"aws:PrincipalTag/{key}"] = [value]
    return context


def _check_trust(role: Any, anchor: TrustAnchor, tags: Sequence[tuple[str, str]],
                 source_identity: str, caller: permissions.Caller) -> None:
    trust = permissions._policy_document(role.assume_role_policy_document) or {}
    context = _trust_context(anchor, tags, source_identity)
    described = ", ".join([*(f"aws:PrincipalTag/{k}={v}" for k, v in tags),
                           f"aws:SourceArn={anchor.arn}"])
    for action in TRUST_ACTIONS:
        request = Request(action=action, resource=role.arn, service=SERVICE_PRINCIPAL,
                          context=context)
        decision = evaluate(trust, request)
        if decision is Decision.ALLOW:
            permissions.record(caller, action, role.arn, allowed=True)
            continue
        if decision is Decision.DENY:
            why = "an explicit deny (" + ", ".join(
                str(s.get("Sid") or "(no Sid)") for s in applying(trust, request, "Deny")) + ")"
        else:
            unmet = [c for s in _statements(trust) if s.get("Effect") == "Allow"
                     and names_request(s, request) for c in unmet_conditions(s, request)]
            why = ("unmet conditions: " + "; ".join(unmet) if unmet
                   else f"no statement allows {SERVICE_PRINCIPAL} {action}")
        raise Refused(403, f"the trust policy of {role.arn} does not allow {SERVICE_PRINCIPAL} "
                      f"{action} with {described} ({why})", action=action, resource=role.arn)


def _statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    statements = document.get("Statement") or []
    return list(statements) if isinstance(statements, list) else [statements]


def create_session(environ: Mapping[str, Any], body: bytes,
                   now: datetime | None = None) -> tuple[dict[str, Any], permissions.Caller]:
    """CreateSession's checks (module docstring) and, if they pass, the session: the answer's
    body and the caller (the certificate) for the record. Raises :class:`Refused`."""
    now = now or datetime.now(UTC)
    certificate = _der_certificates(_header(environ, "X-Amz-X509") or "", "X-Amz-X509")[0]
    try:
        named = json.loads(body).get("trustAnchorArn")
        account = str(named).split(":")[4]
    except (ValueError, AttributeError, IndexError):
        account = "(unknown)"
    caller = _caller(certificate, account)
    try:
        signed = authenticate(environ, body, now, certificate)
        request = _parse_body(body)
        return _create_session(signed, request, find_trust_anchor(request.trust_anchor_arn),
                               now, caller), caller
    except Refused as refused:
        refused.caller = caller
        raise


def _create_session(signed: _Signed, request: _Body, anchor: TrustAnchor | None,
                    now: datetime, caller: permissions.Caller) -> dict[str, Any]:
    certificate = signed.certificate
    if anchor is None:
        raise Refused(403, f"trust anchor {request.trust_anchor_arn} does not exist",
                      resource=request.trust_anchor_arn)
    if not anchor.enabled:
        raise Refused(403, f"trust anchor {anchor.arn} is disabled", resource=anchor.arn)
    if signed.region != anchor.region:
        raise Refused(403, f"the request is signed for region {signed.region}, but trust "
                      f"anchor {anchor.arn} is in {anchor.region}", resource=anchor.arn)
    try:
        _check_valid_now(certificate, now, "certificate")
        if _is_ca(certificate):
            raise Refused(403, f"{_describe(certificate)} is a CA certificate "
                          "(basicConstraints CA:TRUE), not an end-entity certificate")
        usage = _extension(certificate, ExtensionOID.KEY_USAGE)
        if usage is not None and not usage.digital_signature:
            raise Refused(403, f"the keyUsage of {_describe(certificate)} lacks "
                          "digitalSignature")
        _check_hash(certificate, "certificate")
        verify_chain(certificate, signed.intermediates, anchor, now)
    except Refused as refused:
        refused.resource = anchor.arn
        raise
    profile = find_profile(request.profile_arn)
    if profile is None:
        raise Refused(403, f"profile {request.profile_arn} does not exist",
                      resource=request.profile_arn)
    if not profile.enabled:
        raise Refused(403, f"profile {profile.arn} is disabled", resource=profile.arn)
    if request.role_arn not in profile.role_arns:
        raise Refused(403, f"profile {profile.arn} does not list role {request.role_arn}",
                      resource=profile.arn)
    if request.role_session_name is not None and not profile.accept_role_session_name:
        raise Refused(400, f"roleSessionName is not accepted: profile {profile.arn} does not "
                      "set AcceptRoleSessionName", resource=profile.arn)
    if profile.require_instance_properties and not request.instance_properties:
        raise Refused(400, f"profile {profile.arn} requires instanceProperties",
                      resource=profile.arn)
    role = permissions.find_role(request.role_arn)
    if role is None:
        raise Refused(403, f"role {request.role_arn} does not exist",
                      resource=request.role_arn)
    maximum = min(profile.duration_seconds, int(role.max_session_duration or DEFAULT_DURATION))
    if not MIN_DURATION <= request.duration <= maximum:
        raise Refused(400, f"durationSeconds {request.duration} is outside {MIN_DURATION}.."
                      f"{maximum} (the profile's DurationSeconds {profile.duration_seconds}, "
                      f"the role's MaxSessionDuration {role.max_session_duration})",
                      resource=profile.arn)
    tags = principal_tags(certificate)
    source_identity = _common_names(certificate)
    _check_trust(role, anchor, tags, source_identity, caller)
    session_name = request.role_session_name or f"{certificate.serial_number:x}"
    session = sts_backends[role.account_id][get_partition(anchor.region)].assume_role(
        region_name=anchor.region, role_session_name=session_name, role_arn=role.arn,
        policy=profile.session_policy or "", duration=request.duration, external_id="")
    setattr(session, permissions.SESSION_TAGS_ATTRIBUTE, tags)
    subject_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{anchor.account}/{certificate.subject}")
    return {
        "credentialSet": [{
            "assumedRoleUser": {"arn": session.arn, "assumedRoleId": session.user_id},
            "credentials": {
                "accessKeyId": session.access_key_id,
                "secretAccessKey": session.secret_access_key,
                "sessionToken": session.session_token,
                # moto's expiration is naive UTC.
                "expiration": session.expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "source": SERVICE_PRINCIPAL,
            },
            "packedPolicySize": 0,
            "roleArn": role.arn,
            "sourceIdentity": source_identity,
        }],
        "subjectArn": _arn(anchor.account, anchor.region, "subject", str(subject_id)),
    }


def create_session_endpoint(environ: Mapping[str, Any],
                            start_response: Callable[..., Any]) -> list[bytes]:
    """``POST /sessions``: CreateSession (:func:`create_session`); every decision recorded."""
    def reply(status: str, body: Mapping[str, Any], error_type: str | None = None) -> list[bytes]:
        headers = [("Content-Type", "application/json")]
        if error_type:
            headers.append(("x-amzn-ErrorType", error_type))
        start_response(status, headers)
        return [json.dumps(body).encode()]

    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    body = environ["wsgi.input"].read(length) if length else b""
    try:
        answer, caller = create_session(environ, body)
    except Refused as refused:
        permissions.record(refused.caller, refused.action,
                           refused.resource or SESSIONS_PATH, allowed=False,
                           reason=refused.message)
        status = "400 Bad Request" if refused.status == 400 else "403 Forbidden"
        return reply(status, {"message": refused.message}, refused.error_type)
    permissions.record(caller, "rolesanywhere:CreateSession",
                       answer["credentialSet"][0]["roleArn"], allowed=True)
    return reply("201 Created", answer)
