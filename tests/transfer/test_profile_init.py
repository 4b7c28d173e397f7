"""Generating connection profiles from stack outputs, the cdk outputs file and the rotation
secret; and each auth method reaching the server."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from partner_transfer.profile import AuthMethod, load_profile
from tests.transfer.conftest import ACCOUNT, KEY_ARN, REGION, Workspace, admin_client, cli

pytestmark = pytest.mark.e2e  # talks to a moto server process over HTTP


def outputs(bucket: str, mode: str = "iam-user", **extra: str) -> dict[str, str]:
    base = {
        "CustomerSlug": "acme",
        "AccessMode": mode,
        "BucketName": bucket,
        "BucketRegion": REGION,
        "BucketOwnerAccount": ACCOUNT,
        "KmsKeyArn": KEY_ARN,
        "InboundPrefix": "inbound/",
        "OutboundPrefix": "outbound/",
    }
    return {**base, **extra}


def test_init_from_outputs_file_with_credentials_file(ws: Workspace) -> None:
    doc = {"PhiExchange-acme": outputs(ws.bucket, PartnerUserName="u", PartnerSecretArn="arn:s")}
    (ws.root / "out.json").write_text(json.dumps(doc))
    cred = ws.root / "acme-credentials.json"
    target = ws.root / "acme.toml"
    result = cli(
        "profile",
        "init",
        "--outputs-file",
        ws.root / "out.json",
        "--credentials-file",
        cred,
        "-o",
        target,
    )
    assert result.code == 0, result.err
    profile = load_profile(target)
    assert profile.bucket == ws.bucket
    assert profile.bucket_owner == ACCOUNT
    assert profile.kms_key_arn == KEY_ARN
    assert profile.inbound_prefix == "inbound/" and profile.outbound_prefix == "outbound/"
    assert profile.auth.method is AuthMethod.CREDENTIALS_FILE
    assert profile.auth.credentials_file == cred.resolve()
    # Refuses to overwrite without --force.
    again = cli(
        "profile",
        "init",
        "--outputs-file",
        ws.root / "out.json",
        "--credentials-file",
        cred,
        "-o",
        target,
    )
    assert again.code == 2


def test_init_iam_user_without_credentials_choice_is_a_usage_error(ws: Workspace) -> None:
    (ws.root / "out.json").write_text(
        json.dumps({"PhiExchange-acme": outputs(ws.bucket, PartnerUserName="u")})
    )
    result = cli(
        "profile", "init", "--outputs-file", ws.root / "out.json", "-o", ws.root / "p.toml"
    )
    assert result.code == 2
    assert "--credentials-file" in result.err


def test_init_picks_the_named_stack_among_several(ws: Workspace) -> None:
    doc = {
        "PhiExchange-acme": outputs(ws.bucket, "cross-account"),
        "PhiExchange-globex": outputs(
            "phi-globex-123456789012-eu-west-2", "cross-account", CustomerSlug="globex"
        ),
    }
    (ws.root / "out.json").write_text(json.dumps(doc))
    ambiguous = cli(
        "profile", "init", "--outputs-file", ws.root / "out.json", "-o", ws.root / "a.toml"
    )
    assert ambiguous.code == 2 and "--stack" in ambiguous.err
    chosen = cli(
        "profile",
        "init",
        "--outputs-file",
        ws.root / "out.json",
        "--stack-name",
        "PhiExchange-globex",
        "-o",
        ws.root / "g.toml",
    )
    assert chosen.code == 0, chosen.err
    assert load_profile(ws.root / "g.toml").customer == "globex"


def test_init_from_deployed_stack_reads_cloudformation(ws: Workspace) -> None:
    cfn = admin_client(ws.endpoint, "cloudformation")
    stack = f"PhiExchange-{ws.bucket[4:15]}"
    template = {
        "Resources": {"Placeholder": {"Type": "AWS::SQS::Queue"}},
        "Outputs": {
            k: {"Value": v}
            for k, v in outputs(
                ws.bucket,
                "assume-role",
                PartnerRoleArn=(f"arn:aws:iam::{ACCOUNT}:role/phi-exchange-acme-partner"),
                ExternalId="ext-123",
                OutboundPrefix="",
            ).items()
            if v
        },
    }
    cfn.create_stack(StackName=stack, TemplateBody=json.dumps(template))
    target = ws.root / "stack.toml"
    result = cli(
        "profile",
        "init",
        "--stack",
        stack,
        "--region",
        REGION,
        "--endpoint-url",
        ws.endpoint,
        "-o",
        target,
    )
    assert result.code == 0, result.err
    profile = load_profile(target)
    assert profile.auth.method is AuthMethod.ASSUME_ROLE
    assert profile.auth.external_id == "ext-123"
    assert profile.outbound_prefix is None  # inbound-only customer
    assert profile.endpoint_url == ws.endpoint
    text = target.read_text()
    assert "secret" not in text.lower().replace("no secrets", "")


def test_init_from_rotation_secret_references_the_file(ws: Workspace) -> None:
    access_key, secret_key = "AKIAFAKEPARTNER00001", "fake-partner-secret-000000000000000000000"
    secret = {
        "user_name": "phi-exchange-acme-partner",
        "access_key_id": access_key,
        "secret_access_key": secret_key,
        "bucket": ws.bucket,
        "region": REGION,
        "bucket_owner": ACCOUNT,
        "kms_key_arn": KEY_ARN,
        "inbound_prefix": "inbound/",
        "outbound_prefix": None,
        "created_at": "2026-11-28T00:00:00Z",
    }
    path = ws.root / "secret.json"
    path.write_text(json.dumps(secret))
    target = ws.root / "from-secret.toml"
    result = cli(
        "profile", "init", "--from-secret", path, "--endpoint-url", ws.endpoint, "-o", target
    )
    assert result.code == 0, result.err
    text = target.read_text()
    assert secret_key not in text
    assert access_key not in text
    data = tomllib.loads(text)
    assert data["auth"] == {"method": "credentials-file", "credentials_file": str(path)}
    assert data["customer"] == ws.bucket.split("-")[1]
    # The generated profile works as is.
    ws.file("hello.txt", b"hello")
    up = cli("upload", "--profile", target, "--state-dir", ws.state, ws.root / "hello.txt")
    assert up.code == 0, up.err
    records = ws.records()
    assert records[-1]["caller_arn"]  # STS answered for the file's key


def test_profile_from_a_secret_without_prefixes_points_to_the_kit(ws: Workspace) -> None:
    """Current secrets hold no prefixes (they follow the registry): --from-secret says what to
    use instead, in one line, and writes nothing."""
    path = ws.root / "secret.json"
    path.write_text(json.dumps({"user_name": "u", "access_key_id": "AKIAEXAMPLE",
                                "secret_access_key": "x" * 40, "bucket": ws.bucket,
                                "region": REGION, "bucket_owner": ACCOUNT,
                                "kms_key_arn": KEY_ARN}))
    target = ws.root / "never.toml"
    result = cli("profile", "init", "--from-secret", path, "-o", target)
    assert result.code == 3
    assert "--outputs-file" in result.err and "onboarding kit" in result.err
    assert not target.exists()


def test_profile_show_prints_the_effective_profile(ws: Workspace) -> None:
    result = cli("profile", "show", "--profile", ws.profile())
    assert result.code == 0, result.err
    assert tomllib.loads(result.out)["bucket"] == ws.bucket


def test_assume_role_with_external_id(ws: Workspace, s3: Any) -> None:
    iam = admin_client(ws.endpoint, "iam")
    role_name = f"partner-{ws.bucket[4:14]}"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                "Action": "sts:AssumeRole",
                "Condition": {"StringEquals": {"sts:ExternalId": "ext-42"}},
            }
        ],
    }
    role_arn = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument=json.dumps(trust))[
        "Role"
    ]["Arn"]
    profile = ws.profile(
        auth=f'method = "assume-role"\nrole_arn = "{role_arn}"\nexternal_id = "ext-42"\n'
        'session_name = "acme-batch"'
    )
    ws.file("r.txt", b"role")
    result = cli("upload", "--profile", profile, ws.root / "r.txt")
    assert result.code == 0, result.err
    (record,) = ws.records()
    assert record["caller_arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/{role_name}/acme-batch"


@pytest.mark.parametrize("missing", ["BucketName", "KmsKeyArn"])
def test_init_rejects_outputs_of_another_stack(ws: Workspace, missing: str) -> None:
    doc = outputs(ws.bucket, "cross-account")
    del doc[missing]
    (ws.root / "out.json").write_text(json.dumps({"PhiExchange-acme": doc}))
    result = cli(
        "profile", "init", "--outputs-file", ws.root / "out.json", "-o", ws.root / "p.toml"
    )
    assert result.code == 3
    assert missing in result.err
    assert not Path(ws.root / "p.toml").exists()
