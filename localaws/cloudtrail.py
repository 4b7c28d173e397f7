"""CloudTrail for the emulator: the S3 data events of the requests it serves, delivered as
CloudTrail delivers them, with signed digest files; and S3 server access logs.

Gap in moto 5.2.5: a trail is a record (``CreateTrail``, ``DescribeTrails``) and nothing more.
No log file, digest file or public key ever exists, so nothing that reads a trail's evidence
can be exercised; and moto's server access logs are one synthetic line per request, not S3's
format (random ids, ``0.0.0.0``, no requester, a fixed status).

Fill, for every S3 request the emulator serves (:class:`DataEventMiddleware`, the WSGI layer in
front of moto: it sees the real request and the real response):

- **data events.** Each trail that is logging, in the bucket owner's account and in the
  caller's, whose event selectors (advanced or basic) select the request, gets a CloudTrail
  record built from the request as served: ``userIdentity`` as the emulator resolved the
  signing key (IAM user, role session with its issuer, account root; in the bucket owner's
  copy a caller of another account is ``AWSAccount`` with its principal id, no ARN),
  ``sourceIPAddress`` (the connection's address, or the source listener's), ``userAgent``,
  ``tlsDetails`` (the negotiated version and cipher), ``requestID`` (the ``x-amz-request-id``
  the client received: S3 sends one on every response, moto does not, so it is added here),
  ``requestParameters`` (bucket, key, version id, upload id, part number, encryption headers),
  ``responseElements`` of a write (version id, encryption, key, delete marker, from the response
  headers; ``null`` for reads, as AWS's examples show), ``additionalEventData`` (bytes in and
  out, signature version, cipher suite, authentication method, ``SSEApplied``), ``errorCode``
  and ``errorMessage`` of a refused request. Record format:
  https://docs.aws.amazon.com/awscloudtrail/latest/userguide/cloudtrail-event-reference-record-contents.html.
- **log files.** Records are buffered per trail and region and delivered every
  :data:`DELIVERY_SECONDS` (CloudTrail "publishes log files multiple times an hour, about every
  5 minutes"), or now through ``POST`` :data:`FLUSH_PATH`: ``{"Records": [...]}``, gzip, at
  ``[prefix/]AWSLogs/<account>/CloudTrail/<region>/YYYY/MM/DD/<account>_CloudTrail_<region>_
  <YYYYMMDDTHHMMZ>_<16 characters>.json.gz``, SSE-KMS with the trail's key (SSE-S3 without one).
- **digest files** (log-file validation on): every :data:`DIGEST_SECONDS`, and on a flush, per
  trail and region: the log files delivered since the previous digest with the SHA-256 of each
  uncompressed file, the previous digest's bucket, key, SHA-256 and signature (``null`` in the
  first one: a starting digest), at ``.../CloudTrail-Digest/<region>/YYYY/MM/DD/<account>_
  CloudTrail-Digest_<region>_<trail>_<home region>_<YYYYMMDDTHHMMSSZ>.json.gz``, SSE-S3 (as the
  CloudTrail guide documents digests), signed SHA256withRSA over ``digestEndTime \\n
  bucket/key \\n hex(sha256(uncompressed digest)) \\n previous signature or "null"``, the hex
  signature in ``x-amz-meta-signature`` and ``x-amz-meta-signature-algorithm``. Formats:
  the CloudTrail user guide's "CloudTrail digest file structure" and "Custom implementations
  of CloudTrail log file integrity validation"; names and the signing string are
  :mod:`phi_core.trail_files`, which the custody command reads with.
- **public keys.** One RSA-2048 key per region, made when first needed, published through
  ``cloudtrail:ListPublicKeys`` (moto has no such call; it is added to moto's CloudTrail
  handler): the DER (PKCS #1) public key, its validity, and its fingerprint, the MD5 of the DER
  (what AWS's published keys show; the docs do not say).
- **delivery as CloudTrail.** Each object is written only if the custody bucket's policy lets
  ``cloudtrail.amazonaws.com`` put it (``aws:SourceArn`` the trail, ``x-amz-acl``
  bucket-owner-full-control, the encryption headers) and, for a log file, the key's policy
  lets it ``kms:GenerateDataKey`` with the trail's encryption context; a refusal is recorded
  (the flush answer, and ``GET`` :data:`FLUSH_PATH`) and the records are dropped, as a trail
  whose bucket refuses it loses them (AWS retries for 30 days). Written versions get the
  bucket's default Object Lock retention.
- **server access logs**, for a bucket with logging on: one record per request in S3's format
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/LogFormat.html) under
  ``TargetPrefix`` + ``YYYY-mm-DD-HH-MM-SS-<unique>`` in the target bucket, written before the
  response is returned (S3 batches records and delivers within hours; one object per request
  keeps the emulator simple). Replaces moto's synthetic records. The canonical user ids are
  stand-ins (a SHA-256 of the account id); the requester is the caller's ARN.

Not modelled: management events (only data events are written; the trail's management
events, e.g. PutBucketPolicy, never reach its bucket here), network activity and Insights
events, organization trails, CloudWatch Logs delivery of the trail, SNS notifications, backfill
digests, key rotation of the signing keys, the trail's CloudTrail Lake or Athena integrations,
``sessionContext.attributes.creationDate`` (moto keeps no session start), the log bucket's own
deliveries as events, VPC endpoint fields, and bucket-level management calls.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import logging
import secrets
import string
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from phi_core import trail_files

log = logging.getLogger("localaws.cloudtrail")

FLUSH_PATH = "/localaws/cloudtrail/flush"
DELIVERY_SECONDS = 300
DIGEST_SECONDS = 3600
EVENT_VERSION = "1.11"
CLOUDTRAIL = "cloudtrail.amazonaws.com"
_TLS_VERSION_ENVIRON_KEY = "localaws.tls_version"  # set by localaws.permissions' handler
_UNIQUE = string.ascii_letters + string.digits


# --- formats (the names, and what a digest signs, are phi_core.trail_files') ----------------


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def json_bytes(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass
class SigningKey:
    """One region's digest-signing key pair and its published form."""

    region: str
    private_key: rsa.RSAPrivateKey
    valid_from: datetime
    valid_to: datetime

    @classmethod
    def generate(cls, region: str, now: datetime) -> SigningKey:
        return cls(region, rsa.generate_private_key(public_exponent=65537, key_size=2048),
                   now - timedelta(minutes=5), now + timedelta(days=365))

    @property
    def public_der(self) -> bytes:
        """The public key, DER, PKCS #1 (``RSAPublicKey``), as ListPublicKeys' ``Value``."""
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.PKCS1)

    @property
    def fingerprint(self) -> str:
        return hashlib.md5(self.public_der, usedforsecurity=False).hexdigest()

    def sign(self, data: bytes) -> str:
        return self.private_key.sign(data, padding.PKCS1v15(), hashes.SHA256()).hex()


