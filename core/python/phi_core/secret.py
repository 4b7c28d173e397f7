"""The partner secret (``phi-exchange/<slug>/partner-access-key``): its JSON, written once.

The stack creates the secret with the first access key (:func:`initial_secret`); the rotation
Lambda writes each new version (:func:`with_new_key`) and reads versions back
(:func:`parse_partner_secret`); the operator CLI hands its value over and reads the current key
id; the partner's client reads the hand-over file; the local run reads what it deployed.

Every field but the key's is fixed for the life of the stack, so the template's SecretString
never changes and a later deploy never writes the first key back over a rotated one
(docs/rotation.md).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

USER_NAME = "user_name"
ACCESS_KEY_ID = "access_key_id"
SECRET_ACCESS_KEY = "secret_access_key"  # noqa: S105 - a field name, not a secret
CREATED_AT = "created_at"  # when the key was issued (ISO 8601), set by the rotation
BUCKET = "bucket"
REGION = "region"
BUCKET_OWNER = "bucket_owner"
KMS_KEY_ARN = "kms_key_arn"

# The fields that belong to one access key; every other field is copied to the next version.
KEY_FIELDS = (ACCESS_KEY_ID, SECRET_ACCESS_KEY, CREATED_AT)
REQUIRED = (USER_NAME, ACCESS_KEY_ID, SECRET_ACCESS_KEY)


def initial_secret(*, user_name: Any, access_key_id: Any, secret_access_key: Any, bucket: Any,
                   region: Any, bucket_owner: Any, kms_key_arn: Any) -> dict[str, Any]:
    """The secret's first value (the stack's; each value may be a CDK token or SecretValue)."""
    return {USER_NAME: user_name, ACCESS_KEY_ID: access_key_id,
            SECRET_ACCESS_KEY: secret_access_key, BUCKET: bucket, REGION: region,
            BUCKET_OWNER: bucket_owner, KMS_KEY_ARN: kms_key_arn}


def with_new_key(previous: Mapping[str, Any] | None, *, access_key_id: str,
                 secret_access_key: str, created_at: str) -> dict[str, Any]:
    """The next version: every field of ``previous`` but the key's, and the new key."""
    value = {k: v for k, v in (previous or {}).items() if k not in KEY_FIELDS}
    value.update({ACCESS_KEY_ID: access_key_id, SECRET_ACCESS_KEY: secret_access_key,
                  CREATED_AT: created_at})
    return value


class SecretError(ValueError):
    """Not a partner secret document. The message names what is wrong, never a value."""


@dataclass(frozen=True)
class PartnerSecret:
    user_name: str
    access_key_id: str
    secret_access_key: str
    bucket: str | None = None
    region: str | None = None
    bucket_owner: str | None = None
    kms_key_arn: str | None = None
    created_at: str | None = None

    def __repr__(self) -> str:  # never print a secret key, even in a traceback
        return (f"PartnerSecret(user_name={self.user_name!r}, "
                f"access_key_id={self.access_key_id!r}, secret_access_key=***)")


def parse_partner_secret(document: Any, *, require: tuple[str, ...] = REQUIRED) -> PartnerSecret:
    """A partner secret value (parsed JSON); :class:`SecretError` names the missing fields.
    ``require`` (default: the user and its key) may be narrowed to the key alone."""
    if not isinstance(document, Mapping):
        raise SecretError("is not a JSON object")
    missing = [name for name in require
               if not isinstance(document.get(name), str) or not document.get(name)]
    if missing:
        raise SecretError("lacks " + ", ".join(missing))

    def optional(name: str) -> str | None:
        value = document.get(name)
        return value if isinstance(value, str) and value else None

    return PartnerSecret(user_name=str(document.get(USER_NAME) or ""),
                         access_key_id=str(document[ACCESS_KEY_ID]),
                         secret_access_key=str(document[SECRET_ACCESS_KEY]),
                         bucket=optional(BUCKET), region=optional(REGION),
                         bucket_owner=optional(BUCKET_OWNER), kms_key_arn=optional(KMS_KEY_ARN),
                         created_at=optional(CREATED_AT))


def parse_secret_string(text: str | None, *,
                        require: tuple[str, ...] = REQUIRED) -> PartnerSecret:
    """:func:`parse_partner_secret` of a SecretString."""
    try:
        document = json.loads(text or "")
    except ValueError:
        raise SecretError("is not JSON") from None
    return parse_partner_secret(document, require=require)
