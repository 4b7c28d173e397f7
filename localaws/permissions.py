"""Permission checks with request context: what moto 5.2.5 leaves out, filled in.

Gaps in moto 5.2.5 (``moto/iam/access_control.py``, ``FakeBucket.get_permission``,
``moto/kms/policy_validator.py``):

1. Bucket policies are evaluated on every object request, but without request context and
   without the caller: any condition other than ``StringEquals`` counts as satisfied, so the
   ``aws:SecureTransport = false`` deny that every TLS-only bucket carries refuses *every*
   object call, and so do our encryption denies (``StringNotEqualsIfExists``).
   A statement naming one principal is applied as if it named everybody.
2. With permission checks on (``/moto-api/reset-auth``), identity policies are evaluated the
   same way: condition-scoped allows (our ``s3:prefix`` list scopes) are unconditional, and a
   statement whose ``StringEquals`` fails becomes an explicit deny, even an Allow.
3. Bucket-policy allows never count for authenticated callers (only identity policies do).
4. With permission checks on, an access key IAM knows is accepted whatever its status: a key
   deactivated by the rotation's sweep keeps working.
5. KMS ``DescribeKey`` (the only KMS call moto checks against the key policy) is refused to
   *every* caller when the key policy has any Deny on ``kms:*``/``kms:Describe*`` with
   resource ``*``, whatever its principal and conditions: our key policy's
   ``DenyPartnerKeyUseOutsideS3`` (partner only, outside S3 only) locks out the operator.
6. Other accounts: moto serves them (the account is the one whose IAM issued the signing key),
   but its checks are single-account. The S3 check looks for the bucket policy in the
   *caller's* account, so a partner in another account is judged by its own identity policy
   alone (no grant in our bucket policy needed, none of our denies applied on bucket calls),
   and the bucket policy's view of the caller looked keys up in the *bucket's* account, so a
   foreign key was taken for our own account's root. ``AssumeRole`` of a role in another
   account never checks the role's trust policy (moto looks the role up in the caller's
   account), so any external id, or none, was accepted; in the same account moto's trust
   check knows only ``StringEquals``.
7. A role session is its session ARN everywhere: ``aws:PrincipalArn`` was the session ARN
   (AWS gives the *role* ARN), so a deny matching the partner's role by ``aws:PrincipalArn``
   (our source-IP and key-use denies) never applied to its sessions, and a policy naming the
   role as principal did not match them.
8. For services other than S3, moto checks identity policies against resource ``*`` (except
   IAM roles, SQS queues and STS roles), so a role scoped to one secret, one user or one topic
   was refused everything it is allowed, and resource policies (topic, queue, secret, key)
   never counted. Conditions moto cannot supply a value for turned an Allow into a Deny: a
   ``kms:Sign`` grant conditioned on ``kms:RequestAlias`` refused its holder.
9. No AWS service ever acts in the emulator, so a role whose trust policy admits only a
   service (our rotation function's role, ``lambda.amazonaws.com``) cannot be used as itself.
10. No ``aws:PrincipalTag``: a trust policy that admits only principals carrying a tag (our
    account roles: ``aws:PrincipalTag/phi-exchange:importer = true``) sees no tag on anyone;
    moto's trust check ignores the condition and lets an untagged user in. AssumeRole's
    session tags (``Tags``) are dropped, and ``sts:TagSession`` is never asked.
11. S3 actions named as moto's routing guesses them, not as AWS authorizes them: a HEAD
    with ``versionId`` is ``GetObject``; the always-on bucket-policy check calls a version's
    DELETE ``DeleteObject`` (AWS: ``DeleteObjectVersion``); PutBucketEncryption and
    PutObjectLockConfiguration are ``CreateBucket``; GetObjectAttributes is ``GetObject``.
12. CloudFormation and SSM calls are checked against resource ``*``: a role scoped to
    ``stack/PhiExchange-*/*`` or ``parameter/cdk-bootstrap/*`` is refused everything; and the
    role a CloudFormation call hands over (``RoleARN``) is never checked (no ``iam:PassRole``,
    no trust of ``cloudformation.amazonaws.com``).
13. A refusal says only ``AccessDenied``: nothing tells which policy or statement refused.
14. No ``aws:ResourceAccount``: the CDK bootstrap's file-publishing role, whose policy allows
    its staging bucket only where ``aws:ResourceAccount`` is our account, may not list or write
    it; and SQS's GetQueueUrl (by ``QueueName``) is checked against resource ``*``, so a role
    scoped to its queue cannot look it up.

How they are filled: every request's WSGI environ is kept for the request's duration
(:class:`ContextMiddleware`, one request per thread in the emulator), and the TLS version
actually negotiated on the connection is added to it (:class:`TlsAwareRequestHandler`). The
signing key is looked up in every account's IAM and STS (:func:`caller_for_key`). From that,
:func:`request_context` derives the condition keys AWS would supply:

==========================================  ===============================================
``aws:SecureTransport``                     ``true`` iff the request arrived over TLS
``s3:TlsVersion``                           the negotiated version (``1.2``, ``1.3``)
``aws:SourceIp``                            the client address (127.0.0.1 locally, or the
                                            address of a source-address listener, see
                                            :mod:`localaws.server`)
``aws:PrincipalArn`` / ``aws:PrincipalAccount``  the IAM user, the *role* of a role session,
                                            else the account root
``aws:username``                            the IAM user's name
``aws:PrincipalIsAWSService``               ``false`` for every signed caller (an AWS
                                            service acting as itself is evaluated by the
                                            module that plays it: ``true``)
``aws:PrincipalTag/<key>``                  an IAM user's tags; a role session's role tags,
                                            overridden by its session tags
``s3:x-amz-server-side-encryption``,        the request headers of the same names, when
``s3:x-amz-server-side-encryption-aws-kms-key-id``, present
``s3:x-amz-server-side-encryption-customer-algorithm``, ``s3:x-amz-acl``
``s3:prefix``, ``s3:delimiter``, ``s3:max-keys``  the list request's query parameters
``s3:RequestObjectTagKeys``,                the tags of an upload's ``x-amz-tagging``
``s3:RequestObjectTag/<key>``               header (not yet those of a PutObjectTagging
                                            body)
``kms:RequestAlias``, ``kms:SigningAlgorithm``,  a KMS call's ``KeyId`` when it names an
``kms:MessageType``, ``kms:CallerAccount``,  alias, its parameters, the caller's account
``kms:EncryptionContext:<key>``
``sts:ExternalId``, ``sts:RoleSessionName``  the AssumeRole parameters
``aws:RequestTag/<key>``, ``aws:TagKeys``   AssumeRole's session tags
``iam:PassedToService``                     ``cloudformation.amazonaws.com``, for the role a
                                            CloudFormation call hands over
``aws:ResourceAccount``                     the account owning the bucket (or the secret,
                                            topic, queue, stack, parameter) acted on; the CDK
                                            bootstrap's publishing roles are scoped by it
==========================================  ===============================================

S3 requests are authorized under the action AWS names (:func:`s3_action`), for both checks;
a PutObject carrying tags (``x-amz-tagging``) needs ``s3:PutObjectTagging`` as well, as the
PutObject API reference says (:func:`s3_actions`).

and :mod:`localaws.policy` evaluates, as AWS documents it
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html):

- the bucket policy, always, as moto does (with the caller, found in any account);
- with permission checks on, for S3 and for the calls listed in :data:`RESOLVED_ACTIONS`
  (Secrets Manager by ``SecretId``, SNS by ``TopicArn``, SQS by ``QueueUrl`` or, for
  GetQueueUrl, ``QueueName``, CloudFormation by ``StackName`` (``*`` without one), SSM by
  ``Name``/``Names``, IAM access-key calls by ``UserName``/``AccessKeyId``, KMS by
  ``KeyId``): the caller's identity policies against the real resource ARN, together with the
  resource's policy (bucket, secret, topic, queue, key). Any Deny refuses. In the resource's
  own account, an Allow in either suffices (a resource-policy Allow alone only when it names
  the caller itself, not merely its account); from another account, both must allow. A KMS
  key is stricter (https://docs.aws.amazon.com/kms/latest/developerguide/control-access.html):
  its key policy must allow, naming the caller itself or its account (which then delegates to
  the identity policies, which must allow too);
- ``sts:AssumeRole``: the caller's identity policies and the role's trust policy, found in
  the role's account, with ``sts:ExternalId``; the trust policy must allow, and so must the
  identity policy unless the role is in the caller's account and the trust policy names the
  caller itself. ``DurationSeconds`` beyond the role's maximum is refused. With session
  tags, ``sts:TagSession`` must be allowed the same way; the session keeps its tags;
- CloudFormation calls that hand over a role (``RoleARN`` of CreateChangeSet, CreateStack,
  UpdateStack): ``iam:PassRole`` of it in the caller's identity policies, with
  ``iam:PassedToService``, and the role's trust policy must admit
  ``cloudformation.amazonaws.com`` (else ``ValidationError``, as AWS says). What
  CloudFormation then does *as* that role is not checked: moto creates the resources
  in-process.

Every decision made with checks on, and every bucket-policy refusal, is recorded: ``GET
/localaws/authorizations[?since=N]`` lists caller, ``aws:PrincipalArn``, action, resource,
allowed or not and, for a refusal, the reason in AWS's words (which policy, which statement
Sids, or which trust condition the caller did not meet).

Other calls keep moto's own check. For KMS ``DescribeKey`` the key policy's Deny statements
are evaluated with the caller (and no ``kms:ViaService``: a direct call is not made through a
service), as moto intends but with principals and conditions.

Access keys: :func:`_create_access_key` refuses a key that is not ``Active`` as unknown (AWS
answers ``InvalidClientTokenId``; moto's S3 says ``InvalidAccessKeyId``).

Services acting: ``POST /localaws/service-role-session`` (JSON ``{"Service", "RoleArn",
"RoleSessionName"}``) plays an AWS service assuming a role, as Lambda assumes a function's
execution role: the role's trust policy is evaluated for that service principal, and only if
it allows is a session issued (HTTP 403 otherwise). The local run uses it to run the rotation
handler as the deployed function's role.

Still not enforced (see docs/local-run.md): KMS key policies and grants on every use of a key
by a service for a caller (moto's S3, Secrets Manager, SNS and SQS never call KMS; only the
emulator's own stand-ins for services acting, localaws.events and localaws.malware_scan,
evaluate key policies), KMS grants (CreateGrant), ACLs, Block Public
Access, object ownership, SCPs, session policies, permission boundaries, VPC endpoint keys,
transitive session tags (role chaining keeps only the role's own tags), MFA
(``aws:MultiFactorAuthPresent`` is never present: break-glass cannot be assumed here), the
root user's right to a bucket policy it is denied, DeleteObjects' per-version actions, and
resource ARNs of calls outside :data:`RESOLVED_ACTIONS`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import parse_qs

from moto import settings as moto_settings
from moto.cloudformation.models import cloudformation_backends
from moto.core.authorization import ActionAuthenticatorMixin
from moto.core.exceptions import JsonRESTError, _RESTError
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.iam import access_control
from moto.iam.exceptions import NotFoundException
from moto.iam.models import iam_backends
from moto.kms import responses as kms_responses
from moto.kms.exceptions import AccessDeniedException as KmsAccessDenied
from moto.kms.models import Key, kms_backends
from moto.moto_server.werkzeug_app import MotoRequestHandler
from moto.s3.models import FakeBucket, s3_backends
from moto.secretsmanager.models import secretsmanager_backends
from moto.sns.models import sns_backends
from moto.sqs.models import sqs_backends
from moto.sts.models import sts_backends
from moto.sts.responses import TokenResponse
from moto.utilities.utils import PARTITION_NAMES, get_partition

from localaws.policy import (
    Decision,
    Request,
    applying,
    evaluate,
    evaluate_all,
    explicitly_allows,
    names_request,
    unmet_conditions,
)

TLS_VERSION_ENVIRON_KEY = "localaws.tls_version"

_current_environ: ContextVar[Mapping[str, Any] | None] = ContextVar(
    "localaws_current_environ", default=None
)

# moto names object requests after the HTTP method; AWS authorizes HEAD as GetObject and the
# multipart POSTs (create, complete) as PutObject.
_OBJECT_ACTIONS = {"s3:HeadObject": "s3:GetObject", "s3:PostObject": "s3:PutObject"}
_REQUEST_HEADERS = (
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-acl",
)
_LIST_PARAMETERS = ("prefix", "delimiter", "max-keys")
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
_ASSUMED_ROLE = re.compile(r"^arn:([^:]+):sts::(\d{12}):assumed-role/")


def checks_enabled() -> bool:
    """Whether moto's permission checks are on (``/moto-api/reset-auth``): what moto itself
    asks before it checks a request."""
    return bool(ActionAuthenticatorMixin.request_count
                >= moto_settings.INITIAL_NO_AUTH_ACTION_COUNT)


class ContextMiddleware:
    """WSGI middleware that makes the current request's environ visible to policy checks."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        token = _current_environ.set(environ)
        try:
            return self.app(environ, start_response)
        finally:
            _current_environ.reset(token)