class KeyRing:
    """The signing keys, one per region, made when first needed."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._keys: dict[str, SigningKey] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def key(self, region: str) -> SigningKey:
        with self._lock:
            if region not in self._keys:
                self._keys[region] = SigningKey.generate(region, self._clock())
            return self._keys[region]

    def public_keys(self, region: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
        """ListPublicKeys' ``PublicKeyList``: keys of ``region`` valid at some time in
        [start, end]."""
        key = self.key(region)
        if key.valid_to < start or key.valid_from > end:
            return []
        return [{"Value": base64.b64encode(key.public_der).decode(),
                 "ValidityStartTime": key.valid_from.timestamp(),
                 "ValidityEndTime": key.valid_to.timestamp(),
                 "Fingerprint": key.fingerprint}]


@dataclass(frozen=True)
class Trail:
    """What a delivery needs to know about a trail."""

    name: str
    arn: str
    account: str
    home_region: str
    bucket: str
    prefix: str = ""  # empty, or ending in "/"
    kms_key_arn: str | None = None
    log_validation: bool = True


class Sink(Protocol):
    """Where files go. ``encryption`` is ``aws:kms`` (with ``kms_key_id``) or ``AES256``."""

    def put(self, trail: Trail, key: str, body: bytes, *, metadata: Mapping[str, str],
            encryption: str, kms_key_id: str | None) -> None: ...


class DeliveryRefused(Exception):
    """The bucket's or the key's policy does not let CloudTrail deliver this file."""


@dataclass
class _LogEntry:
    bucket: str
    key: str
    sha256: str
    oldest: str | None
    newest: str | None


@dataclass
class _Chain:
    """One trail's digest chain in one region."""

    start: datetime
    previous: tuple[str, str, str, str] | None = None  # bucket, key, sha256 hex, signature
    pending: list[_LogEntry] = field(default_factory=list)
    last_end: datetime | None = None


class TrailWriter:
    """Delivers one trail's log files and, with log-file validation, its digest files, each
    digest chained to the one before (a chain per region)."""

    def __init__(self, trail: Trail, sink: Sink, keys: KeyRing, started: datetime) -> None:
        self.trail, self.sink, self.keys = trail, sink, keys
        self._started = started
        self._chains: dict[str, _Chain] = {}

    def _chain(self, region: str) -> _Chain:
        return self._chains.setdefault(region, _Chain(start=self._started))

    def deliver_log_file(self, region: str, records: list[dict[str, Any]],
                         delivered: datetime, unique: str | None = None) -> str:
        """Write ``records`` as one log file; returns its key."""
        trail = self.trail
        unique = unique or "".join(secrets.choice(_UNIQUE) for _ in range(16))
        key = trail_files.log_file_key(trail.prefix, trail.account, region, delivered, unique)
        raw = json_bytes({"Records": records})
        self.sink.put(trail, key, gzip.compress(raw, mtime=0), metadata={},
                      encryption="aws:kms" if trail.kms_key_arn else "AES256",
                      kms_key_id=trail.kms_key_arn)
        times = sorted(str(r["eventTime"]) for r in records if r.get("eventTime"))
        if trail.log_validation:
            self._chain(region).pending.append(_LogEntry(
                trail.bucket, key, hashlib.sha256(raw).hexdigest(),
                times[0] if times else None, times[-1] if times else None))
        return key

    def regions(self) -> list[str]:
        return sorted(set(self._chains) | {self.trail.home_region})

    def deliver_digest(self, region: str, end: datetime) -> str | None:
        """Write the digest of ``region`` for the log files delivered since the previous one;
        returns its key (None without log-file validation)."""
        trail = self.trail
        if not trail.log_validation:
            return None
        chain = self._chain(region)
        end = end.astimezone(UTC).replace(microsecond=0)
        if chain.last_end is not None and end <= chain.last_end:
            end = chain.last_end + timedelta(seconds=1)  # one digest per second at most
        key = trail_files.digest_key(trail.prefix, trail.account, region, trail.name,
                                     trail.home_region, end)
        signing = self.keys.key(region)
        newest = max((e.newest for e in chain.pending if e.newest), default=None)
        oldest = min((e.oldest for e in chain.pending if e.oldest), default=None)
        previous = chain.previous
        document = {
            "awsAccountId": trail.account,
            "digestStartTime": _iso(chain.start),
            "digestEndTime": _iso(end),
            "digestS3Bucket": trail.bucket,
            "digestS3Object": key,
            "digestPublicKeyFingerprint": signing.fingerprint,
            "digestSignatureAlgorithm": trail_files.SIGNATURE_ALGORITHM,
            "newestEventTime": newest,
            "oldestEventTime": oldest,
            "previousDigestS3Bucket": previous[0] if previous else None,
            "previousDigestS3Object": previous[1] if previous else None,
            "previousDigestHashValue": previous[2] if previous else None,
            "previousDigestHashAlgorithm": "SHA-256" if previous else None,
            "previousDigestSignature": previous[3] if previous else None,
            "logFiles": [{"s3Bucket": e.bucket, "s3Object": e.key, "hashValue": e.sha256,
                          "hashAlgorithm": "SHA-256", "newestEventTime": e.newest,
                          "oldestEventTime": e.oldest} for e in chain.pending],
        }
        raw = json_bytes(document)
        sha = hashlib.sha256(raw).hexdigest()
        signature = signing.sign(trail_files.digest_signing_string(document, raw))
        self.sink.put(trail, key, gzip.compress(raw, mtime=0),
                      metadata={trail_files.SIGNATURE_METADATA: signature,
                                trail_files.SIGNATURE_ALGORITHM_METADATA:
                                    trail_files.SIGNATURE_ALGORITHM},
                      encryption="AES256", kms_key_id=None)
        chain.previous = (trail.bucket, key, sha, signature)
        chain.pending = []
        chain.start = end
        chain.last_end = end
        return key


