"""``partner-transfer receipts verify``: receipts made by the importer's own code
(importer/gate.py: ``receipt_body``, ``ReceiptIssuer``), signed by a real ECC P-256 KMS key
(moto's KMS, ``ECDSA_SHA_256``) and written to a moto S3 server process, checked offline with
the public key against the custody manifest the client wrote while uploading for real.

Each bad case is one line on stderr (never a traceback) and its exit status: 3 when the
exchange and this host disagree (no receipt after the grace period, another checksum, a file
stopped at the malware gate), 4 when a receipt object itself is broken (4 wins). The rules
themselves (canonical bytes, fields, reconciliation) have unit tests at the end, with a key
from the ``cryptography`` library.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from importer.gate import Imported, ReceiptIssuer, receipt_body, stored_checksum
from importer.gate_store import Arrival, Verdict
from partner_transfer import receipts
from partner_transfer.errors import ExitCode
from partner_transfer.receipt_check import DISAGREES, EVIDENCE_BROKEN
from phi_core import malware_gate, naming, partner_policy
from phi_core.vocabulary import Direction
from tests.transfer.conftest import (
    ACCOUNT,
    KEY_ARN,
    REGION,
    CliResult,
    Workspace,
    admin_client,
    cli,
)

pytestmark = pytest.mark.e2e  # talks to a moto server process over HTTP

SENT = b"member_id,claim,amount\n1,C-1,10.00\n2,C-2,20.00\n"


# --- the exchange's side: a signing key and the importer's receipts ---------------------------


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    pem: bytes


def _signing_key(kms: Any, alias: str | None = None) -> SigningKey:
    key_id = kms.create_key(KeySpec=malware_gate.RECEIPT_KEY_SPEC, KeyUsage="SIGN_VERIFY")[
        "KeyMetadata"]["KeyId"]
    if alias is not None:
        try:
            kms.create_alias(AliasName=alias, TargetKeyId=key_id)
        except kms.exceptions.AlreadyExistsException:
            kms.update_alias(AliasName=alias, TargetKeyId=key_id)
    der = kms.get_public_key(KeyId=alias or key_id)["PublicKey"]
    return SigningKey(key_id, receipts.public_key_pem(der))


@pytest.fixture(scope="module")
def exchange_key(moto_endpoint: str) -> SigningKey:
    """The exchange's receipt key, named by its alias as the importer signs by it."""
    return _signing_key(admin_client(moto_endpoint, "kms"), naming.RECEIPT_SIGNING_KEY_ALIAS)


@pytest.fixture(scope="module")
def other_key(moto_endpoint: str) -> SigningKey:
    """A key that is not the exchange's (a forger's)."""
    return _signing_key(admin_client(moto_endpoint, "kms"))


