"""localaws.secrets: after a rotation moves AWSCURRENT, a plain GetSecretValue follows it."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.localaws.conftest import Aws


def test_get_secret_value_follows_awscurrent_when_a_rotation_moves_it(
    aws: Aws, unique: Callable[[str], str]
) -> None:
    secrets = aws.client("secretsmanager")
    name = unique("rotated")
    first = secrets.create_secret(Name=name, SecretString=json.dumps({"key": "old"}))
    token = "token-0001-aaaaaaaaaaaaaaaaaaaaaaaa"
    secrets.put_secret_value(SecretId=name, ClientRequestToken=token,
                             SecretString=json.dumps({"key": "new"}),
                             VersionStages=["AWSPENDING"])
    secrets.update_secret_version_stage(SecretId=name, VersionStage="AWSCURRENT",
                                        MoveToVersionId=token,
                                        RemoveFromVersionId=first["VersionId"])
    assert json.loads(secrets.get_secret_value(SecretId=name)["SecretString"]) == {"key": "new"}
    previous = secrets.get_secret_value(SecretId=name, VersionStage="AWSPREVIOUS")
    assert json.loads(previous["SecretString"]) == {"key": "old"}
