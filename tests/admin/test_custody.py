"""``phi-exchange-admin custody`` against the moto server and PostgreSQL: a file uploaded with
the transfer client and imported by the importer, shown as text and as JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from admin.cli import main
from importer.consumer import Importer
from importer.consumer import Outcome as Imported
from partner_transfer import Outcome
from partner_transfer.checksums import METADATA_KEY
from tests.importer.support import KMS_KEY_ARN, Customer, Queues, message_for
from tests.servers import ACCOUNT, REGION

FIRST = b"claim_id,member\r\nC-1,M-100\r\nC-2,M-200\r\n"
SECOND = b"claim_id,member\r\nC-1,M-100\r\nC-2,M-200\r\nC-3,M-300\r\n"
CALLER_ARN = f"arn:aws:sts::{ACCOUNT}:user/moto"


@dataclass
class Exchange:
    """acme uploaded claims.csv twice; the importer has seen the first version only."""

    customer: Customer
    registry: Path
    endpoint: str
    dsn: str
    first: Outcome
    manifest: Outcome
    second: Outcome

    def custody(self, *extra: str | Path, capsys: pytest.CaptureFixture[str],
                key: str | None = "inbound/claims.csv") -> tuple[int, str, str]:
        argv: Sequence[str] = [
            "custody", self.customer.slug, *([key] if key else []),
            "--registry", str(self.registry), "--endpoint-url", self.endpoint,
            # The plain moto server has no trail: AWS's records are tested against the
            # emulator (tests/localaws/test_custody_evidence.py).
            "--region", REGION, "--no-trail", *map(str, extra)]
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err


@pytest.fixture
def exchange(customer: Customer, queues: Queues, importer: Importer, dsn: str,
             moto_endpoint: str, tmp_path: Path) -> Exchange:
    registry = tmp_path / "customers"
    registry.mkdir()
    (registry / f"{customer.slug}.toml").write_text(
        f'slug = "{customer.slug}"\naccess = "iam-user"\ncontacts = ["ops@example.org"]\n')
    first, manifest = customer.upload("claims.csv", FIRST, commit_manifest=True)
    queues.send(message_for(customer, first))
    queues.send(message_for(customer, manifest))
    assert importer.poll(wait_seconds=0, max_messages=10) == [Imported.LOADED] * 2
    [second] = customer.upload("claims.csv", SECOND)
    return Exchange(customer, registry, moto_endpoint, dsn, first, manifest, second)


def by_source(version: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {claim["source"]: claim for claim in version["claims"]}


def test_json_shows_each_version_with_uploader_checksum_key_and_import(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    local = exchange.customer.root / "outgoing" / "claims.csv"  # now holds SECOND
    local.write_bytes(FIRST)
    code, out, err = exchange.custody(
        "--manifest", exchange.customer.manifest, "--dsn", exchange.dsn,
        "--local-file", local, "--json", capsys=capsys)

    assert code == 0, err
    report = json.loads(out)
    # The bucket is derived from the slug, the caller's account and the region.
    assert report["bucket"] == exchange.customer.bucket
    assert report["consistent"] is True
    newest, oldest = report["versions"]
    assert newest["version_id"] == exchange.second.version_id and newest["is_latest"]
    assert oldest["version_id"] == exchange.first.version_id and not oldest["is_latest"]

    assert oldest["size"] == len(FIRST)
    assert (oldest["stored_algorithm"], oldest["stored_checksum"]) == (
        "CRC64NVME", exchange.first.checksum)
    assert (oldest["server_side_encryption"], oldest["kms_key_id"]) == ("aws:kms", KMS_KEY_ARN)
    # The uploader's claim and AWS's record, side by side, labelled.
    assert oldest["claimed_uploaders"] == [CALLER_ARN]
    assert oldest["requester"] and oldest["requester"] != CALLER_ARN
    claims = by_source(oldest)
    assert set(claims) == {"object metadata", "client manifest", "batch manifest", "importer",
                           "local file"}
    assert all(c["matches"] for c in claims.values())
    assert claims["client manifest"]["where"] == str(exchange.customer.manifest)
    assert claims["batch manifest"]["where"] == exchange.manifest.key
    assert oldest["imported"]["row_count"] == 2
    assert oldest["imported"]["claimed_uploader_source"] == "batch-manifest"
    assert oldest["imported"]["requester"] == oldest["requester"]
    assert oldest["same_as_local_file"] is True

    assert newest["imported"] is None  # uploaded, never imported
    assert newest["same_as_local_file"] is False
    assert set(by_source(newest)) == {"object metadata", "client manifest", "local file"}


def test_text_shows_one_block_per_version(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = exchange.custody(
        "--manifest", exchange.customer.manifest, "--dsn", exchange.dsn, "--verify-bytes",
        capsys=capsys)

    assert code == 0
    blocks = out.split("\n\n")
    assert blocks[0].startswith(f"custody of s3://{exchange.customer.bucket}/inbound/claims.csv"
                                f" (customer {exchange.customer.slug}): 2 versions")
    newest, oldest = blocks[1], blocks[2]
    assert newest.startswith(f"version {exchange.second.version_id} (current)")
    assert "imported    no" in newest
    assert oldest.startswith(f"version {exchange.first.version_id} (noncurrent)")
    assert f"checksum    CRC64NVME {exchange.first.checksum} (stored by S3" in oldest
    assert f"KMS key {KMS_KEY_ARN}" in oldest
    assert f"claimed by  {CALLER_ARN} (the uploader's own records: a claim)" in oldest
    assert "(AWS's record: the S3 event)" in oldest
    assert "2 row(s)" in oldest and "uploader claimed by batch-manifest" in oldest
    assert "    importer: CRC64NVME" in oldest and "MISMATCH" not in out
    assert f"    stored bytes: CRC64NVME {exchange.first.checksum}: matches" in oldest
    assert out.rstrip().endswith("consistent: every record agrees with the stored checksum")


def test_without_the_database_the_import_is_not_claimed_either_way(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = exchange.custody("--version-id", str(exchange.first.version_id),
                                    capsys=capsys)

    assert code == 0
    assert out.count("\nversion ") == 1
    assert "imported    not asked (give --dsn)" in out
    # The batch manifest in the bucket still names the uploader (a claim); AWS's record is
    # the importer's (or CloudTrail's).
    assert f"claimed by  {CALLER_ARN}" in out
    assert "requester   not in these records" in out


def test_local_file_alone_finds_its_key_in_the_manifest(
        exchange: Exchange, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    local = tmp_path / "copy-of-first.csv"
    local.write_bytes(FIRST)
    code, out, err = exchange.custody(
        "--local-file", local, "--manifest", exchange.customer.manifest, "--json",
        capsys=capsys, key=None)

    assert code == 0, err
    report = json.loads(out)
    assert report["key"] == "inbound/claims.csv"
    assert [v["same_as_local_file"] for v in report["versions"]] == [False, True]


def test_a_record_that_disagrees_with_the_stored_checksum_fails_the_check(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    customer = exchange.customer
    # The current version's metadata is rewritten with another checksum (a new version).
    customer.s3.copy_object(
        Bucket=customer.bucket, Key="inbound/claims.csv",
        CopySource={"Bucket": customer.bucket, "Key": "inbound/claims.csv",
                    "VersionId": exchange.second.version_id},
        MetadataDirective="REPLACE", Metadata={METADATA_KEY: "AAAAAAAAAAA="},
        ChecksumAlgorithm="CRC64NVME")

    code, out, err = exchange.custody(capsys=capsys)

    assert code == 3  # EXIT_DISAGREES
    assert "object metadata: CRC64NVME AAAAAAAAAAA=: MISMATCH" in out
    assert out.rstrip().endswith("(marked MISMATCH or DISAGREES above)")
    assert "disagrees with the stored checksum" in err


def test_unregistered_customer_is_refused(
        exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["custody", "nobody", "inbound/claims.csv", "--registry", str(exchange.registry),
                 "--endpoint-url", exchange.endpoint, "--region", REGION])
    _, err = capsys.readouterr()
    assert code == 1
    assert "SLUG=nobody: customer: not registered" in err


def test_unknown_key_is_refused(exchange: Exchange, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = exchange.custody(capsys=capsys, key="inbound/never-sent.csv")
    assert code == 1
    assert "has no versions and no record names it" in err

