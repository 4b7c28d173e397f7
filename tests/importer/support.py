"""What the importer and custody tests share: a customer's bucket on the emulator, uploads
made with the real transfer client, the ingestion queue pair, and the message the handoff rule
would send for an upload.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest

from importer.consumer import Importer
from partner_transfer import Client, Options, Outcome, receipts
from partner_transfer.profile import Profile
from phi_core import malware_gate, naming
from tests.servers import ACCOUNT, REGION, emulator_client

KMS_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
# The queue's redrive policy, as stacks/components/ingestion_queue.py deploys it.
MAX_RECEIVE_COUNT = 5


@dataclass
class Customer:
    """A customer bucket on the emulator and a partner's transfer client for it."""

    slug: str
    bucket: str
    root: Path
    endpoint: str
    s3: Any
    uploads: list[Outcome] = field(default_factory=list)

    @property
    def manifest(self) -> Path:
        """The partner's local custody manifest (the client's default place)."""
        return self.root / "state" / "manifest.jsonl"

    def client(self, *, commit_manifest: bool = False) -> Client:
        profile = Profile(
            customer=self.slug, bucket=self.bucket, region=REGION, bucket_owner=ACCOUNT,
            kms_key_arn=KMS_KEY_ARN, inbound_prefix=naming.INBOUND_PREFIX,
            outbound_prefix=naming.OUTBOUND_PREFIX, endpoint_url=self.endpoint,
            state_dir=self.root / "state",
        )
        return Client(profile, Options(commit_manifest=commit_manifest, fsync=False))

    def upload(self, name: str, data: bytes, *, commit_manifest: bool = False) -> list[Outcome]:
        """Upload ``data`` as ``inbound/<name>`` with partner-transfer; every outcome, the
        batch manifest last when ``commit_manifest``."""
        path = self.root / "outgoing" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        outcomes = self.client(commit_manifest=commit_manifest).upload([path])
        assert [o.result for o in outcomes] == ["ok"] * len(outcomes), outcomes
        self.uploads += outcomes
        return outcomes


def new_customer(root: Path, endpoint: str, s3: Any, slug: str | None = None) -> Customer:
    """A versioned bucket named like customer ``slug``'s (default: a random slug)."""
    slug = slug or f"t{uuid.uuid4().hex[:10]}"
    bucket = naming.data_bucket_name(slug, ACCOUNT, REGION)
    s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return Customer(slug=slug, bucket=bucket, root=root, endpoint=endpoint, s3=s3)


def handoff_message(customer: str, bucket: str, key: str, version_id: str | None, size: int,
                    **overrides: Any) -> str:
    """The body the ingestion handoff rule sends for an Object Created event: of a customer
    opted out of the malware gate unless ``scan="required"`` (the gate's own tests,
    tests/importer/test_gate.py, say so)."""
    body: dict[str, Any] = {
        "customer": customer, "kind": "object-created", "scan": "opted-out",
        "account": ACCOUNT, "region": REGION, "bucket": bucket,
        "key": key, "version_id": version_id,
        "size": size, "etag": '"0123456789abcdef0123456789abcdef"',
        "time": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "event_id": str(uuid.uuid4()), "requester": ACCOUNT, "source_ip": "198.51.100.7",
    }
    body.update(overrides)
    return json.dumps(body)


def message_for(customer: Customer, outcome: Outcome, **overrides: Any) -> str:
    assert outcome.size is not None
    return handoff_message(customer.slug, customer.bucket, outcome.key, outcome.version_id,
                           outcome.size, **overrides)


@dataclass
class Queues:
    sqs: Any
    url: str
    dead_letter_url: str

    def send(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.url, MessageBody=body)

    def dead_letters(self) -> list[dict[str, Any]]:
        """Every message in the dead-letter queue, with its attributes (left there)."""
        resp = self.sqs.receive_message(
            QueueUrl=self.dead_letter_url, MaxNumberOfMessages=10, WaitTimeSeconds=0,
            MessageAttributeNames=["All"], VisibilityTimeout=0)
        return list(resp.get("Messages", []))

    def depth(self) -> int:
        """Messages on the queue, visible or in flight."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"])


def new_queues(sqs: Any) -> Queues:
    """An ingestion queue and its dead-letter queue, configured like the audit stack's."""
    suffix = uuid.uuid4().hex[:8]
    dlq = sqs.create_queue(QueueName=f"{naming.INGESTION_DEAD_LETTER_QUEUE_NAME}-{suffix}")
    dlq_arn = sqs.get_queue_attributes(
        QueueUrl=dlq["QueueUrl"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue = sqs.create_queue(
        QueueName=f"{naming.INGESTION_QUEUE_NAME}-{suffix}",
        Attributes={
            "VisibilityTimeout": "900",
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}),
        },
    )
    return Queues(sqs, queue["QueueUrl"], dlq["QueueUrl"])


# --- fixtures ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmulatorClients:
    s3: Any
    sqs: Any


@pytest.fixture(scope="package")
def emulator(moto_endpoint: str) -> EmulatorClients:
    """S3 and SQS clients on the moto server, made once, with explicit dummy credentials."""
    return EmulatorClients(emulator_client("s3", moto_endpoint),
                           emulator_client("sqs", moto_endpoint))


@pytest.fixture
def customer(tmp_path: Path, moto_endpoint: str, emulator: EmulatorClients,
             aws_env: None) -> Customer:
    """A fresh customer bucket (versioned, named like a real one) and its partner client."""
    return new_customer(tmp_path, moto_endpoint, emulator.s3)


@pytest.fixture
def queues(emulator: EmulatorClients, aws_env: None) -> Queues:
    return new_queues(emulator.sqs)


# The importer's own tests (test_importer.py) load files as an opted-out customer's: the
# registry's opt-out, not the message, lets a file in without a scan (test_gate.py).
OPTED_OUT_REASON = "tests: the importer's loading, apart from the malware gate (test_gate.py)"


@pytest.fixture
def importer(emulator: EmulatorClients, queues: Queues, dsn: str, tmp_path: Path,
             customer: Customer) -> Iterator[Importer]:
    """The importer on the test's queues and database, the test's customer opted out of the
    malware gate; a transiently failed message is visible again at once (``retry_delay=0``)."""
    work = tmp_path / "work"
    work.mkdir()
    consumer = Importer(
        s3=emulator.s3, sqs=queues.sqs,
        queue_url=queues.url, dead_letter_queue_url=queues.dead_letter_url,
        connect=lambda: psycopg.connect(dsn, autocommit=True), work_dir=work, retry_delay=0,
        opted_out={customer.slug: OPTED_OUT_REASON})
    yield consumer
    consumer.close()


@pytest.fixture(scope="package")
def receipt_public_key(moto_endpoint: str) -> Any:
    """The receipt key in the moto server, as the audit stack creates it (ECC_NIST_P256,
    SIGN_VERIFY, its alias: the importer signs by the alias), and its public key as the
    onboarding kit carries it (PEM)."""
    kms = emulator_client("kms", moto_endpoint)
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    key_id = aliases.get(naming.RECEIPT_SIGNING_KEY_ALIAS)
    if key_id is None:
        key_id = kms.create_key(KeySpec=malware_gate.RECEIPT_KEY_SPEC,
                                KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=naming.RECEIPT_SIGNING_KEY_ALIAS, TargetKeyId=key_id)
    der = kms.get_public_key(KeyId=key_id)["PublicKey"]
    return receipts.load_public_key(receipts.public_key_pem(der))
