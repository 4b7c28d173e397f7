"""IAM Roles Anywhere in the emulator (localaws.roles_anywhere): trust anchors and profiles
deployed through CloudFormation, and CreateSession called by the real client
(``iam_rolesanywhere_session``), which gets a role session only for a certificate AWS would
accept, and otherwise a refusal saying what failed.

One stack serves the module: two partner CAs (A: EC, B: RSA) as two trust anchors, a disabled
anchor, a role trusting anchor A for ``CN=hooli-transfer, OU=Lab Results``, the same role with
a mutated trust condition, a role outside the profile, a profile and a disabled profile.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError
from botocore.httpsession import URLLib3Session
from iam_rolesanywhere_session import IAMRolesAnywhereSession
from iam_rolesanywhere_session.exceptions import CredentialsRetrievalError
from iam_rolesanywhere_session.iam_rolesanywhere_session import IAMRolesAnywhereSigner

from localaws import server
from localaws.coverage import coverage
from localaws.x509_ca import IssuedCertificate, ThrowawayCA
from tests.localaws.conftest import Aws

PARTNER = {"CN": "hooli-transfer", "OU": "Lab Results"}
ROLES_ANYWHERE = "rolesanywhere.amazonaws.com"


def trust(anchor: str, ou: str = "Lab Results") -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Principal": {"Service": ROLES_ANYWHERE},
        "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
        "Condition": {
            "ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [anchor, "TrustAnchorArn"]}},
            "StringEquals": {"aws:PrincipalTag/x509Subject/CN": "hooli-transfer",
                             "aws:PrincipalTag/x509Subject/OU": ou}}}]}


def list_bucket_if_cn(bucket_ref: str, cn: str) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": "s3:ListBucket",
            "Resource": {"Fn::Sub": f"arn:${{AWS::Partition}}:s3:::${{{bucket_ref}}}"},
            "Condition": {"StringEquals": {"aws:PrincipalTag/x509Subject/CN": cn}}}


def role(name: str, anchor: str = "AnchorA", ou: str = "Lab Results") -> dict[str, Any]:
    return {"Type": "AWS::IAM::Role", "Properties": {
        "RoleName": name, "AssumeRolePolicyDocument": trust(anchor, ou),
        "Policies": [{"PolicyName": "lab-results", "PolicyDocument": {
            "Version": "2012-10-17", "Statement": [
                # The same grant twice, once for this partner's CN, once for another's: only
                # the first may succeed if the session really carries the certificate's CN.
                list_bucket_if_cn("Bucket", "hooli-transfer"),
                list_bucket_if_cn("OtherBucket", "someone-else")]}}]}}


def anchor(ca: ThrowawayCA, *, enabled: bool = True) -> dict[str, Any]:
    return {"Type": "AWS::RolesAnywhere::TrustAnchor", "Properties": {
        "Name": "partner-ca", "Enabled": enabled,
        "Source": {"SourceType": "CERTIFICATE_BUNDLE",
                   "SourceData": {"X509CertificateData": ca.certificate_pem.decode()}},
        "Tags": [{"Key": "phi-exchange:customer", "Value": "hooli"}]}}


def profile(*roles: str, enabled: bool = True) -> dict[str, Any]:
    return {"Type": "AWS::RolesAnywhere::Profile", "Properties": {
        "Name": "partner", "Enabled": enabled, "DurationSeconds": 3600,
        "RoleArns": [{"Fn::GetAtt": [r, "Arn"]} for r in roles]}}


@dataclass(frozen=True)
class Deployed:
    aws: Aws
    ca_a: ThrowawayCA
    ca_b: ThrowawayCA
    out: Mapping[str, str]
    role_name: str

    def session(self, certificate: IssuedCertificate, *, role: str = "RoleArn",
                anchor: str = "AnchorA", profile: str = "ProfileArn",
                duration: int = 3600) -> IAMRolesAnywhereSession:
        return IAMRolesAnywhereSession(
            profile_arn=self.out[profile], role_arn=self.out[role],
            trust_anchor_arn=self.out[anchor], certificate=certificate.certificate_pem,
            private_key=certificate.private_key_pem,
            certificate_chain=certificate.chain_pem or None, session_duration=duration,
            endpoint=f"localhost:{self.aws.emulator.port}",
            verify=self.aws.emulator.ca_bundle, region="us-east-1")

    def credentials(self, certificate: IssuedCertificate, **kwargs: Any) -> Any:
        """Credentials from CreateSession (the client calls it on first use)."""
        return self.session(certificate, **kwargs).get_refreshable_credentials() \
            .get_frozen_credentials()

    def refused(self, certificate: IssuedCertificate, reason: str, *, status: int = 403,
                **kwargs: Any) -> str:
        """CreateSession refuses with ``status`` and a message containing ``reason``, and
        the refusal is in the emulator's record of decisions."""
        since, _ = server.authorizations(self.aws.emulator)
        with pytest.raises(CredentialsRetrievalError) as refusal:
            self.credentials(certificate, **kwargs)
        assert refusal.value.status_code == status, refusal.value.message
        assert reason in refusal.value.message
        _, records = server.authorizations(self.aws.emulator, since)
        assert any(not r["allowed"] and reason in r["reason"] for r in records), records
        return str(refusal.value.message)


