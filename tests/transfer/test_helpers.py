"""Unit tests of the pure helpers: checksums, key and path rules, request arguments, error
classification, the journal, the profile and the manifest. No server involved."""

from __future__ import annotations

import base64
import enum
import hashlib
import json
import os
import zlib
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    FlexibleChecksumError,
    NoCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from partner_transfer import checksums, journal, keys, s3args
from partner_transfer.api import part_size_for
from partner_transfer.errors import ErrorContext, ExitCode, TransferError, classify, mask_access_key
from partner_transfer.manifest import Record, batch_manifest
from partner_transfer.profile import (
    MIB,
    AuthMethod,
    Profile,
    parse_profile,
    profile_from_outputs,
    render_profile,
    select_stack_outputs,
)

KEY_ARN = "arn:aws:kms:eu-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"

# -- checksums ----------------------------------------------------------------------------------


def test_crc64nvme_check_value() -> None:
    # The CRC-64/NVME catalogue check value (CRC of "123456789").
    assert checksums.crc64nvme(b"123456789") == 0xAE8B14860A799888
    assert checksums.encode_int(0) == "AAAAAAAAAAA="


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=4096), st.binary(max_size=4096))
def test_combining_crcs_equals_crc_of_concatenation(a: bytes, b: bytes) -> None:
    combined = checksums.combine_crc64nvme(checksums.crc64nvme(a), checksums.crc64nvme(b), len(b))
    assert combined == checksums.crc64nvme(a + b)


@pytest.mark.parametrize("size", [0, 1, 5 * MIB - 1, 5 * MIB, 5 * MIB + 1, 11 * MIB + 3])
def test_digest_file_parts_and_whole(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f"
    path.write_bytes(data)
    digest = checksums.digest_file(path, 5 * MIB)
    assert digest.size == size
    assert digest.checksum == checksums.encode_int(checksums.crc64nvme(data))
    ranges = checksums.part_ranges(size, 5 * MIB)
    assert len(digest.part_checksums) == len(ranges) == -(-size // (5 * MIB))
    for (offset, length), value in zip(ranges, digest.part_checksums, strict=True):
        assert value == checksums.encode_int(checksums.crc64nvme(data[offset : offset + length]))


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("CRC32", lambda d: base64.b64encode(zlib.crc32(d).to_bytes(4, "big")).decode()),
        ("SHA256", lambda d: base64.b64encode(hashlib.sha256(d).digest()).decode()),
        ("SHA1", lambda d: base64.b64encode(hashlib.sha1(d).digest()).decode()),  # noqa: S324
    ],
)
def test_other_algorithms_match_reference(tmp_path: Path, algorithm: str, expected: Any) -> None:
    data = os.urandom(10_000)
    (tmp_path / "f").write_bytes(data)
    assert checksums.digest_path(tmp_path / "f", algorithm) == expected(data)


def test_crc32c_known_value() -> None:
    hasher = checksums.new_hasher("CRC32C")
    hasher.update(b"123456789")
    assert base64.b64decode(hasher.value()) == (0xE3069283).to_bytes(4, "big")
    with pytest.raises(ValueError, match="MD5"):
        checksums.new_hasher("MD5")


def test_expected_checksums_prefers_s3_and_skips_composite() -> None:
    response = {
        "ChecksumCRC64NVME": "s3value=",
        "ChecksumType": "FULL_OBJECT",
        "Metadata": {checksums.METADATA_KEY: "metavalue="},
    }
    found = checksums.expected_checksums(response)
    assert [(e.algorithm, e.value, e.source) for e in found] == [
        ("CRC64NVME", "s3value=", "s3"),
        ("CRC64NVME", "metavalue=", "metadata"),
    ]
    capitalized = {"Metadata": {"Partner-Transfer-Crc64nvme": "m="}, "ChecksumType": "FULL_OBJECT"}
    assert [(e.value, e.source) for e in checksums.expected_checksums(capitalized)] == [
        ("m=", "metadata")
    ]
    assert checksums.expected_checksums({"ChecksumSHA256": "abc=-3"}) == []
    assert checksums.expected_checksums({"ChecksumCRC32": "x=", "ChecksumType": "COMPOSITE"}) == []
    single = checksums.expected_checksums({"ChecksumSHA256": "abc="})  # no type: single part
    assert [(e.algorithm, e.source) for e in single] == [("SHA256", "s3")]


