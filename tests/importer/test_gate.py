"""The malware gate and the signed receipts, end to end: uploads with the real transfer client to
the moto server, GuardDuty's verdict as the scan-result rule delivers it (and its tag on the
version, written as GuardDuty's role would), the receipt key in moto's KMS (ECC_NIST_P256), the
notices through moto's SNS to SQS subscriptions, rows in a real PostgreSQL server."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest

from importer.consumer import Importer, Outcome
from importer.gate import Notifier, ReceiptIssuer
from partner_transfer import receipts
from partner_transfer.receipts import ReceiptError
from phi_core import malware_gate, naming
from tests.importer.support import Customer, EmulatorClients, Queues, message_for
from tests.servers import ACCOUNT, REGION, emulator_client

CLAIMS = b"claim_id,member,amount\r\nC-1,M-100,12.50\r\n"
EICAR = (b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*")


@pytest.fixture(scope="module")
def kms(moto_endpoint: str) -> Any:
    return emulator_client("kms", moto_endpoint)


@pytest.fixture
def public_key(receipt_public_key: Any) -> Any:
    return receipt_public_key


class Notices:
    """The security topic and the customer's gate-notices topic, each with an SQS queue
    subscribed, so a test reads what was published."""

    def __init__(self, sns: Any, sqs: Any, slug: str) -> None:
        self.sqs = sqs
        self.queues: dict[str, str] = {}
        for name in (naming.SECURITY_TOPIC_NAME, naming.gate_notices_topic_name(slug)):
            topic = sns.create_topic(Name=name)["TopicArn"]
            queue = sqs.create_queue(QueueName=f"notices-{uuid.uuid4().hex[:10]}")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
                "Attributes"]["QueueArn"]
            sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn,
                          Attributes={"RawMessageDelivery": "true"})
            self.queues[name] = queue

    def received(self, topic_name: str) -> list[str]:
        resp = self.sqs.receive_message(QueueUrl=self.queues[topic_name],
                                        MaxNumberOfMessages=10, WaitTimeSeconds=0)
        return [m["Body"] for m in resp.get("Messages", [])]


@pytest.fixture
def sns(moto_endpoint: str) -> Any:
    return emulator_client("sns", moto_endpoint)


@pytest.fixture
def notices(sns: Any, emulator: EmulatorClients, customer: Customer) -> Iterator[Notices]:
    notices = Notices(sns, emulator.sqs, customer.slug)
    yield notices
    # The topics are shared by name across tests: unsubscribe this test's queues.
    for topic in sns.list_topics()["Topics"]:
        for sub in sns.list_subscriptions_by_topic(TopicArn=topic["TopicArn"])["Subscriptions"]:
            if sub["Endpoint"].rsplit(":", 1)[-1] in {
                    url.rsplit("/", 1)[-1] for url in notices.queues.values()}:
                sns.unsubscribe(SubscriptionArn=sub["SubscriptionArn"])


@pytest.fixture
def gated(importer: Importer, emulator: EmulatorClients, kms: Any, public_key: Any,
          sns: Any) -> Importer:
    """The importer as its command line builds it: receipts and notices on, nobody opted out
    (the registry's opt-outs are set by the tests that need one)."""
    importer.opted_out = {}
    importer.receipts = ReceiptIssuer(s3=emulator.s3, kms=kms)
    importer.notifier = Notifier(sns=sns)
    return importer


def scan_result(customer: Customer, key: str, version_id: str, result: str, *,
                status: str = "COMPLETED", threats: list[dict[str, str]] | None = None) -> str:
    """The body the scan-result rule sends for GuardDuty's event (stacks/components/
    malware_gate.py, its input transformer)."""
    return json.dumps({
        "customer": customer.slug, "kind": "scan-result", "account": ACCOUNT, "region": REGION,
        "bucket": customer.bucket, "key": key, "version_id": version_id, "etag": "0123",
        "time": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "event_id": str(uuid.uuid4()), "scan_status": status, "scan_result": result,
        "threats": threats, "plan": f"arn:aws:guardduty:{REGION}:{ACCOUNT}:"
                                    "malware-protection-plan/0123456789abcdef"})


def tag(customer: Customer, key: str, version_id: str, result: str) -> None:
    """What GuardDuty's role does after a scan (the emulator's own permission checks and the
    bucket's tag guard are proven elsewhere: tests/localaws)."""
    customer.s3.put_object_tagging(
        Bucket=customer.bucket, Key=key, VersionId=version_id,
        Tagging={"TagSet": [{"Key": malware_gate.SCAN_TAG_KEY, "Value": result}]})


def handle_all(importer: Importer, queues: Queues, *bodies: str) -> list[Outcome]:
    outcomes = []
    for body in bodies:
        queues.send(body)
        outcomes += importer.poll(wait_seconds=0)
    return outcomes


def stop_eicar(customer: Customer, queues: Queues, gated: Importer, *,
               threats: list[dict[str, str]] | None = None) -> Any:
    """Upload the EICAR test file, tag it THREATS_FOUND as GuardDuty's role would, and hand
    the importer both halves; the upload."""
    [upload] = customer.upload("eicar.csv", EICAR)
    assert upload.version_id is not None
    tag(customer, upload.key, upload.version_id, "THREATS_FOUND")
    handle_all(gated, queues, message_for(customer, upload, scan="required"),
               scan_result(customer, upload.key, upload.version_id, "THREATS_FOUND",
                           threats=threats))
    return upload


def receipt_of(customer: Customer, key: str, version_id: str, public_key: Any) -> Any:
    object_key = malware_gate.receipt_object_key(key, version_id)
    data = customer.s3.get_object(Bucket=customer.bucket, Key=object_key)["Body"].read()
    return receipts.parse_and_verify(data, public_key, object_key=object_key)


def rows(db: psycopg.Connection[Any], table: str) -> list[dict[str, Any]]:
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return list(cur.execute(f"SELECT * FROM {table} ORDER BY id"))  # noqa: S608 - fixed names


# --- a clean file --------------------------------------------------------------------------------


@pytest.mark.parametrize("verdict_first", [False, True], ids=["arrival-first", "verdict-first"])
def test_a_clean_file_is_imported_only_with_both_halves_and_gets_a_signed_receipt(
        customer: Customer, queues: Queues, gated: Importer, public_key: Any,
        db: psycopg.Connection[Any], verdict_first: bool) -> None:
    [upload] = customer.upload("claims.csv", CLAIMS)
    assert upload.version_id is not None
    tag(customer, upload.key, upload.version_id, "NO_THREATS_FOUND")
    arrival = message_for(customer, upload, scan="required")
    verdict = scan_result(customer, upload.key, upload.version_id, "NO_THREATS_FOUND")
    first, second = (verdict, arrival) if verdict_first else (arrival, verdict)

    assert handle_all(gated, queues, first) == [Outcome.WAITING]
    assert rows(db, "custody") == []  # nothing loads on one half
    assert handle_all(gated, queues, second) == [Outcome.LOADED]

    [custody] = rows(db, "custody")
    receipt = receipt_of(customer, upload.key, upload.version_id, public_key)
    assert receipt.outcome == "imported"
    assert receipt.body["size"] == upload.size == custody["size"]
    assert receipt.checksum == (custody["checksum_algorithm"], custody["checksum"])
    assert receipt.body["import_id"] == custody["id"] and receipt.body["row_count"] == 1
    assert receipt.body["scan"]["result"] == "NO_THREATS_FOUND"
    assert receipt.body["uploader"] == {"requester": ACCOUNT, "source_ip": "198.51.100.7"}
    assert [r["outcome"] for r in rows(db, "receipt")] == ["imported"]


def test_a_redelivered_verdict_issues_no_second_receipt(
        customer: Customer, queues: Queues, gated: Importer, db: psycopg.Connection[Any]) -> None:
    [upload] = customer.upload("claims.csv", CLAIMS)
    assert upload.version_id is not None
    tag(customer, upload.key, upload.version_id, "NO_THREATS_FOUND")
    verdict = scan_result(customer, upload.key, upload.version_id, "NO_THREATS_FOUND")
    handle_all(gated, queues, message_for(customer, upload, scan="required"), verdict)
    assert handle_all(gated, queues, verdict) == [Outcome.DUPLICATE]
    assert len(rows(db, "receipt")) == 1
    versions = customer.s3.list_object_versions(
        Bucket=customer.bucket, Prefix=naming.RECEIPTS_PREFIX)["Versions"]
    assert len(versions) == 1


def test_a_customer_the_registry_opts_out_imports_at_once_and_its_receipt_says_why(
        customer: Customer, queues: Queues, gated: Importer, public_key: Any,
        db: psycopg.Connection[Any]) -> None:
    reason = "Partner scans at source under contract S-12; security review 2026-10"
    gated.opted_out = {customer.slug: reason}
    [upload] = customer.upload("claims.csv", CLAIMS)
    assert upload.version_id is not None
    assert handle_all(gated, queues, message_for(customer, upload, scan="opted-out")) == [
        Outcome.LOADED]
    receipt = receipt_of(customer, upload.key, upload.version_id, public_key)
    assert receipt.scan_result == receipts.NOT_SCANNED
    assert reason in receipt.body["scan"]["reason"]


def test_a_message_claiming_an_opt_out_the_registry_does_not_make_still_waits(
        customer: Customer, queues: Queues, gated: Importer,
        db: psycopg.Connection[Any]) -> None:
    """A forged (or stale) message cannot skip the gate by saying the customer opted out."""
    [upload] = customer.upload("claims.csv", CLAIMS)
    assert handle_all(gated, queues, message_for(customer, upload, scan="opted-out")) == [
        Outcome.WAITING]
    assert rows(db, "custody") == []


# --- stopped at the gate -----------------------------------------------------------------------


def test_a_threat_loads_nothing_tells_both_topics_and_gets_a_rejected_receipt(
        customer: Customer, queues: Queues, gated: Importer, notices: Notices,
        public_key: Any, db: psycopg.Connection[Any]) -> None:
    [upload] = customer.upload("eicar.csv", EICAR)
    assert upload.version_id is not None
    tag(customer, upload.key, upload.version_id, "THREATS_FOUND")
    outcomes = handle_all(
        gated, queues, message_for(customer, upload, scan="required"),
        scan_result(customer, upload.key, upload.version_id, "THREATS_FOUND",
                    threats=[{"name": "EICAR-Test-File (not a virus)"}]))
    assert outcomes == [Outcome.WAITING, Outcome.STOPPED]

    assert rows(db, "custody") == []
    [stop] = rows(db, "gate_stop")
    assert stop["result"] == "THREATS_FOUND"
    assert stop["threats"] == ["EICAR-Test-File (not a virus)"]
    assert len(stop["notified"]) == 2
    for topic in (naming.SECURITY_TOPIC_NAME, naming.gate_notices_topic_name(customer.slug)):
        [notice] = notices.received(topic)
        assert "NOT imported" in notice and upload.key in notice and "EICAR" in notice
    receipt = receipt_of(customer, upload.key, upload.version_id, public_key)
    assert receipt.outcome == "rejected" and receipt.body["import_id"] is None
    assert receipt.body["scan"]["threats"] == ["EICAR-Test-File (not a virus)"]


@pytest.mark.parametrize(("status", "result"), [
    ("COMPLETED", "UNSUPPORTED"), ("COMPLETED", "ACCESS_DENIED"), ("COMPLETED", "FAILED"),
    ("SKIPPED", None), ("FAILED", None)])
def test_anything_but_a_clean_completed_scan_is_stopped(
        customer: Customer, queues: Queues, gated: Importer, notices: Notices,
        db: psycopg.Connection[Any], status: str, result: str | None) -> None:
    [upload] = customer.upload("claims.csv", CLAIMS)
    assert upload.version_id is not None
    tag(customer, upload.key, upload.version_id, result or status)
    outcomes = handle_all(gated, queues, message_for(customer, upload, scan="required"),
                          scan_result(customer, upload.key, upload.version_id,
                                      result or "", status=status))
    assert outcomes == [Outcome.WAITING, Outcome.STOPPED]
    assert rows(db, "custody") == []


def test_a_clean_verdict_the_versions_tag_contradicts_is_stopped(
        customer: Customer, queues: Queues, gated: Importer, notices: Notices,
        db: psycopg.Connection[Any]) -> None:
    """A message alone cannot pass the gate: the tag only GuardDuty's role may write must agree
    (a forged or misrouted "clean" message is stopped, not imported)."""
    [upload] = customer.upload("claims.csv", CLAIMS)
    assert upload.version_id is not None
    tag(customer, upload.key, upload.version_id, "THREATS_FOUND")
    outcomes = handle_all(gated, queues, message_for(customer, upload, scan="required"),
                          scan_result(customer, upload.key, upload.version_id,
                                      "NO_THREATS_FOUND"))
    assert outcomes == [Outcome.WAITING, Outcome.STOPPED]
    assert rows(db, "custody") == []
    [stop] = rows(db, "gate_stop")
    assert "tag says THREATS_FOUND" in stop["reason"]


def test_a_clean_verdict_before_its_tag_is_retried_then_imported(
        customer: Customer, queues: Queues, gated: Importer,
        db: psycopg.Connection[Any]) -> None:
    """GuardDuty tags in a post-scan action of its own: a verdict that arrives before the tag
    comes back later (transient), never stops a clean file for good."""
    [upload] = customer.upload("claims.csv", CLAIMS)
    assert upload.version_id is not None
    outcomes = handle_all(gated, queues, message_for(customer, upload, scan="required"),
                          scan_result(customer, upload.key, upload.version_id,
                                      "NO_THREATS_FOUND"))
    assert outcomes == [Outcome.WAITING, Outcome.RETRY]
    assert rows(db, "custody") == [] and rows(db, "gate_stop") == []
    tag(customer, upload.key, upload.version_id, "NO_THREATS_FOUND")
    assert gated.poll(wait_seconds=0) == [Outcome.LOADED]


def test_a_stop_is_notified_once_however_often_the_verdict_comes(
        customer: Customer, queues: Queues, gated: Importer, notices: Notices,
        db: psycopg.Connection[Any]) -> None:
    [upload] = customer.upload("eicar.csv", EICAR)
    assert upload.version_id is not None
    tag(customer, upload.key, upload.version_id, "THREATS_FOUND")
    verdict = scan_result(customer, upload.key, upload.version_id, "THREATS_FOUND")
    handle_all(gated, queues, message_for(customer, upload, scan="required"), verdict, verdict)
    assert len(notices.received(naming.SECURITY_TOPIC_NAME)) == 1
    assert len(rows(db, "gate_stop")) == 1 and len(rows(db, "receipt")) == 1


def test_a_forged_receipt_does_not_verify(
        customer: Customer, queues: Queues, gated: Importer, notices: Notices,
        public_key: Any) -> None:
    """The importer's receipt verifies; the same receipt with its size changed does not."""
    upload = stop_eicar(customer, queues, gated)
    object_key = malware_gate.receipt_object_key(upload.key, upload.version_id)
    document = json.loads(customer.s3.get_object(
        Bucket=customer.bucket, Key=object_key)["Body"].read())
    receipts.parse_and_verify(json.dumps(document).encode(), public_key)
    document["receipt"]["size"] += 1
    with pytest.raises(ReceiptError, match="does not verify"):
        receipts.parse_and_verify(json.dumps(document).encode(), public_key)


def test_gate_records_cannot_be_changed_or_removed(
        customer: Customer, queues: Queues, gated: Importer, notices: Notices,
        db: psycopg.Connection[Any]) -> None:
    stop_eicar(customer, queues, gated)
    for table in ("arrival", "scan_result", "gate_stop", "receipt"):
        assert rows(db, table), table
        for statement in (f"DELETE FROM {table}", f"UPDATE {table} SET key = 'x'",  # noqa: S608
                          f"TRUNCATE {table} CASCADE"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                db.execute(statement)


def test_the_custody_command_shows_the_stop_and_the_receipt(
        customer: Customer, queues: Queues, gated: Importer, notices: Notices,
        dsn: str) -> None:
    from admin.cli import _importer_rows
    from admin.custody import custody_report, format_report

    upload = stop_eicar(customer, queues, gated,
                        threats=[{"name": "EICAR-Test-File (not a virus)"}])
    report = custody_report(customer.s3, customer=customer.slug, bucket=customer.bucket,
                            key=upload.key, importer_rows=_importer_rows(dsn))
    text = format_report(report)
    assert "scanned     THREATS_FOUND (EICAR-Test-File (not a virus)) by GuardDuty" in text
    assert "imported    NO: stopped at the malware gate" in text
    assert "receipt     rejected, signed, receipts/eicar.csv/" in text
    [version] = report.to_json()["versions"]
    assert version["gate"]["stopped"]["result"] == "THREATS_FOUND"