@dataclass
class Exchange:
    """Our side, as the importer writes receipts (importer/gate.py), for one bucket."""

    s3: Any
    kms: Any
    bucket: str

    def receipt(self, upload: dict[str, Any], *, outcome: str = receipts.IMPORTED,
                checksum: tuple[str | None, str | None] | None = None,
                threats: tuple[str, ...] = (), signing_key: str | None = None) -> str:
        """Issue the receipt of a manifest record's version; returns its object key."""
        arrival = Arrival(customer="acme", bucket=self.bucket, key=upload["key"],
                          version_id=upload["version_id"], size=upload["size"], etag=None,
                          event_id="event-1", time=datetime.now(UTC) - timedelta(seconds=30),
                          requester=f"arn:aws:iam::{ACCOUNT}:user/phi-exchange-acme-partner",
                          source_ip="198.51.100.7")
        stopped = outcome == receipts.REJECTED
        verdict = Verdict(scan_status="COMPLETED",
                          result="THREATS_FOUND" if stopped else malware_gate.CLEAN,
                          threats=threats, time=datetime.now(UTC), clean=not stopped)
        found = checksum or stored_checksum(self.s3, self.bucket, upload["key"],
                                            upload["version_id"])
        imported = None if stopped else Imported(
            import_id=41, row_count=2, imported_at=datetime.now(UTC),
            checksum_algorithm=str(found[0]), checksum=str(found[1]), size=upload["size"])
        body = receipt_body(arrival, outcome=outcome, verdict=verdict, imported=imported,
                            checksum=found, issued_at=datetime.now(UTC))
        issuer = ReceiptIssuer(s3=self.s3, kms=self.kms)
        if signing_key is not None:
            issuer = ReceiptIssuer(s3=self.s3, kms=self.kms, signing_key=signing_key)
        object_key, _, _ = issuer.issue(body)
        return object_key

    def read(self, key: str) -> bytes:
        return bytes(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def put(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data)


@pytest.fixture
def exchange(ws: Workspace, s3: Any, moto_endpoint: str, exchange_key: SigningKey) -> Exchange:
    return Exchange(s3=s3, kms=admin_client(moto_endpoint, "kms"), bucket=ws.bucket)


# --- the partner's side -----------------------------------------------------------------------


@pytest.fixture
def pem(ws: Workspace, exchange_key: SigningKey) -> Path:
    """The kit's receipt-public-key.pem."""
    path = ws.root / "receipt-public-key.pem"
    path.write_bytes(exchange_key.pem)
    return path


def upload(ws: Workspace, profile: Path, *names: str) -> list[dict[str, Any]]:
    """Send files with the client; their custody-manifest records, in the order named (the
    client sends them in parallel)."""
    paths = [ws.file(name, SENT + name.encode()) for name in names]
    sent = cli("upload", "--profile", profile, *paths)
    assert sent.code == 0, sent.err
    records = {r["local_path"]: r for r in ws.records() if r["result"] == "ok"}
    return [records[str(path)] for path in paths]


def verify(profile: Path, *extra: str | Path) -> CliResult:
    return cli("receipts", "verify", "--profile", profile, *extra)


def one_line(text: str) -> str:
    assert "Traceback" not in text
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def age_manifest(ws: Workspace, *, minutes: int) -> None:
    """Make every record of the custody manifest ``minutes`` old."""
    then = (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    records = [{**r, "time": then} for r in ws.records()]
    ws.manifest.write_text("".join(json.dumps(r) + "\n" for r in records))


# --- the good case --------------------------------------------------------------------------


def test_every_upload_receipted_and_verified_exits_0(ws: Workspace, exchange: Exchange,
                                                       pem: Path) -> None:
    profile = ws.profile()
    sent = upload(ws, profile, "claims.csv", "batch/remits.csv")
    keys = [exchange.receipt(record) for record in sent]

    result = verify(profile, "--public-key", pem)

    assert result.code == 0, result.err
    assert keys == [malware_gate.receipt_object_key(r["key"], r["version_id"]) for r in sent]
    lines = result.out.splitlines()
    assert [line.split()[0] for line in lines] == ["ok", "ok"]
    for record in sent:
        (line,) = [x for x in lines if f"{record['key']} (version {record['version_id']})" in x]
        assert f"CRC64NVME {record['checksum']}" in line and "scan NO_THREATS_FOUND" in line
    summary = one_line(result.err)
    assert summary.startswith("receipts: 2 ok; 2 receipt(s) read from ")
    assert receipts.fingerprint(receipts.load_public_key(pem.read_bytes())) in summary


def test_the_profile_can_name_the_key_and_profile_init_records_it(
        ws: Workspace, exchange: Exchange, pem: Path) -> None:
    profile = ws.profile()
    exchange.receipt(upload(ws, profile, "claims.csv")[0])
    text = profile.read_text()
    profile.write_text(text.replace("[auth]", 'receipt_public_key = "receipt-public-key.pem"\n\n'
                                    "[auth]"))

    assert verify(profile).code == 0  # the path resolves against the profile's folder

    outputs = ws.root / "outputs.json"
    outputs.write_text(json.dumps({"PhiExchange-acme": {
        "CustomerSlug": "acme", "AccessMode": "cross-account", "BucketName": ws.bucket,
        "BucketRegion": REGION, "BucketOwnerAccount": ACCOUNT, "KmsKeyArn": KEY_ARN,
        "InboundPrefix": "inbound/"}}))
    made = ws.root / "made.toml"
    init = cli("profile", "init", "--outputs-file", outputs, "--receipt-public-key", pem,
               "-o", made, "-q")
    assert init.code == 0, init.err
    assert f'receipt_public_key = "{pem}"' in made.read_text()


def test_a_young_upload_without_receipt_is_pending_and_exits_0(ws: Workspace,
                                                               pem: Path) -> None:
    profile = ws.profile()
    (record,) = upload(ws, profile, "claims.csv")

    result = verify(profile, "--public-key", pem)

    assert result.code == 0, result.err
    line = one_line(result.out)
    assert line.startswith(f"pending {record['key']} (version {record['version_id']}): "
                           "no receipt yet")
    assert "60-minute grace period" in line


# --- disagreements: exit 13 -------------------------------------------------------------------


def test_an_upload_older_than_the_grace_without_receipt_is_missing_and_exits_3(
        ws: Workspace, exchange: Exchange, pem: Path) -> None:
    profile = ws.profile()
    received, lost = upload(ws, profile, "claims.csv", "lost.csv")
    exchange.receipt(received)
    age_manifest(ws, minutes=61)

    result = verify(profile, "--public-key", pem, "-q")

    assert result.code == DISAGREES == 13
    line = one_line(result.err)
    assert line.startswith(f"MISSING {lost['key']} (version {lost['version_id']}): no receipt")
    assert "ask its operators" in line
    assert result.out == ""  # quiet: the ok line is not printed


def test_a_longer_grace_keeps_the_same_upload_pending(ws: Workspace, pem: Path) -> None:
    profile = ws.profile()
    upload(ws, profile, "claims.csv")
    age_manifest(ws, minutes=61)

    assert verify(profile, "--public-key", pem, "--grace", "120").code == 0
    assert verify(profile, "--public-key", pem, "--grace", "0").code == DISAGREES


def test_a_receipt_for_another_checksum_differs_and_exits_3(ws: Workspace, exchange: Exchange,
                                                             pem: Path) -> None:
    profile = ws.profile()
    (record,) = upload(ws, profile, "claims.csv")
    other = base64.b64encode(b"\x00" * 8).decode()
    exchange.receipt(record, checksum=("CRC64NVME", other))

    result = verify(profile, "--public-key", pem)

    assert result.code == DISAGREES
    line = [x for x in result.err.splitlines() if not x.startswith("receipts:")]
    assert len(line) == 1 and "Traceback" not in result.err
    assert line[0].startswith(f"CHECKSUM DIFFERS {record['key']} (version "
                              f"{record['version_id']}): the exchange received CRC64NVME {other}")
    assert f"this host sent CRC64NVME {record['checksum']}" in line[0]


def test_a_rejected_receipt_says_so_plainly_with_the_threats_and_exits_3(
        ws: Workspace, exchange: Exchange, pem: Path) -> None:
    profile = ws.profile()
    (record,) = upload(ws, profile, "claims.csv")
    exchange.receipt(record, outcome=receipts.REJECTED,
                     threats=("EICAR-Test-File (not a virus)", "Trojan.Generic"))

    result = verify(profile, "--public-key", pem, "-q")

    assert result.code == DISAGREES
    line = one_line(result.err)
    assert line.startswith(f"REJECTED {record['key']} (version {record['version_id']}): "
                           "stopped at the malware gate and NOT imported (THREATS_FOUND: "
                           "EICAR-Test-File (not a virus), Trojan.Generic;")


# --- broken evidence: exit 14, one line naming the receipt object and the rule ---------------


# Each forgery takes (the exchange, the genuine receipt's object key, a forger's key, the
# upload's record) and returns the object key of the receipt it left.
def _altered(exchange: Exchange, key: str, other: Any, record: dict[str, Any]) -> str:
    document = json.loads(exchange.read(key))
    document["receipt"]["row_count"] = 20_000  # more rows than were loaded
    exchange.put(key, json.dumps(document, indent=2).encode())
    return key


def _other_key(exchange: Exchange, key: str, other: Any, record: dict[str, Any]) -> str:
    return exchange.receipt(record, signing_key=other.key_id)  # the same place, a forger's key


def _not_json(exchange: Exchange, key: str, other: Any, record: dict[str, Any]) -> str:
    exchange.put(key, b"<html>not a receipt</html>")
    return key


def _misplaced(exchange: Exchange, key: str, other: Any, record: dict[str, Any]) -> str:
    # A genuine receipt, copied where another version's receipt would be.
    elsewhere = malware_gate.receipt_object_key(record["key"], "another-version")
    exchange.put(elsewhere, exchange.read(key))
    return elsewhere


@pytest.mark.parametrize(("forge", "label", "rule"), [
    (_altered, "BAD SIGNATURE", "signature"),
    (_other_key, "BAD SIGNATURE", "signature"),
    (_not_json, "MALFORMED", "format"),
    (_misplaced, "MISPLACED", "location"),
], ids=["body-altered-after-signing", "signed-by-another-key", "not-json", "copied-elsewhere"])
def test_a_forged_receipt_is_one_line_naming_the_object_and_the_rule_and_exits_4(
        ws: Workspace, exchange: Exchange, other_key: SigningKey, pem: Path,
        forge: Callable[..., str], label: str, rule: str) -> None:
    profile = ws.profile()
    (record,) = upload(ws, profile, "claims.csv")
    forged = forge(exchange, exchange.receipt(record), other_key, record)

    result = verify(profile, "--public-key", pem, "-q")

    assert result.code == EVIDENCE_BROKEN == 14, result.err
    assert one_line(result.err).startswith(f"{label} {forged}: {rule}: ")


def test_broken_evidence_wins_over_a_disagreement(ws: Workspace, exchange: Exchange,
                                                  pem: Path) -> None:
    profile = ws.profile()
    lost, forged = upload(ws, profile, "lost.csv", "claims.csv")
    _not_json(exchange, exchange.receipt(forged), None, forged)
    age_manifest(ws, minutes=90)

    result = verify(profile, "--public-key", pem, "-q")

    assert result.code == EVIDENCE_BROKEN
    assert [line.split()[0] for line in result.err.splitlines()] == ["MALFORMED", "MISSING"]
    assert lost["key"] in result.err.splitlines()[1]


# --- what is only reported ------------------------------------------------------------------


def test_a_receipt_for_a_version_this_host_did_not_send_is_informational(
        ws: Workspace, exchange: Exchange, s3: Any, pem: Path) -> None:
    profile = ws.profile()
    (mine,) = upload(ws, profile, "claims.csv")
    exchange.receipt(mine)
    put = s3.put_object(Bucket=ws.bucket, Key="inbound/from-another-host.csv", Body=SENT,
                        ChecksumAlgorithm="CRC64NVME")
    exchange.receipt({"key": "inbound/from-another-host.csv", "version_id": put["VersionId"],
                      "size": len(SENT)})

    result = verify(profile, "--public-key", pem)

    assert result.code == 0, result.err
    (line,) = [x for x in result.out.splitlines() if x.startswith("no upload")]
    assert f"inbound/from-another-host.csv (version {put['VersionId']})" in line
    assert "this host's manifest does not list as sent" in line


def test_since_leaves_out_earlier_uploads(ws: Workspace, pem: Path) -> None:
    profile = ws.profile()
    upload(ws, profile, "claims.csv")
    age_manifest(ws, minutes=600)
    since = (datetime.now(UTC) - timedelta(minutes=60)).strftime("%Y-%m-%dT%H:%MZ")

    result = verify(profile, "--public-key", pem, "--since", since)

    assert result.code == 0, result.err
    assert result.out == ""
    assert one_line(result.err).startswith(f"receipts since {since[:16]}")


# --- the partner's own grants suffice ----------------------------------------------------------


def test_a_partner_with_the_stacks_grants_verifies_its_receipts(
        ws: Workspace, exchange: Exchange, pem: Path, moto_auth: Callable[[], None]) -> None:
    """As the stack grants a partner that sends (phi_core.partner_policy): reading receipts/
    is all the check needs beyond listing (without ``ReadReceipts`` it is refused, exit 5).
    moto does not evaluate the listing's ``s3:prefix`` condition: that ``receipts/`` is a
    listed prefix is tests/core/test_partner_policy.py's to prove."""
    name = f"receipts-{ws.bucket[4:14]}"
    iam = admin_client(ws.endpoint, "iam")
    iam.create_user(UserName=name)
    scope = partner_policy.PartnerScope(
        bucket_arn=f"arn:aws:s3:::{ws.bucket}", key_arn=KEY_ARN,
        directions=(Direction.INBOUND,), s3_service=f"s3.{REGION}.amazonaws.com")
    # AWS answers GetCallerIdentity to everyone; moto asks for a grant.
    statements = [*partner_policy.partner_statements(scope),
                  {"Effect": "Allow", "Action": "sts:GetCallerIdentity", "Resource": "*"}]
    iam.put_user_policy(UserName=name, PolicyName="partner", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": statements}))
    key = iam.create_access_key(UserName=name)["AccessKey"]
    secret = ws.root / "acme-credentials.json"
    secret.write_text(json.dumps({
        "user_name": name, "access_key_id": key["AccessKeyId"],
        "secret_access_key": key["SecretAccessKey"], "bucket": ws.bucket, "region": REGION,
        "bucket_owner": ACCOUNT, "kms_key_arn": KEY_ARN}))
    profile = ws.profile(outbound=None,
                         auth=f'method = "credentials-file"\ncredentials_file = "{secret}"')
    (record,) = upload(ws, ws.profile("operator.toml", outbound=None), "claims.csv")
    exchange.receipt(record)
    moto_auth()

    result = verify(profile, "--public-key", pem)

    assert result.code == 0, result.err
    assert result.out.startswith("ok inbound/claims.csv")


# --- one-line refusals ------------------------------------------------------------------------


def test_without_a_key_it_says_where_to_find_one(ws: Workspace) -> None:
    result = verify(ws.profile())
    assert result.code == 2
    assert "pass --public-key FILE (your onboarding kit's receipt-public-key.pem)" in one_line(
        result.err)


@pytest.mark.parametrize("kind", ["rsa", "garbage"])
def test_a_key_that_is_not_the_exchanges_kind_is_refused(ws: Workspace, kind: str) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    garbage = b"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n"
    data = (rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
            .public_bytes(serialization.Encoding.PEM,
                          serialization.PublicFormat.SubjectPublicKeyInfo)
            if kind == "rsa" else garbage)
    path = ws.file(f"{kind}.pem", data)
    result = verify(ws.profile(), "--public-key", path)
    assert result.code == ExitCode.CONFIG  # a setup failure, not a disagreement
    line = one_line(result.err)
    assert line.startswith(f"partner-transfer: receipt public key {path}: ")
    assert ("ECC NIST P-256" if kind == "rsa" else "not a PEM public key") in line


def test_without_a_manifest_it_says_which_file_it_looked_for(ws: Workspace, pem: Path) -> None:
    result = verify(ws.profile(), "--public-key", pem)
    assert result.code == 7
    assert f"no custody manifest at {ws.manifest}" in one_line(result.err)


@pytest.mark.parametrize(("option", "value"), [("--since", "yesterday"), ("--grace", "-5")])
def test_bad_times_are_usage_errors(ws: Workspace, pem: Path, option: str, value: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        verify(ws.profile(), "--public-key", pem, option, value)
    assert exc.value.code == 2
    assert f"argument {option}: '{value}' is not" in one_line(capsys.readouterr().err)


# --- the rules, without a server --------------------------------------------------------------


@pytest.fixture(scope="module")
def private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def body(**changes: Any) -> dict[str, Any]:
    arrival = Arrival(customer="acme", bucket="phi-acme-123456789012-eu-west-2",
                      key="inbound/claims.csv", version_id="v1", size=42, etag=None,
                      event_id="e", time=datetime(2026, 11, 28, 9, 0, tzinfo=UTC),
                      requester=None, source_ip=None)
    imported = Imported(import_id=7, row_count=2,
                        imported_at=datetime(2026, 11, 28, 9, 2, tzinfo=UTC),
                        checksum_algorithm="CRC64NVME", checksum="LqXuavEzB9Y=", size=42)
    made = receipt_body(arrival, outcome=receipts.IMPORTED, verdict=None, imported=imported,
                        checksum=("CRC64NVME", "LqXuavEzB9Y="),
                        issued_at=datetime(2026, 11, 28, 9, 3, tzinfo=UTC))
    return {**made, **changes}


def signed(key: ec.EllipticCurvePrivateKey, receipt: dict[str, Any]) -> bytes:
    """A receipt object as ReceiptIssuer writes it, signed locally."""
    signature = key.sign(receipts.canonical_bytes(receipt), ec.ECDSA(hashes.SHA256()))
    document = receipts.envelope(receipt, key_id="arn:aws:kms:eu-west-2:1:key/k",
                                 signature=signature)
    return json.dumps(document, indent=2, sort_keys=True).encode()


def test_the_canonical_bytes_survive_the_stored_json(private_key: ec.EllipticCurvePrivateKey
                                                     ) -> None:
    receipt = body(uploader={"requester": "arn:aws:iam::1:user/é", "source_ip": None})
    verified = receipts.parse_and_verify(signed(private_key, receipt), private_key.public_key(),
                                         object_key="receipts/claims.csv/v1.json")
    assert verified.body == receipt
    assert receipts.canonical_bytes(receipt).startswith(b'{"bucket":"phi-acme-')


@pytest.mark.parametrize(("change", "reason"), [
    ({"version": True}, "type: not a phi-exchange-receipt version 1"),
    ({"size": "42"}, "size: must be a number of bytes"),
    ({"key": "outbound/x.csv"}, "key: not under inbound/"),
    ({"scan": "clean"}, "scan: must be an object"),
    ({"checksum": ["CRC64NVME"]}, "checksum: must be an algorithm and a value"),
    ({"imported_at": None}, "an imported receipt has them all"),
    ({"received_at": "yesterday"}, "received_at: must be a time"),
])
def test_a_signed_receipt_of_the_wrong_shape_is_malformed(
        private_key: ec.EllipticCurvePrivateKey, change: dict[str, Any], reason: str) -> None:
    with pytest.raises(receipts.ReceiptError, match=reason) as refused:
        receipts.parse_and_verify(signed(private_key, body(**change)), private_key.public_key())
    assert refused.value.rule == receipts.RULE_FIELDS


@pytest.mark.parametrize("data", [
    b'{"receipt": {"a": NaN}, "canonicalization": "RFC 8785", "signature": '
    b'{"algorithm": "ECDSA_SHA_256", "value": ""}}',
    b"[" * 100_000 + b"]" * 100_000,
    b"\xff\xfe",
    b"{}" + b" " * receipts.MAX_RECEIPT_OBJECT_BYTES,
])
def test_hostile_bytes_are_a_format_error_never_a_crash(
        private_key: ec.EllipticCurvePrivateKey, data: bytes) -> None:
    with pytest.raises(receipts.ReceiptError) as refused:
        receipts.parse_and_verify(data, private_key.public_key())
    assert refused.value.rule in (receipts.RULE_FORMAT, receipts.RULE_FIELDS)


def test_any_of_several_keys_verifies_during_a_key_replacement(
        private_key: ec.EllipticCurvePrivateKey) -> None:
    new = ec.generate_private_key(ec.SECP256R1())
    data = signed(private_key, body())
    with pytest.raises(receipts.ReceiptError, match="does not verify"):
        receipts.parse_and_verify(data, new.public_key())
    assert receipts.parse_and_verify(data, [new.public_key(), private_key.public_key()])


def test_a_der_key_that_is_not_p256_is_refused_for_the_kit() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    der = other.public_bytes(serialization.Encoding.DER,
                             serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(receipts.ReceiptError, match="ECC NIST P-256"):
        receipts.public_key_pem(der)


def _upload(**changes: Any) -> receipts.Upload:
    return replace(receipts.Upload(key="inbound/claims.csv", version_id="v1",
                                   time="2026-11-28T09:00:00.000Z", size=42,
                                   checksum_algorithm="CRC64NVME", checksum="LqXuavEzB9Y="),
                   **changes)


NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("upload_changes", "receipt_changes"), [
    ({"size": 43}, {}),
    ({}, {"checksum": None}),
], ids=["another-size", "no-checksum"])
def test_another_size_or_no_checksum_is_a_disagreement(upload_changes: dict[str, Any],
                                                       receipt_changes: dict[str, Any]) -> None:
    receipt = receipts.Receipt(body(**receipt_changes), "receipts/claims.csv/v1.json")
    report = receipts.reconcile([_upload(**upload_changes)], [receipt], [], now=NOW,
                                grace=timedelta(minutes=60))
    assert [f.kind for f in report.findings] == [receipts.MISMATCH]


def test_the_manifest_counts_only_successful_uploads_to_this_bucket() -> None:
    bucket = "phi-acme-123456789012-eu-west-2"
    base = {"direction": "upload", "bucket": bucket, "key": "inbound/a.csv", "version_id": "v1",
            "time": "2026-11-28T09:00:00Z", "size": 1, "checksum": "x",
            "checksum_algorithm": "CRC64NVME", "result": "ok"}
    records = [base, {**base, "direction": "download", "key": "outbound/r.csv"},
               {**base, "bucket": "phi-other-123456789012-eu-west-2"},
               {**base, "version_id": "v2", "result": "failed", "error": "a.csv changed"},
               {**base, "version_id": "v3", "result": "skipped"}]
    uploads, failed = receipts.uploads_of(records, bucket=bucket)
    assert [(u.key, u.version_id) for u in uploads] == [("inbound/a.csv", "v1")]
    assert failed == {("inbound/a.csv", "v2"): "a.csv changed"}
    receipt = receipts.Receipt(body(key="inbound/a.csv", version_id="v2"),
                               "receipts/a.csv/v2.json")
    report = receipts.reconcile([], [receipt], [], now=NOW, grace=timedelta(minutes=60),
                                failed=failed)
    assert "this host recorded as failed (a.csv changed)" in report.findings[0].message