# --- the request, as served -------------------------------------------------------------------


@dataclass
class Identity:
    """The caller as CloudTrail records it (``userIdentity``), and its account."""

    account: str
    record: dict[str, Any]

    def as_seen_by(self, account: str) -> dict[str, Any]:
        """The ``userIdentity`` in ``account``'s copy of the event: a caller of another
        account is only its account and principal id there."""
        if account == self.account or self.record.get("type") == "AWSAccount":
            return dict(self.record)
        return {"type": "AWSAccount", "principalId": self.record.get("principalId", ""),
                "accountId": self.account}


@dataclass
class ServedRequest:
    """One S3 request and its response, the facts both records are built from."""

    bucket: str
    key: str | None
    owner: str
    region: str
    partition: str
    method: str
    query: dict[str, list[str]]
    request_headers: dict[str, str]
    status: int
    response_headers: dict[str, str]
    received: datetime
    completed: datetime
    bytes_in: int
    bytes_out: int
    source_ip: str
    user_agent: str
    request_id: str
    host_id: str
    identity: Identity | None  # None: an anonymous request
    access_key_id: str | None
    tls_version: str | None  # "TLSv1.3"
    cipher: str | None
    signature_version: str | None  # "SigV4", None when unsigned
    auth_method: str | None  # "AuthHeader" | "QueryString"
    error_code: str | None = None
    error_message: str | None = None
    object_size: int | None = None
    logging_target: tuple[str, str] | None = None  # target bucket, prefix


# S3 operations by (method, subresource present). Object-level data events first.
_OBJECT_SUBRESOURCES: dict[str, list[tuple[str, str]]] = {
    "GET": [("tagging", "GetObjectTagging"), ("acl", "GetObjectAcl"),
            ("retention", "GetObjectRetention"), ("legal-hold", "GetObjectLegalHold"),
            ("attributes", "GetObjectAttributes"), ("uploadId", "ListParts"),
            ("torrent", "GetObjectTorrent")],
    "PUT": [("tagging", "PutObjectTagging"), ("acl", "PutObjectAcl"),
            ("retention", "PutObjectRetention"), ("legal-hold", "PutObjectLegalHold")],
    "POST": [("uploads", "CreateMultipartUpload"), ("uploadId", "CompleteMultipartUpload"),
             ("restore", "RestoreObject"), ("select", "SelectObjectContent")],
    "DELETE": [("tagging", "DeleteObjectTagging"), ("uploadId", "AbortMultipartUpload")],
}
_OBJECT_DEFAULT = {"GET": "GetObject", "HEAD": "HeadObject", "PUT": "PutObject",
                   "DELETE": "DeleteObject"}
# Bucket-level calls that are data events (object listings and the batch delete).
_BUCKET_DATA = {("GET", "versions"): "ListObjectVersions", ("GET", "uploads"):
                "ListMultipartUploads", ("POST", "delete"): "DeleteObjects"}
# The access log's operation names (REST.<method>.<resource>).
_LOG_OPERATIONS = {
    "GetObject": "REST.GET.OBJECT", "HeadObject": "REST.HEAD.OBJECT",
    "PutObject": "REST.PUT.OBJECT", "CopyObject": "REST.COPY.OBJECT",
    "DeleteObject": "REST.DELETE.OBJECT", "UploadPart": "REST.PUT.PART",
    "UploadPartCopy": "REST.COPY.PART", "CreateMultipartUpload": "REST.POST.UPLOADS",
    "CompleteMultipartUpload": "REST.POST.UPLOAD", "AbortMultipartUpload": "REST.DELETE.UPLOAD",
    "ListParts": "REST.GET.UPLOAD", "GetObjectTagging": "REST.GET.OBJECT_TAGGING",
    "PutObjectTagging": "REST.PUT.OBJECT_TAGGING",
    "DeleteObjectTagging": "REST.DELETE.OBJECT_TAGGING", "GetObjectAcl": "REST.GET.ACL",
    "PutObjectAcl": "REST.PUT.ACL", "ListObjects": "REST.GET.BUCKET",
    "ListObjectsV2": "REST.GET.BUCKET", "ListObjectVersions": "REST.GET.BUCKETVERSIONS",
    "ListMultipartUploads": "REST.GET.UPLOADS", "DeleteObjects": "REST.POST.MULTI_OBJECT_DELETE",
    "GetObjectAttributes": "REST.GET.OBJECT_ATTRIBUTES",
}
_WRITE_RESPONSE_HEADERS = ("x-amz-version-id", "x-amz-server-side-encryption",
                           "x-amz-server-side-encryption-aws-kms-key-id",
                           "x-amz-server-side-encryption-bucket-key-enabled",
                           "x-amz-delete-marker", "x-amz-expiration")