class TlsAwareRequestHandler(MotoRequestHandler):
    """moto's request handler, plus the TLS version negotiated on this connection."""

    # The handler writes the status line, each header and the body unbuffered, one small
    # send each; with Nagle's algorithm on, every response then waited for the client's
    # delayed ACK (~40 ms of a measured 59 ms per PutObject on a keep-alive connection).
    disable_nagle_algorithm = True

    def make_environ(self) -> dict[str, Any]:
        environ = super().make_environ()
        version = getattr(self.connection, "version", None)  # ssl.SSLSocket.version()
        if callable(version) and version():
            environ[TLS_VERSION_ENVIRON_KEY] = version()
        return environ


def _header(environ: Mapping[str, Any], name: str) -> str | None:
    value = environ.get("HTTP_" + name.upper().replace("-", "_"))
    return str(value) if value else None


def access_key_id(environ: Mapping[str, Any]) -> str | None:
    """The access key that signed the request (header or presigned URL), if any."""
    authorization = _header(environ, "Authorization") or ""
    match = _CREDENTIAL.search(authorization)
    if match:
        return match.group(1)
    query = parse_qs(str(environ.get("QUERY_STRING", "")))
    credential = (query.get("X-Amz-Credential") or [""])[0]
    return credential.split("/")[0] or None


