"""``phi-exchange-admin custody`` with AWS's records, against the emulator's trail.

A partner uploads two versions of a file from its own address, the emulator's trail delivers
them (two log files, two chained digests), and the operator asks for the file's custody: AWS's
principal and source address for each version, the trail's evidence checked. Then the evidence
is tampered with, one way per test, and the command must report each (exit status 4) instead of
answering from what is left.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from admin.cli import main
from admin.trail_events import ATHENA_COLUMNS, EventQuery, athena_query
from localaws import cloudtrail, server
from localaws.server import REGION
from tests.localaws.conftest import PARTNER_ADDRESS, Aws, log_access

ACCOUNT = server.ACCOUNT_ID
KEY = "inbound/claims.csv"
EXIT_EVIDENCE_BROKEN = 4


@dataclass
class Exchange:
    aws: Aws
    data: str
    custody: str
    trail: str
    partner_arn: str
    versions: list[str]

    def custody_command(self, capsys: pytest.CaptureFixture[str],
                        *extra: str) -> tuple[int, str, str]:
        code = main(["custody", "acme", KEY, "--bucket", self.data, "--trail", self.trail,
                     "--endpoint-url", self.aws.emulator.url, "--region", REGION, *extra])
        out, err = capsys.readouterr()
        return code, out, err

    def trail_files(self, kind: str) -> list[str]:
        """The custody bucket's keys of one kind (``CloudTrail`` or ``CloudTrail-Digest``),
        oldest first."""
        s3 = self.aws.client("s3")
        return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=self.custody)["Contents"]
                      if f"/{kind}/" in o["Key"])

    def forge(self, key: str, edit: Callable[[dict[str, Any]], None]) -> None:
        """Replace ``key`` (gzip JSON) by an edited copy with the same user metadata, leaving
        no trace of the original: what Object Lock prevents, here by hand."""
        s3 = self.aws.client("s3")
        answer = s3.get_object(Bucket=self.custody, Key=key)
        document: dict[str, Any] = json.loads(gzip.decompress(answer["Body"].read()))
        edit(document)
        self.erase(key)
        s3.put_object(Bucket=self.custody, Key=key,
                      Body=gzip.compress(json.dumps(document).encode()),
                      Metadata=answer["Metadata"])

    def erase(self, key: str) -> None:
        """Remove every version of ``key``: what Object Lock prevents, here by hand."""
        s3 = self.aws.client("s3")
        for version in s3.list_object_versions(Bucket=self.custody, Prefix=key)["Versions"]:
            s3.delete_object(Bucket=self.custody, Key=key, VersionId=version["VersionId"])


@pytest.fixture
def operator_environment(aws: Aws, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI finds credentials and the CA as an operator's shell would."""
    for name, value in server.client_environment(aws.emulator).items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def exchange(aws: Aws, unique: Callable[[str], str],
             operator_environment: None) -> Iterator[Exchange]:
    prefix = unique("phi-ev")
    s3, trails = aws.client("s3"), aws.client("cloudtrail")
    custody, data, trail = f"{prefix}-custody", f"{prefix}-data", unique("trail")
    for bucket in (custody, data):
        s3.create_bucket(Bucket=bucket)
        s3.put_bucket_versioning(Bucket=bucket,
                                 VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_policy(Bucket=custody, Policy=json.dumps({"Statement": [{
        "Effect": "Allow", "Principal": {"Service": "cloudtrail.amazonaws.com"},
        "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{custody}/AWSLogs/*",
        "Condition": {"StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"}}}]}))
    trails.create_trail(Name=trail, S3BucketName=custody, EnableLogFileValidation=True,
                        IsMultiRegionTrail=True)
    trails.put_event_selectors(TrailName=trail, AdvancedEventSelectors=[{
        "Name": "objects", "FieldSelectors": [
            {"Field": "eventCategory", "Equals": ["Data"]},
            {"Field": "resources.type", "Equals": ["AWS::S3::Object"]},
            {"Field": "resources.ARN", "StartsWith": [f"arn:aws:s3:::{data}"]}]}])
    trails.start_logging(Name=trail)
    partner = unique("partner")
    partner_s3 = aws.client("s3", aws.user_with_key(partner), source_address=PARTNER_ADDRESS)
    versions = []
    for body in (b"id,amount\n1,10\n", b"id,amount\n1,10\n2,20\n"):
        versions.append(partner_s3.put_object(Bucket=data, Key=KEY, Body=body,
                                              ChecksumAlgorithm="CRC64NVME")["VersionId"])
        delivered = [d for d in cloudtrail.flush(aws.emulator) if d["trail"] == trail]
        assert [d["kind"] for d in delivered] == ["log file", "digest file"]
    try:
        yield Exchange(aws, data, custody, trail,
                       f"arn:aws:iam::{ACCOUNT}:user/{partner}", versions)
    finally:
        trails.stop_logging(Name=trail)


