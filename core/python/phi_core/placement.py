"""Where customers live, and the AWS quotas they use there.

The accounts file (``accounts.toml``, next to the ``customers/`` registry) names the exchange
accounts (label, account id, region, and any quota Service Quotas has raised) and the
log-archive account. A customer is placed in one exchange account by its registry field
``account``; ``phi-exchange-admin placement --assign SLUG`` proposes one and records it. With
no accounts file there is one implicit exchange account, the one the CLI deploys to (the
default, and what ``make demo`` uses).

Before anything deploys, every per-account and per-region quota the design uses is counted
for every account: each customer's footprint (:func:`customer_footprint`, one line per
resource its stack creates that a quota counts) plus the account's own stacks. A placement
that would exceed a quota is refused with the account, the quota and the count.

Plain Python, no CDK: the app (at synth), the operator CLI and the tests import it. The
footprints are checked against the synthesized templates in ``tests/infra/test_placement.py``,
so a new resource that a quota counts cannot be added without counting it here.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phi_core import identifiers, naming, toml_files
from phi_core.vocabulary import AccessMode

ACCOUNTS_FILE = "accounts.toml"
DEFAULT_LABEL = "default"  # the implicit account when there is no accounts file
MAX_FILE_BYTES = 64 * 1024


@dataclass(frozen=True)
class Quota:
    """One AWS quota the design uses. ``ceiling``: the most Service Quotas grants, when AWS
    publishes it; ``adjustable`` False: a hard quota. ``kept_free``: part of the quota that must
    stay unused (Lambda keeps 100 concurrent executions unreserved)."""

    key: str
    title: str
    default: int
    adjustable: bool = True
    ceiling: int | None = None
    kept_free: int = 0
    note: str = ""


# AWS's published defaults (November 2026; docs/scale.md has the sources and what to do when
# one bites). The key is what an accounts file raises: [exchange.quotas] iam_groups = 500.
QUOTAS: tuple[Quota, ...] = (
    Quota("iam_groups", "IAM groups per account", 300, ceiling=500),
    Quota("iam_users", "IAM users per account", 5000, adjustable=False),
    Quota("iam_roles", "IAM roles per account", 1000, ceiling=5000),
    Quota("iam_managed_policies", "IAM customer managed policies per account", 1500,
          ceiling=5000),
    Quota("s3_buckets", "S3 general purpose buckets per account", 10000, ceiling=1_000_000),
    Quota("eventbridge_rules", "EventBridge rules per event bus (the default bus)", 300),
    Quota("lambda_concurrency", "Lambda concurrent executions (reserved by our functions)", 1000,
          kept_free=100),
    Quota("guardduty_protected_buckets", "GuardDuty Malware Protection for S3 protected "
          "buckets", 25, note="not verified offline: check Service Quotas before relying on it"),
    Quota("cloudformation_stacks", "CloudFormation stacks", 2000),
    Quota("kms_keys", "KMS customer managed keys", 100_000),
    Quota("sns_topics", "SNS topics", 100_000),
    Quota("secrets", "Secrets Manager secrets", 500_000),
    # IAM Roles Anywhere, per account and region (roles-anywhere customers).
    Quota("rolesanywhere_trust_anchors", "IAM Roles Anywhere trust anchors", 50,
          note="not verified offline: check Service Quotas before relying on it"),
    Quota("rolesanywhere_profiles", "IAM Roles Anywhere profiles", 250,
          note="not verified offline: check Service Quotas before relying on it"),
)
QUOTA_BY_KEY = {q.key: q for q in QUOTAS}

Footprint = Mapping[str, int]  # quota key -> how many of it


def customer_footprint(*, access: AccessMode, sends_inbound: bool, scanned: bool,
                       offboarded: bool) -> dict[str, int]:
    """What one customer's stack uses of each quota (see ``docs/scale.md``)."""
    use: Counter[str] = Counter(s3_buckets=2, kms_keys=1, cloudformation_stacks=1)
    if offboarded:  # the data, its key and its logs stay; every way in is gone
        return dict(use)
    if access is AccessMode.IAM_USER:
        # The user, its group and two policies; the rotation function (its role, reserved
        # concurrency 1, secret, failure topic) and its sweep rule.
        use.update(iam_users=1, iam_groups=1, iam_managed_policies=2, iam_roles=1,
                   lambda_concurrency=1, secrets=1, sns_topics=1, eventbridge_rules=1)
    elif access is AccessMode.ASSUME_ROLE:
        use.update(iam_roles=1, iam_managed_policies=1)
    elif access is AccessMode.ROLES_ANYWHERE:
        # The role and its policy, the trust anchor and profile, and the certificate-expiry
        # rule with its notices topic.
        use.update(iam_roles=1, iam_managed_policies=1, rolesanywhere_trust_anchors=1,
                   rolesanywhere_profiles=1, eventbridge_rules=1, sns_topics=1)
    if sends_inbound:
        use.update(eventbridge_rules=1)  # the ingestion handoff
    if scanned:
        # The plan, its scanner role and policy, our scan-result rule, the gate-notices topic,
        # and the managed rule GuardDuty itself puts on the default bus for each plan.
        use.update(guardduty_protected_buckets=1, iam_roles=1, iam_managed_policies=1,
                   eventbridge_rules=2, sns_topics=1)
    return dict(use)