# -- keys and paths ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_prefix", "normal"),
    [
        ("inbound", "inbound/"),
        ("inbound/", "inbound/"),
        ("inbound/2026/11", "inbound/2026/11/"),
        ("", ""),
    ],
)
def test_normalize_prefix(given_prefix: str, normal: str) -> None:
    assert keys.normalize_prefix(given_prefix) == normal


@pytest.mark.parametrize(
    "bad", ["/inbound/", "inbound//x/", "inbound/../x/", "./inbound/", "inbound/..", "in\\bound/"]
)
def test_normalize_prefix_refuses_tricks(bad: str) -> None:
    with pytest.raises(TransferError) as exc:
        keys.normalize_prefix(bad)
    assert exc.value.code is ExitCode.REFUSED


def test_check_key_enforces_allowed_prefixes() -> None:
    assert keys.check_key("inbound/a.csv", ("inbound/",), "upload") == "inbound/a.csv"
    for bad in (
        "outbound/a.csv",
        "inboundx/a.csv",
        "inbound/../outbound/a",
        "inbound/a/",
        "/inbound/a",
    ):
        with pytest.raises(TransferError) as exc:
            keys.check_key(bad, ("inbound/",), "upload")
        assert exc.value.code is ExitCode.REFUSED
    with pytest.raises(TransferError, match="allows no downloads"):
        keys.check_key("outbound/a", (), "download")


@given(
    st.lists(st.sampled_from(["a", "b", "..", ".", "", "c.csv", "x\\y"]), min_size=1, max_size=5)
)
def test_safe_destination_never_escapes(tmp_path_factory: Any, segments: list[str]) -> None:
    root = tmp_path_factory.mktemp("dest")
    relative = "/".join(segments)
    try:
        target = keys.safe_destination(root, relative)
    except TransferError as exc:
        assert exc.code is ExitCode.REFUSED
        return
    assert target.resolve().is_relative_to(root.resolve())
    assert ".." not in segments and "" not in segments


def test_safe_destination_refuses_symlinked_file_and_dir(tmp_path: Path) -> None:
    root = tmp_path / "dest"
    root.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (root / "link").symlink_to(tmp_path / "elsewhere")
    (root / "file.csv").symlink_to(tmp_path / "elsewhere" / "f")
    for rel in ("link/x.csv", "file.csv"):
        with pytest.raises(TransferError, match="symlink"):
            keys.safe_destination(root, rel)
    assert keys.safe_destination(root, "ok/x.csv") == root.resolve() / "ok" / "x.csv"
    with pytest.raises(TransferError, match="escape"):
        keys.safe_destination(root, "C:/windows/x")


def test_select_files_maps_names_and_filters(tmp_path: Path) -> None:
    (tmp_path / "batch/sub").mkdir(parents=True)
    for rel in (
        "batch/a.csv",
        "batch/b.tmp",
        "batch/sub/c.csv",
        "single.txt",
        f"batch/.x.csv.1{keys.TEMP_SUFFIX}",
    ):
        (tmp_path / rel).write_text("x")
    (tmp_path / "batch/loop").symlink_to(tmp_path / "batch")  # not followed
    got = keys.select_files([tmp_path / "batch", tmp_path / "single.txt"], (), ("*.tmp",))
    assert [f.relative for f in got] == ["batch/a.csv", "batch/sub/c.csv", "single.txt"]
    only = keys.select_files([tmp_path / "batch"], ("sub/*",), ())
    assert [f.relative for f in only] == ["batch/sub/c.csv"]
    with pytest.raises(TransferError) as exc:
        keys.select_files([tmp_path / "nope"])
    assert exc.value.code is ExitCode.NOT_FOUND


