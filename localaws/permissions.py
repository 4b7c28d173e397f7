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
   was refused everything it is allowed, and resource policies (topic, queue, secret) never
   counted.
9. No AWS service ever acts in the emulator, so a role whose trust policy admits only a
   service (our rotation function's role, ``lambda.amazonaws.com``) cannot be used as itself.

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
``s3:x-amz-server-side-encryption``,        the request headers of the same names, when
``s3:x-amz-server-side-encryption-aws-kms-key-id``, present
``s3:x-amz-server-side-encryption-customer-algorithm``, ``s3:x-amz-acl``
``s3:prefix``, ``s3:delimiter``, ``s3:max-keys``  the list request's query parameters
``sts:ExternalId``, ``sts:RoleSessionName``  the AssumeRole parameters
==========================================  ===============================================

and :mod:`localaws.policy` evaluates, as AWS documents it
(https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic-cross-account.html):

- the bucket policy, always, as moto does (with the caller, found in any account);
- with permission checks on, for S3 and for the calls listed in :data:`RESOLVED_ACTIONS`
  (Secrets Manager by ``SecretId``, SNS by ``TopicArn``, SQS by ``QueueUrl``, IAM access-key
  calls by ``UserName``/``AccessKeyId``): the caller's identity policies against the real
  resource ARN, together with the resource's policy (bucket, secret, topic, queue). Any Deny
  refuses. In the resource's own account, an Allow in either suffices (a resource-policy
  Allow alone only when it names the caller itself, not merely its account); from another
  account, both must allow;
