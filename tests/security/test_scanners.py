"""cfn-lint and checkov on every synthesized template, parliament on every policy document:
nothing reported that security/scanner_skips.toml does not accept with a reason, and no skip
left that matches nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from security import scanners
from security.synth import SynthesizedApp


@pytest.fixture(scope="module")
def scan_result(matrix_app: SynthesizedApp) -> scanners.ScanResult:
    # Creates .venv-checkov from security/requirements-checkov.txt if `make setup` did not.
    return scanners.scan(matrix_app.template_files)


def test_scanners_report_nothing_unaccepted(scan_result: scanners.ScanResult):
    if not scan_result.clean:
        pytest.fail(scanners.report(scan_result))


def test_every_template_and_policy_was_scanned(scan_result: scanners.ScanResult,
                                               matrix_app: SynthesizedApp):
    assert scan_result.counts["cfn-lint"] == len(matrix_app.template_files)
    assert scan_result.counts["checkov"] == len(matrix_app.template_files)
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
