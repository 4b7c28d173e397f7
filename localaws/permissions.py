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

How they are filled: every request's WSGI environ is kept for the request's duration
(:class:`ContextMiddleware`, one request per thread in the emulator), and the TLS version
actually negotiated on the connection is added to it (:class:`TlsAwareRequestHandler`). From
that, :func:`request_context` derives the condition keys AWS would supply for S3:

==========================================  ===============================================
``aws:SecureTransport``                     ``true`` iff the request arrived over TLS
``s3:TlsVersion``                           the negotiated version (``1.2``, ``1.3``)
``aws:SourceIp``                            the client address (127.0.0.1 locally)
``aws:PrincipalArn`` / ``aws:PrincipalAccount``  the IAM user or role session owning the
                                            signing key, else the account root
``aws:username``                            the IAM user's name
``s3:x-amz-server-side-encryption``,        the request headers of the same names, when
``s3:x-amz-server-side-encryption-aws-kms-key-id``, present
``s3:x-amz-server-side-encryption-customer-algorithm``
``s3:prefix``, ``s3:delimiter``, ``s3:max-keys``  the list request's query parameters
==========================================  ===============================================

and :mod:`localaws.policy` evaluates the bucket policy (always, as moto does) and, when
permission checks are on, the caller's identity policies together with the bucket policy, the
same-account way: allowed if either allows and neither denies. For KMS ``DescribeKey`` the key
policy's Deny statements are evaluated with the caller's ``aws:PrincipalArn`` (and no
``kms:ViaService``: a direct call is not made through a service), as moto intends but
with principals and conditions.