@pytest.fixture(scope="module")
def deployed(aws: Aws) -> Deployed:
    def unique(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    ca_a = ThrowawayCA.create("Hooli Partner CA")
    ca_b = ThrowawayCA.create("Another Partner CA", key="rsa")
    role_name = unique("hooli-transfer")
    stack = aws.deploy({
        "Resources": {
            "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {
                "BucketName": unique("lab-results")}},
            "OtherBucket": {"Type": "AWS::S3::Bucket", "Properties": {
                "BucketName": unique("other-results")}},
            "AnchorA": anchor(ca_a),
            "AnchorB": anchor(ca_b),
            "DisabledAnchor": anchor(ca_a, enabled=False),
            "Role": role(role_name),
            "MutatedRole": role(unique("mutated"), ou="Billing"),
            "RoleOutsideProfile": role(unique("outside")),
            "Profile": profile("Role", "MutatedRole"),
            "DisabledProfile": profile("Role", enabled=False),
        },
        "Outputs": {name: {"Value": value} for name, value in {
            "AnchorA": {"Fn::GetAtt": ["AnchorA", "TrustAnchorArn"]},
            "AnchorAId": {"Ref": "AnchorA"},
            "AnchorB": {"Fn::GetAtt": ["AnchorB", "TrustAnchorArn"]},
            "DisabledAnchor": {"Fn::GetAtt": ["DisabledAnchor", "TrustAnchorArn"]},
            "ProfileArn": {"Fn::GetAtt": ["Profile", "ProfileArn"]},
            "ProfileId": {"Ref": "Profile"},
            "DisabledProfile": {"Fn::GetAtt": ["DisabledProfile", "ProfileArn"]},
            "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]},
            "MutatedRole": {"Fn::GetAtt": ["MutatedRole", "Arn"]},
            "RoleOutsideProfile": {"Fn::GetAtt": ["RoleOutsideProfile", "Arn"]},
            "Bucket": {"Ref": "Bucket"},
            "OtherBucket": {"Ref": "OtherBucket"},
        }.items()}})
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    out = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    return Deployed(aws, ca_a, ca_b, out, role_name)


@pytest.fixture(scope="module")
def good(deployed: Deployed) -> IssuedCertificate:
    return deployed.ca_a.issue(PARTNER)


# --- CloudFormation ---------------------------------------------------------------------------


def test_trust_anchor_and_profile_have_uuid_ids_and_arns(deployed: Deployed) -> None:
    out = deployed.out
    assert out["AnchorA"] == f"arn:aws:rolesanywhere:us-east-1:123456789012:trust-anchor/" \
        f"{out['AnchorAId']}"
    assert out["ProfileArn"].endswith(f":profile/{out['ProfileId']}")
    for resource_id in (out["AnchorAId"], out["ProfileId"]):
        assert resource_id == str(uuid.UUID(resource_id, version=4))