def test_relative_to_prefix() -> None:
    assert keys.relative_to_prefix("outbound/a/b.csv", "outbound/") == "a/b.csv"
    assert keys.relative_to_prefix("outbound/a/b.csv", "outbound/a/b.csv") == "b.csv"


# -- request arguments ---------------------------------------------------------------------------

TARGET = s3args.Target("phi-acme-123456789012-eu-west-2", "123456789012", KEY_ARN)


def test_put_and_create_carry_kms_owner_and_checksum() -> None:
    for args in (
        s3args.put_object_args(TARGET, "inbound/a", "crc="),
        s3args.create_multipart_args(TARGET, "inbound/a", "crc="),
    ):
        assert args["ServerSideEncryption"] == "aws:kms"
        assert args["SSEKMSKeyId"] == KEY_ARN
        assert args["ExpectedBucketOwner"] == "123456789012"
        assert args["ChecksumAlgorithm"] == "CRC64NVME"
        assert args["Metadata"] == {checksums.METADATA_KEY: "crc="}
    assert s3args.put_object_args(TARGET, "k", "crc=")["ChecksumCRC64NVME"] == "crc="
    assert s3args.create_multipart_args(TARGET, "k", "crc=")["ChecksumType"] == "FULL_OBJECT"


def test_complete_sorts_parts_and_sends_full_object_checksum() -> None:
    args = s3args.complete_multipart_args(
        TARGET, "k", "up", [(2, '"e2"', "c2"), (1, '"e1"', "c1")], "full=", 42
    )
    assert args["MultipartUpload"]["Parts"] == [
        {"PartNumber": 1, "ETag": '"e1"', "ChecksumCRC64NVME": "c1"},
        {"PartNumber": 2, "ETag": '"e2"', "ChecksumCRC64NVME": "c2"},
    ]
    assert args["ChecksumCRC64NVME"] == "full="
    assert args["ChecksumType"] == "FULL_OBJECT"
    assert args["MpuObjectSize"] == 42
    assert args["ExpectedBucketOwner"] == "123456789012"


def test_upload_part_and_get_args() -> None:
    part = s3args.upload_part_args(TARGET, "k", "up", 3, "c3")
    assert part["PartNumber"] == 3 and part["ChecksumCRC64NVME"] == "c3"
    assert "SSEKMSKeyId" not in part  # S3 rejects SSE-KMS headers on UploadPart
    whole = s3args.get_object_args(TARGET, "k")
    assert whole["ChecksumMode"] == "ENABLED" and "Range" not in whole
    ranged = s3args.get_object_args(TARGET, "k", byte_range=(0, 9), if_match='"e"')
    assert ranged["Range"] == "bytes=0-9" and ranged["IfMatch"] == '"e"'