Access keys: :func:`_create_access_key` refuses a key that is not ``Active`` as unknown (AWS
answers ``InvalidClientTokenId``; moto's S3 says ``InvalidAccessKeyId``).

Still not enforced (see docs/local-run.md): KMS key policies and grants on S3's use of the key
(moto's S3 never calls KMS for SSE-KMS), ACLs, Block Public Access, object ownership, SCPs,
session policies, permission boundaries, and VPC endpoint keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import Any
from urllib.parse import parse_qs

from moto.iam import access_control
from moto.iam.models import iam_backends
from moto.kms import responses as kms_responses
from moto.kms.exceptions import AccessDeniedException as KmsAccessDenied
from moto.kms.models import Key
from moto.moto_server.werkzeug_app import MotoRequestHandler
from moto.s3.models import FakeBucket, s3_backends
from moto.sts.models import sts_backends
from moto.utilities.utils import get_partition

from localaws.policy import Decision, Request, evaluate, evaluate_all

TLS_VERSION_ENVIRON_KEY = "localaws.tls_version"

_current_environ: ContextVar[Mapping[str, Any] | None] = ContextVar(
    "localaws_current_environ", default=None
)

# moto names object requests after the HTTP method; AWS authorizes HEAD as GetObject and the
# multipart POSTs (create, complete) as PutObject.
_OBJECT_ACTIONS = {"s3:HeadObject": "s3:GetObject", "s3:PostObject": "s3:PutObject"}
_SSE_HEADERS = (
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-customer-algorithm",
)
_LIST_PARAMETERS = ("prefix", "delimiter", "max-keys")
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


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


def caller_arn(
    account_id: str, partition: str, key_id: str | None
) -> tuple[str | None, str | None]:
    """(principal ARN, IAM user name) of the key's owner; the account root for keys IAM does
    not know (the emulator's dummy operator credentials); (None, None) when unsigned."""
    if key_id is None:
        return None, None
    for user in iam_backends[account_id][partition].users.values():
        if any(k.access_key_id == key_id for k in user.access_keys):
            return user.arn, user.name
    for role in sts_backends[account_id][partition].assumed_roles:
        if role.access_key_id == key_id:
            return role.arn, None
    return f"arn:{partition}:iam::{account_id}:root", None


def request_context(
    environ: Mapping[str, Any] | None, principal: str | None, user_name: str | None
) -> dict[str, list[str]]:
    """The condition keys of the current request (see the module docstring)."""
    context: dict[str, list[str]] = {}
    if principal is not None:
        context["aws:PrincipalArn"] = [principal]
        context["aws:PrincipalAccount"] = [principal.split(":")[4]]
    if user_name is not None:
        context["aws:username"] = [user_name]
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
    for name in _SSE_HEADERS:
        value = _header(environ, name)
        if value is not None:
            context[f"s3:{name}"] = [value]
    query = parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True)
    for name in _LIST_PARAMETERS:
        if name in query:
            context[f"s3:{name}"] = query[name]
    return context


def _bucket_name(resource: str) -> str:
    return resource.split(":::", 1)[-1].split("/", 1)[0]


def _bucket_policy(account_id: str, partition: str, bucket_name: str) -> dict[str, Any] | None:
    bucket = s3_backends[account_id][partition].buckets.get(bucket_name)
    if bucket is None or bucket.policy is None:
        return None
    policy: dict[str, Any] = json.loads(bucket.policy)
    return policy


def _bucket_get_permission(self: FakeBucket, action: str, resource: str) -> Any:
    """Replaces ``FakeBucket.get_permission``: the bucket policy with request context."""
    if self.policy is None:
        return access_control.PermissionResult.NEUTRAL
    environ = _current_environ.get()
    principal, user_name = caller_arn(
        self.account_id, self.partition, access_key_id(environ) if environ else None
    )
    decision = evaluate(
        json.loads(self.policy),
        Request(
            action=_OBJECT_ACTIONS.get(action, action),
            resource=resource,
            principal=principal,
            context=request_context(environ, principal, user_name),
        ),
    )
    return {
        Decision.DENY: access_control.PermissionResult.DENIED,
        Decision.ALLOW: access_control.PermissionResult.PERMITTED,
        Decision.NOT_APPLICABLE: access_control.PermissionResult.NEUTRAL,
    }[decision]


def _identity_documents(policies: Iterable[Any]) -> list[dict[str, Any]]:
    # moto's IAMPolicy already knows every shape a collected policy comes in (managed policy
    # object, inline policy string or dict); reuse its parsing.
    return [access_control.IAMPolicy(p)._policy_json for p in policies]


class ContextualS3IAMRequest(access_control.S3IAMRequest):
    """moto's S3 request check, with identity and bucket policies evaluated in context."""

    def check_action_permitted(self, resource: str) -> None:
        partition = get_partition(self._region)
        environ = _current_environ.get()
        principal = self._access_key.arn
        user_name = principal.split(":user/", 1)[1] if ":user/" in principal else None
        request = Request(
            action=self._action,
            resource=resource,
            principal=principal,
            context=request_context(environ, principal, user_name),
        )
        identity = evaluate_all(
            _identity_documents(self._access_key.collect_policies()), request
        )
        bucket_policy = _bucket_policy(self.account_id, partition, _bucket_name(resource))
        resource_based = (
            evaluate(bucket_policy, request) if bucket_policy else Decision.NOT_APPLICABLE
        )
        if Decision.DENY in (identity, resource_based):
            self._raise_access_denied()
        if Decision.ALLOW not in (identity, resource_based):
            self._raise_access_denied()


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
    partition = get_partition(key.region)
    principal, user_name = caller_arn(
        key.account_id, partition, access_key_id(environ) if environ else None
    )
    decision = evaluate(
        {"Statement": [s for s in document.get("Statement", []) if s.get("Effect") == "Deny"]},
        Request(action=action, resource=key.arn, principal=principal,
                context=request_context(environ, principal, user_name)),
    )
    if decision is Decision.DENY:
        raise KmsAccessDenied(message=f"Action {action} is denied by the key policy")


_installed = False


def install() -> None:
    """Apply the replacements (idempotent)."""
    global _installed
    if _installed:
        return
    FakeBucket.get_permission = _bucket_get_permission  # type: ignore[method-assign]
    # moto.core.authorization imports S3IAMRequest from this module at call time.
    access_control.S3IAMRequest = ContextualS3IAMRequest  # type: ignore[misc]
    # IAMRequestBase.__init__ calls this module-level function by name.
    access_control.create_access_key = _create_access_key
    # moto.kms.responses imported validate_policy by name; replace that reference.
    kms_responses.validate_policy = _kms_validate_policy  # type: ignore[attr-defined]
    _installed = True