@pytest.mark.parametrize(("source", "reason"), [
    ({"SourceType": "CERTIFICATE_BUNDLE", "SourceData": {"X509CertificateData": "not a PEM"}},
     "is not a bundle of PEM certificates"),
    ({"SourceType": "AWS_ACM_PCA", "SourceData": {"AcmPcaArn": "arn:aws:acm-pca:x"}},
     "CERTIFICATE_BUNDLE trust anchors only"),
    (None, "is not a CA certificate"),
])
def test_a_trust_anchor_aws_refuses_fails_the_stack(aws: Aws, source: Any,
                                                    reason: str) -> None:
    if source is None:  # an end-entity certificate is not a CA
        leaf = ThrowawayCA.create("CA").issue(PARTNER).certificate_pem.decode()
        source = {"SourceType": "CERTIFICATE_BUNDLE",
                  "SourceData": {"X509CertificateData": leaf}}
    stack = aws.deploy({"Resources": {"Anchor": {
        "Type": "AWS::RolesAnywhere::TrustAnchor",
        "Properties": {"Name": "bad", "Source": source}}}})
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    events = aws.client("cloudformation").describe_stack_events(
        StackName=stack["StackName"])["StackEvents"]
    (failed,) = [e for e in events if e["ResourceStatus"] == "CREATE_FAILED"]
    assert failed["LogicalResourceId"] == "Anchor"
    assert reason in failed["ResourceStatusReason"]


def test_coverage_knows_both_types_and_reports_what_is_not_enforced() -> None:
    template = {"Resources": {
        "Anchor": {"Type": "AWS::RolesAnywhere::TrustAnchor", "Properties": {
            "Name": "a", "Enabled": True, "Source": {}, "NotificationSettings": []}},
        "Profile": {"Type": "AWS::RolesAnywhere::Profile", "Properties": {
            "RoleArns": [], "DurationSeconds": 3600, "SessionPolicy": "{}"}}}}
    assert [str(g) for g in coverage(template)] == [
        "Anchor (AWS::RolesAnywhere::TrustAnchor): NotificationSettings not applied",
        "Profile (AWS::RolesAnywhere::Profile): SessionPolicy not applied"]


# --- sessions ---------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["ec", "rsa"])
def test_the_partner_certificate_gets_a_session_of_the_role(deployed: Deployed,
                                                            key: str) -> None:
    certificate = deployed.ca_a.issue(PARTNER, key=key)  # type: ignore[arg-type]
    session = deployed.session(certificate).get_session()
    identity = session.client("sts", endpoint_url=deployed.aws.emulator.url).get_caller_identity()
    assert identity["Arn"] == (f"arn:aws:sts::123456789012:assumed-role/{deployed.role_name}/"
                               f"{certificate.serial_hex}")


def test_a_certificate_of_an_intermediate_ca_sent_with_its_chain_gets_a_session(
        deployed: Deployed) -> None:
    intermediate = deployed.ca_a.intermediate("Hooli Issuing CA")
    certificate = intermediate.issue(PARTNER)
    assert certificate.chain_pem
    assert deployed.credentials(certificate).access_key


def test_the_session_does_what_the_role_allows_and_sees_the_certificate_s_cn(
        deployed: Deployed, good: IssuedCertificate) -> None:
    session = deployed.session(good).get_session()
    s3 = session.client("s3", endpoint_url=deployed.aws.emulator.url)
    with deployed.aws.permission_checks():
        s3.list_objects_v2(Bucket=deployed.out["Bucket"])
        # The role allows OtherBucket only to CN=someone-else: the session's CN tag decides.
        with pytest.raises(ClientError, match="AccessDenied"):
            s3.list_objects_v2(Bucket=deployed.out["OtherBucket"])
        with pytest.raises(ClientError, match="AccessDenied"):
            s3.put_object(Bucket=deployed.out["Bucket"], Key="x", Body=b"x")


def test_the_session_lasts_the_requested_duration(deployed: Deployed,
                                                  good: IssuedCertificate) -> None:
    credentials = deployed.session(good, duration=900).get_refreshable_credentials()
    credentials.get_frozen_credentials()
    remaining = credentials._expiry_time - datetime.now(UTC)
    assert timedelta(minutes=13) < remaining <= timedelta(minutes=15)


# --- refusals: the certificate --------------------------------------------------------------


def test_a_certificate_of_another_ca_is_refused_by_the_chain_check(deployed: Deployed) -> None:
    deployed.refused(deployed.ca_b.issue(PARTNER),
                     f"is not issued by a CA of trust anchor {deployed.out['AnchorA']}")


def test_another_anchor_s_certificate_is_refused_by_a_trust_naming_only_anchor_a(
        deployed: Deployed) -> None:
    message = deployed.refused(deployed.ca_b.issue(PARTNER), "does not allow "
                               f"{ROLES_ANYWHERE} sts:AssumeRole", anchor="AnchorB")
    assert f"aws:SourceArn={deployed.out['AnchorB']}" in message
    assert "ArnEquals aws:SourceArn" in message