# --- who is calling --------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """The principal behind an access key: ``arn`` as STS reports it, its ``account``, the
    ``role_arn`` of a role session and the ``user_name`` of an IAM user (else None), and its
    ``tags`` (``aws:PrincipalTag``): an IAM user's tags; for a role session, the role's tags
    overridden by the session's tags (default none)."""

    arn: str
    account: str
    role_arn: str | None = None
    user_name: str | None = None
    tags: tuple[tuple[str, str], ...] = ()

    @property
    def principal_arn(self) -> str:
        """``aws:PrincipalArn``: the role for a role session, else the caller's own ARN."""
        return self.role_arn or self.arn


def key_owner(key_id: str) -> tuple[str, str, Any] | None:
    """Who holds ``key_id`` in any account: ``(account, partition, owner)``, the owner being
    moto's IAM user or STS role session (it has ``role_arn``); None for a key neither knows."""
    # list(): other threads may create accounts meanwhile (moto issue #5881).
    for account_id, account in list(iam_backends.items()):
        for part in PARTITION_NAMES:
            if part not in account:
                continue
            for user in list(account[part].users.values()):
                if any(k.access_key_id == key_id for k in user.access_keys):
                    return account_id, part, user
    for account_id, sts_account in list(sts_backends.items()):
        for part in PARTITION_NAMES:
            if part not in sts_account:
                continue
            for session in list(sts_account[part].assumed_roles):
                if session.access_key_id == key_id:
                    return account_id, part, session
    return None


def caller_for_key(key_id: str | None, *, default_account: str = DEFAULT_ACCOUNT_ID,
                   partition: str = "aws") -> Caller | None:
    """The owner of ``key_id`` in any account: an IAM user, a role session, or (for keys IAM
    does not know, like the emulator's dummy operator key) the root of ``default_account``, the
    account moto serves such keys. None when the request is not signed."""
    if key_id is None:
        return None
    found = key_owner(key_id)
    if found is None:
        return Caller(arn=f"arn:{partition}:iam::{default_account}:root",
                      account=default_account)
    account_id, part, owner = found
    if hasattr(owner, "role_arn"):
        return Caller(arn=owner.arn, account=account_id, role_arn=owner.role_arn,
                      tags=_session_tags(owner))
    tags = iam_backends[account_id][part].list_user_tags(owner.name)
    return Caller(arn=owner.arn, account=account_id, user_name=owner.name,
                  tags=_tag_pairs(tags))


def _tag_pairs(tags: Iterable[Mapping[str, str]] | None) -> tuple[tuple[str, str], ...]:
    return tuple((str(t["Key"]), str(t["Value"])) for t in tags or ())


# The attribute localaws keeps a session's tags in (moto's AssumedRole ignores AssumeRole's
# Tags parameter).
SESSION_TAGS_ATTRIBUTE = "localaws_session_tags"


def _session_tags(session: Any) -> tuple[tuple[str, str], ...]:
    """A role session's principal tags: the role's tags, then the session's tags, which win
    over a role tag of the same key (tag keys compare case-insensitively)."""
    role = find_role(str(session.role_arn))
    merged: dict[str, tuple[str, str]] = {}
    for key, value in (*_tag_pairs(getattr(role, "tags", None) if role is not None else None),
                       *getattr(session, SESSION_TAGS_ATTRIBUTE, ())):
        merged[key.lower()] = (key, value)
    return tuple(merged.values())


def request_caller(environ: Mapping[str, Any] | None, partition: str) -> Caller | None:
    if environ is None:
        return None
    # A request that names its account (moto's x-moto-account-id header) with a key IAM does
    # not know acts as that account's root, as moto serves it.
    account = _header(environ, "x-moto-account-id") or DEFAULT_ACCOUNT_ID
    return caller_for_key(access_key_id(environ), default_account=account, partition=partition)


def request_context(
    environ: Mapping[str, Any] | None, caller: Caller | None
) -> dict[str, list[str]]:
    """The condition keys of the current request (see the module docstring)."""
    context: dict[str, list[str]] = {}
    if caller is not None:
        context["aws:PrincipalArn"] = [caller.principal_arn]
        context["aws:PrincipalAccount"] = [caller.account]
        context["aws:PrincipalIsAWSService"] = ["false"]
        if caller.user_name is not None:
            context["aws:username"] = [caller.user_name]
        for tag_key, tag_value in caller.tags:
            context[f"aws:PrincipalTag/{tag_key}"] = [tag_value]
    if environ is None:
        # Called outside a server request (in-process moto): no transport facts to report.
        return context
    context["aws:SecureTransport"] = [
        "true" if environ.get("wsgi.url_scheme") == "https" else "false"
    ]
    tls = environ.get(TLS_VERSION_ENVIRON_KEY)
    if tls:
        context["s3:TlsVersion"] = [str(tls).removeprefix("TLSv")]
    if environ.get("REMOTE_ADDR"):
        context["aws:SourceIp"] = [str(environ["REMOTE_ADDR"])]
    for name in _REQUEST_HEADERS:
        value = _header(environ, name)
        if value is not None:
            context[f"s3:{name}"] = [value]
    query = parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
    for name in _LIST_PARAMETERS:
        if name in query:
            context[f"s3:{name}"] = query[name]
    tagging = _header(environ, "x-amz-tagging")
    if tagging is not None:
        tags = parse_qs(tagging, keep_blank_values=True)
        context["s3:RequestObjectTagKeys"] = list(tags)
        for tag_key, values in tags.items():
            context[f"s3:RequestObjectTag/{tag_key}"] = values
    return context


def _caller_request(action: str, resource: str, caller: Caller | None,
                    context: Mapping[str, list[str]]) -> Request:
    return Request(action=action, resource=resource,
                   principal=caller.arn if caller else None,
                   role_arn=caller.role_arn if caller else None, context=context)


def allowed(identity: Decision, resource_policy: Decision, *, same_account: bool,
            resource_grants_caller: bool) -> bool:
    """AWS's combination of an identity-policy and a resource-policy decision: any Deny
    refuses; in the resource's account either Allow suffices (a resource-policy Allow only when
    it names the caller itself: one naming the account delegates to the identity policy);
    across accounts both must allow."""
    if Decision.DENY in (identity, resource_policy):
        return False
    if same_account:
        return identity is Decision.ALLOW or (
            resource_policy is Decision.ALLOW and resource_grants_caller)
    return identity is Decision.ALLOW and resource_policy is Decision.ALLOW


