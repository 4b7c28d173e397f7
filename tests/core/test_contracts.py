"""phi_core.outputs and phi_core.secret: the schemas the stack writes and every part reads."""

from __future__ import annotations

import json

import pytest

from phi_core import defaults, naming
from phi_core import outputs as stack_outputs
from phi_core import secret as secret_schema
from phi_core.vocabulary import AccessMode, Direction

KEY = "arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def emitted(access: AccessMode, **extra: str) -> dict[str, str]:
    return stack_outputs.customer_outputs(
        slug="acme", access=access, bucket_name="phi-acme-123456789012-eu-west-2",
        region="eu-west-2", account="123456789012", key_arn=KEY,
        directions=(Direction.INBOUND,), offboarded=False, **extra)


@pytest.mark.parametrize(("access", "extra"), [
    (AccessMode.IAM_USER, {"secret_arn": "arn:aws:secretsmanager:eu-west-2:123456789012:"
                                         "secret:x-AbCdEf", "user_name": "u"}),
    (AccessMode.ASSUME_ROLE, {"role_arn": "arn:aws:iam::123456789012:role/r",
                              "external_id": "the-external-id-0001"}),
    (AccessMode.CROSS_ACCOUNT, {}),
])
def test_what_the_stack_emits_parses_back(access, extra):
    parsed = stack_outputs.parse_stack_outputs(emitted(access, **extra), source="test")
    assert (parsed.slug, parsed.access, parsed.directions) == ("acme", access,
                                                               (Direction.INBOUND,))
    assert parsed.bucket_arn == "arn:aws:s3:::phi-acme-123456789012-eu-west-2"
    assert stack_outputs.PARTNER_SECRET_ARN not in parsed.partner_outputs()


def test_bad_outputs_name_every_problem():
    outputs = emitted(AccessMode.IAM_USER, secret_arn="s", user_name="u")
    outputs.update({stack_outputs.BUCKET_REGION: "mars-1", stack_outputs.ACCESS_MODE: "ftp"})
    del outputs[stack_outputs.PARTNER_USER_NAME]
    with pytest.raises(stack_outputs.OutputsError) as caught:
        stack_outputs.parse_stack_outputs(outputs, source="outputs.json")
    message = str(caught.value)
    assert message.startswith("stack outputs (outputs.json): ")
    assert "'mars-1' is not a region name" in message and "'ftp' is not an access mode" in message


def test_the_one_customer_stack_of_an_outputs_file_is_found_beside_the_audit_stack():
    acme = {stack_outputs.CUSTOMER_SLUG: "acme"}
    document = {naming.AUDIT_STACK_NAME: {"TrailArn": "x"}, naming.ACCESS_STACK_NAME: {},
                "PhiExchange-acme": acme}
    assert stack_outputs.outputs_of_stack(document, None, source="f") == acme
    document["PhiExchange-globex"] = {stack_outputs.CUSTOMER_SLUG: "globex"}
    with pytest.raises(stack_outputs.OutputsError, match="2 customer stacks"):
        stack_outputs.outputs_of_stack(document, None, source="f")


def test_a_new_key_keeps_every_other_field_of_the_secret():
    first = secret_schema.initial_secret(user_name="u", access_key_id="AKIA1",
                                         secret_access_key="s1", bucket="b", region="r",
                                         bucket_owner="o", kms_key_arn=KEY)
    second = secret_schema.with_new_key(first, access_key_id="AKIA2", secret_access_key="s2",
                                        created_at="2026-01-01T00:00:00Z")
    assert {k: v for k, v in second.items() if k not in secret_schema.KEY_FIELDS} == {
        k: v for k, v in first.items() if k not in secret_schema.KEY_FIELDS}
    assert secret_schema.parse_partner_secret(second).access_key_id == "AKIA2"


@pytest.mark.parametrize(("text", "problem"), [
    ("not json", "is not JSON"), ("[1]", "is not a JSON object"),
    (json.dumps({"user_name": "u", "access_key_id": "A"}), "lacks secret_access_key"),
])
def test_a_bad_secret_is_refused_without_echoing_a_value(text, problem):
    with pytest.raises(secret_schema.SecretError, match=problem):
        secret_schema.parse_secret_string(text)


def test_a_parsed_secret_never_prints_its_key():
    parsed = secret_schema.parse_partner_secret({"user_name": "u", "access_key_id": "A",
                                                 "secret_access_key": "very-secret"})
    assert "very-secret" not in repr(parsed)


def test_six_years_is_one_number_everywhere():
    assert defaults.EVIDENCE_RETENTION_DAYS == 2192