def _botocore_wire(operation: str, args: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """The headers and body botocore would send for ``operation`` with ``args``."""
    import botocore.session
    from botocore.serialize import create_serializer

    model = botocore.session.get_session().get_service_model("s3").operation_model(operation)
    request = create_serializer("rest-xml", include_validation=True).serialize_to_request(
        args, model
    )
    return dict(request["headers"]), bytes(request["body"])


def test_crt_multipart_requests_carry_what_botocore_would_send() -> None:
    # The multipart path builds its requests for the CRT by hand: the same headers and body
    # as botocore's serializer makes from the argument builders above.
    parts = [(2, '"e2"', "c2"), (1, '"e1"', "c1")]
    cases = [
        (
            "CreateMultipartUpload",
            s3args.create_multipart_args(TARGET, "k", "crc="),
            s3args.create_multipart_headers(TARGET, "crc="),
            b"",
        ),
        (
            "UploadPart",
            {**s3args.upload_part_args(TARGET, "k", "up", 3, "c3"), "Body": b""},
            s3args.upload_part_headers(TARGET, "c3"),
            b"",
        ),
        (
            "CompleteMultipartUpload",
            s3args.complete_multipart_args(TARGET, "k", "up", parts, "full=", 42),
            s3args.complete_multipart_headers(TARGET, "full=", 42),
            s3args.complete_multipart_body(parts),
        ),
    ]
    for operation, args, headers, body in cases:
        wire_headers, wire_body = _botocore_wire(operation, args)
        assert headers == wire_headers, operation
        assert body == wire_body, operation


def test_part_size_grows_only_past_ten_thousand_parts() -> None:
    assert part_size_for(10 * MIB, 8 * MIB) == 8 * MIB
    assert part_size_for(8 * MIB * 10_000, 8 * MIB) == 8 * MIB
    grown = part_size_for(8 * MIB * 10_000 + 1, 8 * MIB)
    assert grown % MIB == 0 and grown * 10_000 >= 8 * MIB * 10_000 + 1


# -- error classification ------------------------------------------------------------------------

CTX = ErrorContext(
    operation="upload",
    bucket="b",
    key="inbound/k",
    principal="arn:aws:iam::1:user/p",
    region="eu-west-2",
    credential_source="credentials file f.json",
    access_key_hint="AKIA…WXYZ",
)


def client_error(
    code: str, message: str = "", headers: dict[str, str] | None = None
) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPHeaders": headers or {}},
    }
    return ClientError(response, "PutObject")


@pytest.mark.parametrize(
    ("error", "code", "fragments"),
    [
        (
            client_error("AccessDenied", "nope"),
            ExitCode.ACCESS_DENIED,
            ["arn:aws:iam::1:user/p", "s3://b/inbound/k", "upload"],
        ),
        (
            client_error("InvalidAccessKeyId"),
            ExitCode.CREDENTIALS,
            ["AKIA…WXYZ", "rotated", "rotation secret", "f.json"],
        ),
        (client_error("InvalidClientTokenId"), ExitCode.CREDENTIALS, ["rotated"]),
        (client_error("SignatureDoesNotMatch"), ExitCode.CREDENTIALS, ["secret key"]),
        (client_error("ExpiredToken"), ExitCode.CREDENTIALS, ["expired"]),
        (
            client_error("PermanentRedirect", "", {"x-amz-bucket-region": "us-east-2"}),
            ExitCode.WRONG_REGION,
            ["us-east-2", "eu-west-2"],
        ),
        (
            client_error(
                "AuthorizationHeaderMalformed",
                "the region 'eu-west-2' is wrong; expecting 'ap-south-1'",
            ),
            ExitCode.WRONG_REGION,
            ["ap-south-1"],
        ),
        (client_error("BadDigest"), ExitCode.CHECKSUM, ["checksum mismatch"]),
        (client_error("NoSuchBucket"), ExitCode.NOT_FOUND, ["bucket b does not exist"]),
        (client_error("NoSuchKey"), ExitCode.NOT_FOUND, ["s3://b/inbound/k"]),
        (client_error("SlowDown"), ExitCode.NETWORK, ["try again later"]),
        (client_error("Weird", "odd"), ExitCode.FAILURE, ["Weird", "odd"]),
        (EndpointConnectionError(endpoint_url="https://x"), ExitCode.NETWORK, ["network"]),
        (ReadTimeoutError(endpoint_url="https://x"), ExitCode.NETWORK, ["resume"]),
        (NoCredentialsError(), ExitCode.CREDENTIALS, ["no AWS credentials"]),
        (
            ProfileNotFound(profile="acme"),
            ExitCode.CONFIG,
            ["'acme'", "aws configure --profile acme"],
        ),
        (FlexibleChecksumError(error_msg="bad"), ExitCode.CHECKSUM, ["final name"]),
        (FileNotFoundError(2, "No such file", "/x/y"), ExitCode.NOT_FOUND, ["/x/y"]),
        (RuntimeError("boom\nsecond line"), ExitCode.FAILURE, ["boom second line"]),
    ],
)
def test_classify(error: BaseException, code: ExitCode, fragments: list[str]) -> None:
    result = classify(error, CTX)
    assert result.code is code
    assert "\n" not in result.message
    for fragment in fragments:
        assert fragment in result.message