# The account's own stacks (checked against their templates in the tests).
ACCESS_STACK_FOOTPRINT: Footprint = {  # once per account
    "iam_roles": 5, "iam_managed_policies": 4, "cloudformation_stacks": 1}
AUDIT_STACK_FOOTPRINT: Footprint = {  # once per account and region
    "eventbridge_rules": 10, "iam_roles": 1, "iam_managed_policies": 1, "kms_keys": 2,
    "s3_buckets": 2, "sns_topics": 1, "cloudformation_stacks": 1}


class PlacementError(Exception):
    """One or more placement problems, one ``where: field: rule`` line each."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        count = len(self.problems)
        super().__init__("\n".join([f"placement: {count} problem{'s' if count != 1 else ''}",
                                    *(f"  - {p}" for p in self.problems)]))


@dataclass(frozen=True)
class Account:
    """An AWS account and region we deploy to. ``account_id``/``region`` are None only for the
    implicit account of a registry without an accounts file (the CLI's credentials decide)."""

    label: str
    account_id: str | None
    region: str | None
    raised: Mapping[str, int] = field(default_factory=dict)
    production: bool = True  # the pipeline waits for a manual approval before deploying here
    pipeline: int = 1  # which of the pipelines deploys it (naming.MAX_PIPELINES at most)

    def limit(self, quota: Quota) -> int:
        return max(0, self.raised.get(quota.key, quota.default) - quota.kept_free)

    @property
    def partition(self) -> str:
        region = self.region or ""
        return ("aws-cn" if region.startswith("cn-") else
                "aws-us-gov" if region.startswith("us-gov-") else "aws")

    @property
    def described(self) -> str:
        if self.account_id is None:
            return f"{self.label} (the deploying credentials' account)"
        return f"{self.label} ({self.account_id} {self.region})"


@dataclass(frozen=True)
class Pipeline:
    """The account the CDK pipeline runs in, and the repository it deploys from (an AWS
    CodeConnections connection to it, created once in the console: it needs an OAuth consent)."""

    account: Account
    repository: str  # owner/name
    branch: str
    connection_arn: str


@dataclass(frozen=True)
class Accounts:
    exchange: tuple[Account, ...]
    log_archive: Account | None = None
    pipeline: Pipeline | None = None
    source: str = ""

    @classmethod
    def implicit(cls) -> Accounts:
        return cls(exchange=(Account(DEFAULT_LABEL, None, None),))

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(a.label for a in self.exchange)

    def get(self, label: str) -> Account | None:
        return next((a for a in self.exchange if a.label == label), None)

    @property
    def pipelines(self) -> int:
        """How many pipelines deploy the exchange accounts (1 without an accounts file)."""
        return max((a.pipeline for a in self.exchange), default=1)


def next_pipeline(number: int) -> str:
    """What to do when pipeline ``number`` holds too much."""
    if number >= naming.MAX_PIPELINES:
        return (f"pipeline {number} is the last ({naming.MAX_PIPELINES} at most); more "
                "pipelines are not built")
    return (f"move some of its exchange accounts to another (accounts.toml: [[exchange]] "
            f"pipeline = {number + 1})")


# -- the accounts file ----------------------------------------------------------------------


def load_accounts(path: Path) -> Accounts:
    """Read and validate an accounts file; every problem in one :class:`PlacementError`."""
    try:
        data = toml_files.read_toml(path, max_bytes=MAX_FILE_BYTES)
    except toml_files.UnreadableFile as err:
        raise PlacementError([err.line]) from None
    return parse_accounts(data, source=str(path))


def parse_accounts(data: Mapping[str, Any], *, source: str) -> Accounts:
    problems: list[str] = []

    def bad(where: str, rule: str) -> None:
        problems.append(f"{source}: {where}: {rule}")

    for unknown in sorted(set(data) - {"exchange", "log_archive", "pipeline"}):
        bad(repr(unknown), "unknown table (allowed: exchange, log_archive, pipeline)")
    entries = data.get("exchange")
    if not isinstance(entries, list) or not entries or not all(
            isinstance(e, dict) for e in entries):
        bad("exchange", "required: one or more [[exchange]] tables (label, account_id, "
            "region)")
        entries = []
    exchange = [_account(e, f"exchange[{i}]", bad, extra={"quotas", "production", "pipeline"})
                for i, e in enumerate(entries)]
    log_archive = None
    if "log_archive" in data:
        if isinstance(data["log_archive"], dict):
            log_archive = _account(data["log_archive"], "log_archive", bad, extra=set())
        else:
            bad("log_archive", "must be a table (label, account_id, region)")

    pipeline = None
    if "pipeline" in data:
        if isinstance(data["pipeline"], dict):
            pipeline = _pipeline(data["pipeline"], bad)
        else:
            bad("pipeline", "must be a table (label, account_id, region, repository, branch, "
                "connection_arn)")

    placed = [a for a in exchange if a is not None]
    seen_labels: dict[str, str] = {}
    seen_places: set[tuple[str | None, str | None]] = set()
    for i, account in enumerate(exchange):
        if account is None:
            continue
        where = f"exchange[{i}]"
        if account.label in seen_labels:
            bad(f"{where}.label", f"'{account.label}' is already used by "
                f"{seen_labels[account.label]}")
        seen_labels.setdefault(account.label, where)
        if account.account_id in {a for a, _ in seen_places}:
            # Its audit stack's trail is multi-region: a second region's would collide with it.
            bad(where, f"account {account.account_id} is already listed: an exchange account "
                "is listed once, in the region of its audit stack and customers")
        seen_places.add((account.account_id, account.region))
    numbers = {a.pipeline for a in placed}
    if pipeline is None and "pipeline" not in data:
        for i, entry in enumerate(entries):
            if "pipeline" in entry:
                bad(f"exchange[{i}].pipeline", "needs a [pipeline] table: without one no "
                    "pipeline deploys the accounts")
    for missing in sorted(set(range(1, max(numbers, default=1))) - numbers):
        bad("exchange", f"no account has pipeline = {missing}: pipelines are numbered from 1 "
            "without gaps")
    if log_archive is not None and log_archive.account_id in {a.account_id for a in placed}:
        bad("log_archive.account_id", "must not be an exchange account: the evidence is kept "
            "out of reach of the accounts that hold the data")
    if log_archive is not None and log_archive.label in seen_labels:
        bad("log_archive.label", f"'{log_archive.label}' is already an exchange account's label")
    if pipeline is not None and pipeline.account.account_id in {a.account_id for a in placed}:
        bad("pipeline.account_id", "must not be an exchange account: the pipeline's account "
            "deploys into the others and holds no PHI")
    if (pipeline is not None and log_archive is not None
            and pipeline.account.account_id == log_archive.account_id):
        bad("pipeline.account_id", "must not be the log-archive account: the evidence is kept "
            "out of reach of the account that deploys everywhere")
    if problems:
        raise PlacementError(problems)
    return Accounts(exchange=tuple(placed), log_archive=log_archive, pipeline=pipeline,
                    source=source)


_REPOSITORY = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", re.ASCII)
_BRANCH = re.compile(r"[A-Za-z0-9_./-]{1,200}", re.ASCII)
_CONNECTION = re.compile(
    r"arn:aws(-[a-z]+)*:(codeconnections|codestar-connections):[a-z0-9-]+:[0-9]{12}:"
    r"connection/[0-9a-f-]{36}", re.ASCII)


def _pipeline(entry: Mapping[str, Any], bad: Any) -> Pipeline | None:
    fields = {"repository", "branch", "connection_arn"}
    account = _account(entry, "pipeline", bad, extra=fields)
    ok = account is not None
    repository, branch = entry.get("repository"), entry.get("branch", "main")
    connection = entry.get("connection_arn")
    if not (isinstance(repository, str) and _REPOSITORY.fullmatch(repository)):
        bad("pipeline.repository", "required: the repository as owner/name")
        ok = False
    if not (isinstance(branch, str) and _BRANCH.fullmatch(branch) and ".." not in branch):
        bad("pipeline.branch", "must be a branch name (default main)")
        ok = False
    if not (isinstance(connection, str) and _CONNECTION.fullmatch(connection)):
        bad("pipeline.connection_arn", "required: the ARN of the CodeConnections connection "
            "to the repository (arn:aws:codeconnections:<region>:<account>:connection/<id>)")
        ok = False
    if not ok or account is None:
        return None
    return Pipeline(account, str(repository), str(branch), str(connection))


def _account(entry: Mapping[str, Any], where: str, bad: Any, *,
             extra: set[str]) -> Account | None:
    allowed = {"label", "account_id", "region"} | extra
    for unknown in sorted(set(entry) - allowed):
        bad(f"{where}.{unknown!r}" if not str(unknown).isidentifier() else f"{where}.{unknown}",
            f"unknown field (allowed: {', '.join(sorted(allowed))})")
    ok = True
    label, account_id, region = entry.get("label"), entry.get("account_id"), entry.get("region")
    if not (isinstance(label, str) and identifiers.is_slug(label) and len(label) <= 32):
        bad(f"{where}.label", "required: 2-32 lowercase letters, digits and single hyphens, "
            "starting with a letter")
        ok = False
    if not (isinstance(account_id, str) and identifiers.is_account_id(account_id)):
        bad(f"{where}.account_id", "required: the 12-digit account id, as a string in quotes")
        ok = False
    if not (isinstance(region, str) and identifiers.is_region(region)):
        bad(f"{where}.region", "required: an AWS region name such as eu-west-2")
        ok = False
    raised: dict[str, int] = {}
    given = entry.get("quotas", {})
    if not isinstance(given, dict):
        bad(f"{where}.quotas", "must be a table of quota = granted value")
        given = {}
    for key, value in given.items():
        quota = QUOTA_BY_KEY.get(key)
        name = f"{where}.quotas.{key}" if str(key).isidentifier() else f"{where}.quotas.{key!r}"
        if quota is None:
            bad(name, "unknown quota (known: " + ", ".join(QUOTA_BY_KEY) + ")")
        elif not quota.adjustable:
            bad(name, f"{quota.title} is a hard quota ({quota.default:,}); it cannot be raised")
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            bad(name, "must be a whole number: the value Service Quotas shows for the account "
                f"(AWS's default is {quota.default:,}; a new account can have less)")
        elif quota.ceiling is not None and value > quota.ceiling:
            bad(name, f"at most {quota.ceiling:,}: the most AWS grants for {quota.title}")
        else:
            raised[key] = value
    production = entry.get("production", True)
    if not isinstance(production, bool):
        bad(f"{where}.production", "must be true or false (default true: the pipeline asks "
            "for approval before deploying there)")
        ok = False
    number = entry.get("pipeline", 1)
    if isinstance(number, bool) or not isinstance(number, int) or not (
            1 <= number <= naming.MAX_PIPELINES):
        bad(f"{where}.pipeline", f"must be a whole number from 1 to {naming.MAX_PIPELINES} "
            "(default 1): which pipeline deploys the account; one holds ~800 customers")
        ok = False
    if not ok:
        return None
    return Account(label=str(label), account_id=str(account_id), region=str(region),
                   raised=raised, production=production, pipeline=number)


# -- placing customers and counting ---------------------------------------------------------


@dataclass(frozen=True)
class Placed:
    """A customer as placement sees it: where it asks to be, and what it uses."""

    slug: str
    account: str | None  # the registry's ``account`` field
    footprint: Footprint
    source: str = ""


def place(customers: Iterable[Placed], accounts: Accounts) -> tuple[dict[str, str], list[str]]:
    """slug -> exchange account label, and one problem line per customer that cannot be placed.

    A customer without ``account`` goes to the only exchange account if there is one; with
    several, it must name one (``phi-exchange-admin placement --assign``): placement is
    recorded, never recomputed, so adding an account never moves a customer's bucket.
    """
    where: dict[str, str] = {}
    problems: list[str] = []
    only = accounts.labels[0] if len(accounts.exchange) == 1 else None
    for customer in customers:
        origin = customer.source or customer.slug
        if customer.account is None:
            if only is not None:
                where[customer.slug] = only
            else:
                problems.append(f"{origin}: account: required when {accounts.source} names "
                                f"{len(accounts.exchange)} exchange accounts; run "
                                f"'phi-exchange-admin placement --assign {customer.slug}'")
        elif accounts.get(customer.account) is None:
            if accounts.source:
                known = ", ".join(accounts.labels)
                problems.append(f"{origin}: account: '{customer.account}' is not an exchange "
                                f"account of {accounts.source} (known: {known})")
            else:
                problems.append(f"{origin}: account: '{customer.account}' needs an accounts "
                                f"file ({ACCOUNTS_FILE} next to the registry) that names it")
        else:
            where[customer.slug] = customer.account
    return where, problems


@dataclass(frozen=True)
class Usage:
    """One quota in one exchange account (each is listed once, in one region)."""

    quota: Quota
    account: Account
    used: int
    limit: int
    customers: int

    @property
    def where(self) -> str:
        return f"account {self.account.described}"

    @property
    def over(self) -> bool:
        return self.used > self.limit


def count(accounts: Accounts, placed: Mapping[str, str],
          footprints: Mapping[str, Footprint]) -> list[Usage]:
    """Every quota's use in every account, the account's own stacks included: its access
    stack, and its audit stack (whose custody buckets are in the log-archive account when
    there is one)."""
    own: Counter[str] = Counter(AUDIT_STACK_FOOTPRINT)
    own.update(ACCESS_STACK_FOOTPRINT)
    if accounts.log_archive is not None:
        own["s3_buckets"] -= AUDIT_STACK_FOOTPRINT["s3_buckets"]
    usage: list[Usage] = []
    for account in accounts.exchange:
        slugs = [s for s, label in placed.items() if label == account.label]
        for quota in QUOTAS:
            used = own[quota.key] + sum(footprints[s].get(quota.key, 0) for s in slugs)
            usage.append(Usage(quota, account, used, account.limit(quota), len(slugs)))
    return usage


def over_quota(usage: Iterable[Usage]) -> list[str]:
    """One line per quota a placement exceeds."""
    lines = []
    for u in usage:
        if u.over:
            raised = u.account.raised.get(u.quota.key)
            source = (f"recorded as {raised:,}" if raised is not None
                      else f"AWS's default {u.quota.default:,}")
            kept = f", less {u.quota.kept_free} kept free" if u.quota.kept_free else ""
            remedy = ("split the customers across accounts" if not u.quota.adjustable else
                      "request an increase in Service Quotas and record it under the account's "
                      f"[exchange.quotas] {u.quota.key}, or place customers elsewhere")
            lines.append(f"{u.where}: {u.quota.title}: {u.used:,} needed, limit {u.limit:,} "
                         f"({source}{kept}; {u.customers} customers): {remedy}")
    return lines


def propose(accounts: Accounts, usage: Iterable[Usage], footprint: Footprint) -> str | None:
    """The exchange account where a customer with ``footprint`` fits with the most room left
    (the smallest share left of any quota it uses, highest wins; ties: the accounts file's
    order); None when it fits nowhere."""
    by_label: dict[str, list[Usage]] = {}
    for u in usage:
        by_label.setdefault(u.account.label, []).append(u)
    best: tuple[float, str] | None = None
    for account in accounts.exchange:
        room = 1.0
        for u in by_label.get(account.label, []):
            need = footprint.get(u.quota.key, 0)
            if not need:
                continue
            left = u.limit - u.used - need
            if left < 0:
                room = -1.0
                break
            room = min(room, left / u.limit)
        if room >= 0 and (best is None or room > best[0]):
            best = (room, account.label)
    return best[1] if best else None


@dataclass(frozen=True)
class Placement:
    """Where every counted customer is, every quota's use, and what is wrong: customers that
    cannot be placed (``unplaced``, one line each) and quotas exceeded (``exceeded``)."""

    accounts: Accounts
    where: Mapping[str, str]
    usage: tuple[Usage, ...]
    unplaced: tuple[str, ...] = ()
    exceeded: tuple[str, ...] = ()

    def account_of(self, slug: str) -> Account:
        account = self.accounts.get(self.where[slug])
        assert account is not None  # place() only returns known labels
        return account


def evaluate(customers: Iterable[Placed], accounts: Accounts) -> Placement:
    """Place and count ``customers`` (a customer that cannot be placed is not counted)."""
    customers = list(customers)
    where, unplaced = place(customers, accounts)
    usage = count(accounts, where, {c.slug: c.footprint for c in customers})
    return Placement(accounts, where, tuple(usage), tuple(unplaced),
                     tuple(over_quota(usage)))


def check(customers: Iterable[Placed], accounts: Accounts, *,
          only: str | None = None) -> tuple[Placement, list[str]]:
    """:func:`evaluate`, raising :class:`PlacementError` for a customer that cannot be placed
    or a quota exceeded. With ``only`` (one customer's synth), another customer that cannot be
    placed is a returned warning instead; a quota exceeded in any account is still an error,
    since the next deploy into that account would fail."""
    result = evaluate(customers, accounts)
    unplaced = list(result.unplaced)
    warnings: list[str] = []
    if only is not None:
        warnings = [p for p in unplaced if not _about(p, only)]
        unplaced = [p for p in unplaced if _about(p, only)]
    problems = [*unplaced, *result.exceeded]
    if problems:
        raise PlacementError(problems)
    return result, warnings


def _about(problem: str, slug: str) -> bool:
    """Whether a :func:`place` problem is about ``slug`` (it starts with the customer's file,
    whose name is the slug, or with the slug itself)."""
    head = problem.split(": ", 1)[0]
    return head == slug or Path(head).stem == slug
