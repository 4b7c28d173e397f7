"""``phi-exchange-admin status`` against moto (and PostgreSQL for the importer's custody
table): every customer's state, key age, days to rotation and last upload, from each source."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest

from admin import status
from localaws.x509_ca import ThrowawayCA
from phi_core import naming
from stacks import certificates
from tests.admin.lifecycle_support import (
    REGION,
    REPO,
    Deployed,
    deploy,
    outputs_for,
    registry,
    run,
)

CUSTOMERS = REPO / "customers"


@pytest.fixture
def acme(aws: None) -> Deployed:
    deployed = deploy(registry()["acme"])
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=deployed.bucket, Key="inbound/claims-1.csv", Body=b"1")
    s3.put_object(Bucket=deployed.bucket, Key="inbound/claims-2.csv", Body=b"2")
    # The client's commit marker comes last but is not a data file.
    s3.put_object(Bucket=deployed.bucket, Key="inbound/_manifests/batch.json", Body=b"{}")
    return deployed


def status_json(*extra: str) -> dict[str, dict[str, Any]]:
    ran = run(CUSTOMERS, ["status", "--json", *extra])
    assert ran.code == 0, ran.err
    return {entry["customer"]: entry for entry in json.loads(ran.out)}


def test_status_reports_every_registered_customer(acme: Deployed) -> None:
    deploy(registry()["initech"])

    statuses = status_json()

    assert set(statuses) == {"acme", "globex", "hooli", "initech"}
    assert statuses["globex"]["state"] == "not deployed"
    assert statuses["globex"]["notes"] == ["stack PhiExchange-globex does not exist"]
    initech = statuses["initech"]
    assert (initech["state"], initech["access_mode"]) == ("active", "assume-role")
    assert initech["has_upload_folder"] is False and initech["last_upload"] is None
    assert initech["key_age_days"] is None  # no key of ours


def test_status_gives_the_current_key_age_and_days_to_rotation(acme: Deployed) -> None:
    entry = status_json()["acme"]

    assert entry["state"] == "active"
    assert entry["current_key_id"] == acme.access_key_id
    assert entry["key_age_days"] == 0
    assert entry["days_to_rotation"] in (364, 365)
    assert entry["next_rotation"] is not None


def test_last_upload_comes_from_the_bucket_without_custody_data(acme: Deployed) -> None:
    upload = status_json()["acme"]["last_upload"]

    assert upload["source"] == "bucket listing"
    assert upload["key"] in ("inbound/claims-1.csv", "inbound/claims-2.csv")
    assert upload["partial"] is False


def test_last_upload_prefers_the_newest_client_manifest_record(
        acme: Deployed, tmp_path: Path) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join([
        json.dumps({"direction": "upload", "result": "ok", "bucket": acme.bucket,
                    "key": "inbound/newest.csv", "time": later.isoformat()}),
        json.dumps({"direction": "upload", "result": "failed", "bucket": acme.bucket,
                    "key": "inbound/failed.csv", "time": (later + timedelta(1)).isoformat()}),
        json.dumps({"direction": "download", "result": "ok", "bucket": acme.bucket,
                    "key": "outbound/x.csv", "time": (later + timedelta(2)).isoformat()}),
        "not json",
    ]))

    upload = status_json("--manifest", str(manifest))["acme"]["last_upload"]

    assert (upload["key"], upload["source"]) == ("inbound/newest.csv",
                                                 "client manifest manifest.jsonl")


def test_last_upload_comes_from_the_importer_custody_table_with_a_dsn(
        acme: Deployed, dsn: str, db: psycopg.Connection[Any]) -> None:
    imported_at = datetime(2026, 11, 28, 23, 49, 33, tzinfo=UTC)
    for key, moment in (("inbound/old.csv", imported_at - timedelta(days=2)),
                        ("inbound/imported.csv", imported_at)):
        db.execute(
            "INSERT INTO custody (customer, bucket, key, version_id, size, checksum, "
            "checksum_algorithm, checksum_source, uploader_source, event_id, event_time, "
            "row_count) VALUES ('acme', %s, %s, 'v1', 1, 'x', 'CRC64NVME', 's3', 'unknown', "
            "%s, %s, 1)", (acme.bucket, key, key, moment))

    upload = status_json("--dsn", dsn)["acme"]["last_upload"]

    assert upload == {"time": "2026-11-28T23:49:33Z", "key": "inbound/imported.csv",
                      "source": "importer custody table", "partial": False}


def test_status_text_is_one_line_per_customer_then_notes(acme: Deployed) -> None:
    ran = run(CUSTOMERS, ["status"])

    assert ran.code == 0, ran.err
    lines = ran.out.splitlines()
    assert lines[0].split() == ["CUSTOMER", "ACCESS", "STATE", "KEY", "AGE", "ROTATION", "IN",
                                "CA", "EXPIRES", "IN", "LAST", "UPLOAD"]
    rows = {line.split()[0]: line for line in lines[1:5]}
    assert rows["acme"].split()[1:4] == ["iam-user", "active", "0"]
    assert "[bucket listing]" in rows["acme"]
    assert "not deployed" in rows["globex"]
    assert "globex: stack PhiExchange-globex does not exist" in lines[5:]
    # hooli (roles-anywhere) is not deployed here, but its CA's expiry is the registry's.
    assert rows["hooli"].split()[1:6] == ["roles-anywhere", "not", "deployed", "-", "-"]
    assert any(line.startswith("hooli: CA CN=Hooli Labs Partner Issuing CA") and
               "expires 2046-12-01" in line for line in lines[5:])


def test_status_shows_offboarded_and_asks_for_the_registry_change(aws: None) -> None:
    deploy(registry()["acme"], rotation=False)
    assert run(CUSTOMERS, ["offboard", "acme", "--yes"]).code == 0

    entry = status_json()["acme"]

    assert entry["state"] == "offboarded"
    assert any("the registry does not record it yet" in note for note in entry["notes"])


def test_a_stack_deployed_as_offboarded_is_reported_without_notes(aws: None) -> None:
    outputs = {k: v for k, v in outputs_for(registry()["globex"]).items()
               if not k.endswith("Prefix")} | {"Offboarded": "true"}
    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket=outputs["BucketName"], CreateBucketConfiguration={"LocationConstraint": REGION})
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=naming.stack_name("globex"), TemplateBody=json.dumps({
            "Resources": {"Notices": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {k: {"Value": v} for k, v in outputs.items()}}))

    entry = status_json()["globex"]

    assert (entry["state"], entry["notes"], entry["last_upload"]) == ("offboarded", [], None)


def test_bucket_listing_stops_at_its_limit_and_says_so(acme: Deployed) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    for n in range(5):
        s3.put_object(Bucket=acme.bucket, Key=f"inbound/more-{n}.csv", Body=b"x")

    partial = status.last_listed_upload(s3, acme.bucket, "inbound/", max_listed=2)
    complete = status.last_listed_upload(s3, acme.bucket, "inbound/", max_listed=100)

    assert partial is not None and partial.partial is True
    assert complete is not None and complete.partial is False
    assert status.last_listed_upload(s3, acme.bucket, "outbound/") is None


def test_status_refuses_a_listing_limit_below_one(aws: None) -> None:
    ran = run(CUSTOMERS, ["status", "--max-listed", "0"])
    assert ran.code == 1 and "--max-listed must be at least 1" in ran.err


def test_a_roles_anywhere_ca_near_its_expiry_is_flagged_with_what_to_do(aws: None) -> None:
    """Certificate expiry replaces key rotation: the registry's CA, its days left, and inside
    IAM Roles Anywhere's notice window a line saying how to register the successor."""
    hooli = registry()["hooli"]
    assert hooli.roles_anywhere is not None
    expires = hooli.roles_anywhere.ca_expires
    clients = {name: boto3.client(name, region_name=REGION)
               for name in ("cloudformation", "s3", "iam", "secretsmanager")}

    def at(moment: datetime) -> status.CustomerStatus:
        return status.customer_status(hooli, now=moment, **clients)

    far = at(expires - timedelta(days=400))
    assert far.days_to_ca_expiry == 400
    assert not any("expires in" in note for note in far.notes)
    near = at(expires - timedelta(days=30, hours=1))
    assert near.days_to_ca_expiry == 30
    (warning,) = [note for note in near.notes if "the partner's CA expires in 30 d" in note]
    assert "add its successor CA to hooli-ca.pem (both certificates in the bundle)" in warning
    entry = near.to_json()
    assert entry["days_to_ca_expiry"] == 30
    assert entry["ca_certificates"][0]["not_after"] == "2046-12-01T00:00:00Z"
    assert entry["ca_certificates"][0]["key"] == "EC P-384"


