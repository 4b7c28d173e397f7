"""Monthly AWS cost of one customer, itemized, from its registry entry and stated volumes.

Prices come from one dated file per region (``pricing/us-east-1.toml``). The model is
deliberately simple and states its assumptions: first pricing tier, no free tier, no discounts,
and the request counts our own client and importer make.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacks.config import AccessMode, CustomerConfig, Direction

DEFAULT_PRICES = Path(__file__).resolve().parents[1] / "pricing" / "us-east-1.toml"
# S3 Bucket Keys cut the KMS requests S3 makes by "up to 99%" (AWS); the model takes 99%.
BUCKET_KEY_REDUCTION = 0.99
DAYS_PER_MONTH = 30.4
KIB_PER_TRAIL_EVENT = 1.0  # one CloudTrail record, delivered to CloudWatch Logs
SWEEPS_PER_MONTH = DAYS_PER_MONTH


@dataclass(frozen=True)
class Volumes:
    """What the customer moves in a month.

    ``stored_gb``: data kept in the bucket (current versions). ``uploaded_gb`` and
    ``files_uploaded``: what the partner sends (inbound). ``downloaded_gb`` and
    ``files_downloaded``: what the partner fetches (outbound). ``overwritten_fraction``
    (default 0): share of stored data replaced each month, kept as noncurrent versions for the
    registry's retention. ``part_size_mib`` (default 8): the client's multipart part size.
    """

    stored_gb: float
    uploaded_gb: float
    files_uploaded: int
    downloaded_gb: float = 0.0
    files_downloaded: int = 0
    overwritten_fraction: float = 0.0
    part_size_mib: int = 8


@dataclass(frozen=True)
class LineItem:
    service: str
    item: str
    monthly: float
    basis: str  # how the figure was computed


def load_prices(path: Path | None = None) -> dict[str, Any]:
    return tomllib.loads((path or DEFAULT_PRICES).read_text(encoding="utf-8"))


def estimate(customer: CustomerConfig, volumes: Volumes, prices: dict[str, Any], *,
             bucket_keys: bool = True) -> list[LineItem]:
    """Itemized monthly cost of ``customer`` at ``volumes`` (S3 Bucket Keys on, as deployed,
    unless ``bucket_keys`` is False: for comparison)."""
    items: list[LineItem] = []
    kms, s3 = prices["kms"], prices["s3"]

    # Requests the partner, the importer and we make on the bucket.
    up = volumes.files_uploaded if customer.allows(Direction.INBOUND) else 0
    down = volumes.files_downloaded if customer.allows(Direction.OUTBOUND) else 0
    avg_up_mib = (volumes.uploaded_gb * 1024 / up) if up else 0.0
    parts_per_upload = max(1, math.ceil(avg_up_mib / volumes.part_size_mib))
    # A multipart upload is Create + parts + Complete; a small file is one PutObject.
    puts = up * (parts_per_upload + 2 if parts_per_upload > 1 else 1)
    lists = math.ceil((up + down) / 1000) + 30  # sync listings, one page per 1,000 keys
    gets = down * 2 + up  # partner: HEAD + GET per download; importer: one GET per upload
    # The importer writes one receipt per upload, signed once with the receipt key.
    receipts = up
    puts += receipts
    # The malware gate: GuardDuty reads each upload once and writes its result tag.
    scanned = up if customer.scanned else 0
    gets += scanned
    puts += scanned
    # Every PUT and part needs a data key, every GET a decrypt; Bucket Keys share them.
    kms_requests = puts + gets
    if bucket_keys:
        kms_requests = math.ceil(kms_requests * (1 - BUCKET_KEY_REDUCTION))

    items.append(LineItem("KMS", "customer key", kms["key_month"],
                          "1 key; each of its first two yearly rotations adds "
                          f"${kms['rotated_key_version_month']:.2f}/month from year 2"))
    items.append(LineItem("KMS", "requests", kms_requests / 10_000 * kms["requests_per_10k"],
                          f"{kms_requests:,} requests"
                          + (" (S3 Bucket Keys: -99%)" if bucket_keys else " (no Bucket Keys)")))

    noncurrent_gb = (volumes.stored_gb * volumes.overwritten_fraction
                     * customer.retention.noncurrent_version_days / DAYS_PER_MONTH)
    items.append(LineItem("S3", "storage", volumes.stored_gb * s3["storage_gb_month"],
                          f"{volumes.stored_gb:,.1f} GB Standard"))
    keep_days = customer.retention.noncurrent_version_days
    items.append(LineItem("S3", "noncurrent versions", noncurrent_gb * s3["storage_gb_month"],
                          f"{noncurrent_gb:,.1f} GB kept {keep_days} days"))
    items.append(LineItem("S3", "PUT/LIST requests", (puts + lists) / 1000 * s3["put_per_1k"],
                          f"{puts:,} PUT + {lists:,} LIST"))
    items.append(LineItem("S3", "GET requests", gets / 1000 * s3["get_per_1k"],
                          f"{gets:,} GET/HEAD"))
    items.append(LineItem("S3", "transfer out", volumes.downloaded_gb * s3["transfer_out_gb"]
                          if down else 0.0, f"{volumes.downloaded_gb:,.1f} GB to the partner"))

    trail_events = puts + gets
    trail = prices["cloudtrail"]
    logs = prices["cloudwatch_logs"]
    items.append(LineItem("CloudTrail", "data events",
                          trail_events / 100_000 * trail["data_events_per_100k"],
                          f"{trail_events:,} object-level events"))
    trail_gb = trail_events * KIB_PER_TRAIL_EVENT / 1024 / 1024
    items.append(LineItem("CloudWatch Logs", "trail delivery", trail_gb * logs["ingest_gb"],
                          f"{trail_gb:,.3f} GB ingested"))

    if customer.scanned:
        guardduty = prices["guardduty"]
        scanned_gb = volumes.uploaded_gb
        items.append(LineItem("GuardDuty", "malware scans",
                              scanned_gb * guardduty["malware_scan_gb"]
                              + scanned / 1000 * guardduty["malware_objects_per_1k"],
                              f"{scanned:,} objects, {scanned_gb:,.1f} GB scanned"))
        items.append(LineItem("S3", "scan result tags",
                              scanned / 10_000 * s3["object_tags_per_10k_month"],
                              f"{scanned:,} tags (this month's uploads; grows with what "
                              "is kept)"))
    elif customer.allows(Direction.INBOUND):
        items.append(LineItem("GuardDuty", "malware scans", 0.0,
                              f"opted out: {customer.malware_scan.reason}"))
    if receipts:
        items.append(LineItem("KMS", "receipt signatures",
                              receipts / 10_000 * kms["asymmetric_requests_per_10k"],
                              f"{receipts:,} Sign requests (ECC; the receipt key itself is "
                              "shared, in the audit stack)"))

    sqs = prices["sqs"]
    # EventBridge send, importer receive, importer delete; twice with the gate (the Object
    # Created event and GuardDuty's scan result each reach the importer).
    queue_requests = up * 3 + scanned * 3
    items.append(LineItem("SQS", "ingestion queue",
                          queue_requests / 1_000_000 * sqs["requests_per_1m"],
                          f"{queue_requests:,} requests"))

    if customer.access is AccessMode.IAM_USER:
        secrets = prices["secrets_manager"]
        items.append(LineItem("Secrets Manager", "partner key secret", secrets["secret_month"],
                              "1 secret; rotation API calls are negligible"))
        function = prices["lambda"]
        invocations = SWEEPS_PER_MONTH + 4 / 12
        items.append(LineItem("Lambda", "rotation and sweep",
                              invocations / 1_000_000 * function["requests_per_1m"]
                              + invocations * 0.25 * 2 * function["gb_second"],
                              f"{invocations:.0f} invocations of ~2 s at 256 MB"))
        items.append(LineItem("SNS", "notices", 0.0, "a few e-mails a year"))
    return items


def total(items: list[LineItem]) -> float:
    return sum(item.monthly for item in items)


def render(customer: CustomerConfig, volumes: Volumes, prices: dict[str, Any]) -> str:
    with_keys = estimate(customer, volumes, prices, bucket_keys=True)
    without = estimate(customer, volumes, prices, bucket_keys=False)
    lines = [
        f"Monthly cost of {customer.slug} ({customer.access.value}), {prices['region']} list "
        f"prices as of {prices['as_of']} ({prices['currency']})",
        f"{'service':<16} {'item':<22} {'monthly':>10}  basis",
    ]
    for item in with_keys:
        lines.append(f"{item.service:<16} {item.item:<22} {item.monthly:>10.2f}  {item.basis}")
    lines.append(f"{'total':<39} {total(with_keys):>10.2f}")
    lines.append(f"(without S3 Bucket Keys the total would be {total(without):.2f})")
    lines.append("Not included: the audit stack's shared costs (trail storage in the custody "
                 "bucket, its KMS keys), taxes, support.")
    return "\n".join(lines)