def key_allowed(identity: Decision, key_policy: Decision, *, same_account: bool,
                key_policy_names_caller: bool) -> bool:
    """AWS KMS's combination: any Deny refuses; the key policy must allow; in the key's
    account a key-policy Allow naming the caller itself suffices, one naming the account
    delegates to the identity policies, which must allow; from another account both must
    allow."""
    if Decision.DENY in (identity, key_policy) or key_policy is not Decision.ALLOW:
        return False
    if same_account and key_policy_names_caller:
        return True
    return identity is Decision.ALLOW


# --- the record of decisions ------------------------------------------------------------------


@dataclass(frozen=True)
class Authorization:
    """One permission decision the emulator made: who (``caller`` as STS reports it,
    ``principal`` as ``aws:PrincipalArn``), what (``action`` on ``resource``), and, when
    refused, why (``reason``, in AWS's words where AWS has them)."""

    time: str
    caller: str
    principal: str
    action: str
    resource: str
    allowed: bool
    reason: str = ""


_records: list[Authorization] = []
_records_lock = threading.Lock()


def record(caller: Caller | None, action: str, resource: str, *, allowed: bool,
           reason: str = "") -> None:
    """Add a decision to the record (``GET /localaws/authorizations``)."""
    entry = Authorization(
        time=datetime.now(UTC).isoformat(timespec="milliseconds"),
        caller=caller.arn if caller else "anonymous",
        principal=caller.principal_arn if caller else "anonymous",
        action=action, resource=resource, allowed=allowed, reason=reason)
    with _records_lock:
        _records.append(entry)


def authorizations(since: int = 0) -> tuple[int, list[Authorization]]:
    """The decisions recorded from index ``since`` on, and the index of the next one."""
    with _records_lock:
        return len(_records), list(_records[max(since, 0):])


def authorizations_endpoint(environ: Mapping[str, Any],
                            start_response: Callable[..., Any]) -> list[bytes]:
    """``GET /localaws/authorizations[?since=N]``: ``{"next": M, "records": [...]}``."""
    try:
        since = int((parse_qs(str(environ.get("QUERY_STRING", ""))).get("since") or ["0"])[0])
    except ValueError:
        start_response("400 Bad Request", [("Content-Type", "application/json")])
        return [json.dumps({"error": "since must be an integer"}).encode()]
    following, entries = authorizations(since)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"next": following,
                        "records": [asdict(e) for e in entries]}).encode()]


def _sids(statements: Iterable[Mapping[str, Any]]) -> str:
    return ", ".join(str(s.get("Sid") or "(no Sid)") for s in statements)


def _refusal(identity: Decision, resource_policy: Decision,
             identities: Iterable[Mapping[str, Any]], policy: Mapping[str, Any] | None,
             request: Request, *, same_account: bool) -> str:
    """Why a request was refused, in the words of AWS's AccessDenied messages."""
    if resource_policy is Decision.DENY and policy is not None:
        return ("with an explicit deny in a resource-based policy "
                f"({_sids(applying(policy, request, 'Deny'))})")
    if identity is Decision.DENY:
        denying = [s for d in identities for s in applying(d, request, "Deny")]
        return f"with an explicit deny in an identity-based policy ({_sids(denying)})"
    if identity is not Decision.ALLOW and (same_account or resource_policy is Decision.ALLOW):
        return f"because no identity-based policy allows the {request.action} action"
    return f"because no resource-based policy allows the {request.action} action"


def _trust_refusal(trust: Mapping[str, Any], request: Request, decision: Decision) -> str:
    """Why a role's trust policy refused: an explicit deny, the conditions of the statements
    that name the caller, or no statement naming it."""
    if decision is Decision.DENY:
        return (f"with an explicit deny in the role's trust policy "
                f"({_sids(applying(trust, request, 'Deny'))})")
    unmet = [condition for statement in _as_statements(trust)
             if statement.get("Effect") == "Allow" and names_request(statement, request)
             for condition in unmet_conditions(statement, request)]
    if unmet:
        return ("because the role's trust policy admits the caller only with "
                + "; ".join(unmet))
    return "because the role's trust policy does not name the caller"


def _as_statements(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    statements = document.get("Statement") or []
    return list(statements) if isinstance(statements, list) else [statements]


# --- S3 ---------------------------------------------------------------------------------------

# Bucket subresources whose action moto names wrongly (it falls back to CreateBucket,
# DeleteBucket or ListBucket): parameter -> method -> the action AWS authorizes.
_BUCKET_SUBRESOURCE_ACTIONS: dict[str, dict[str, str]] = {
    "encryption": {"PUT": "s3:PutEncryptionConfiguration",
                   "DELETE": "s3:PutEncryptionConfiguration",
                   "GET": "s3:GetEncryptionConfiguration"},
    "object-lock": {"PUT": "s3:PutBucketObjectLockConfiguration",
                    "GET": "s3:GetBucketObjectLockConfiguration"},
    "ownershipControls": {"PUT": "s3:PutBucketOwnershipControls",
                          "DELETE": "s3:PutBucketOwnershipControls",
                          "GET": "s3:GetBucketOwnershipControls"},
}
# Object subresources that make a GET or HEAD something other than GetObject[Version].
_OBJECT_SUBRESOURCES = frozenset({"acl", "tagging", "uploadId", "retention", "legal-hold",
                                  "attributes", "torrent", "restore", "select"})


def s3_action(action: str, environ: Mapping[str, Any] | None, resource: str) -> str:
    """The action AWS authorizes for this S3 request, where moto names another: HEAD as
    ``GetObject``; a version's GET/HEAD as ``GetObjectVersion``, its DELETE as
    ``DeleteObjectVersion`` (moto's bucket-policy check says ``DeleteObject``);
    GetObjectAttributes; aborting a multipart upload; the encryption, Object Lock and
    ownership configuration of a bucket."""
    action = _OBJECT_ACTIONS.get(action, action)
    if environ is None:
        return action
    method = str(environ.get("REQUEST_METHOD", "")).upper()
    query = parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
    if "/" not in resource.split(":::", 1)[-1]:
        for parameter, actions in _BUCKET_SUBRESOURCE_ACTIONS.items():
            if parameter in query and method in actions:
                return actions[method]
        return action
    versioned = "versionId" in query
    if "tagging" in query and method in _TAGGING_ACTIONS:
        # moto's bucket-policy check names a tagging request by its method alone (PutObject...)
        return _TAGGING_ACTIONS[method][versioned]
    if method == "GET" and "attributes" in query:
        return "s3:GetObjectVersionAttributes" if versioned else "s3:GetObjectAttributes"
    if method == "DELETE":
        if "uploadId" in query:
            return "s3:AbortMultipartUpload"
        if not query.keys() & _OBJECT_SUBRESOURCES:
            return "s3:DeleteObjectVersion" if versioned else "s3:DeleteObject"
    if method in ("GET", "HEAD") and not query.keys() & _OBJECT_SUBRESOURCES:
        return "s3:GetObjectVersion" if versioned else "s3:GetObject"
    return action


_TAGGING_ACTIONS = {
    method: {False: f"s3:{verb}ObjectTagging", True: f"s3:{verb}ObjectVersionTagging"}
    for method, verb in (("GET", "Get"), ("PUT", "Put"), ("DELETE", "Delete"))}


def s3_actions(action: str, environ: Mapping[str, Any] | None, resource: str) -> list[str]:
    """Every action AWS authorizes for this S3 request: :func:`s3_action`'s, and for a
    PutObject carrying tags (``x-amz-tagging``) ``s3:PutObjectTagging`` too (PutObject API
    reference: "you must have the s3:PutObjectTagging permission"; CreateMultipartUpload and
    CopyObject document no such check)."""
    named = s3_action(action, environ, resource)
    if (named == "s3:PutObject" and environ is not None
            and _header(environ, "x-amz-tagging") is not None
            and str(environ.get("REQUEST_METHOD", "")).upper() == "PUT"
            and _header(environ, "x-amz-copy-source") is None
            and not {"uploadId", "partNumber"} & set(
                parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True))):
        return [named, "s3:PutObjectTagging"]
    return [named]