_REQUEST_PARAMETER_HEADERS = ("x-amz-server-side-encryption",
                              "x-amz-server-side-encryption-aws-kms-key-id",
                              "x-amz-server-side-encryption-customer-algorithm",
                              "x-amz-copy-source", "x-amz-acl", "x-amz-storage-class",
                              "x-amz-checksum-algorithm", "x-amz-expected-bucket-owner")
_REQUEST_PARAMETER_QUERY = ("versionId", "uploadId", "partNumber", "prefix", "list-type",
                            "delimiter", "max-keys", "key-marker", "continuation-token")


def event_name(method: str, query: Mapping[str, Any], has_key: bool,
               headers: Mapping[str, str]) -> str | None:
    """The CloudTrail event name of an S3 request, or None when it is not a data event."""
    if has_key:
        for parameter, name in _OBJECT_SUBRESOURCES.get(method, []):
            if parameter in query:
                return name
        if method == "PUT" and "partNumber" in query:
            return "UploadPartCopy" if "x-amz-copy-source" in headers else "UploadPart"
        if method == "PUT" and "x-amz-copy-source" in headers:
            return "CopyObject"
        return _OBJECT_DEFAULT.get(method)
    for (verb, parameter), name in _BUCKET_DATA.items():
        if method == verb and parameter in query:
            return name
    if method == "GET" and not (set(query) - {"list-type", "prefix", "delimiter", "max-keys",
                                              "continuation-token", "start-after", "marker",
                                              "encoding-type", "fetch-owner"}):
        return "ListObjectsV2" if query.get("list-type") == ["2"] else "ListObjects"
    return None


def data_event(served: ServedRequest, name: str, recipient: str) -> dict[str, Any]:
    """The CloudTrail record of ``served`` in ``recipient``'s trails."""
    parameters: dict[str, Any] = {"bucketName": served.bucket,
                                  "Host": served.request_headers.get("host", "")}
    if served.key is not None:
        parameters["key"] = served.key
    for name_ in _REQUEST_PARAMETER_QUERY:
        if name_ in served.query:
            parameters[name_] = served.query[name_][0]
    for header in _REQUEST_PARAMETER_HEADERS:
        if header in served.request_headers:
            parameters[header] = served.request_headers[header]
    ok = served.status < 300
    response: dict[str, Any] | None = None
    if ok and served.method not in ("GET", "HEAD"):
        response = {h: served.response_headers[h] for h in _WRITE_RESPONSE_HEADERS
                    if h in served.response_headers} or None
    additional: dict[str, Any] = {
        "SignatureVersion": served.signature_version, "CipherSuite": served.cipher,
        "bytesTransferredIn": served.bytes_in, "bytesTransferredOut": served.bytes_out,
        "AuthenticationMethod": served.auth_method, "x-amz-id-2": served.host_id}
    if served.response_headers.get("x-amz-server-side-encryption") == "aws:kms" and ok:
        additional["SSEApplied"] = ("SSE_KMS" if "x-amz-server-side-encryption"
                                    in served.request_headers else "Default_SSE_KMS")
    additional = {k: v for k, v in additional.items() if v is not None}
    resources: list[dict[str, str]] = []
    arn = f"arn:{served.partition}:s3:::{served.bucket}"
    if served.key is not None:
        resources.append({"type": "AWS::S3::Object", "ARN": f"{arn}/{served.key}"})
    resources.append({"accountId": served.owner, "type": "AWS::S3::Bucket", "ARN": arn})
    identity = (served.identity.as_seen_by(recipient) if served.identity else
                {"type": "AWSAccount", "principalId": "", "accountId": "ANONYMOUS_PRINCIPAL"})
    record: dict[str, Any] = {
        "eventVersion": EVENT_VERSION,
        "userIdentity": identity,
        "eventTime": _iso(served.completed),
        "eventSource": "s3.amazonaws.com",
        "eventName": name,
        "awsRegion": served.region,
        "sourceIPAddress": served.source_ip,
        "userAgent": served.user_agent,
        "requestParameters": parameters,
        "responseElements": response,
        "additionalEventData": additional,
        "requestID": served.request_id,
        "eventID": str(uuid.uuid4()),
        "readOnly": served.method in ("GET", "HEAD"),
        "resources": resources,
        "eventType": "AwsApiCall",
        "managementEvent": False,
        "recipientAccountId": recipient,
        "eventCategory": "Data",
    }
    if not ok:
        record["errorCode"] = served.error_code or "AccessDenied"
        record["errorMessage"] = served.error_message or record["errorCode"]
    if served.identity and served.identity.account != served.owner:
        record["sharedEventID"] = str(uuid.uuid5(uuid.NAMESPACE_URL, served.request_id))
    if served.tls_version:
        record["tlsDetails"] = {"tlsVersion": served.tls_version,
                                "cipherSuite": served.cipher,
                                "clientProvidedHostHeader": served.request_headers.get("host")}
    return record


def canonical_id(account: str) -> str:
    """A stand-in for an account's canonical user id (64 hex characters)."""
    return hashlib.sha256(f"canonical:{account}".encode()).hexdigest()