def test_mask_access_key_hides_the_middle() -> None:
    assert mask_access_key("AKIAIOSFODNN7EXAMPLE") == "AKIA…MPLE"
    assert mask_access_key("short") == "…"


def test_exit_codes_are_distinct() -> None:
    # Iterating an enum skips aliases (a second name for a value already taken), so compare
    # every declared name with the distinct members; enum.unique on ExitCode refuses aliases
    # when the module is imported.
    assert list(ExitCode.__members__) == [c.name for c in ExitCode]
    assert enum.unique(ExitCode) is ExitCode


# -- journal ---------------------------------------------------------------------------------------


def test_journal_round_trip_ignores_torn_last_line(tmp_path: Path) -> None:
    ident = journal.UploadIdentity("b", "k", "/f", 10, 1, "crc=", 5 * MIB)
    path = journal.journal_path(tmp_path, "b", "k", "/f")
    jr = journal.create(path, ident, "upload-1", "2026-11-28T00:00:00Z")
    jr.record(journal.PartRecord(1, '"e1"', "c1"))
    jr.record(journal.PartRecord(2, '"e2"', "c2"))
    with path.open("a") as fh:
        fh.write('{"part": {"number": 3, "et')  # killed mid-write
    loaded = journal.load(path)
    assert loaded is not None
    assert loaded.identity == ident and loaded.upload_id == "upload-1"
    assert sorted(loaded.parts) == [1, 2]
    assert path.stat().st_mode & 0o777 == 0o600
    assert [p for p, _ in journal.list_journals(tmp_path)] == [path]
    loaded.remove()
    assert journal.load(path) is None


def test_journal_path_differs_per_file_and_key(tmp_path: Path) -> None:
    a = journal.journal_path(tmp_path, "b", "k", "/one")
    assert a != journal.journal_path(tmp_path, "b", "k", "/two")
    assert a != journal.journal_path(tmp_path, "b", "k2", "/one")
    assert a == journal.journal_path(tmp_path, "b", "k", "/one")