def _bucket_name(resource: str) -> str:
    return resource.split(":::", 1)[-1].split("/", 1)[0]


def _find_bucket(bucket_name: str) -> FakeBucket | None:
    """The bucket in whichever account owns it (bucket names are global)."""
    owner = s3_backends.bucket_accounts.get(bucket_name)
    if owner is None:
        return None
    partition, account_id = owner
    bucket: FakeBucket | None = s3_backends[account_id][partition].buckets.get(bucket_name)
    return bucket


def _bucket_get_permission(self: FakeBucket, action: str, resource: str) -> Any:
    """Replaces ``FakeBucket.get_permission``: the bucket policy with request context. moto
    asks it on every object request, whether permission checks are on or off; a refusal is
    recorded."""
    if self.policy is None:
        return access_control.PermissionResult.NEUTRAL
    environ = _current_environ.get()
    caller = request_caller(environ, self.partition)
    policy = json.loads(self.policy)
    context = {**request_context(environ, caller), "aws:ResourceAccount": [self.account_id]}
    decisions = []
    for named in s3_actions(action, environ, resource):
        request = _caller_request(named, resource, caller, context)
        decision = evaluate(policy, request)
        if decision is Decision.DENY:
            record(caller, request.action, resource, allowed=False,
                   reason=f"with an explicit deny in a resource-based policy "
                   f"({_sids(applying(policy, request, 'Deny'))})")
            break
        decisions.append(decision)
    else:
        # Every action must be allowed for the bucket policy to permit the request.
        decision = (Decision.ALLOW if decisions and all(d is Decision.ALLOW for d in decisions)
                    else Decision.NOT_APPLICABLE)
    return {
        Decision.DENY: access_control.PermissionResult.DENIED,
        Decision.ALLOW: access_control.PermissionResult.PERMITTED,
        Decision.NOT_APPLICABLE: access_control.PermissionResult.NEUTRAL,
    }[decision]


def _identity_documents(policies: Iterable[Any]) -> list[dict[str, Any]]:
    # moto's IAMPolicy already knows every shape a collected policy comes in (managed policy
    # object, inline policy string or dict); reuse its parsing.
    return [access_control.IAMPolicy(p)._policy_json for p in policies]


def _key_id(access_key: Any) -> str:
    return str(access_key._access_key_id)


class ContextualS3IAMRequest(access_control.S3IAMRequest):
    """moto's S3 request check, with identity and bucket policies evaluated in context, for
    callers of any account, under the action AWS authorizes (:func:`s3_action`)."""

    def check_action_permitted(self, resource: str) -> None:
        partition = get_partition(self._region)
        environ = _current_environ.get()
        caller = caller_for_key(_key_id(self._access_key), default_account=self.account_id,
                                partition=partition)
        assert caller is not None
        bucket = _find_bucket(_bucket_name(resource))
        # ListAllMyBuckets and the like name no bucket: the caller's own account answers.
        owner = bucket.account_id if bucket is not None else caller.account
        context = {**request_context(environ, caller), "aws:ResourceAccount": [owner]}
        identities = _identity_documents(self._access_key.collect_policies())
        policy = json.loads(bucket.policy) if bucket is not None and bucket.policy else None
        same_account = owner == caller.account
        for named in s3_actions(self._action, environ, resource):
            request = _caller_request(named, resource, caller, context)
            identity = evaluate_all(identities, request)
            resource_based = evaluate(policy, request) if policy else Decision.NOT_APPLICABLE
            if not allowed(identity, resource_based, same_account=same_account,
                           resource_grants_caller=policy is not None
                           and explicitly_allows(policy, request)):
                record(caller, request.action, resource, allowed=False,
                       reason=_refusal(identity, resource_based, identities, policy, request,
                                       same_account=same_account))
                self._raise_access_denied()
            record(caller, request.action, resource, allowed=True)