@pytest.mark.parametrize(("subject", "unmet"), [
    ({"CN": "someone-else", "OU": "Lab Results"},
     "StringEquals aws:PrincipalTag/x509Subject/CN = hooli-transfer"),
    ({"CN": "hooli-transfer"}, "StringEquals aws:PrincipalTag/x509Subject/OU = Lab Results"),
])
def test_other_subject_attributes_are_refused_by_the_trust_policy(
        deployed: Deployed, subject: dict[str, str], unmet: str) -> None:
    message = deployed.refused(deployed.ca_a.issue(subject),
                               f"the trust policy of {deployed.out['RoleArn']} does not allow")
    assert unmet in message


def test_an_expired_certificate_is_refused(deployed: Deployed) -> None:
    expired = deployed.ca_a.issue(PARTNER, not_before=datetime.now(UTC) - timedelta(days=3),
                                  valid_days=1)
    deployed.refused(expired, "has expired")


def test_a_certificate_not_yet_valid_is_refused(deployed: Deployed) -> None:
    future = deployed.ca_a.issue(PARTNER, not_before=datetime.now(UTC) + timedelta(days=1))
    deployed.refused(future, "is not valid yet")


def test_a_ca_certificate_is_refused_as_an_end_entity(deployed: Deployed) -> None:
    deployed.refused(deployed.ca_a.issue_ca_as_client("hooli-transfer"),
                     "is a CA certificate (basicConstraints CA:TRUE), not an end-entity")


def test_a_body_changed_after_signing_fails_the_signature_check(
        deployed: Deployed, good: IssuedCertificate) -> None:
    out, emulator = deployed.out, deployed.aws.emulator
    body = {"durationSeconds": 3600, "profileArn": out["ProfileArn"],
            "roleArn": out["RoleArn"], "trustAnchorArn": out["AnchorA"]}
    request = AWSRequest(method="POST", url=f"https://localhost:{emulator.port}/sessions",
                         data=json.dumps(body))
    IAMRolesAnywhereSigner(certificate=good.certificate_pem,
                           private_key=good.private_key_pem).add_auth(request)
    request.data = json.dumps({**body, "roleArn": out["MutatedRole"]})
    since, _ = server.authorizations(emulator)
    response = URLLib3Session(verify=emulator.ca_bundle).send(request.prepare())
    assert response.status_code == 403
    assert "the signature does not verify" in json.loads(response.text)["message"]
    assert response.headers["x-amzn-ErrorType"] == "AccessDeniedException"
    _, records = server.authorizations(emulator, since)
    assert next(r["reason"] for r in records if not r["allowed"]).startswith(
        "the signature does not verify")
    # The same request, unchanged, is accepted: the refusal came from the change alone.
    request.data = json.dumps(body)
    assert URLLib3Session(verify=emulator.ca_bundle).send(request.prepare()).status_code == 201


# --- refusals: anchor, profile, role, duration ------------------------------------------------


def test_a_role_the_profile_does_not_list_is_refused(deployed: Deployed,
                                                     good: IssuedCertificate) -> None:
    deployed.refused(good, f"does not list role {deployed.out['RoleOutsideProfile']}",
                     role="RoleOutsideProfile")


def test_a_disabled_profile_or_trust_anchor_is_refused(deployed: Deployed,
                                                       good: IssuedCertificate) -> None:
    deployed.refused(good, "is disabled", profile="DisabledProfile")
    deployed.refused(good, f"trust anchor {deployed.out['DisabledAnchor']} is disabled",
                     anchor="DisabledAnchor")


def test_a_duration_beyond_the_profile_s_is_refused(deployed: Deployed,
                                                    good: IssuedCertificate) -> None:
    deployed.refused(good, "durationSeconds 7200 is outside 900..3600", status=400,
                     duration=7200)


def test_the_trust_policy_check_is_real_a_mutated_condition_refuses_the_good_certificate(
        deployed: Deployed, good: IssuedCertificate) -> None:
    # MutatedRole differs from Role only in its trust: OU must be "Billing".
    assert deployed.credentials(good).access_key
    message = deployed.refused(good, f"the trust policy of {deployed.out['MutatedRole']}",
                               role="MutatedRole")
    assert "StringEquals aws:PrincipalTag/x509Subject/OU = Billing" in message
    assert "aws:PrincipalTag/x509Subject/OU=Lab Results" in message