def test_each_version_names_aws_s_principal_and_source_address(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = exchange.custody_command(capsys)

    assert code == 0, err
    assert out.count(f"written by  {exchange.partner_arn} (IAMUser) from {PARTNER_ADDRESS}") == 2
    assert "evidence: the trail's log files and digests are intact" in out


def test_json_carries_the_events_and_the_checked_evidence(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = exchange.custody_command(capsys, "--json")

    assert code == 0
    report = json.loads(out)
    assert report["evidence_intact"] is True
    writes = {v["version_id"]: v["aws_write"] for v in report["versions"]}
    assert set(writes) == set(exchange.versions)
    assert {w["principal"] for w in writes.values()} == {exchange.partner_arn}
    assert {w["source_ip"] for w in writes.values()} == {PARTNER_ADDRESS}


def test_a_rewritten_log_file_is_reported(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    log_file = exchange.trail_files("CloudTrail")[0]
    exchange.forge(log_file,
                   lambda records: records["Records"][0].update(sourceIPAddress="198.51.100.99"))

    code, out, err = exchange.custody_command(capsys)

    assert code == EXIT_EVIDENCE_BROKEN, out
    assert "ALTERED" in out and log_file.rsplit("/", 1)[-1] in out
    assert "evidence for s3://" in err and "is not intact" in err


def test_a_log_file_with_a_second_version_is_reported_and_the_first_one_read(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    log_file = exchange.trail_files("CloudTrail")[0]
    exchange.aws.client("s3").put_object(Bucket=exchange.custody, Key=log_file,
                                         Body=gzip.compress(b'{"Records": []}'))

    code, out, _ = exchange.custody_command(capsys)

    assert code == EXIT_EVIDENCE_BROKEN
    assert "OVERWRITTEN" in out
    # The version CloudTrail wrote is still read: both writes keep AWS's principal.
    assert out.count(f"written by  {exchange.partner_arn}") == 2


def test_a_deleted_log_file_is_reported_missing(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    log_file = exchange.trail_files("CloudTrail")[0]
    exchange.erase(log_file)

    code, out, _ = exchange.custody_command(capsys)

    assert code == EXIT_EVIDENCE_BROKEN
    assert "MISSING" in out and log_file.rsplit("/", 1)[-1] in out


def test_a_delete_marker_on_a_log_file_is_reported(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    log_file = exchange.trail_files("CloudTrail")[0]
    exchange.aws.client("s3").delete_object(Bucket=exchange.custody, Key=log_file)

    code, out, _ = exchange.custody_command(capsys)

    assert code == EXIT_EVIDENCE_BROKEN
    assert "DELETED" in out


def test_a_removed_digest_breaks_the_chain(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    first_digest = exchange.trail_files("CloudTrail-Digest")[0]
    exchange.erase(first_digest)

    code, out, _ = exchange.custody_command(capsys)

    assert code == EXIT_EVIDENCE_BROKEN
    assert "CHAIN BROKEN" in out or "MISSING" in out
    assert first_digest.rsplit("/", 1)[-1] in out


def test_a_forged_digest_fails_its_signature_and_the_chain(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    first_digest = exchange.trail_files("CloudTrail-Digest")[0]
    # As if the first upload's log file had never been delivered; the signature kept.
    exchange.forge(first_digest, lambda document: document.update(logFiles=[]))

    code, out, _ = exchange.custody_command(capsys)

    assert code == EXIT_EVIDENCE_BROKEN
    assert "BAD SIGNATURE" in out
    assert "CHAIN BROKEN" in out  # the second digest recorded another hash of the first


def test_without_the_trail_the_command_says_how_to_get_it(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["custody", "acme", KEY, "--bucket", exchange.data, "--trail", "no-such-trail",
                 "--endpoint-url", exchange.aws.emulator.url, "--region", REGION])
    _, err = capsys.readouterr()

    assert code == 1
    assert err.count("\n") == 1 and "no trail no-such-trail" in err


def test_a_prefix_and_a_time_range_list_every_event(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    code = main(["custody", "acme", "--prefix", "inbound/", "--since", since,
                 "--bucket", exchange.data, "--trail", exchange.trail, "--json",
                 "--endpoint-url", exchange.aws.emulator.url, "--region", REGION])
    out, _ = capsys.readouterr()

    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    puts = [e for e in lines if e["type"] == "event" and e["name"] == "PutObject"]
    assert {e["version_id"] for e in puts} == set(exchange.versions)
    assert {e["principal"] for e in puts} == {exchange.partner_arn}
    assert lines[-1]["type"] == "evidence" and lines[-1]["intact"] is True


# --- the Athena source ------------------------------------------------------------------------


def athena_results(exchange: Exchange) -> dict[str, Any]:
    """What Athena would answer for the trail's table: every record of every log file, with
    the file it came from (``"$path"``), in the columns the command selects. moto's Athena
    runs no SQL: the emulator's result queue (``/moto-api/static/athena/query-results``)
    answers the command's query with these rows."""
    s3 = exchange.aws.client("s3")
    names = [alias for _, alias in ATHENA_COLUMNS]
    rows = [{"Data": [{"VarCharValue": name} for name in names]}]  # Athena's header row
    for key in exchange.trail_files("CloudTrail"):
        records = json.loads(gzip.decompress(
            s3.get_object(Bucket=exchange.custody, Key=key)["Body"].read()))["Records"]
        for record in records:
            identity = record["userIdentity"]
            issuer = (identity.get("sessionContext") or {}).get("sessionIssuer") or {}
            values = {
                "log_file": f"s3://{exchange.custody}/{key}", "eventtime": record["eventTime"],
                "eventname": record["eventName"], "eventid": record["eventID"],
                "requestid": record["requestID"], "awsregion": record["awsRegion"],
                "sourceipaddress": record["sourceIPAddress"], "useragent": record["userAgent"],
                "errorcode": record.get("errorCode"), "identity_type": identity["type"],
                "identity_arn": identity.get("arn"), "identity_account": identity["accountId"],
                "identity_principal_id": identity["principalId"],
                "session_issuer": issuer.get("arn"),
                "tls_version": record["tlsDetails"]["tlsVersion"],
                "cipher": record["tlsDetails"]["cipherSuite"],
                "requestparameters": json.dumps(record["requestParameters"]),
                "responseelements": json.dumps(record["responseElements"]),
                "additionaleventdata": json.dumps(record["additionalEventData"]),
            }
            rows.append({"Data": [{} if values[n] is None else {"VarCharValue": values[n]}
                                  for n in names]})
    return {"account_id": ACCOUNT, "region": REGION, "results": [{
        "rows": rows, "column_info": [{"Name": n, "Type": "varchar"} for n in names]}]}


def queue_athena_answer(exchange: Exchange, results: dict[str, Any]) -> None:
    server._request(exchange.aws.emulator, "/moto-api/static/athena/query-results",
                    data=json.dumps(results).encode(),
                    headers={"Content-Type": "application/json"})


def test_the_athena_source_gives_the_same_answer_and_checks_the_files_it_names(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    queue_athena_answer(exchange, athena_results(exchange))

    code, out, err = exchange.custody_command(
        capsys, "--source", "athena", "--athena-table", "audit.cloudtrail_logs")

    assert code == 0, err
    assert out.count(f"written by  {exchange.partner_arn} (IAMUser) from {PARTNER_ADDRESS}") == 2
    assert "Athena table audit.cloudtrail_logs" in out
    assert "evidence: the trail's log files and digests are intact" in out


def test_an_athena_row_from_a_log_file_no_longer_in_the_bucket_is_reported(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    results = athena_results(exchange)  # Athena's answer, as it was before the erasure
    exchange.erase(exchange.trail_files("CloudTrail")[0])
    queue_athena_answer(exchange, results)

    code, out, _ = exchange.custody_command(
        capsys, "--source", "athena", "--athena-table", "audit.cloudtrail_logs")

    assert code == EXIT_EVIDENCE_BROKEN
    assert "MISSING" in out


def test_the_athena_query_takes_the_key_as_a_parameter_and_refuses_other_table_names() -> None:
    query = EventQuery(bucket="phi-acme-123456789012-us-east-1", key="inbound/o'brien.csv",
                       prefix=None, start=datetime(2026, 12, 1, 9, tzinfo=UTC),
                       end=datetime(2026, 12, 2, 9, tzinfo=UTC))

    sql, parameters = athena_query("audit.cloudtrail_logs", query)

    assert "o'brien" not in sql and "'inbound/o''brien.csv'" in parameters
    assert parameters[:2] == ["'2026/12/01'", "'2026/12/02'"]  # only the window's days
    with pytest.raises(ValueError, match="not a table name"):
        athena_query("audit.logs; DROP TABLE x", query)


def test_a_caller_refused_the_inbound_version_still_gets_aws_s_records(
        exchange: Exchange, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, unique: Callable[[str], str]) -> None:
    """The operator role's shape: the listing and the trail's evidence, never an inbound
    version (HeadObject is s3:GetObject in IAM). The answer says what it could not read."""
    data, custody = f"arn:aws:s3:::{exchange.data}", f"arn:aws:s3:::{exchange.custody}"
    key_id, secret = exchange.aws.user_with_key(unique("operator"), {
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListBucketVersions",
                                           "s3:GetBucketLogging"], "Resource": data},
            {"Effect": "Allow", "Action": ["cloudtrail:DescribeTrails",
                                           "cloudtrail:ListPublicKeys"], "Resource": "*"},
            {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:ListBucketVersions",
                                           "s3:GetObject", "s3:GetObjectVersion"],
             "Resource": [custody, f"{custody}/*"]},
            {"Effect": "Deny", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
             "Resource": f"{data}/inbound/*"}]})
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)

    with exchange.aws.permission_checks():
        code, out, err = exchange.custody_command(capsys, "--verify-bytes")

    assert code == 0, err
    assert out.count("not read    HeadObject refused to this caller") == 2
    assert out.count(f"written by  {exchange.partner_arn} (IAMUser) from {PARTNER_ADDRESS}") == 2
    assert "evidence: the trail's log files and digests are intact" in out


def test_access_log_records_are_matched_for_a_key_that_needs_url_encoding(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    s3 = exchange.aws.client("s3")
    log_access(s3, exchange.data)
    key = "inbound/claims 2026+final.csv"
    s3.put_object(Bucket=exchange.data, Key=key, Body=b"id\n1\n")
    cloudtrail.flush(exchange.aws.emulator)

    code = main(["custody", "acme", key, "--bucket", exchange.data, "--trail", exchange.trail,
                 "--json", "--endpoint-url", exchange.aws.emulator.url, "--region", REGION])
    report = json.loads(capsys.readouterr().out)

    assert code == 0
    trail = report["trail"]
    # The PUT, and the command's own HeadObject (the emulator logs at once, S3 within hours).
    assert "REST.PUT.OBJECT" in [r["operation"] for r in trail["access_log"]["records"]]
    (put,) = [e for e in trail["events"] if e["name"] == "PutObject"]
    assert put["key"] == key and put["in_access_log"] is True


def test_the_athena_table_is_printed_for_the_deployed_trail(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["custody", "acme", "--athena-table-ddl", "--athena-table", "audit.trail_logs",
                 "--since", "2026-11-01", "--trail", exchange.trail,
                 "--endpoint-url", exchange.aws.emulator.url, "--region", REGION])
    out, _ = capsys.readouterr()

    assert code == 0
    assert out.startswith("CREATE EXTERNAL TABLE IF NOT EXISTS audit.trail_logs (")
    location = f"s3://{exchange.custody}/AWSLogs/{ACCOUNT}/CloudTrail/{REGION}"
    assert f"LOCATION '{location}'" in out and "'2026/11/01,NOW'" in out
    assert f"'{location}/${{timestamp}}'" in out


def test_an_athena_table_name_that_is_not_one_is_refused(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["custody", "acme", "--athena-table-ddl", "--athena-table", "x; DROP",
                 "--trail", exchange.trail, "--endpoint-url", exchange.aws.emulator.url,
                 "--region", REGION])
    _, err = capsys.readouterr()

    assert code == 1 and "is not DATABASE.TABLE" in err and err.count("\n") == 1