# --- other services -----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What a call acts on: its ARN, the owning account, and its resource policy (if any);
    ``key_policy`` when that policy is a KMS key's (:func:`key_allowed` decides), and the
    condition keys the call adds (``context``)."""

    arn: str
    account: str
    policy: dict[str, Any] | None = None
    key_policy: bool = False
    context: Mapping[str, list[str]] | None = None


def _policy_document(text: Any) -> dict[str, Any] | None:
    if not text:
        return None
    document = json.loads(text) if isinstance(text, str | bytes) else text
    return document if isinstance(document, dict) else None


def _secret_target(params: Mapping[str, str], account: str, region: str) -> list[Target] | None:
    secret_id = params.get("SecretId")
    if not secret_id:
        return None
    if secret_id.startswith("arn:"):
        account = secret_id.split(":")[4]
        region = secret_id.split(":")[3]
    secret = secretsmanager_backends[account][region].secrets.get(secret_id)
    if secret is None:
        return None
    return [Target(secret.arn, account, _policy_document(getattr(secret, "policy", None)))]


def _topic_target(params: Mapping[str, str], account: str, region: str) -> list[Target] | None:
    arn = params.get("TopicArn")
    if not arn or not arn.startswith("arn:"):
        return None
    owner, topic_region = arn.split(":")[4], arn.split(":")[3]
    topic = sns_backends[owner][topic_region].topics.get(arn)
    if topic is None:
        return None
    return [Target(arn, owner, _policy_document(topic.policy))]


def _queue_target(params: Mapping[str, str], account: str, region: str) -> list[Target] | None:
    url = params.get("QueueUrl")
    if url:
        # https://<host>/<account>/<name>: the queue's account is in its URL.
        parts = url.rstrip("/").split("/")
        owner = parts[-2] if len(parts) >= 2 and re.fullmatch(r"\d{12}", parts[-2]) \
            else account
        name = parts[-1]
    elif params.get("QueueName"):
        # GetQueueUrl names the queue (and, for another account's, its owner).
        owner, name = params.get("QueueOwnerAWSAccountId") or account, params["QueueName"]
    else:
        return None
    queue = sqs_backends[owner][region].queues.get(name)
    if queue is None:
        return None
    return [Target(queue.queue_arn, owner, _policy_document(queue.policy))]


def _stack_target(params: Mapping[str, str], account: str, region: str) -> list[Target] | None:
    """A CloudFormation call's stack, as IAM names it: the stack's ARN (its id) when it exists;
    ``stack/<name>/*`` for one about to be created (its id is not known yet); ``*`` for calls
    that name no stack (ListStacks, DescribeStacks of all stacks, a template summary of a
    template URL)."""
    name = params.get("StackName")
    backend = cloudformation_backends[account][region]
    change_set = params.get("ChangeSetName", "")
    if not name and change_set.startswith("arn:"):
        found = backend.change_sets.get(change_set)
        name = getattr(found, "stack_id", None) if found is not None else None
    if not name:
        return [Target("*", account)]
    if name.startswith("arn:"):
        return [Target(name, name.split(":")[4])]
    for stack in list(backend.stacks.values()):
        if stack.name == name and stack.status != "DELETE_COMPLETE":
            return [Target(stack.stack_id, account)]
    return [Target(f"arn:{get_partition(region)}:cloudformation:{region}:{account}:stack/"
                   f"{name}/*", account)]


def _parameter_target(params: Mapping[str, str], account: str,
                      region: str) -> list[Target] | None:
    """SSM parameters by name (GetParameter, PutParameter...) or names (GetParameters)."""
    if params.get("Name"):
        names = [params["Name"]]
    elif params.get("Names"):
        try:
            names = [str(n) for n in json.loads(params["Names"])]
        except (TypeError, ValueError):
            return None
    else:
        return None
    prefix = f"arn:{get_partition(region)}:ssm:{region}:{account}:parameter/"
    return [Target(n if n.startswith("arn:") else prefix + n.lstrip("/"), account)
            for n in names]


def _user_target(params: Mapping[str, str], account: str, region: str,
                 caller: Caller) -> list[Target] | None:
    backend = iam_backends[account][get_partition(region)]
    name = params.get("UserName")
    if name is None and params.get("AccessKeyId"):
        owner = backend.get_user_from_access_key_id(params["AccessKeyId"])
        name = owner.name if owner is not None else None
    if name is None:
        name = caller.user_name  # IAM's default: the calling user itself
    if name is None or name not in backend.users:
        return None
    return [Target(backend.users[name].arn, account)]


def _key_target(params: Mapping[str, str], account: str, region: str) -> list[Target] | None:
    """A KMS call's key (``KeyId``: id, ARN, alias name or alias ARN), with its key policy and
    the call's condition keys: ``kms:RequestAlias`` when it names the key by an alias,
    ``kms:SigningAlgorithm``, ``kms:MessageType``, ``kms:EncryptionContext:<key>``."""
    key_id = params.get("KeyId")
    if not key_id:
        return None
    if key_id.startswith("arn:"):
        account, region = key_id.split(":")[4], key_id.split(":")[3]
    try:
        key = kms_backends[account][region].describe_key(key_id)
    except Exception:  # moto raises several not-found errors; let moto answer the call
        return None
    context: dict[str, list[str]] = {}
    alias = key_id.split(":", 5)[-1] if key_id.startswith("arn:") else key_id
    if alias.startswith("alias/"):
        context["kms:RequestAlias"] = [alias]
    for parameter, condition_key in (("SigningAlgorithm", "kms:SigningAlgorithm"),
                                     ("MessageType", "kms:MessageType")):
        if params.get(parameter):
            context[condition_key] = [params[parameter]]
    try:
        encryption_context = json.loads(params.get("EncryptionContext") or "{}")
    except ValueError:
        encryption_context = {}
    for name, value in (encryption_context or {}).items():
        context[f"kms:EncryptionContext:{name}"] = [str(value)]
    return [Target(key.arn, key.account_id, _policy_document(key.policy), key_policy=True,
                   context=context)]


_USER_KEY_ACTIONS = frozenset({
    "iam:ListAccessKeys", "iam:CreateAccessKey", "iam:UpdateAccessKey", "iam:DeleteAccessKey",
    "iam:GetAccessKeyLastUsed",
})

# service prefix -> how to find the resources a call acts on. These are the calls of our own
# code paths (CDK CLI, rotation handler, importer, local run); every other call keeps moto's
# check.
RESOLVED_ACTIONS: dict[str, Callable[[Mapping[str, str], str, str], list[Target] | None]] = {
    "secretsmanager": _secret_target,
    "sns": _topic_target,
    "sqs": _queue_target,
    "cloudformation": _stack_target,
    "ssm": _parameter_target,
    "kms": _key_target,
}
# CloudFormation calls that hand CloudFormation a role (RoleARN): the caller needs
# iam:PassRole on it, and CloudFormation must be able to assume it.
_PASSES_ROLE_TO_CLOUDFORMATION = frozenset({
    "cloudformation:CreateChangeSet", "cloudformation:CreateStack",
    "cloudformation:UpdateStack"})
CLOUDFORMATION = "cloudformation.amazonaws.com"


def _parameters(data: Any, body: Any) -> dict[str, str]:
    """The call's parameters: a JSON body (JSON protocols) or the query/form (query
    protocols), flattened to one string per name."""
    if body:
        try:
            parsed = json.loads(body)
        except (TypeError, ValueError):
            parsed = None
        if isinstance(parsed, dict):
            return {str(k): v if isinstance(v, str) else json.dumps(v)
                    for k, v in parsed.items()}
    flat: dict[str, str] = {}
    for name, value in (data or {}).items():
        if isinstance(value, list):
            if value:
                flat[str(name)] = str(value[0])
        else:
            flat[str(name)] = str(value)
    return flat


def session_tag_parameters(params: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The session tags of an AssumeRole call (``Tags.member.N.Key``/``.Value``)."""
    tags = []
    index = 1
    while f"Tags.member.{index}.Key" in params:
        tags.append((params[f"Tags.member.{index}.Key"],
                     params.get(f"Tags.member.{index}.Value", "")))
        index += 1
    return tuple(tags)


def _denial_message(caller: Caller, action: str, resource: str, reason: str) -> str:
    return (f"User: {caller.arn} is not authorized to perform: {action} on resource: "
            f"{resource} {reason}")


class LocalAccessDenied(_RESTError):
    """AccessDenied with AWS's message (who, what, on which resource, why), for the query
    protocols (STS, IAM, CloudFormation, SNS)."""

    code = 403

    def __init__(self, caller: Caller, action: str, resource: str, reason: str) -> None:
        super().__init__("AccessDenied", _denial_message(caller, action, resource, reason))


class LocalAccessDeniedJson(JsonRESTError):
    """The same for the JSON protocols (SSM, Secrets Manager, SQS, KMS):
    ``AccessDeniedException`` in a JSON body, which their clients parse (moto's XML answer
    made the CDK CLI fail with "Unexpected token '<'")."""

    code = 400

    def __init__(self, caller: Caller, action: str, resource: str, reason: str) -> None:
        super().__init__("AccessDeniedException",
                         _denial_message(caller, action, resource, reason))


class ContextualIAMRequest(access_control.IAMRequest):
    """moto's check for non-S3 calls, with the real resource, its policy, request context and
    other accounts where :data:`RESOLVED_ACTIONS` or ``sts:AssumeRole`` apply; the role a
    CloudFormation call passes (``iam:PassRole``). Every decision is recorded."""

    def check_action_permitted(self, resource: str) -> None:
        if self._action == "sts:GetCallerIdentity":
            return  # always allowed, even with an explicit Deny (as moto and AWS do)
        partition = get_partition(self._region)
        caller = caller_for_key(_key_id(self._access_key), default_account=self.account_id,
                                partition=partition)
        assert caller is not None
        params = _parameters(self._data, self._body)
        if self._action == "sts:AssumeRole":
            self._check_assume_role(caller, params)
            return
        service = self._action.split(":", 1)[0]
        targets: list[Target] | None = None
        if self._action in _USER_KEY_ACTIONS:
            targets = _user_target(params, self.account_id, self._region, caller)
        elif service in RESOLVED_ACTIONS:
            targets = RESOLVED_ACTIONS[service](params, self.account_id, self._region)
        if not targets:
            try:
                super().check_action_permitted(resource)
            except Exception:
                record(caller, self._action, resource, allowed=False,
                       reason="refused by moto's own check (identity policies against "
                       "resource *)")
                raise
            record(caller, self._action, resource, allowed=True)
            return
        environ = _current_environ.get()
        identities = _identity_documents(self._access_key.collect_policies())
        context = request_context(environ, caller)
        for target in targets:
            extra = dict(target.context or {})
            if target.key_policy:
                extra["kms:CallerAccount"] = [caller.account]
            request = _caller_request(self._action, target.arn, caller,
                                      {**context, **extra,
                                       "aws:ResourceAccount": [target.account]})
            identity = evaluate_all(identities, request)
            resource_based = (evaluate(target.policy, request) if target.policy
                              else Decision.NOT_APPLICABLE)
            same_account = target.account == caller.account
            names_caller = bool(target.policy) and explicitly_allows(target.policy or {},
                                                                     request)
            permitted = (key_allowed(identity, resource_based, same_account=same_account,
                                     key_policy_names_caller=names_caller)
                         if target.key_policy else
                         allowed(identity, resource_based, same_account=same_account,
                                 resource_grants_caller=names_caller))
            if not permitted:
                self._deny(caller, self._action, target.arn,
                           _refusal(identity, resource_based, identities, target.policy,
                                    request, same_account=same_account))
            record(caller, self._action, target.arn, allowed=True)
        if self._action in _PASSES_ROLE_TO_CLOUDFORMATION and params.get("RoleARN"):
            self._check_pass_role(caller, params["RoleARN"], identities, context)

    def _deny(self, caller: Caller, action: str, resource: str, reason: str) -> NoReturn:
        record(caller, action, resource, allowed=False, reason=reason)
        headers = {str(k).lower(): v for k, v in (self._headers or {}).items()}
        if "x-amz-target" in headers:
            raise LocalAccessDeniedJson(caller, action, resource, reason)
        raise LocalAccessDenied(caller, action, resource, reason)

    def _check_pass_role(self, caller: Caller, role_arn: str,
                         identities: list[dict[str, Any]],
                         context: Mapping[str, list[str]]) -> None:
        """``iam:PassRole`` of the stack's role to CloudFormation (identity policies, with
        ``iam:PassedToService``), and that role's trust policy admitting CloudFormation, as
        CreateStack and CreateChangeSet check before anything is created."""
        request = _caller_request("iam:PassRole", role_arn, caller,
                                  {**context, "iam:PassedToService": [CLOUDFORMATION]})
        identity = evaluate_all(identities, request)
        if identity is not Decision.ALLOW:
            self._deny(caller, "iam:PassRole", role_arn,
                       _refusal(identity, Decision.NOT_APPLICABLE, identities, None, request,
                                same_account=True))
        record(caller, "iam:PassRole", role_arn, allowed=True)
        role = find_role(role_arn)
        trust = _policy_document(role.assume_role_policy_document) if role is not None else None
        assume = Request(action="sts:AssumeRole", resource=role_arn, service=CLOUDFORMATION,
                         context={"aws:SecureTransport": ["true"]})
        if trust is None or evaluate(trust, assume) is not Decision.ALLOW:
            record(None, "sts:AssumeRole", role_arn, allowed=False,
                   reason=f"{CLOUDFORMATION} may not assume the role: "
                   + ("it does not exist" if trust is None else "its trust policy "
                      "does not admit the service"))
            raise _RESTError("ValidationError",
                             f"Role {role_arn} is invalid or cannot be assumed")

    def _check_assume_role(self, caller: Caller, params: Mapping[str, str]) -> None:
        role_arn = params.get("RoleArn", "")
        role = find_role(role_arn)
        if role is None:
            self._deny(caller, "sts:AssumeRole", role_arn or "*",
                       f"role {role_arn or '(none)'} does not exist")
            return
        context = request_context(_current_environ.get(), caller)
        for name, key in (("ExternalId", "sts:ExternalId"),
                          ("RoleSessionName", "sts:RoleSessionName")):
            if params.get(name):
                context[key] = [params[name]]
        tags = session_tag_parameters(params)
        for key, value in tags:
            context[f"aws:RequestTag/{key}"] = [value]
        if tags:
            context["aws:TagKeys"] = [key for key, _ in tags]
        trust = _policy_document(role.assume_role_policy_document) or {}
        identities = _identity_documents(self._access_key.collect_policies())
        same_account = role.account_id == caller.account
        # Session tags need sts:TagSession too, from the trust policy and (as for AssumeRole)
        # the caller's identity policies.
        for action in ("sts:AssumeRole", *(("sts:TagSession",) if tags else ())):
            request = _caller_request(action, role.arn, caller, context)
            identity = evaluate_all(identities, request)
            trusted = evaluate(trust, request)
            if trusted is not Decision.ALLOW:
                self._deny(caller, action, role.arn, _trust_refusal(trust, request, trusted))
            if not allowed(identity, trusted, same_account=same_account,
                           resource_grants_caller=explicitly_allows(trust, request)):
                self._deny(caller, action, role.arn,
                           _refusal(identity, Decision.ALLOW, identities, None, request,
                                    same_account=same_account))
        record(caller, "sts:AssumeRole", role.arn, allowed=True)
        duration = int(params.get("DurationSeconds") or 3600)
        maximum = int(role.max_session_duration or 3600)
        if duration > maximum:
            # An HTTP error: the check runs before moto's handlers, which map service errors.
            raise _RESTError(
                "ValidationError", f"The requested DurationSeconds exceeds the "
                f"MaxSessionDuration set for this role ({maximum} seconds).")


def find_role(role_arn: str) -> Any:
    """The role ``role_arn`` in its own account's IAM, or None."""
    parts = role_arn.split(":")
    if len(parts) < 6 or parts[2] != "iam" or not parts[5].startswith("role/"):
        return None
    account = iam_backends.get(parts[4]) if parts[4] in iam_backends else None
    if account is None or parts[1] not in account:
        return None
    try:
        return account[parts[1]].get_role_by_arn(role_arn)
    except NotFoundException:
        return None


# --- services acting ------------------------------------------------------------------------


def trusts_service(role: Any, service: str) -> bool:
    """Whether ``role``'s trust policy lets the AWS ``service`` principal assume it."""
    trust = _policy_document(role.assume_role_policy_document) or {}
    request = Request(action="sts:AssumeRole", resource=role.arn, service=service,
                      context={"aws:SecureTransport": ["true"]})
    return evaluate(trust, request) is Decision.ALLOW


def service_session_caller(role: Any, session_name: str) -> Caller:
    """The caller a session of ``role`` is, as a service that assumed it acts (the role's
    tags are its principal tags), without issuing credentials: for services the emulator
    plays in-process (localaws.malware_scan)."""
    partition = str(role.arn).split(":")[1]
    return Caller(arn=f"arn:{partition}:sts::{role.account_id}:assumed-role/{role.name}/"
                  f"{session_name}", account=role.account_id, role_arn=role.arn,
                  tags=_tag_pairs(getattr(role, "tags", None)))


def role_policies(role: Any) -> list[dict[str, Any]]:
    """Every identity policy of ``role`` (inline and attached), as documents."""
    backend = iam_backends[role.account_id][str(role.arn).split(":")[1]]
    documents = []
    for name in backend.list_role_policies(role.name):
        _, document = backend.get_role_policy(role.name, name)
        documents.append(json.loads(document) if isinstance(document, str) else document)
    attached, _ = backend.list_attached_role_policies(role.name)
    for policy in attached:
        version = next(v for v in policy.versions if v.is_default)
        document = version.document
        documents.append(json.loads(document) if isinstance(document, str) else document)
    return documents


def service_role_session(service: str, role_arn: str, session_name: str,
                         region: str = "us-east-1") -> dict[str, str]:
    """Play ``service`` assuming ``role_arn``: the role's trust policy must allow the service
    principal. Returns the session's credentials; raises PermissionError if not trusted."""
    role = find_role(role_arn)
    if role is None:
        raise PermissionError(f"role {role_arn} does not exist")
    if not trusts_service(role, service):
        raise PermissionError(f"the trust policy of {role_arn} does not allow {service} to "
                              "assume it")
    partition = role_arn.split(":")[1]
    session = sts_backends[role.account_id][partition].assume_role(
        region_name=region, role_session_name=session_name, role_arn=role.arn, policy="",
        duration=3600, external_id="")
    return {"AccessKeyId": session.access_key_id,
            "SecretAccessKey": session.secret_access_key,
            "SessionToken": session.session_token, "Arn": session.arn}


def service_session_endpoint(environ: Mapping[str, Any],
                              start_response: Callable[..., Any]) -> list[bytes]:
    def reply(status: str, body: Mapping[str, Any]) -> list[bytes]:
        start_response(status, [("Content-Type", "application/json")])
        return [json.dumps(body).encode()]

    if environ.get("REQUEST_METHOD") != "POST":
        return reply("405 Method Not Allowed", {"error": "POST a JSON body"})
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length) or b"{}")
        service, role_arn = str(body["Service"]), str(body["RoleArn"])
        session_name = str(body.get("RoleSessionName") or "localaws")
    except (KeyError, TypeError, ValueError) as error:
        return reply("400 Bad Request", {"error": f"expected Service and RoleArn ({error})"})
    try:
        return reply("200 OK", service_role_session(service, role_arn, session_name))
    except PermissionError as refused:
        return reply("403 Forbidden", {"error": str(refused)})


# --- access keys and KMS -------------------------------------------------------------------

_moto_create_access_key = access_control.create_access_key


def _create_access_key(
    account_id: str, partition: str, access_key_id: str, headers: dict[str, str]
) -> Any:
    """Replaces ``access_control.create_access_key``: refuse keys that are not Active."""
    key = _moto_create_access_key(account_id, partition, access_key_id, headers)
    if isinstance(key, access_control.IAMUserAccessKey):
        user = iam_backends[account_id][partition].get_user(key._owner_user_name)
        if any(k.access_key_id == access_key_id and k.status != "Active"
               for k in user.access_keys):
            raise access_control.CreateAccessKeyFailure(reason="InvalidId")
    return key


def _kms_validate_policy(key: Key, action: str) -> None:
    """Replaces ``moto.kms.policy_validator.validate_policy``: refuse only when a Deny statement
    of the key policy applies to this caller in this context."""
    try:
        document = json.loads(key.policy)
    except (TypeError, ValueError):
        return
    environ = _current_environ.get()
    caller = request_caller(environ, get_partition(key.region))
    decision = evaluate(
        {"Statement": [s for s in document.get("Statement", []) if s.get("Effect") == "Deny"]},
        _caller_request(action, key.arn, caller, request_context(environ, caller)),
    )
    if decision is Decision.DENY:
        raise KmsAccessDenied(message=f"Action {action} is denied by the key policy")


_moto_assume_role = TokenResponse.assume_role


def _assume_role_keeping_tags(self: TokenResponse) -> Any:
    """Replaces ``TokenResponse.assume_role``: the session keeps the call's session tags
    (moto ignores them), which become its ``aws:PrincipalTag`` keys."""
    result = _moto_assume_role(self)
    tags = session_tag_parameters(_parameters(self.querystring, None))
    session = result.result.get("Credentials") if isinstance(result.result, dict) else None
    if tags and session is not None:
        setattr(session, SESSION_TAGS_ATTRIBUTE, tags)
    return result


_installed = False


def install() -> None:
    """Apply the replacements (idempotent)."""
    global _installed
    if _installed:
        return
    FakeBucket.get_permission = _bucket_get_permission  # type: ignore[method-assign]
    # moto.core.authorization imports S3IAMRequest and IAMRequest from this module at call
    # time.
    access_control.S3IAMRequest = ContextualS3IAMRequest  # type: ignore[misc]
    access_control.IAMRequest = ContextualIAMRequest  # type: ignore[misc]
    # IAMRequestBase.__init__ calls this module-level function by name.
    access_control.create_access_key = _create_access_key
    TokenResponse.assume_role = _assume_role_keeping_tags  # type: ignore[method-assign]
    # moto.kms.responses imported validate_policy by name; replace that reference.
    kms_responses.validate_policy = _kms_validate_policy  # type: ignore[attr-defined]
    _installed = True
