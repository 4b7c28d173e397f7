"""The importer end to end: files uploaded with the real transfer client to the moto server,
messages on a real SQS queue pair (moto), rows in a real PostgreSQL server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
from botocore.config import Config

from importer import store
from importer.consumer import Importer, Outcome
from importer.errors import ChecksumMismatch
from importer.fetch import UPLOADER_METADATA_KEY, fetch_verified
from importer.message import parse_message
from partner_transfer import checksums, receipts
from partner_transfer.checksums import METADATA_KEY
from phi_core import malware_gate
from tests.importer.support import KMS_KEY_ARN, Customer, Queues, handoff_message, message_for
from tests.servers import ACCOUNT, emulator_client, free_port

CLAIMS = b"claim_id,member,amount\r\nC-1,M-100,12.50\r\nC-2,M-200,7.00\r\n"
MOTO_CALLER_ARN = f"arn:aws:sts::{ACCOUNT}:user/moto"  # moto's answer to GetCallerIdentity


def custody_rows(db: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    with db.cursor(row_factory=psycopg.rows.dict_row) as cur:
        return list(cur.execute("SELECT * FROM custody_chain ORDER BY id"))


def loaded_rows(db: psycopg.Connection[Any]) -> list[Any]:
    return [r[0] for r in db.execute("SELECT data FROM inbound_rows ORDER BY row_number")]


def counts(db: psycopg.Connection[Any]) -> tuple[int, int]:
    row = db.execute(
        "SELECT (SELECT count(*) FROM custody), (SELECT count(*) FROM inbound_rows)").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def attributes(message: dict[str, Any]) -> dict[str, str]:
    return {k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()}


# --- the happy path and redelivery ------------------------------------------------------------


def test_uploaded_csv_is_loaded_with_its_custody_row(
        customer: Customer, queues: Queues, importer: Importer,
        db: psycopg.Connection[Any]) -> None:
    [upload] = customer.upload("claims.csv", CLAIMS)
    body = message_for(customer, upload)
    queues.send(body)

    assert importer.poll(wait_seconds=0) == [Outcome.LOADED]

    assert loaded_rows(db) == [
        {"claim_id": "C-1", "member": "M-100", "amount": "12.50"},
        {"claim_id": "C-2", "member": "M-200", "amount": "7.00"},
    ]
    [row] = custody_rows(db)
    event = parse_message(body)
    assert row["customer"] == customer.slug
    assert (row["bucket"], row["key"], row["version_id"]) == (
        customer.bucket, "inbound/claims.csv", upload.version_id)
    assert row["size"] == len(CLAIMS)
    assert (row["checksum"], row["checksum_algorithm"], row["checksum_source"]) == (
        upload.checksum, "CRC64NVME", "s3")
    assert row["kms_key_id"] == KMS_KEY_ARN
    assert row["row_count"] == 2
    assert (row["event_id"], row["event_time"]) == (event.event_id, event.time)
    # No batch manifest, no uploader metadata: nobody claims it; AWS's record (the event's
    # requester, an account id, and source address) is kept in its own columns.
    assert (row["uploader_arn"], row["uploader_source"]) == (None, "unknown")
    assert (row["requester"], row["source_ip"]) == (ACCOUNT, "198.51.100.7")
    assert queues.depth() == 0
    assert queues.dead_letters() == []


def test_redelivered_message_loads_the_file_once(
        customer: Customer, queues: Queues, importer: Importer,
        db: psycopg.Connection[Any]) -> None:
    [upload] = customer.upload("claims.csv", CLAIMS)
    body = message_for(customer, upload)
    queues.send(body)
    queues.send(body)

    outcomes = importer.poll(wait_seconds=0) + importer.poll(wait_seconds=0)

    assert outcomes == [Outcome.LOADED, Outcome.DUPLICATE]
    assert counts(db) == (1, 2)
    assert queues.depth() == 0  # the duplicate is deleted, not retried
    assert queues.dead_letters() == []


def test_new_version_of_the_same_key_is_loaded_again(
        customer: Customer, queues: Queues, importer: Importer,
        db: psycopg.Connection[Any]) -> None:
    [first] = customer.upload("claims.csv", CLAIMS)
    [second] = customer.upload("claims.csv", CLAIMS + b"C-3,M-300,1.00\r\n")
    queues.send(message_for(customer, first))
    queues.send(message_for(customer, second))

    assert importer.poll(wait_seconds=0, max_messages=10) == [Outcome.LOADED] * 2
    assert sorted(r["row_count"] for r in custody_rows(db)) == [2, 3]


def test_second_load_of_a_version_inside_its_transaction_writes_nothing(
        customer: Customer, db: psycopg.Connection[Any], tmp_path: Path) -> None:
    # Two deliveries racing past the pre-check: the unique constraint decides, in the
    # transaction, and the loser leaves nothing behind.
    [upload] = customer.upload("claims.csv", CLAIMS)
    event = parse_message(message_for(customer, upload))
    with fetch_verified(customer.s3, customer.bucket, upload.key, upload.version_id,
                        directory=tmp_path) as fetched:
        first = store.load_csv(db, event, fetched)
        second = store.load_csv(db, event, fetched)
    assert (first.loaded, first.row_count) == (True, 2)
    assert (second.loaded, second.custody_id) == (False, None)
    assert counts(db) == (1, 2)


# --- poison messages --------------------------------------------------------------------------

GOOD_ROWS = b"".join(b"C-%d,M-%d,1.00\r\n" % (n, n) for n in range(1, 2001))


@pytest.mark.parametrize("data, problem", [
    (b"claim_id,member,amount\r\n" + GOOD_ROWS + b"C-x,M-x\r\n", "line 2002: 2 fields"),
    (b"claim_id,member,amount\r\n" + GOOD_ROWS + b"C-x,M-\xe9,1\r\n", "not UTF-8"),
    (b"", "empty file"),
    (b"claim_id,claim_id\r\n1,2\r\n", "duplicate column names"),
], ids=["ragged-last-row", "latin-1-last-row", "empty", "duplicate-header"])
def test_malformed_csv_goes_to_the_dead_letter_queue_with_nothing_loaded(
        customer: Customer, queues: Queues, importer: Importer, db: psycopg.Connection[Any],
        data: bytes, problem: str) -> None:
    [upload] = customer.upload("claims.csv", data)
    body = message_for(customer, upload)
    queues.send(body)

    assert importer.poll(wait_seconds=0) == [Outcome.DEAD_LETTERED]

    assert counts(db) == (0, 0)  # not even the 2,000 good rows before the bad one
    assert queues.depth() == 0
    [dead] = queues.dead_letters()
    assert dead["Body"] == body  # unchanged, so it can be redriven once fixed
    assert attributes(dead)["failure"] == "malformed-file"
    assert problem in attributes(dead)["reason"]


def test_checksum_mismatch_goes_to_the_dead_letter_queue(
        customer: Customer, queues: Queues, importer: Importer,
        db: psycopg.Connection[Any]) -> None:
    [upload] = customer.upload("claims.csv", CLAIMS)
    # Someone rewrites the object with a recorded checksum that is not its content's.
    wrong = checksums.encode_int(checksums.crc64nvme(b"other bytes"))
    copy = customer.s3.copy_object(
        Bucket=customer.bucket, Key=upload.key,
        CopySource={"Bucket": customer.bucket, "Key": upload.key, "VersionId": upload.version_id},
        MetadataDirective="REPLACE", Metadata={METADATA_KEY: wrong})
    body = handoff_message(customer.slug, customer.bucket, upload.key, copy["VersionId"],
                           len(CLAIMS))
    queues.send(body)

    assert importer.poll(wait_seconds=0) == [Outcome.DEAD_LETTERED]

    assert counts(db) == (0, 0)
    [dead] = queues.dead_letters()
    assert attributes(dead)["failure"] == "checksum-mismatch"
    assert wrong in attributes(dead)["reason"]
    assert importer.work_dir is not None
    assert list(importer.work_dir.iterdir()) == []  # no fetched copy left behind


def test_mismatched_bytes_never_reach_a_caller(customer: Customer, tmp_path: Path) -> None:
    customer.s3.put_object(Bucket=customer.bucket, Key="inbound/x.csv", Body=CLAIMS,
                           Metadata={METADATA_KEY: "AAAAAAAAAAA="})
    with pytest.raises(ChecksumMismatch, match="recorded by the uploader is AAAAAAAAAAA="):
        fetch_verified(customer.s3, customer.bucket, "inbound/x.csv", None, directory=tmp_path)
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone


def test_missing_object_goes_to_the_dead_letter_queue(
        customer: Customer, queues: Queues, importer: Importer,
        db: psycopg.Connection[Any]) -> None:
    [upload] = customer.upload("claims.csv", CLAIMS)
    customer.s3.delete_object(Bucket=customer.bucket, Key=upload.key, VersionId=upload.version_id)
    queues.send(message_for(customer, upload))

    assert importer.poll(wait_seconds=0) == [Outcome.DEAD_LETTERED]

    assert counts(db) == (0, 0)
    [dead] = queues.dead_letters()
    assert attributes(dead)["failure"] == "missing-object"
    assert str(upload.version_id) in attributes(dead)["reason"]


def test_object_without_a_full_object_checksum_is_not_loaded(
        customer: Customer, queues: Queues, importer: Importer,
        db: psycopg.Connection[Any]) -> None:
    # Another tool: no checksum asked for (botocore would add CRC32 by default).
    bare = emulator_client("s3", customer.endpoint,
                           Config(request_checksum_calculation="when_required"))
    put = bare.put_object(Bucket=customer.bucket, Key="inbound/other-tool.csv", Body=CLAIMS)
    queues.send(handoff_message(customer.slug, customer.bucket, "inbound/other-tool.csv",
                                put["VersionId"], len(CLAIMS)))

    assert importer.poll(wait_seconds=0) == [Outcome.DEAD_LETTERED]

    assert counts(db) == (0, 0)
    assert attributes(queues.dead_letters()[0])["failure"] == "unverifiable"


def test_message_that_is_not_a_handoff_event_goes_to_the_dead_letter_queue(
        queues: Queues, importer: Importer) -> None:
    queues.send('{"Records": []}')

    assert importer.poll(wait_seconds=0) == [Outcome.DEAD_LETTERED]

    [dead] = queues.dead_letters()
    assert dead["Body"] == '{"Records": []}'
    assert attributes(dead)["failure"] == "invalid-message"


def test_poison_message_stays_on_the_queue_while_the_dead_letter_queue_is_unreachable(
        customer: Customer, queues: Queues, importer: Importer) -> None:
    [upload] = customer.upload("claims.csv", CLAIMS)
    customer.s3.delete_object(Bucket=customer.bucket, Key=upload.key, VersionId=upload.version_id)
    queues.send(message_for(customer, upload))
    importer.dead_letter_queue_url = queues.dead_letter_url + "-gone"

    assert importer.poll(wait_seconds=0) == [Outcome.RETRY]

    assert queues.depth() == 1  # never dropped: the redrive policy is the backstop


# --- transient failures -----------------------------------------------------------------------


def test_database_outage_leaves_the_message_for_redelivery(
        customer: Customer, queues: Queues, importer: Importer,
        db: psycopg.Connection[Any]) -> None:
    [upload] = customer.upload("claims.csv", CLAIMS)
    queues.send(message_for(customer, upload))
    working = importer.connect
    nowhere = f"host=127.0.0.1 port={free_port()} user=postgres connect_timeout=5"
    importer.connect = lambda: psycopg.connect(nowhere, autocommit=True)

    assert importer.poll(wait_seconds=0) == [Outcome.RETRY]

    assert queues.depth() == 1
    assert queues.dead_letters() == []
    assert counts(db) == (0, 0)

    importer.connect = working  # the database is back
    assert importer.poll(wait_seconds=0) == [Outcome.LOADED]
    assert counts(db) == (1, 2)
    assert queues.depth() == 0


# --- the uploader -----------------------------------------------------------------------------


@pytest.mark.parametrize("manifest_first", [False, True], ids=["file-first", "manifest-first"])
def test_batch_manifest_names_the_uploader_whichever_arrives_first(
        customer: Customer, queues: Queues, importer: Importer, db: psycopg.Connection[Any],
        manifest_first: bool) -> None:
    upload, manifest = customer.upload("claims.csv", CLAIMS, commit_manifest=True)
    assert manifest.key.startswith("inbound/_manifests/")
    messages = [message_for(customer, upload), message_for(customer, manifest)]
    for body in reversed(messages) if manifest_first else messages:
        queues.send(body)
        assert importer.poll(wait_seconds=0) == [Outcome.LOADED]

    [row] = custody_rows(db)
    batch_id = manifest.key.rsplit("/", 1)[1].removesuffix(".json")
    assert row["claimed_uploader_arn"] == MOTO_CALLER_ARN
    assert row["claimed_uploader_source"] == "batch-manifest"
    assert row["requester"] == ACCOUNT  # AWS's record, whatever the manifest claims
    assert row["batch_manifest_batch_id"] == batch_id
    assert row["batch_manifest_checksum"] == row["checksum"]
    # What was known when the file itself was imported stays as it was recorded.
    assert row["uploader_source"] == ("batch-manifest" if manifest_first else "unknown")
    assert loaded_rows(db)[0]["claim_id"] == "C-1"  # the manifest is not loaded as data


def test_uploader_arn_in_object_metadata_is_used_without_a_manifest(
        customer: Customer, queues: Queues, importer: Importer,
        db: psycopg.Connection[Any]) -> None:
    uploader = f"arn:aws:iam::{ACCOUNT}:role/etl-job"
    crc = checksums.encode_int(checksums.crc64nvme(CLAIMS))
    put = customer.s3.put_object(
        Bucket=customer.bucket, Key="inbound/etl.csv", Body=CLAIMS,
        Metadata={METADATA_KEY: crc, UPLOADER_METADATA_KEY: uploader})
    queues.send(handoff_message(customer.slug, customer.bucket, "inbound/etl.csv",
                                put["VersionId"], len(CLAIMS)))

    assert importer.poll(wait_seconds=0) == [Outcome.LOADED]

    [row] = custody_rows(db)
    assert (row["uploader_arn"], row["uploader_source"]) == (uploader, "object-metadata")


# --- the custody table itself -----------------------------------------------------------------


@pytest.mark.parametrize("statement", [
    "UPDATE custody SET row_count = 0",
    "DELETE FROM custody",
    "TRUNCATE custody CASCADE",
])
def test_custody_rows_cannot_be_changed_or_removed(
        customer: Customer, queues: Queues, importer: Importer, db: psycopg.Connection[Any],
        statement: str) -> None:
    [upload] = customer.upload("claims.csv", CLAIMS)
    queues.send(message_for(customer, upload))
    importer.poll(wait_seconds=0)

    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
        db.execute(statement)
    assert counts(db) == (1, 2)


# --- the entry point --------------------------------------------------------------------------


def test_command_line_imports_one_message_and_exits(
        customer: Customer, queues: Queues, dsn: str, moto_endpoint: str,
        db: psycopg.Connection[Any], receipt_public_key: Any) -> None:
    [upload] = customer.upload("claims.csv", CLAIMS)
    queues.send(message_for(customer, upload))

    # The registry opts this customer out of the malware gate (its files import at once).
    registry = customer.root / "registry"
    registry.mkdir()
    (registry / f"{customer.slug}.toml").write_text(
        f'slug = "{customer.slug}"\naccess = "iam-user"\ncontacts = ["ops@example.org"]\n'
        '[malware_scan]\nenabled = false\nreason = "tests: the command line apart from '
        'the gate"\n', encoding="utf-8")

    # No --dead-letter-queue-url: the importer finds it in the queue's redrive policy.
    result = subprocess.run(
        [sys.executable, "-m", "importer", "--queue-url", queues.url, "--dsn", dsn,
         "--endpoint-url", moto_endpoint, "--once", "--wait-seconds", "0",
         "--registry", str(registry)],
        capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ),
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1 loaded"
    assert json.dumps(str(upload.version_id)).strip('"') in result.stderr  # the log line
    assert counts(db) == (1, 2)
    # The command line always issues receipts: this one verifies with the kit's public key.
    receipt_key = malware_gate.receipt_object_key(upload.key, str(upload.version_id))
    body = customer.s3.get_object(Bucket=customer.bucket, Key=receipt_key)["Body"].read()
    assert receipts.parse_and_verify(body, receipt_public_key).outcome == "imported"


def test_command_line_refuses_a_broken_registry_in_one_line(
        customer: Customer, queues: Queues, dsn: str, moto_endpoint: str) -> None:
    registry = customer.root / "registry"
    registry.mkdir()
    (registry / "bad.toml").write_text('slug = "bad"\n', encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "importer", "--queue-url", queues.url, "--dsn", dsn,
         "--endpoint-url", moto_endpoint, "--once", "--wait-seconds", "0",
         "--registry", str(registry)],
        capture_output=True, text=True, timeout=60, check=False, env=dict(os.environ),
    )
    assert result.returncode == 1
    assert "\npython -m importer: cannot start: customer registry: 2 problems" in (
        "\n" + result.stderr), result.stderr
    assert "bad.toml: contacts: required" in result.stderr
    assert "Traceback" not in result.stderr