def test_during_a_ca_rollover_the_old_cas_expiry_is_no_warning(aws: None) -> None:
    """The bundle holds the old CA (expiring in 10 days) and its successor: the partner's
    access does not end in 10 days, so no warning; an offboarded partner gets none either."""
    now = datetime.now(UTC)
    old = ThrowawayCA.create("Old CA", valid_days=310, not_before=now - timedelta(days=300))
    new = ThrowawayCA.create("New CA", valid_days=3650, not_before=now - timedelta(days=1))
    hooli = registry()["hooli"]
    assert hooli.roles_anywhere is not None
    bundle = (old.certificate_pem + new.certificate_pem).decode()
    rolling = replace(hooli, roles_anywhere=replace(
        hooli.roles_anywhere, ca_bundle=bundle,
        certificates=tuple(certificates.read_ca_bundle(bundle, now=now)[0])))
    clients = {name: boto3.client(name, region_name=REGION)
               for name in ("cloudformation", "s3", "iam", "secretsmanager")}
    result = status.customer_status(rolling, now=now, **clients)
    assert result.days_to_ca_expiry in (3648, 3649)
    assert not any("the partner's CA expires in" in note for note in result.notes)
    assert any(note.startswith("CA CN=Old CA") and "(9 d)" in note for note in result.notes)
    ending = replace(rolling, roles_anywhere=replace(
        rolling.roles_anywhere, certificates=rolling.roles_anywhere.certificates[:1]))
    assert any("the partner's CA expires in 9 d" in note for note in status.customer_status(
        ending, now=now, **clients).notes)
    assert not any("the partner's CA expires in" in note for note in status.customer_status(
        replace(ending, offboarded=True), now=now, **clients).notes)