- ``sts:AssumeRole``: the caller's identity policies and the role's trust policy, found in
  the role's account, with ``sts:ExternalId``; the trust policy must allow, and so must the
  identity policy unless the role is in the caller's account and the trust policy names the
  caller itself. ``DurationSeconds`` beyond the role's maximum is refused.

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
by a service (moto's S3, Secrets Manager, SNS and SQS never call KMS), ACLs, Block Public
Access, object ownership, SCPs, session policies, permission boundaries, VPC endpoint keys,
and resource ARNs of calls outside :data:`RESOLVED_ACTIONS`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from moto.core.exceptions import _RESTError
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.iam import access_control
from moto.iam.exceptions import NotFoundException
from moto.iam.models import iam_backends
from moto.kms import responses as kms_responses
from moto.kms.exceptions import AccessDeniedException as KmsAccessDenied
from moto.kms.models import Key
from moto.moto_server.werkzeug_app import MotoRequestHandler
from moto.s3.models import FakeBucket, s3_backends
from moto.secretsmanager.models import secretsmanager_backends
from moto.sns.models import sns_backends
from moto.sqs.models import sqs_backends
from moto.sts.models import sts_backends
from moto.utilities.utils import PARTITION_NAMES, get_partition

from localaws.policy import Decision, Request, evaluate, evaluate_all, explicitly_allows

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


# --- who is calling --------------------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """The principal behind an access key: ``arn`` as STS reports it, its ``account``, the
    ``role_arn`` of a role session and the ``user_name`` of an IAM user (else None)."""

    arn: str
    account: str
    role_arn: str | None = None
    user_name: str | None = None

    @property
    def principal_arn(self) -> str:
        """``aws:PrincipalArn``: the role for a role session, else the caller's own ARN."""
        return self.role_arn or self.arn


def caller_for_key(key_id: str | None, *, default_account: str = DEFAULT_ACCOUNT_ID,
                   partition: str = "aws") -> Caller | None:
    """The owner of ``key_id`` in any account: an IAM user, a role session, or (for keys IAM
    does not know, like the emulator's dummy operator key) the root of ``default_account``, the
    account moto serves such keys. None when the request is not signed."""
    if key_id is None:
        return None
    # list(): other threads may create accounts meanwhile (moto issue #5881).
    for account_id, account in list(iam_backends.items()):
        for part in PARTITION_NAMES:
            if part not in account:
                continue
            for user in list(account[part].users.values()):
                if any(k.access_key_id == key_id for k in user.access_keys):
                    return Caller(arn=user.arn, account=account_id, user_name=user.name)
    for account_id, sts_account in list(sts_backends.items()):
        for part in PARTITION_NAMES:
            if part not in sts_account:
                continue
            for session in list(sts_account[part].assumed_roles):
                if session.access_key_id == key_id:
                    return Caller(arn=session.arn, account=account_id,
                                  role_arn=session.role_arn)
    return Caller(arn=f"arn:{partition}:iam::{default_account}:root", account=default_account)


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
        if caller.user_name is not None:
            context["aws:username"] = [caller.user_name]
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


# --- S3 ---------------------------------------------------------------------------------------


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
    """Replaces ``FakeBucket.get_permission``: the bucket policy with request context."""
    if self.policy is None:
        return access_control.PermissionResult.NEUTRAL
    environ = _current_environ.get()
    caller = request_caller(environ, self.partition)
    decision = evaluate(
        json.loads(self.policy),
        _caller_request(_OBJECT_ACTIONS.get(action, action), resource, caller,
                        request_context(environ, caller)),
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


def _key_id(access_key: Any) -> str:
    return str(access_key._access_key_id)


class ContextualS3IAMRequest(access_control.S3IAMRequest):
    """moto's S3 request check, with identity and bucket policies evaluated in context, for
    callers of any account."""

    def check_action_permitted(self, resource: str) -> None:
        partition = get_partition(self._region)
        environ = _current_environ.get()
        caller = caller_for_key(_key_id(self._access_key), default_account=self.account_id,
                                partition=partition)
        assert caller is not None
        request = _caller_request(self._action, resource, caller,
                                  request_context(environ, caller))
        identity = evaluate_all(
            _identity_documents(self._access_key.collect_policies()), request
        )
        bucket = _find_bucket(_bucket_name(resource))
        policy = json.loads(bucket.policy) if bucket is not None and bucket.policy else None
        resource_based = evaluate(policy, request) if policy else Decision.NOT_APPLICABLE
        # ListAllMyBuckets and the like name no bucket: the caller's own account answers.
        owner = bucket.account_id if bucket is not None else caller.account
        if not allowed(identity, resource_based, same_account=owner == caller.account,
                       resource_grants_caller=policy is not None
                       and explicitly_allows(policy, request)):
            self._raise_access_denied()


# --- other services -----------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What a call acts on: its ARN, the owning account, and its resource policy (if any)."""

    arn: str
    account: str
    policy: dict[str, Any] | None = None


def _policy_document(text: Any) -> dict[str, Any] | None:
    if not text:
        return None
    document = json.loads(text) if isinstance(text, str | bytes) else text
    return document if isinstance(document, dict) else None


def _secret_target(params: Mapping[str, str], account: str, region: str) -> Target | None:
    secret_id = params.get("SecretId")
    if not secret_id:
        return None
    if secret_id.startswith("arn:"):
        account = secret_id.split(":")[4]
        region = secret_id.split(":")[3]
    secret = secretsmanager_backends[account][region].secrets.get(secret_id)
    if secret is None:
        return None
    return Target(secret.arn, account, _policy_document(getattr(secret, "policy", None)))


def _topic_target(params: Mapping[str, str], account: str, region: str) -> Target | None:
    arn = params.get("TopicArn")
    if not arn or not arn.startswith("arn:"):
        return None
    owner, topic_region = arn.split(":")[4], arn.split(":")[3]
    topic = sns_backends[owner][topic_region].topics.get(arn)
    if topic is None:
        return None
    return Target(arn, owner, _policy_document(topic.policy))


def _queue_target(params: Mapping[str, str], account: str, region: str) -> Target | None:
    url = params.get("QueueUrl")
    if not url:
        return None
    # https://<host>/<account>/<name>: the queue's account is in its URL.
    parts = url.rstrip("/").split("/")
    owner = parts[-2] if len(parts) >= 2 and re.fullmatch(r"\d{12}", parts[-2]) else account
    queue = sqs_backends[owner][region].queues.get(parts[-1])
    if queue is None:
        return None
    return Target(queue.queue_arn, owner, _policy_document(queue.policy))


def _user_target(params: Mapping[str, str], account: str, region: str,
                 caller: Caller) -> Target | None:
    backend = iam_backends[account][get_partition(region)]
    name = params.get("UserName")
    if name is None and params.get("AccessKeyId"):
        owner = backend.get_user_from_access_key_id(params["AccessKeyId"])
        name = owner.name if owner is not None else None
    if name is None:
        name = caller.user_name  # IAM's default: the calling user itself
    if name is None or name not in backend.users:
        return None
    return Target(backend.users[name].arn, account)


_USER_KEY_ACTIONS = frozenset({
    "iam:ListAccessKeys", "iam:CreateAccessKey", "iam:UpdateAccessKey", "iam:DeleteAccessKey",
    "iam:GetAccessKeyLastUsed",
})

# service prefix -> how to find the resource a call acts on. These are the calls of our own
# code paths (rotation handler, importer, local run); every other call keeps moto's check.
RESOLVED_ACTIONS: dict[str, Callable[[Mapping[str, str], str, str], Target | None]] = {
    "secretsmanager": _secret_target,
    "sns": _topic_target,
    "sqs": _queue_target,
}


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


class ContextualIAMRequest(access_control.IAMRequest):
    """moto's check for non-S3 calls, with the real resource, its policy, request context and
    other accounts where :data:`RESOLVED_ACTIONS` or ``sts:AssumeRole`` apply."""

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
        target: Target | None = None
        if self._action in _USER_KEY_ACTIONS:
            target = _user_target(params, self.account_id, self._region, caller)
        elif service in RESOLVED_ACTIONS:
            target = RESOLVED_ACTIONS[service](params, self.account_id, self._region)
        if target is None:
            super().check_action_permitted(resource)
            return
        environ = _current_environ.get()
        request = _caller_request(self._action, target.arn, caller,
                                  request_context(environ, caller))
        identity = evaluate_all(
            _identity_documents(self._access_key.collect_policies()), request)
        resource_based = (evaluate(target.policy, request) if target.policy
                          else Decision.NOT_APPLICABLE)
        if not allowed(identity, resource_based, same_account=target.account == caller.account,
                       resource_grants_caller=bool(target.policy)
                       and explicitly_allows(target.policy or {}, request)):
            self._raise_access_denied()

    def _check_assume_role(self, caller: Caller, params: Mapping[str, str]) -> None:
        role_arn = params.get("RoleArn", "")
        role = find_role(role_arn)
        if role is None:
            self._raise_access_denied()
            return
        context = request_context(_current_environ.get(), caller)
        for name, key in (("ExternalId", "sts:ExternalId"),
                          ("RoleSessionName", "sts:RoleSessionName")):
            if params.get(name):
                context[key] = [params[name]]
        request = _caller_request("sts:AssumeRole", role.arn, caller, context)
        identity = evaluate_all(
            _identity_documents(self._access_key.collect_policies()), request)
        trust = _policy_document(role.assume_role_policy_document) or {}
        trusted = evaluate(trust, request)
        same_account = role.account_id == caller.account
        if trusted is not Decision.ALLOW or not allowed(
                identity, trusted, same_account=same_account,
                resource_grants_caller=explicitly_allows(trust, request)):
            self._raise_access_denied()
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


def service_role_session(service: str, role_arn: str, session_name: str,
                         region: str = "us-east-1") -> dict[str, str]:
    """Play ``service`` assuming ``role_arn``: the role's trust policy must allow the service
    principal. Returns the session's credentials; raises PermissionError if not trusted."""
    role = find_role(role_arn)
    if role is None:
        raise PermissionError(f"role {role_arn} does not exist")
    trust = _policy_document(role.assume_role_policy_document) or {}
    request = Request(action="sts:AssumeRole", resource=role.arn, service=service,
                      context={"aws:SecureTransport": ["true"]})
    if evaluate(trust, request) is not Decision.ALLOW:
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
    # moto.kms.responses imported validate_policy by name; replace that reference.
    kms_responses.validate_policy = _kms_validate_policy  # type: ignore[attr-defined]
    _installed = True