def access_log_line(served: ServedRequest, name: str | None) -> str:
    """One record of S3's server access log format, for ``served``."""
    def quoted(text: str) -> str:
        return '"' + text.replace('"', '\\"') + '"'

    requester = "-"
    if served.identity is not None:
        requester = str(served.identity.record.get("arn") or served.identity.account)
    query = "&".join(f"{k}={v[0]}" if v and v[0] else k for k, v in served.query.items())
    uri = f"/{served.bucket}" + (f"/{served.key}" if served.key else "") + (
        f"?{query}" if query else "")
    operation = _LOG_OPERATIONS.get(name or "", f"REST.{served.method}.BUCKET")
    total_ms = max(1, int((served.completed - served.received).total_seconds() * 1000))
    fields = [
        canonical_id(served.owner), served.bucket,
        f"[{served.received.astimezone(UTC):%d/%b/%Y:%H:%M:%S +0000}]", served.source_ip,
        requester, served.request_id, operation,
        (served.key or "-").replace(" ", "%20"),
        quoted(f"{served.method} {uri} HTTP/1.1"), str(served.status),
        served.error_code or "-", str(served.bytes_out or "-"),
        str(served.object_size) if served.object_size is not None else "-",
        str(total_ms), str(total_ms), quoted("-"), quoted(served.user_agent or "-"),
        served.response_headers.get("x-amz-version-id", "-") if served.key else "-",
        served.host_id, served.signature_version or "-", served.cipher or "-",
        served.auth_method or "-", served.request_headers.get("host", "-"),
        (served.tls_version or "-").replace("TLSv", "TLSV"), "-", "-", served.region,
    ]
    return " ".join(fields)


# --- trails in moto: which ones select an event ------------------------------------------------


def _field_matches(selector: Mapping[str, Any], value: str | None) -> bool:
    """One advanced field selector against one value (AND of its operators)."""
    checks: list[bool] = []
    if value is None:
        value = ""
    for operator, values in selector.items():
        if operator == "Field" or not isinstance(values, list):
            continue
        if operator == "Equals":
            checks.append(value in values)
        elif operator == "NotEquals":
            checks.append(value not in values)
        elif operator == "StartsWith":
            checks.append(any(value.startswith(v) for v in values))
        elif operator == "NotStartsWith":
            checks.append(not any(value.startswith(v) for v in values))
        elif operator == "EndsWith":
            checks.append(any(value.endswith(v) for v in values))
        elif operator == "NotEndsWith":
            checks.append(not any(value.endswith(v) for v in values))
    return all(checks)


def selects(trail: Any, record: Mapping[str, Any]) -> bool:
    """Whether ``trail`` (moto's Trail) logs the data event ``record``: any advanced selector
    whose field selectors all match, else a basic selector's S3 data resources."""
    advanced = list(getattr(trail, "advanced_event_selectors", None) or [])
    arns = [r["ARN"] for r in record["resources"]]
    fields: dict[str, list[str | None]] = {
        "eventCategory": ["Data"], "eventSource": [record["eventSource"]],
        "eventName": [record["eventName"]], "readOnly": [str(record["readOnly"]).lower()],
        "resources.type": ["AWS::S3::Object"], "resources.ARN": arns[:1],
    }
    for selector in advanced:
        field_selectors = selector.get("FieldSelectors") or []
        if field_selectors and all(
                any(_field_matches(fs, v) for v in fields.get(fs.get("Field"), [None]))
                for fs in field_selectors):
            return True
    for selector in getattr(trail, "event_selectors", None) or []:
        read_write = selector.get("ReadWriteType", "All")
        if read_write == "ReadOnly" and not record["readOnly"]:
            continue
        if read_write == "WriteOnly" and record["readOnly"]:
            continue
        for resource in selector.get("DataResources") or []:
            if resource.get("Type") == "AWS::S3::Object" and any(
                    arns[0].startswith(v.rstrip("*")) for v in resource.get("Values", [])):
                return True
    return False


def _moto_trails(account: str) -> Iterable[Any]:
    from moto.cloudtrail.models import cloudtrail_backends

    if account not in cloudtrail_backends:
        return []
    trails = []
    for backend in list(cloudtrail_backends[account].values()):
        trails.extend(list(backend.trails.values()))
    return trails


def _trail_of(moto_trail: Any) -> Trail:
    prefix = str(moto_trail.s3_key_prefix or "")
    return Trail(name=moto_trail.trail_name, arn=moto_trail.arn,
                 account=moto_trail.account_id, home_region=moto_trail.region_name,
                 bucket=moto_trail.bucket_name,
                 prefix=f"{prefix.rstrip('/')}/" if prefix else "",
                 kms_key_arn=moto_trail.kms_key_id or None,
                 log_validation=bool(moto_trail.log_validation))


# --- delivery into moto's S3, as CloudTrail --------------------------------------------------


class MotoSink:
    """Writes into moto's S3 after the checks CloudTrail's delivery meets on AWS."""

    def put(self, trail: Trail, key: str, body: bytes, *, metadata: Mapping[str, str],
            encryption: str, kms_key_id: str | None) -> None:
        from moto.s3.models import s3_backends
        from moto.utilities.utils import get_partition

        from localaws.policy import Decision, Request, evaluate

        partition = get_partition(trail.home_region)
        backend = s3_backends[trail.account][partition]
        bucket = backend.buckets.get(trail.bucket)
        if bucket is None:
            raise DeliveryRefused(f"bucket {trail.bucket} does not exist")
        base = {"aws:SourceArn": trail.arn, "aws:SourceAccount": trail.account,
                "aws:SecureTransport": "true",
                "s3:x-amz-acl": "bucket-owner-full-control",
                "s3:x-amz-server-side-encryption": encryption}
        if kms_key_id:
            base["s3:x-amz-server-side-encryption-aws-kms-key-id"] = kms_key_id
        put = Request(action="s3:PutObject", resource=f"arn:{partition}:s3:::{trail.bucket}/{key}",
                      service=CLOUDTRAIL, context={k: [v] for k, v in base.items()})
        policy = json.loads(bucket.policy) if bucket.policy else {}
        if evaluate(policy, put) is not Decision.ALLOW:
            raise DeliveryRefused(f"the policy of bucket {trail.bucket} does not allow "
                                  f"{CLOUDTRAIL} s3:PutObject on {key}")
        if kms_key_id:
            self._check_key(trail, kms_key_id, partition)
        lock: dict[str, Any] = {}
        if getattr(bucket, "object_lock_enabled", False) and bucket.has_default_lock:
            lock = {"lock_mode": bucket.default_lock_mode,
                    "lock_until": bucket.default_retention()}
        stored = backend.put_object(trail.bucket, key, body, encryption=encryption,
                                    kms_key_id=kms_key_id, disable_notification=True, **lock)
        if metadata:
            stored.set_metadata({f"x-amz-meta-{k}": v for k, v in metadata.items()})
        stored.content_type = "application/json"  # type: ignore[attr-defined]

    @staticmethod
    def _check_key(trail: Trail, key_arn: str, partition: str) -> None:
        from moto.kms.models import kms_backends

        from localaws.policy import Decision, Request, evaluate

        region, account = key_arn.split(":")[3], key_arn.split(":")[4]
        key = kms_backends[account][region].keys.get(key_arn.rsplit("/", 1)[-1])
        if key is None or not key.enabled:
            raise DeliveryRefused(f"KMS key {key_arn} does not exist or is disabled")
        policy = json.loads(key.policy) if isinstance(key.policy, str) else key.policy
        context = {"aws:SourceArn": trail.arn, "aws:SourceAccount": trail.account,
                   "aws:SecureTransport": "true",
                   "kms:EncryptionContext:aws:cloudtrail:arn": trail.arn,
                   "kms:EncryptionContext:aws:s3:arn":
                   f"arn:{partition}:s3:::{trail.bucket}/{trail.prefix}AWSLogs/{trail.account}/"}
        request = Request(action="kms:GenerateDataKey", resource=key.arn, service=CLOUDTRAIL,
                          context={k: [v] for k, v in context.items()})
        if evaluate(policy, request) is not Decision.ALLOW:
            raise DeliveryRefused(f"the policy of key {key_arn} does not allow {CLOUDTRAIL} "
                                  "kms:GenerateDataKey for the trail")