def test_unreadable_journal_is_none(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text("not json\n")
    assert journal.load(path) is None


# -- profile ---------------------------------------------------------------------------------------

GOOD = {
    "customer": "acme",
    "bucket": "phi-acme-123456789012-eu-west-2",
    "region": "eu-west-2",
    "bucket_owner": "123456789012",
    "kms_key_arn": KEY_ARN,
    "inbound_prefix": "inbound/",
}


def test_profile_defaults() -> None:
    profile = parse_profile(GOOD)
    assert profile.auth.method is AuthMethod.DEFAULT
    assert profile.tuning.concurrency == 8 and profile.tuning.part_size == 16 * MIB
    assert profile.tuning.retry_mode.value == "standard" and profile.tuning.max_attempts == 5
    assert profile.upload_prefixes == ("inbound/",) and profile.download_prefixes == ()


def test_profile_refuses_secrets_and_bad_values() -> None:
    data = {
        **GOOD,
        "auth": {"method": "credentials-file", "secret_access_key": "x"},
        "transfer": {"concurrency": 0, "part_size_mib": 4},
    }
    with pytest.raises(TransferError) as exc:
        parse_profile(data, source="p.toml")
    message = exc.value.message
    assert exc.value.code is ExitCode.CONFIG
    for fragment in (
        "secrets never go in the profile",
        "credentials_file is required",
        "concurrency",
        "part size",
    ):
        assert fragment in message


def test_relative_credentials_file_resolves_against_profile_dir(tmp_path: Path) -> None:
    data = {**GOOD, "auth": {"method": "credentials-file", "credentials_file": "c.json"}}
    assert parse_profile(data, base=tmp_path).auth.credentials_file == tmp_path / "c.json"


@settings(max_examples=30, deadline=None)
@given(
    inbound=st.sampled_from([None, "inbound/"]),
    outbound=st.sampled_from([None, "outbound/"]),
    endpoint=st.sampled_from([None, "http://127.0.0.1:9000"]),
    concurrency=st.integers(1, 64),
    part=st.integers(5, 512),
)
def test_render_then_parse_round_trips(
    inbound: str | None, outbound: str | None, endpoint: str | None, concurrency: int, part: int
) -> None:
    if inbound is None and outbound is None:
        inbound = "inbound/"
    from partner_transfer.profile import Tuning

    profile = Profile(
        customer="acme",
        bucket=GOOD["bucket"],
        region="eu-west-2",
        bucket_owner="123456789012",
        kms_key_arn=KEY_ARN,
        inbound_prefix=inbound,
        outbound_prefix=outbound,
        endpoint_url=endpoint,
        tuning=Tuning(concurrency=concurrency, part_size=part * MIB),
    )
    import tomllib

    assert parse_profile(tomllib.loads(render_profile(profile, comment="c\nd"))) == profile


def test_profile_from_outputs_by_access_mode(tmp_path: Path) -> None:
    outputs = {
        "CustomerSlug": "acme",
        "BucketName": GOOD["bucket"],
        "BucketRegion": "eu-west-2",
        "BucketOwnerAccount": "123456789012",
        "KmsKeyArn": KEY_ARN,
        "OutboundPrefix": "outbound/",
    }
    cross = profile_from_outputs({**outputs, "AccessMode": "cross-account"}, aws_profile="mine")
    assert cross.auth.method is AuthMethod.AWS_PROFILE and cross.inbound_prefix is None
    role = profile_from_outputs(
        {
            **outputs,
            "AccessMode": "assume-role",
            "PartnerRoleArn": "arn:aws:iam::123456789012:role/r",
            "ExternalId": "e",
        }
    )
    assert role.auth.method is AuthMethod.ASSUME_ROLE and role.auth.external_id == "e"
    with pytest.raises(TransferError) as exc:
        profile_from_outputs({**outputs, "AccessMode": "iam-user", "PartnerUserName": "u"})
    assert exc.value.code is ExitCode.USAGE
    with pytest.raises(TransferError) as exc:  # not a customer stack's outputs
        profile_from_outputs({**outputs, "AccessMode": "iam-user"})
    assert exc.value.code is ExitCode.CONFIG and "PartnerUserName is missing" in exc.value.message


def test_select_stack_outputs() -> None:
    # The account's stacks (no CustomerSlug output) are not candidates for the default.
    doc = {"PhiExchange-acme": {"BucketName": "x", "CustomerSlug": "acme"},
           "PhiExchange-audit": {"TrailArn": "t"}, "Other": {}}
    assert select_stack_outputs(doc, None) == {"BucketName": "x", "CustomerSlug": "acme"}
    with pytest.raises(TransferError):
        select_stack_outputs(doc, "PhiExchange-globex")


# -- manifest --------------------------------------------------------------------------------------


def test_batch_manifest_lists_only_successes() -> None:
    def rec(key: str, result: str, size: int) -> Record:
        return Record(
            time="t",
            batch_id="B",
            direction="upload",
            local_path="/l",
            bucket="b",
            key=key,
            version_id="v",
            size=size,
            checksum="c",
            checksum_algorithm="CRC64NVME",
            kms_key_arn=None,
            caller_arn=None,
            result=result,
        )

    body = batch_manifest(
        "B",
        [rec("a", "ok", 2), rec("b", "failed", 5), rec("c", "skipped", 3)],
        caller_arn="arn",
        created_at="now",
    )
    document = json.loads(body)
    assert [f["key"] for f in document["files"]] == ["a", "c"]
    assert document["total_bytes"] == 5 and document["file_count"] == 2
    assert document["caller_arn"] == "arn"
