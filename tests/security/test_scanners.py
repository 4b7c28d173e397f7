"""cfn-lint and checkov on every synthesized template, parliament on every policy document:
nothing reported that security/scanner_skips.toml does not accept with a reason, and no skip
left that matches nothing."""

from __future__ import annotations

import json
import os
import random
import string
from pathlib import Path

import pytest

from phi_core import naming
from security import scanners
from security.synth import SynthesizedApp, synthesize
from stacks.config import RESERVED_SLUGS, CustomerConfig, parse_customer


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


# --- a new customer never turns the scanners red -------------------------------------------


def _random_slugs(rng: random.Random, count: int) -> list[str]:
    """Valid slugs of spread lengths, always one of nine letters (the length whose CDK stage
    path once looked like an AWS secret key to checkov)."""
    alphabet = string.ascii_lowercase + string.digits
    slugs = ["".join(rng.choice(string.ascii_lowercase) for _ in range(9))]
    while len(slugs) < count:
        length = rng.randint(2, 20)
        middle = "".join(rng.choice(alphabet + "-") for _ in range(length - 2))
        slug = (rng.choice(string.ascii_lowercase) + middle + rng.choice(alphabet)).replace(
            "--", "-a")
        if slug not in RESERVED_SLUGS:
            slugs.append(slug)
    return slugs


@pytest.fixture(scope="module")
def random_customers() -> list[CustomerConfig]:
    rng = random.Random(int(os.environ.get("SCANNER_SLUG_SEED", "2026")))  # noqa: S311
    base = {"iam-user": {}, "cross-account": {
        "partner_principals": ["arn:aws:iam::111122223333:role/transfer"]},
        "assume-role": {"partner_principals": ["444455556666"],
                        "external_id": "random-slug-external-id-0001"}}
    customers = []
    for mode, extra in base.items():
        for slug in _random_slugs(rng, 2):
            customers.append(parse_customer({"slug": slug, "access": mode,
                                             "contacts": ["ops@example.org"], **extra},
                                            source=f"(random) {slug}"))
    return customers


def test_random_valid_slugs_pass_every_scanner(random_customers: list[CustomerConfig],
                                               tmp_path_factory: pytest.TempPathFactory):
    """Any valid slug, in every access mode, synthesizes templates the scanners accept: the
    name of a new customer never turns CI red (the seed is printed; SCANNER_SLUG_SEED
    replays it)."""
    app = synthesize(random_customers, Path(tmp_path_factory.mktemp("random-slugs")))
    customer_files = {name: path for name, path in app.template_files.items()
                      if name not in (naming.AUDIT_STACK_NAME, naming.ACCESS_STACK_NAME)}
    result = scanners.scan(customer_files)
    assert not result.findings, ([c.slug for c in random_customers], scanners.report(result))


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
    checkov = scanners.ensure_checkov()
    assert "CKV_AWS_45" in {f.rule for f in scanners.run_checkov([raw], checkov)}
    copies = scanners.scan_copies({"PhiExchange-northwind": raw}, tmp_path)
    assert "CKV_AWS_45" not in {f.rule for f in scanners.run_checkov(
        list(copies.values()), checkov)}
