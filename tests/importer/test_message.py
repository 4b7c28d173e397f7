"""parse_message: what the handoff rule sends is accepted; anything else is refused whole."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from importer.errors import InvalidMessage
from importer.message import FIELDS, ScanResultEvent, parse_message

GOOD: dict[str, Any] = {
    "customer": "acme", "account": "123456789012", "region": "eu-west-2",
    "bucket": "phi-acme-123456789012-eu-west-2",
    "key": "inbound/2025/claims.csv", "version_id": "3sL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",
    "size": 1234, "etag": '"9b2cf535f27731c974343645a3985328"', "time": "2025-03-01T04:12:09Z",
    "event_id": "c9888434-815d-c6f4-9fc2-4dd7bdeccaaf", "requester": "111122223333",
    "source_ip": "198.51.100.7",
}


def body(**changes: Any) -> str:
    data = {**GOOD, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not ...})


def test_handoff_body_parses_into_every_field() -> None:
    event = parse_message(body())
    assert set(GOOD) == set(FIELDS)
    assert (event.customer, event.bucket, event.key) == (
        "acme", GOOD["bucket"], "inbound/2025/claims.csv")
    assert event.version_id == GOOD["version_id"]
    assert event.size == 1234
    assert event.time == datetime(2025, 3, 1, 4, 12, 9, tzinfo=UTC)
    assert event.requester == "111122223333"
    assert not event.is_batch_manifest


def test_unknown_fields_are_ignored() -> None:
    assert parse_message(body(sequencer="0064D3901D00059242")).key == GOOD["key"]


def test_null_version_means_unversioned_object() -> None:
    assert parse_message(body(version_id="null")).version_id is None
    assert parse_message(body(version_id=None)).version_id is None


@pytest.mark.parametrize("key, expected", [
    ("inbound/_manifests/20250301T041209Z-1a2b3c4d.json", True),
    ("inbound/batch-7/_manifests/20250301T041209Z-1a2b3c4d.json", True),
    ("inbound/_manifests.json", False),
    ("inbound/my_manifests/x.json", False),
    ("inbound/_manifests/readme.txt", False),
])
def test_batch_manifests_are_recognized_by_their_folder(key: str, expected: bool) -> None:
    assert parse_message(body(key=key)).is_batch_manifest is expected


@pytest.mark.parametrize("changes, problem", [
    ({"customer": ...}, "customer: required"),
    ({"customer": "Acme!"}, "is not a customer slug"),
    ({"bucket": "phi-globex-123456789012-eu-west-2"}, "is not the data bucket of customer"),
    # A prefix match would take these for acme's: its log bucket, customer acme-corp's bucket,
    # acme's bucket in another account or region.
    ({"bucket": "phi-acme-logs-123456789012-eu-west-2"}, "is not the data bucket of customer"),
    ({"bucket": "phi-acme-corp-123456789012-eu-west-2"}, "is not the data bucket of customer"),
    ({"bucket": "phi-acme-210987654321-eu-west-2"}, "is not the data bucket of customer"),
    ({"bucket": "phi-acme-123456789012-eu-west-1"}, "is not the data bucket of customer"),
    ({"account": ...}, "account: required"),
    ({"account": "12345678901\n"}, "is not a 12-digit account id"),
    ({"region": "eu-west-\uff12"}, "is not a region name"),  # a full-width digit
    ({"customer": "acme\n"}, "is not a customer slug"),
    ({"key": "outbound/claims.csv"}, "is not under inbound/"),
    ({"size": -1}, "size: must be a non-negative integer"),
    ({"size": "12"}, "size: must be a non-negative integer"),
    ({"size": True}, "size: must be a non-negative integer"),
    ({"time": "yesterday"}, "is not an ISO 8601 timestamp"),
    ({"time": "2025-03-01T04:12:09"}, "has no time zone"),
    ({"event_id": ""}, "event_id: required"),
    ({"version_id": 7}, "version_id: must be a string"),
])
def test_message_breaking_a_rule_is_refused(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidMessage, match="invalid ingestion message") as caught:
        parse_message(body(**changes))
    assert problem in caught.value.reason


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_message(body(key="outbound/x.csv", size=-1, event_id=...))
    assert caught.value.reason.count(";") == 2


@pytest.mark.parametrize("raw", ["", "not json", "[1, 2]", '"text"'])
def test_body_that_is_not_a_json_object_is_refused(raw: str) -> None:
    with pytest.raises(InvalidMessage):
        parse_message(raw)


# --- the malware gate's two kinds of message --------------------------------------------------

SCAN: dict[str, Any] = {
    "customer": "acme", "kind": "scan-result", "account": "123456789012",
    "region": "eu-west-2", "bucket": "phi-acme-123456789012-eu-west-2",
    "key": "inbound/2025/claims.csv", "version_id": "3sL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY",
    "etag": "9b2cf535f27731c974343645a3985328", "time": "2025-03-01T04:12:41Z",
    "event_id": "72c7d362-737a-6dce-fc78-9e27a0171419", "scan_status": "COMPLETED",
    "scan_result": "NO_THREATS_FOUND", "threats": None,
    "plan": ["arn:aws:guardduty:eu-west-2:123456789012:malware-protection-plan/b4c7f464"],
}


def scan(**changes: Any) -> str:
    data = {**SCAN, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not ...})


def test_an_object_created_message_waits_for_the_gate_unless_opted_out() -> None:
    assert parse_message(body()).scan_required  # older messages carry no "scan"
    assert parse_message(body(kind="object-created", scan="required")).scan_required
    assert not parse_message(body(kind="object-created", scan="opted-out")).scan_required


def test_a_scan_result_parses_into_its_verdict() -> None:
    event = parse_message(scan())
    assert isinstance(event, ScanResultEvent) and event.clean
    assert event.plan == SCAN["plan"][0]
    stopped = parse_message(scan(scan_result="THREATS_FOUND", threats=[{"name": "EICAR"}]))
    assert isinstance(stopped, ScanResultEvent) and not stopped.clean
    assert stopped.threats == ("EICAR",)
    skipped = parse_message(scan(scan_status="SKIPPED", scan_result=...))
    assert isinstance(skipped, ScanResultEvent)
    assert (skipped.result, skipped.clean) == ("SKIPPED", False)


@pytest.mark.parametrize("changes, problem", [
    ({"kind": "object-deleted"}, "kind: 'object-deleted' is neither"),
    ({"version_id": ...}, "version_id: required in a scan result"),
    ({"scan_status": ...}, "scan_status: required"),
    ({"scan_result": ...}, "scan_result: required when scan_status is COMPLETED"),
    ({"threats": "EICAR"}, "threats: must be a list of objects with a name"),
    ({"plan": [7]}, "plan: must be the event's resources"),
    ({"key": "outbound/x.csv"}, "is not under inbound/"),
])
def test_a_scan_result_breaking_a_rule_is_refused(changes: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidMessage) as caught:
        parse_message(scan(**changes))
    assert problem in caught.value.reason


def test_an_unknown_scan_setting_is_refused() -> None:
    with pytest.raises(InvalidMessage, match="scan: 'maybe' is neither"):
        parse_message(body(scan="maybe"))