@dataclass(frozen=True)
class Delivery:
    """One file CloudTrail delivered, or failed to deliver (``outcome`` with the reason)."""

    time: str
    trail: str
    kind: str  # "log file" | "digest file"
    key: str
    outcome: str  # "delivered" | "refused"
    reason: str = ""
    records: int = 0


class Recorder:
    """The emulator's CloudTrail: buffers each trail's records per region and delivers them."""

    def __init__(self, sink: Sink | None = None, keys: KeyRing | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.sink: Sink = sink or MotoSink()
        self.keys = keys or KeyRing(clock)
        self._clock = clock
        self._lock = threading.RLock()
        self._buffers: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._buffered_since: dict[tuple[str, str], datetime] = {}
        self._writers: dict[str, TrailWriter] = {}
        self._last_digest: datetime = clock()
        self.deliveries: list[Delivery] = []

    def _writer(self, trail: Trail) -> TrailWriter:
        writer = self._writers.get(trail.arn)
        if writer is None or writer.trail != trail:
            started = self._clock()
            writer = TrailWriter(trail, self.sink, self.keys, started)
            self._writers[trail.arn] = writer
        return writer

    def _discover(self) -> None:
        """A writer for every trail that is logging: digests are hourly even when no event
        was logged."""
        from moto.cloudtrail.models import cloudtrail_backends

        for account in list(cloudtrail_backends.keys()):
            for moto_trail in _moto_trails(account):
                if moto_trail.status.is_logging:
                    self._writer(_trail_of(moto_trail))

    def record(self, served: ServedRequest) -> None:
        """Add the data event of ``served`` to each trail that selects it."""
        name = event_name(served.method, served.query, served.key is not None,
                          served.request_headers)
        if name is None:
            return
        accounts = [served.owner]
        if served.identity is not None and served.identity.account not in accounts:
            accounts.append(served.identity.account)
        with self._lock:
            for account in accounts:
                record = data_event(served, name, account)
                for moto_trail in _moto_trails(account):
                    if not moto_trail.status.is_logging:
                        continue
                    if not (moto_trail.is_multi_region or moto_trail.region_name == served.region):
                        continue
                    if not selects(moto_trail, record):
                        continue
                    trail = _trail_of(moto_trail)
                    self._writer(trail)
                    slot = (trail.arn, served.region)
                    self._buffers.setdefault(slot, []).append(record)
                    self._buffered_since.setdefault(slot, self._clock())

    def flush(self, *, digests: bool = True, older_than: float = 0.0) -> list[Delivery]:
        """Deliver buffered records (those buffered more than ``older_than`` seconds ago),
        then, with ``digests``, a digest per trail and region. Returns what was done."""
        done: list[Delivery] = []
        with self._lock:
            now = self._clock()
            for slot in list(self._buffers):
                since = self._buffered_since.get(slot, now)
                if (now - since).total_seconds() < older_than:
                    continue
                records = self._buffers.pop(slot)
                self._buffered_since.pop(slot, None)
                writer = self._writers[slot[0]]
                try:
                    key = writer.deliver_log_file(slot[1], records, now)
                    done.append(Delivery(_iso(now), writer.trail.name, "log file", key,
                                         "delivered", records=len(records)))
                except DeliveryRefused as refused:
                    done.append(Delivery(_iso(now), writer.trail.name, "log file", "",
                                         "refused", str(refused), records=len(records)))
            if digests:
                self._last_digest = now
                self._discover()
                for writer in self._writers.values():
                    for region in writer.regions():
                        try:
                            digest = writer.deliver_digest(region, now)
                        except DeliveryRefused as refused:
                            done.append(Delivery(_iso(now), writer.trail.name, "digest file",
                                                 "", "refused", str(refused)))
                            continue
                        if digest:
                            done.append(Delivery(_iso(now), writer.trail.name, "digest file",
                                                 digest, "delivered"))
            self.deliveries.extend(done)
        for delivery in done:
            if delivery.outcome == "refused":
                log.warning("CloudTrail delivery refused: %s", delivery)
        return done

    def tick(self) -> None:
        """What the clock triggers: log files every DELIVERY_SECONDS, digests hourly."""
        due = (self._clock() - self._last_digest).total_seconds() >= DIGEST_SECONDS
        self.flush(digests=due, older_than=0.0 if due else DELIVERY_SECONDS)


_recorder = Recorder()


def recorder() -> Recorder:
    return _recorder


# --- the WSGI layer -----------------------------------------------------------------------------


_CREDENTIAL_SCOPE = "Credential="


def _scope(environ: Mapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(access key id, service, auth method) of a SigV4 request."""
    authorization = str(environ.get("HTTP_AUTHORIZATION") or "")
    if _CREDENTIAL_SCOPE in authorization:
        parts = authorization.split(_CREDENTIAL_SCOPE, 1)[1].split(",", 1)[0].split("/")
        if len(parts) >= 4:
            return parts[0], parts[3], "AuthHeader"
    query = parse_qs(str(environ.get("QUERY_STRING", "")))
    credential = (query.get("X-Amz-Credential") or [""])[0].split("/")
    if len(credential) >= 4:
        return credential[0], credential[3], "QueryString"
    return None, None, None


def _bucket_and_key(environ: Mapping[str, Any]) -> tuple[str, str | None] | None:
    from moto.s3.utils import bucket_name_from_url

    host = str(environ.get("HTTP_HOST") or "")
    path = unquote(str(environ.get("PATH_INFO") or "/"))
    virtual = bucket_name_from_url(f"https://{host}") if host else None
    if virtual:
        key = path.lstrip("/")
        return virtual, key or None
    parts = path.lstrip("/").split("/", 1)
    if not parts[0]:
        return None
    return parts[0], (parts[1] if len(parts) > 1 and parts[1] else None)


def _find_bucket(name: str) -> Any:
    from moto.s3.models import s3_backends

    owner = s3_backends.bucket_accounts.get(name)
    if owner is None:
        return None
    partition, account = owner
    return s3_backends[account][partition].buckets.get(name)


def _identity(key_id: str | None, default_account: str, partition: str) -> Identity | None:
    """The caller of ``key_id`` as CloudTrail names it."""
    from moto.iam.exceptions import NotFoundException
    from moto.iam.models import iam_backends

    from localaws.permissions import key_owner

    if key_id is None:
        return None
    found = key_owner(key_id)
    if found is None:
        return Identity(default_account, {
            "type": "Root", "principalId": default_account,
            "arn": f"arn:{partition}:iam::{default_account}:root",
            "accountId": default_account, "accessKeyId": key_id})
    account_id, part, owner = found
    if not hasattr(owner, "role_arn"):
        return Identity(account_id, {
            "type": "IAMUser", "principalId": owner.id, "arn": owner.arn,
            "accountId": account_id, "accessKeyId": key_id, "userName": owner.name})
    role_name = owner.role_arn.rsplit("/", 1)[-1]
    try:
        role_id = iam_backends[owner.account_id][part].get_role_by_arn(owner.role_arn).id
    except NotFoundException:  # the role was deleted meanwhile
        role_id = ""
    return Identity(account_id, {
        "type": "AssumedRole",
        "principalId": f"{role_id}:{owner.session_name}",
        "arn": owner.arn, "accountId": account_id, "accessKeyId": key_id,
        "sessionContext": {
            "sessionIssuer": {"type": "Role", "principalId": role_id,
                              "arn": owner.role_arn, "accountId": account_id,
                              "userName": role_name},
            "attributes": {"mfaAuthenticated": "false"}}})


def _error(body: bytes) -> tuple[str | None, str | None]:
    text = body[:4096].decode(errors="replace")
    code = text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else None
    message = (text.split("<Message>", 1)[1].split("</Message>", 1)[0]
               if "<Message>" in text else None)
    return code, message


_STATUS_ERRORS = {403: "AccessDenied", 404: "NoSuchKey", 400: "InvalidRequest",
                  409: "Conflict", 412: "PreconditionFailed"}


class DataEventMiddleware:
    """WSGI middleware in front of moto: records each S3 request it serves (module
    docstring). Never fails a request: a recording error is logged."""

    def __init__(self, app: Callable[..., Any], recorder_: Recorder | None = None) -> None:
        self.app = app
        self.recorder = recorder_ or _recorder

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        key_id, service, auth_method = _scope(environ)
        path = str(environ.get("PATH_INFO") or "")
        if path.startswith(("/moto-api", "/localaws")) or service not in (None, "s3"):
            return self.app(environ, start_response)
        located = _bucket_and_key(environ)
        if located is None or (service is None and _find_bucket(located[0]) is None):
            return self.app(environ, start_response)
        received = datetime.now(UTC)
        request_id = secrets.token_hex(8).upper()
        host_id = base64.b64encode(secrets.token_bytes(48)).decode()
        identity = None
        try:
            identity = _identity(key_id, environ.get("HTTP_X_MOTO_ACCOUNT_ID")
                                 or "123456789012", "aws")
        except Exception:
            log.exception("could not resolve the caller of an S3 request")
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            # S3 names its request in x-amz-request-id; moto adds the x-amzn-requestid of
            # JSON services, which clients prefer, so the id they keep would be in no record.
            headers = [(n, v) for n, v in headers if n.lower() != "x-amzn-requestid"]
            names = {name.lower() for name, _ in headers}
            if "x-amz-request-id" not in names:
                headers.append(("x-amz-request-id", request_id))
            if "x-amz-id-2" not in names:
                headers.append(("x-amz-id-2", host_id))
            captured["status"], captured["headers"] = status, headers
            return start_response(status, headers, exc_info)

        result = self.app(environ, capture)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if callable(close):
                close()
        try:
            self._record(environ, located, captured, body, received, request_id, host_id,
                         identity, key_id, auth_method)
        except Exception:
            log.exception("could not record an S3 request for CloudTrail")
        return [body]

    def _record(self, environ: Mapping[str, Any], located: tuple[str, str | None],
                captured: Mapping[str, Any], body: bytes, received: datetime,
                request_id: str, host_id: str, identity: Identity | None,
                key_id: str | None, auth_method: str | None) -> None:
        bucket_name, key = located
        bucket = _find_bucket(bucket_name)
        if bucket is None or "status" not in captured:
            return
        response_headers = {name.lower(): value for name, value in captured["headers"]}
        request_id = response_headers.get("x-amz-request-id", request_id)
        status = int(str(captured["status"]).split()[0])
        request_headers = {k[5:].lower().replace("_", "-"): str(v)
                           for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            request_headers["content-type"] = str(environ["CONTENT_TYPE"])
        decoded = request_headers.get("x-amz-decoded-content-length")
        bytes_in = int(decoded or environ.get("CONTENT_LENGTH") or 0)
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        error_code = error_message = None
        if status >= 300:
            error_code, error_message = _error(body)
            error_code = error_code or _STATUS_ERRORS.get(status, "InternalError")
        connection: Any = environ.get("werkzeug.socket")
        cipher = connection.cipher() if hasattr(connection, "cipher") else None
        tls_version = environ.get(_TLS_VERSION_ENVIRON_KEY) or (
            cipher[1] if cipher else None)
        object_size = None
        if key is not None and method in ("GET", "HEAD", "PUT") and status < 300:
            length = response_headers.get("content-length")
            object_size = (int(length) if method in ("GET", "HEAD") and length
                           else bytes_in if method == "PUT" else None)
        logging_ = getattr(bucket, "logging", None) or {}
        served = ServedRequest(
            bucket=bucket_name, key=key, owner=bucket.account_id, region=bucket.region_name,
            partition=getattr(bucket, "partition", "aws"), method=method,
            query=parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True),
            request_headers=request_headers, status=status,
            response_headers=response_headers, received=received,
            completed=datetime.now(UTC), bytes_in=bytes_in,
            bytes_out=len(body) if method != "HEAD" else 0,
            source_ip=str(environ.get("REMOTE_ADDR") or "-"),
            user_agent=request_headers.get("user-agent", ""), request_id=request_id,
            host_id=response_headers.get("x-amz-id-2", host_id), identity=identity,
            access_key_id=key_id, tls_version=str(tls_version) if tls_version else None,
            cipher=cipher[0] if cipher else None,
            signature_version="SigV4" if auth_method else None, auth_method=auth_method,
            error_code=error_code, error_message=error_message, object_size=object_size,
            logging_target=((logging_["TargetBucket"], logging_.get("TargetPrefix") or "")
                            if logging_.get("TargetBucket") else None),
        )
        self.recorder.record(served)
        if served.logging_target is not None:
            _deliver_access_log(served)


def _deliver_access_log(served: ServedRequest) -> None:
    assert served.logging_target is not None
    target, prefix = served.logging_target
    bucket = _find_bucket(target)
    if bucket is None:
        return
    from moto.s3.models import s3_backends

    name = event_name(served.method, served.query, served.key is not None,
                      served.request_headers)
    line = access_log_line(served, name) + "\n"
    key = (f"{prefix}{served.completed.astimezone(UTC):%Y-%m-%d-%H-%M-%S}-"
           f"{secrets.token_hex(8).upper()}")
    s3_backends[bucket.account_id][bucket.partition].put_object(
        target, key, line.encode(), disable_notification=True)


# --- the emulator's endpoints and moto patches --------------------------------------------------


def flush_endpoint(environ: Mapping[str, Any], start_response: Any) -> list[bytes]:
    """``POST``: deliver every buffered record and a digest per trail and region now; answers
    what was delivered or refused. ``GET``: every delivery so far."""
    if environ.get("REQUEST_METHOD") == "POST":
        answer = [asdict(d) for d in _recorder.flush(digests=True)]
    else:
        answer = [asdict(d) for d in _recorder.deliveries]
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(answer).encode()]


def _list_public_keys(self: Any) -> str:
    """``cloudtrail:ListPublicKeys`` for moto's CloudTrail handler (module docstring)."""
    now = time.time()
    start = self._get_param("StartTime")
    end = self._get_param("EndTime")
    start_at = datetime.fromtimestamp(float(start if start is not None else now), UTC)
    end_at = datetime.fromtimestamp(float(end if end is not None else now), UTC)
    return json.dumps({"PublicKeyList": _recorder.keys.public_keys(self.region, start_at,
                                                                   end_at)})


def _start_clock() -> None:
    def loop() -> None:
        while True:
            time.sleep(5)
            try:
                _recorder.tick()
            except Exception:
                log.exception("CloudTrail delivery failed")

    threading.Thread(target=loop, name="localaws-cloudtrail", daemon=True).start()


_installed = False


def install(*, clock: bool = True) -> None:
    """Add ListPublicKeys to moto's CloudTrail, replace moto's synthetic access-log records,
    and (``clock``, default on) start the delivery clock. Idempotent."""
    global _installed
    if _installed:
        return
    from moto.cloudtrail.responses import CloudTrailResponse
    from moto.s3.models import S3Backend

    CloudTrailResponse.list_public_keys = _list_public_keys  # type: ignore[attr-defined]
    # Access-log records come from DataEventMiddleware, in S3's format.
    S3Backend.log_incoming_request = lambda self, request, bucket_name: None  # type: ignore[method-assign]
    if clock:
        _start_clock()
    _installed = True


def flush(emulator: Any) -> list[dict[str, Any]]:
    """Ask a running emulator (:class:`localaws.server.Emulator`) to deliver now: every
    buffered record as log files, and a digest per trail and region. Returns the deliveries."""
    from localaws import server

    answer: list[dict[str, Any]] = json.loads(
        server._request(emulator, FLUSH_PATH, data=b"{}",
                        headers={"Content-Type": "application/json"}, timeout=30))
    return answer
