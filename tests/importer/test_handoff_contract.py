"""The contract between the customer stack's rules and the importer: the message each rule's
input transformer renders from a real event (S3's ``Object Created``, GuardDuty's ``Object
Scan Result``) is one that :func:`parse_message` accepts, field for field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from importer.message import FIELDS, ScanResultEvent, parse_message

pytestmark = pytest.mark.synth

# S3's EventBridge event for a PutObject, as documented by S3 (values invented).
S3_EVENT: dict[str, Any] = {
    "version": "0", "id": "17793124-05d4-b198-2fde-7ededc63b103",
    "detail-type": "Object Created", "source": "aws.s3", "account": "123456789012",
    "time": "2025-03-01T04:12:09Z", "region": "eu-west-2",
    "resources": ["arn:aws:s3:::phi-acme-123456789012-eu-west-2"],
    "detail": {
        "version": "0", "bucket": {"name": "phi-acme-123456789012-eu-west-2"},
        "object": {"key": "inbound/2025/claims file.csv", "size": 5,
                   "etag": "b1946ac92492d2347c6235b4d2611184",
                   "version-id": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
                   "sequencer": "00617F08299329D189"},
        "request-id": "N4N7GDK58NMKJ12R", "requester": "111122223333",
        "source-ip-address": "198.51.100.7", "reason": "PutObject",
    },
}


def _json_path(document: dict[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.removeprefix("$.").split("."):
        value = value[part]
    return value


def render(template: str, paths: dict[str, str], event: dict[str, Any]) -> str:
    """What EventBridge does: each ``<name>`` outside quotes becomes the JSON value."""
    for name, path in paths.items():
        template = template.replace(f"<{name}>", json.dumps(_json_path(event, path)))
    return template


def test_handoff_rule_renders_a_message_the_importer_accepts() -> None:
    from aws_cdk import App, Stack
    from aws_cdk.assertions import Template

    from stacks.components.ingestion_handoff import IngestionHandoff

    stack = Stack(App(), "Handoff")
    IngestionHandoff(stack, "Handoff", slug="acme", bucket_name="phi-acme-123456789012-eu-west-2")
    (rule,) = Template.from_stack(stack).find_resources("AWS::Events::Rule").values()
    (target,) = rule["Properties"]["Targets"]
    transformer = target["InputTransformer"]

    body = render(transformer["InputTemplate"], transformer["InputPathsMap"], S3_EVENT)
    event = parse_message(body)

    assert set(json.loads(body)) == {*FIELDS, "kind", "scan"}
    assert event.scan_required
    assert event.customer == "acme"
    assert event.key == "inbound/2025/claims file.csv"
    assert event.version_id == "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"
    assert event.size == 5
    assert event.event_id == S3_EVENT["id"]
    assert (event.requester, event.source_ip) == ("111122223333", "198.51.100.7")


# GuardDuty's scan-result event, as its user guide documents it ("Monitoring S3 object scans
# with Amazon EventBridge"; values invented).
SCAN_RESULT_EVENT: dict[str, Any] = {
    "version": "0", "id": "72c7d362-737a-6dce-fc78-9e27a0171419",
    "detail-type": "GuardDuty Malware Protection Object Scan Result",
    "source": "aws.guardduty", "account": "123456789012", "time": "2025-03-01T04:12:41Z",
    "region": "eu-west-2",
    "resources": ["arn:aws:guardduty:eu-west-2:123456789012:malware-protection-plan/"
                  "b4c7f464ab3a4EXAMPLE"],
    "detail": {
        "schemaVersion": "1.0", "scanStatus": "COMPLETED", "resourceType": "S3_OBJECT",
        "s3ObjectDetails": {"bucketName": "phi-acme-123456789012-eu-west-2",
                            "objectKey": "inbound/2025/claims file.csv",
                            "eTag": "b1946ac92492d2347c6235b4d2611184",
                            "versionId": "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e",
                            "s3Throttled": False},
        "scanResultDetails": {"scanResultStatus": "THREATS_FOUND",
                              "threats": [{"name": "EICAR-Test-File (not a virus)"}]},
    },
}


def test_scan_result_rule_renders_a_message_the_importer_accepts() -> None:
    from aws_cdk import App, Stack
    from aws_cdk import aws_kms as kms
    from aws_cdk.assertions import Template

    from stacks.components.malware_gate import MalwareGate

    stack = Stack(App(), "Gate")
    bucket = "phi-acme-123456789012-eu-west-2"
    MalwareGate(stack, "Gate", slug="acme", bucket_name=bucket,
                bucket_arn=f"arn:aws:s3:::{bucket}", key=kms.Key(stack, "Key"),
                contacts=("ops@acme.example",))
    (rule,) = Template.from_stack(stack).find_resources("AWS::Events::Rule").values()
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == [SCAN_RESULT_EVENT["source"]]
    assert pattern["detail-type"] == [SCAN_RESULT_EVENT["detail-type"]]
    assert pattern["detail"]["s3ObjectDetails"]["bucketName"] == [bucket]
    (target,) = rule["Properties"]["Targets"]
    transformer = target["InputTransformer"]

    event = parse_message(render(transformer["InputTemplate"], transformer["InputPathsMap"],
                                 SCAN_RESULT_EVENT))

    assert isinstance(event, ScanResultEvent)
    assert (event.customer, event.bucket, event.key) == ("acme", bucket,
                                                         "inbound/2025/claims file.csv")
    assert event.version_id == "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"
    assert (event.scan_status, event.result) == ("COMPLETED", "THREATS_FOUND")
    assert event.threats == ("EICAR-Test-File (not a virus)",)
    assert event.plan == SCAN_RESULT_EVENT["resources"][0]
    assert not event.clean
