"""The cost model's arithmetic, on a fixed example (prices from a fixed table, not the file)."""

from __future__ import annotations

import pytest

from admin.cost import Volumes, estimate, load_prices, render, total
from stacks.config import parse_customer

PRICES = {
    "as_of": "2026-11-01", "region": "us-east-1", "currency": "USD",
    "kms": {"key_month": 1.0, "rotated_key_version_month": 1.0, "requests_per_10k": 0.03,
            "asymmetric_requests_per_10k": 0.15},
    "s3": {"storage_gb_month": 0.023, "put_per_1k": 0.005, "get_per_1k": 0.0004,
           "transfer_out_gb": 0.09, "object_tags_per_10k_month": 0.01},
    "guardduty": {"malware_scan_gb": 0.09, "malware_objects_per_1k": 0.215},
    "secrets_manager": {"secret_month": 0.40, "api_per_10k": 0.05},
    "cloudtrail": {"data_events_per_100k": 0.10},
    "cloudwatch_logs": {"ingest_gb": 0.50, "storage_gb_month": 0.03},
    "lambda": {"requests_per_1m": 0.20, "gb_second": 0.0000166667},
    "sqs": {"requests_per_1m": 0.40},
    "sns": {"email_per_100k": 2.0},
}

ACME = parse_customer({"slug": "acme", "access": "iam-user", "contacts": ["a@acme.example"]},
                      source="acme.toml")
GLOBEX = parse_customer({"slug": "globex", "access": "cross-account", "directions": ["inbound"],
                         "partner_principals": ["111122223333"],
                         "contacts": ["a@globex.example"]}, source="globex.toml")
# 100 GB stored; 10,000 uploads of 1 MiB (single PUTs); 1,000 downloads of 10 GiB total.
VOLUMES = Volumes(stored_gb=100, uploaded_gb=10_000 / 1024, files_uploaded=10_000,
                  downloaded_gb=10, files_downloaded=1_000)


def by_item(items):
    return {(i.service, i.item): i.monthly for i in items}


def test_fixed_example_itemized():
    items = by_item(estimate(ACME, VOLUMES, PRICES))
    # Per upload: the partner's PUT, the receipt's PUT, the scan tag's PUT; the importer's and
    # the scanner's GET. Per download: HEAD + GET.
    puts, gets = 3 * 10_000, 1_000 * 2 + 2 * 10_000
    assert items[("KMS", "customer key")] == 1.0
    assert items[("KMS", "requests")] == pytest.approx(521 / 10_000 * 0.03)  # 1% of 52,000, up
    assert items[("KMS", "receipt signatures")] == pytest.approx(10_000 / 10_000 * 0.15)
    assert items[("S3", "storage")] == pytest.approx(2.3)
    assert items[("S3", "noncurrent versions")] == 0.0
    assert items[("S3", "PUT/LIST requests")] == pytest.approx((puts + 11 + 30) / 1000 * 0.005)
    assert items[("S3", "GET requests")] == pytest.approx(gets / 1000 * 0.0004)
    assert items[("S3", "transfer out")] == pytest.approx(0.9)
    assert items[("S3", "scan result tags")] == pytest.approx(10_000 / 10_000 * 0.01)
    assert items[("GuardDuty", "malware scans")] == pytest.approx(
        10_000 / 1024 * 0.09 + 10 * 0.215)
    assert items[("CloudTrail", "data events")] == pytest.approx(52_000 / 100_000 * 0.10)
    assert items[("SQS", "ingestion queue")] == pytest.approx(60_000 / 1e6 * 0.40)
    assert items[("Secrets Manager", "partner key secret")] == 0.40


def test_an_opted_out_customer_pays_no_scan_and_says_why():
    reason = "Partner scans at source under contract 12-A; reviewed by security 2026-10"
    opted_out = parse_customer({"slug": "acme", "access": "iam-user",
                                "contacts": ["a@acme.example"],
                                "malware_scan": {"enabled": False, "reason": reason}},
                               source="acme.toml")
    items = {(i.service, i.item): i for i in estimate(opted_out, VOLUMES, PRICES)}
    assert items[("GuardDuty", "malware scans")].monthly == 0.0
    assert reason in items[("GuardDuty", "malware scans")].basis
    assert ("S3", "scan result tags") not in items


def test_bucket_keys_cut_kms_requests_by_99_percent():
    with_keys = by_item(estimate(ACME, VOLUMES, PRICES, bucket_keys=True))
    without = by_item(estimate(ACME, VOLUMES, PRICES, bucket_keys=False))
    assert without[("KMS", "requests")] == pytest.approx(52_000 / 10_000 * 0.03)
    assert with_keys[("KMS", "requests")] < without[("KMS", "requests")] / 90


def test_large_files_are_counted_as_multipart_parts():
    big = Volumes(stored_gb=0, uploaded_gb=10, files_uploaded=10)  # 1 GiB each, 8 MiB parts
    items = by_item(estimate(ACME, big, PRICES))
    # Each upload's parts, plus its receipt and its scan tag.
    assert items[("S3", "PUT/LIST requests")] == pytest.approx((10 * (128 + 2 + 2) + 31) / 1000
                                                               * 0.005)


def test_versioning_overhead_follows_the_registry_retention():
    churn = Volumes(stored_gb=100, uploaded_gb=0, files_uploaded=0, overwritten_fraction=0.5)
    items = by_item(estimate(ACME, churn, PRICES))
    assert items[("S3", "noncurrent versions")] == pytest.approx(50 * 90 / 30.4 * 0.023)


def test_modes_without_a_key_of_ours_pay_no_secret_and_directions_count():
    items = by_item(estimate(GLOBEX, VOLUMES, PRICES))
    assert ("Secrets Manager", "partner key secret") not in items
    assert items[("S3", "transfer out")] == 0.0  # inbound only: nothing is downloaded


def test_render_shows_total_and_the_dated_price_source():
    text = render(ACME, VOLUMES, PRICES)
    assert "as of 2026-11-01" in text
    assert f"{total(estimate(ACME, VOLUMES, PRICES)):.2f}" in text
    assert "without S3 Bucket Keys" in text


def test_shipped_price_file_has_every_price_the_model_uses():
    prices = load_prices()
    assert prices["as_of"] and prices["region"] == "us-east-1"
    estimate(ACME, VOLUMES, prices)  # raises KeyError if a price is missing


def test_cost_command_prints_the_itemized_estimate(capsys):
    from admin.cli import main

    code = main(["cost", "acme", "--stored-gb", "100", "--uploaded-gb", "10",
                 "--files-uploaded", "10000", "--json"])
    assert code == 0
    import json

    report = json.loads(capsys.readouterr().out)
    assert report["customer"] == "acme" and report["as_of"]
    assert report["total"] == pytest.approx(sum(i["monthly"] for i in report["items"]), abs=0.01)


def test_cost_command_refuses_an_unknown_customer(capsys):
    from admin.cli import main

    code = main(["cost", "nobody", "--stored-gb", "1", "--uploaded-gb", "1",
                 "--files-uploaded", "1"])
    assert code == 1
    assert "not registered" in capsys.readouterr().err
