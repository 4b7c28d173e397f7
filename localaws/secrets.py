"""Secrets Manager fix: ``GetSecretValue`` without a stage must return the AWSCURRENT version.

moto 5.2.5 serves a secret's value from ``default_version_id``, which ``PutSecretValue`` with
AWSCURRENT updates but ``UpdateSecretVersionStage`` does not: after a rotation's finishSecret
moves AWSCURRENT to the new version, a plain ``GetSecretValue`` (what the operator CLI and most
clients call) still returned the old key. In AWS it returns whatever AWSCURRENT labels.
"""

from __future__ import annotations

from typing import Any

from moto.secretsmanager.models import FakeSecret, SecretsManagerBackend

_original = SecretsManagerBackend.update_secret_version_stage


def _update_secret_version_stage(self: SecretsManagerBackend, secret_id: str,
                                 version_stage: str, remove_from_version_id: str,
                                 move_to_version_id: str) -> Any:
    result = _original(self, secret_id, version_stage, remove_from_version_id,
                       move_to_version_id)
    secret = self.secrets[secret_id]
    if version_stage == "AWSCURRENT" and move_to_version_id and isinstance(secret, FakeSecret):
        secret.set_default_version_id(move_to_version_id)
    return result


def install() -> None:
    SecretsManagerBackend.update_secret_version_stage = (  # type: ignore[method-assign]
        _update_secret_version_stage)
