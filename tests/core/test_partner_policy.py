"""phi_core.partner_policy: the one definition of what a partner may do, tested once (the
stack, the operator CLI and the access matrix all use it)."""

from __future__ import annotations

import pytest

from phi_core import partner_policy
from phi_core.partner_policy import PartnerScope
from phi_core.vocabulary import AccessMode, Direction

BUCKET = "arn:aws:s3:::phi-acme-123456789012-eu-west-2"
KEY = "arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def scope(*directions: Direction) -> PartnerScope:
    return PartnerScope(bucket_arn=BUCKET, key_arn=KEY, directions=directions,
                        s3_service="s3.eu-west-2.amazonaws.com")


def by_sid(statements: list[dict]) -> dict[str, dict]:
    return {s["Sid"]: s for s in statements}


def test_inbound_is_write_only_and_outbound_read_only():
    both = by_sid(partner_policy.partner_statements(scope(Direction.INBOUND, Direction.OUTBOUND)))
    assert both["WriteInbound"]["Resource"] == [f"{BUCKET}/inbound/*"]
    assert not any(a.startswith("s3:Get") for a in both["WriteInbound"]["Action"])
    assert both["ReadOutbound"]["Resource"] == [f"{BUCKET}/outbound/*"]
    assert all(a.startswith("s3:Get") for a in both["ReadOutbound"]["Action"])
    assert not any("Delete" in a or "Acl" in a or "Tagging" in a
                   for s in both.values() for a in s["Action"])


@pytest.mark.parametrize(("directions", "absent", "key_actions"), [
    ((Direction.INBOUND,), "ReadOutbound", ["kms:Decrypt", "kms:GenerateDataKey"]),
    ((Direction.OUTBOUND,), "WriteInbound", ["kms:Decrypt"]),
])
def test_a_direction_not_granted_has_no_statement_and_no_key_action(directions, absent,
                                                                     key_actions):
    statements = by_sid(partner_policy.partner_statements(scope(*directions)))
    assert absent not in statements
    assert statements["UseKeyThroughS3"]["Action"] == key_actions
    receipts = ["receipts/*"] if Direction.INBOUND in directions else []
    assert statements["ListOwnPrefixes"]["Condition"]["StringLike"]["s3:prefix"] == [
        f"{d.value}/*" for d in directions] + receipts


def test_a_partner_that_sends_reads_its_receipts_and_nothing_else_under_receipts():
    inbound = by_sid(partner_policy.partner_statements(scope(Direction.INBOUND)))
    assert inbound["ReadReceipts"]["Action"] == ["s3:GetObject"]
    assert inbound["ReadReceipts"]["Resource"] == [f"{BUCKET}/receipts/*"]
    outbound = by_sid(partner_policy.partner_statements(scope(Direction.OUTBOUND)))
    assert "ReadReceipts" not in outbound


def test_the_key_is_usable_only_through_s3_for_this_bucket():
    statement = by_sid(partner_policy.partner_statements(scope(Direction.INBOUND)))[
        "UseKeyThroughS3"]
    assert statement["Resource"] == [KEY]
    assert statement["Condition"]["StringEquals"] == {"kms:ViaService":
                                                      "s3.eu-west-2.amazonaws.com"}
    assert statement["Condition"]["StringLike"]["kms:EncryptionContext:aws:s3:arn"] == [
        BUCKET, f"{BUCKET}/*"]


def test_cross_account_grants_name_the_partner_in_every_bucket_statement_and_the_key():
    principals = partner_policy.principal_entries(
        ["111122223333", "arn:aws:iam::444455556666:role/t"], partition="aws")
    assert principals == ["arn:aws:iam::111122223333:root", "arn:aws:iam::444455556666:role/t"]
    bucket, key = partner_policy.cross_account_grants(scope(Direction.INBOUND), principals)
    assert {s["Sid"] for s in bucket} == {"PartnerWriteInbound", "PartnerReadReceipts",
                                          "PartnerListOwnPrefixes",
                                          "PartnerFindBucketRegion",
                                          "PartnerListTopLevelFolders"}
    assert all(s["Principal"] == {"AWS": principals} for s in [*bucket, key])
    assert key["Condition"]["StringEquals"]["kms:ViaService"] == "s3.eu-west-2.amazonaws.com"


@pytest.mark.parametrize(("access", "principals", "expected"), [
    (AccessMode.IAM_USER, (), ["arn:aws:iam::123456789012:user/phi-exchange-acme-partner"]),
    (AccessMode.ASSUME_ROLE, ("444455556666",),
     ["arn:aws:iam::123456789012:role/phi-exchange-acme-partner"]),
    (AccessMode.CROSS_ACCOUNT, ("444455556666", "arn:aws:iam::111122223333:user/u"),
     ["arn:aws:iam::444455556666:*", "arn:aws:iam::111122223333:user/u"]),
])
def test_partner_patterns_match_exactly_the_partners_principals(access, principals, expected):
    assert partner_policy.partner_principal_patterns(
        access=access, slug="acme", partner_principals=principals, account="123456789012",
        partition="aws") == expected


def test_the_offboarding_denies_cover_the_bucket_its_objects_and_the_key():
    bucket, key = partner_policy.offboarded_partner_denies(BUCKET, ["arn:aws:iam::1:*"])
    assert bucket["Sid"] == partner_policy.OFFBOARDED_DENY_SID
    assert (bucket["Effect"], bucket["Action"], bucket["Resource"]) == (
        "Deny", ["s3:*"], [BUCKET, f"{BUCKET}/*"])
    assert (key["Effect"], key["Action"], key["Resource"]) == ("Deny", ["kms:*"], "*")
    for deny in (bucket, key):
        assert deny["Condition"] == {"ArnLike": {"aws:PrincipalArn": ["arn:aws:iam::1:*"]}}
