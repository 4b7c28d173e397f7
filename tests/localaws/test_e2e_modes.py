"""``python -m localrun up`` for the other access modes: globex (cross-account, inbound only,
limited to source addresses), initech (assume-role with an external id, outbound only) and
hooli (roles-anywhere: a certificate of the run's throwaway CA, both directions).

Each run is the real flow (bootstrap, synth, both deploys, the partner's own client); these
tests then read back, through the AWS APIs and the run's files, what the partner did and was
refused, independently of localrun's own checks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography import x509

from localaws.server import Emulator
from localrun import postgres
from localrun.partner import SAMPLE_INBOUND
from tests.demo_runs import UP_TIMEOUT_SECONDS, localrun
from tests.localaws.conftest import Aws

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module", params=["globex", "initech", "hooli"])
def run(request: pytest.FixtureRequest,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Aws, Path, str]]:
    customer = request.param
    run_dir = tmp_path_factory.mktemp(f"localrun-{customer}") / "run"
    up = localrun("up", "--customer", customer, "--run-dir", str(run_dir),
                  timeout=UP_TIMEOUT_SECONDS)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        emulator = Emulator.load(run_dir)
        assert emulator is not None
        yield customer, Aws(emulator), run_dir, up.stdout
    finally:
        down = localrun("down", "--run-dir", str(run_dir))
        assert down.returncode == 0, down.stdout + down.stderr


def manifest(run_dir: Path, customer: str) -> list[dict[str, str]]:
    path = run_dir / "partner" / "state" / "partner-transfer" / customer / "manifest.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_mode_runs_every_step_it_has(run: tuple[str, Aws, Path, str]) -> None:
    customer, _, _, stdout = run
    mode, directions = {"globex": ("cross-account", "inbound"),
                        "initech": ("assume-role", "outbound"),
                        "hooli": ("roles-anywhere", "inbound/outbound")}[customer]
    inbound = "[not-applicable]" if customer == "initech" else "[ok]"
    for step in ("[ok] access stack", "[ok] audit stack", "[ok] customer stack",
                 f"[ok] partner round trip ({mode}, {directions})", f"{inbound} importer",
                 f"{inbound} malware gate", f"{inbound} inbound originals",
                 "[not-applicable] key rotation",
                 "[ok] custody from the trail"):
        assert step in stdout, stdout
    assert "Traceback" not in stdout


def test_the_custody_answer_shows_the_partner_as_cloudtrail_recorded_it(
        run: tuple[str, Aws, Path, str]) -> None:
    customer, _, _, stdout = run
    answer = stdout[stdout.index("[ok] custody from the trail"):]
    assert "evidence: the trail's log files and digests are intact" in answer
    if customer == "globex":
        # The bucket owner's trail names a caller of another account by its account only.
        assert "written by  account 111122223333 (principal id " in answer
        assert "(AWSAccount) from 203.0.113." in answer
    elif customer == "hooli":
        # A session IAM Roles Anywhere issued for the partner's certificate wrote it.
        assert "written by  arn:aws:sts::123456789012:assumed-role/phi-exchange-hooli-partner/" \
            in answer
    else:
        # initech only receives: the operator wrote the file, the partner's session read it.
        assert "written by  arn:aws:sts::123456789012:assumed-role/phi-exchange-operator/" in answer
        assert any("GetObject" in line and "assumed-role/phi-exchange-initech-partner/" in line
                   for line in answer.splitlines())


def test_the_partner_signed_as_its_own_principal(run: tuple[str, Aws, Path, str]) -> None:
    customer, _, run_dir, _ = run
    ok = [r for r in manifest(run_dir, customer)
          if r["result"] == "ok" and "/_manifests/" not in r["key"]]
    if customer == "globex":
        # A session of the registered role, in the partner's own account.
        assert {r["caller_arn"] for r in ok} == {
            "arn:aws:sts::111122223333:assumed-role/globex-file-transfer/partner-transfer"}
        assert {(r["direction"], r["key"]) for r in ok} == {
            ("upload", "inbound/claims.csv"), ("upload", "inbound/claims-large.csv"),
            ("upload", "inbound/eicar-test.txt")}  # the malware gate step's test file
    elif customer == "hooli":
        # Sessions of our role for the partner's certificate: AWS names them by its serial.
        certificate = x509.load_pem_x509_certificate(
            (run_dir / "partner" / "certificates" / "partner.pem").read_bytes())
        assert {r["caller_arn"] for r in ok} == {
            "arn:aws:sts::123456789012:assumed-role/phi-exchange-hooli-partner/"
            f"{certificate.serial_number:x}"}
        assert {(r["direction"], r["key"]) for r in ok} == {
            ("upload", "inbound/claims.csv"), ("upload", "inbound/claims-large.csv"),
            ("upload", "inbound/eicar-test.txt"), ("download", "outbound/remittance.csv")}
        profile = (run_dir / "partner" / "profile.toml").read_text()
        assert 'method = "roles-anywhere"' in profile and "trust-anchor/" in profile
    else:
        # The client assumed our role itself, from the partner's principal, with the external id.
        assert {r["caller_arn"] for r in ok} == {
            "arn:aws:sts::123456789012:assumed-role/phi-exchange-initech-partner/"
            "partner-transfer"}
        assert {(r["direction"], r["key"]) for r in ok} == {
            ("download", "outbound/remittance.csv")}
        profile = (run_dir / "partner" / "profile.toml").read_text()
        assert 'method = "assume-role"' in profile and "initech-7f3c9a2e" in profile


def test_globex_is_refused_outside_its_networks(run: tuple[str, Aws, Path, str]) -> None:
    customer, aws, run_dir, stdout = run
    if customer != "globex":
        pytest.skip("only globex is limited to source addresses")
    assert set(aws.emulator.source_endpoints) == {"203.0.113.1", "2001:db8:1234::1"}
    failed = [r for r in manifest(run_dir, customer) if r["result"] == "failed"]
    assert [(r["key"], r["exit_code"]) for r in failed] == [("inbound/claims.csv", 5)]
    assert "from 127.0.0.1" in stdout and "source-IP deny" in stdout
    # What the partner uploaded arrived encrypted with the customer's key.
    outputs = json.loads((run_dir / "outputs.json").read_text())["PhiExchange-globex"]
    head = aws.client("s3").head_object(Bucket=outputs["BucketName"],
                                        Key="inbound/claims-large.csv")
    assert head["SSEKMSKeyId"] == outputs["KmsKeyArn"]
    # The importer's custody rows name the partner's account and the address it came from.
    server = postgres.load(run_dir / "postgres.json")
    assert server is not None
    with psycopg.connect(server.dsn()) as conn:
        seen = conn.execute("SELECT key, requester, source_ip FROM custody ORDER BY key").fetchall()
    assert seen == [("inbound/claims-large.csv", "111122223333", "203.0.113.1"),
                    ("inbound/claims.csv", "111122223333", "203.0.113.1")]


def test_refusals_are_reported_for_the_mode(run: tuple[str, Aws, Path, str]) -> None:
    customer, _, _, stdout = run
    if customer == "globex":
        assert "globex-file-transfer-unregistered (same account, same identity policy, not " \
               "named in our bucket policy) is refused too" in stdout
        assert "cannot read back inbound/claims.csv" in stdout
    elif customer == "hooli":
        assert "CreateSession refused a certificate of the same CA with another subject" \
            in stdout
        assert "CreateSession refused a certificate with the registered subject from an " \
            "unregistered CA" in stdout
        assert "cannot read back inbound/claims.csv" in stdout
    else:
        assert "refused without the external id, with a wrong one, and to an unregistered " \
               "principal" in stdout
        assert "cannot upload to inbound/" in stdout


def test_globex_s_overwrite_keeps_the_original(run: tuple[str, Aws, Path, str]) -> None:
    customer, aws, run_dir, _ = run
    if customer != "globex":
        pytest.skip("initech has no inbound direction")
    bucket = json.loads((run_dir / "outputs.json").read_text())["PhiExchange-globex"][
        "BucketName"]
    versions = [v for v in aws.client("s3").list_object_versions(
        Bucket=bucket, Prefix="inbound/claims.csv")["Versions"]
        if v["Key"] == "inbound/claims.csv"]
    original = next(v for v in versions if not v["IsLatest"])
    assert len(versions) == 2
    assert aws.client("s3").get_object(Bucket=bucket, Key="inbound/claims.csv",
                                       VersionId=original["VersionId"])["Body"].read() \
        == SAMPLE_INBOUND
