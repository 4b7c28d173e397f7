"""cfn-lint and checkov on every synthesized template, parliament on every policy document:
nothing reported that security/scanner_skips.toml does not accept with a reason, and no skip
left that matches nothing."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import pytest

from phi_core import naming
from security import scanners
from security.synth import SynthesizedApp
from stacks.config import CustomerConfig


def resource_scanned(stack_names: Iterable[str]) -> list[str]:
    """The stacks cfn-lint and checkov read: all but the matrix's one-direction variants, whose
    resources are a subset of their mode's two-direction variant (the access matrix evaluates
    their policies; parliament reads them too). Budget: checkov costs ~2 s per template."""
    return [name for name in stack_names
            if not re.fullmatch(r"PhiExchange-mx-(user|xacct|role)-(in|out)", name)]


@pytest.fixture(scope="module")
def scan_result(matrix_app: SynthesizedApp) -> scanners.ScanResult:
    # Creates .venv-checkov from security/requirements-checkov.txt if `make setup` did not.
    return scanners.scan(matrix_app.template_files,
                         resource_scan=resource_scanned(matrix_app.template_files))


def test_scanners_report_nothing_unaccepted(scan_result: scanners.ScanResult):
    if not scan_result.clean:
        pytest.fail(scanners.report(scan_result))


def test_every_template_and_policy_was_scanned(scan_result: scanners.ScanResult,
                                               matrix_app: SynthesizedApp):
    resource = resource_scanned(matrix_app.template_files)
    assert len(resource) == len(matrix_app.template_files) - 6
    assert scan_result.counts["cfn-lint"] == scan_result.counts["checkov"] == len(resource)
    assert scan_result.counts["parliament"] >= 3 * (len(matrix_app.template_files) - 1)


def test_every_skip_has_a_reason_and_a_narrow_scope():
    for skip in scanners.load_skips():
        assert len(skip.reason.split()) >= 15, skip
        assert skip.where != "*" or skip.detail != "*", f"{skip.rule} skips everywhere"


def test_a_skip_file_without_reason_is_refused(tmp_path: Path):
    bad = tmp_path / "skips.toml"
    bad.write_text('[[checkov]]\nrule = "CKV_AWS_18"\nwhere = "*"\nreason = "fine"\n')
    with pytest.raises(scanners.SkipFileError):
        scanners.load_skips(bad)


def test_a_finding_is_reported_unless_a_skip_matches_it():
    finding = scanners.Finding("checkov", "CKV_AWS_18", "StorageDataBucketE5B4C3D2", "t.json",
                               "Ensure the S3 bucket has access logging enabled")
    log_bucket_only = scanners.Skip("checkov", "CKV_AWS_18", "StorageAccessLogBucket*",
                                    "log buckets are the log target")
    assert not log_bucket_only.matches(finding)
    assert scanners.Skip("checkov", "CKV_AWS_18", "Storage*", "r").matches(finding)


# --- a new customer never turns the scanners red -------------------------------------------


def test_random_valid_slugs_pass_every_scanner(random_slug_customers: list[CustomerConfig],
                                               matrix_app: SynthesizedApp,
                                               scan_result: scanners.ScanResult):
    """Any valid slug, in every access mode, synthesizes templates the scanners accept: the
    name of a new customer never turns CI red (SCANNER_SLUG_SEED replays a seed). The random
    customers are synthesized with the matrix's stacks (tests/security/conftest.py) and
    scanned in the same run; the matrix itself does not read them."""
    stacks = {naming.stack_name(c.slug) for c in random_slug_customers}
    assert stacks <= set(matrix_app.template_files)
    files = {str(matrix_app.template_files[s]) for s in stacks}
    theirs = [f for f in scan_result.findings
              if f.file in files or any(f.where.startswith(f"{k}:{s}/") for s in stacks
                                        for k in ("identity", "resource"))]
    assert not theirs, ([c.slug for c in random_slug_customers],
                        "\n".join(f.line() for f in theirs))


def test_the_stage_path_of_a_nine_letter_slug_looks_like_a_secret_to_checkov(
        tmp_path: Path):
    """Why scan() copies templates under their stack names: the same template, scanned at its
    CDK stage path, is reported by CKV_AWS_45 for its file name alone."""
    environment = {"Variables": {"CUSTOMER_SLUG": "northwind"}}
    template = {"Resources": {"Function": {"Type": "AWS::Lambda::Function", "Properties": {
        "Code": {"ZipFile": "x"}, "Handler": "index.main", "Runtime": "python3.14",
        "Role": "arn:aws:iam::123456789012:role/r", "Environment": environment}}}}
    stage = tmp_path / "assembly-northwind"
    stage.mkdir()
    raw = stage / "northwindCustomerStackADF26E28.template.json"
    raw.write_text(json.dumps(template))
    (copy,) = scanners.scan_copies({"PhiExchange-northwind": raw}, tmp_path).values()
    # One checkov run over both files (its start-up is most of its time).
    findings = scanners.run_checkov([raw, copy], scanners.ensure_checkov())
    reported = {(f.rule, Path(f.file).name) for f in findings}  # checkov's paths are relative
    assert ("CKV_AWS_45", raw.name) in reported
    assert ("CKV_AWS_45", copy.name) not in reported
