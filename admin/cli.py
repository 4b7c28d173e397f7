"""``phi-exchange-admin``: the operator's commands for partners' access keys and custody.

    phi-exchange-admin rotate SLUG                     start a rotation now
    phi-exchange-admin credentials SLUG [--output F]   the current key, for hand-over
    phi-exchange-admin keys [--json]                   every partner key and its state
    phi-exchange-admin custody SLUG KEY [--version-id V] [--local-file F] [--manifest M ...]
                               [--dsn DSN] [--bucket B] [--verify-bytes] [--json]
                               [--since T] [--until T] [--trail NAME] [--no-trail]
                               [--source custody-bucket|athena] [--athena-table DB.TABLE ...]
                                                       an object's chain of custody, with
                                                       AWS's records (CloudTrail, access log)
    phi-exchange-admin custody SLUG --prefix P --since T [--until T] [--json]
                                                       every event under a prefix in a time
                                                       range: a table, or JSON lines
    phi-exchange-admin custody SLUG --athena-table-ddl --athena-table DB.TABLE [--since T]
                                                       the Athena table of the trail's logs
    phi-exchange-admin cost SLUG --stored-gb N --uploaded-gb N --files-uploaded N [...]
                                                       a customer's itemized monthly cost
    phi-exchange-admin placement [--accounts F] [--for SLUG | --assign SLUG] [--json]
                                                       quota use per exchange account, where
                                                       a new customer fits (--assign records it)
    phi-exchange-admin onboard SLUG [--output DIR] [--outputs-file F] [--access-key-id ID]
                               [--receipt-public-key F] [--support-contact TEXT ...]
                                                       the partner kit (never a secret)
    phi-exchange-admin offboard SLUG [--export-custody F] [--dry-run] [--yes]
                                                       revoke access now, keep the data
    phi-exchange-admin status [--json] [--manifest M ...] [--dsn DSN] [--max-listed N]
                                                       every customer: mode, state, keys,
                                                       last upload

Global options (before or after the command): ``--registry DIR`` (default
``$PHI_EXCHANGE_REGISTRY``, else the ``customers/`` of the project this was installed from),
``--region``, ``--profile``, ``--endpoint-url`` (default: boto3's usual resolution, real AWS).
Exit status: 0 done, 1 refused or failed (one line on stderr saying why), 2 usage error; for
``custody`` also 3 when a record disagrees with the stored checksum or size or with AWS's
record of the principal, and 4 when the trail's evidence is not intact (a log file altered or
missing, the digest chain broken, a signature invalid; 4 wins over 3).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ProfileNotFound,
)

from admin import lifecycle_cli
from admin.aws import AwsOptions, make_client
from admin.keys import CustomerReport, customer_report
from admin.private_files import PrivateFileError, write_private
from admin.registry import healthy_customers, registered_customer, registry_dir
from admin.stack_outputs import LifecycleError
from phi_core import naming
from phi_core import secret as secret_schema
from stacks.config import AccessMode, CustomerConfig, RegistryError

PROG = "phi-exchange-admin"
MakeClient = Callable[[str], Any]


KEY_ONLY = (secret_schema.ACCESS_KEY_ID, secret_schema.SECRET_ACCESS_KEY)


class AdminError(Exception):
    """An expected refusal or failure: printed as one line, exit status 1."""


# --- commands -------------------------------------------------------------------------------


def cmd_rotate(args: argparse.Namespace, make: MakeClient) -> int:
    customer = _iam_user_customer(args.registry, args.slug)
    secret_name = naming.partner_secret_name(customer.slug)
    sm = make("secretsmanager")
    described = sm.describe_secret(SecretId=secret_name)
    if not described.get("RotationEnabled"):
        raise AdminError(f"rotation is not configured on secret {secret_name}; deploy the "
                         f"stack of customer {customer.slug!r}, which attaches the rotation "
                         "function")
    unfinished = _unfinished_versions(described)
    if unfinished:
        raise AdminError(
            f"a rotation of {secret_name} is unfinished (AWSPENDING on version "
            f"{unfinished[0]}); Secrets Manager retries it. Fix its cause (see the failure "
            "notice and the function's logs), or cancel it with: aws secretsmanager "
            f"update-secret-version-stage --secret-id {secret_name} --version-stage "
            f"AWSPENDING --remove-from-version-id {unfinished[0]}")
    started = sm.rotate_secret(SecretId=secret_name)
    grace = (customer.rotation.grace_days if customer.rotation else 14)
    print(f"started rotation of {secret_name} (customer {customer.slug}, user "
          f"{naming.partner_user_name(customer.slug)}): new version {started['VersionId']}.")
    print("The rotation function creates and tests the new key, makes it current and "
          "announces it on the notices topic; the previous key keeps working for "
          f"{grace} days. Follow it with: {PROG} keys")
    return 0


def cmd_credentials(args: argparse.Namespace, make: MakeClient) -> int:
    customer = _iam_user_customer(args.registry, args.slug)
    output: Path | None = args.output
    # Decide where the secret goes before fetching it.
    if output is None and not sys.stdout.isatty():
        raise AdminError("refusing to write a secret access key to a pipe or file; run in a "
                         "terminal, or use --output FILE (created with mode 0600)")
    if output is not None and os.path.lexists(output):
        raise AdminError(f"{output} already exists; refusing to overwrite it")

    secret_name = naming.partner_secret_name(customer.slug)
    sm = make("secretsmanager")
    value = sm.get_secret_value(SecretId=secret_name, VersionStage="AWSCURRENT")
    try:
        document = json.loads(value.get("SecretString") or "")
        key_id = secret_schema.parse_partner_secret(document, require=KEY_ONLY).access_key_id
    except (ValueError, secret_schema.SecretError):
        raise AdminError(f"secret {secret_name} does not hold an access key document "
                         "(see docs/rotation.md)") from None
    text = json.dumps(document, indent=2) + "\n"

    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        where = "shown above"
    else:
        _write_private(output, text)
        where = f"written to {output} (mode 0600)"
    print(f"access key {key_id} of user {document.get('user_name', '?')}: {where}. Hand it "
          "over through the agreed secure channel only.", file=sys.stderr)
    if _unfinished_versions(sm.describe_secret(SecretId=secret_name)):
        print("note: a rotation is in progress; this key is replaced when it completes.",
              file=sys.stderr)
    return 0


def cmd_keys(args: argparse.Namespace, make: MakeClient) -> int:
    registry = healthy_customers(args.registry)
    customers = [c for c in sorted(registry.values(), key=lambda c: c.slug)
                 if c.access is AccessMode.IAM_USER]
    iam, sm = make("iam"), make("secretsmanager")
    now = datetime.now(UTC)
    reports = [customer_report(c, iam=iam, secretsmanager=sm, now=now) for c in customers]
    if args.json:
        print(json.dumps([r.to_json() for r in reports], indent=2))
    elif not reports:
        print(f"no customer in {registry_dir(args.registry)} uses access = 'iam-user'")
    else:
        print("\n\n".join(_format_report(r) for r in reports))
    return 0


EXIT_DISAGREES = 3
EXIT_EVIDENCE_BROKEN = 4


def cmd_custody(args: argparse.Namespace, make: MakeClient) -> int:
    # Imported here: custody needs the transfer client's checksum helpers, which the key
    # commands do not.
    from admin import custody, custody_trail, trail_evidence

    registered_customer(args.registry, args.slug, error=AdminError)
    if args.athena_table_ddl:
        return _athena_table_ddl(args, make)
    if args.prefix is not None:
        return _custody_window(args, make)
    if args.key is None and args.local_file is None:
        raise AdminError("give the object KEY, or --local-file with the client's --manifest, "
                         "or --prefix P --since T for a time range")
    s3 = make("s3")
    bucket = args.bucket or _data_bucket(args.slug, s3, make)
    try:
        key = args.key or custody.find_key_for_local_file(args.local_file, args.manifest,
                                                          bucket)
        report = custody.custody_report(
            s3, customer=args.slug, bucket=bucket, key=key, version_id=args.version_id,
            local_file=args.local_file, manifests=args.manifest,
            importer_rows=_importer_rows(args.dsn) if args.dsn else None,
            verify_bytes=args.verify_bytes)
    except custody.CustodyError as err:
        raise AdminError(str(err)) from None
    if not report.versions:
        raise AdminError(f"s3://{bucket}/{key} has no versions and no record names it")
    if not args.no_trail:
        try:
            custody_trail.add_aws_records(report, _event_source(args, make, s3), s3,
                                          trail_name=args.trail, since=args.since,
                                          until=args.until)
        except trail_evidence.EvidenceError as err:
            raise AdminError(str(err)) from None
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
    else:
        print(custody.format_report(report))
    if report.evidence_intact is False:
        print(f"{PROG}: the audit trail's evidence for s3://{bucket}/{key} is not intact",
              file=sys.stderr)
        return EXIT_EVIDENCE_BROKEN
    if not report.consistent:
        print(f"{PROG}: a record of s3://{bucket}/{key} disagrees with the stored checksum, "
              "size or AWS's records", file=sys.stderr)
        return EXIT_DISAGREES
    return 0


def _event_source(args: argparse.Namespace, make: MakeClient, s3: Any) -> Any:
    """Where CloudTrail events are read from: the trail's custody bucket (default), or
    Athena."""
    from admin import trail_events, trail_evidence

    region = s3.meta.region_name
    cloudtrail = make("cloudtrail")
    trail = trail_evidence.describe_trail(cloudtrail, args.trail)
    if args.source == "athena":
        if not args.athena_table:
            raise AdminError("--source athena needs --athena-table DATABASE.TABLE (the table "
                             "of docs/custody.md)")
        return trail_events.AthenaTrailSource(
            make("athena"), s3, cloudtrail, trail, region, table=args.athena_table,
            workgroup=args.athena_workgroup, output=args.athena_output)
    return trail_events.S3TrailSource(s3, cloudtrail, trail, region)


def _athena_table_ddl(args: argparse.Namespace, make: MakeClient) -> int:
    """``custody SLUG --athena-table-ddl --athena-table DB.TABLE``: the CREATE TABLE statement
    for the trail's log files in the client's region (run it once in Athena)."""
    from admin import trail_events, trail_evidence

    if not args.athena_table:
        raise AdminError("--athena-table-ddl needs --athena-table DATABASE.TABLE")
    if not trail_events.IDENTIFIER.match(args.athena_table):
        raise AdminError(f"--athena-table: {args.athena_table!r} is not DATABASE.TABLE")
    try:
        trail = trail_evidence.describe_trail(make("cloudtrail"), args.trail)
    except trail_evidence.EvidenceError as err:
        raise AdminError(str(err)) from None
    first_day = (args.since or datetime(2020, 1, 1, tzinfo=UTC)).strftime("%Y/%m/%d")
    print(trail_events.ATHENA_TABLE_DDL.format(
        table=args.athena_table, bucket=trail.bucket, prefix=trail.prefix,
        account=trail.account, region=make("s3").meta.region_name, first_day=first_day))
    return 0


def _custody_window(args: argparse.Namespace, make: MakeClient) -> int:
    """``custody SLUG --prefix P --since T [--until T]``: every event in the window."""
    from admin import custody_trail, trail_evidence

    if args.key is not None or args.local_file is not None:
        raise AdminError("--prefix lists a time range: give no KEY and no --local-file")
    if args.no_trail:
        raise AdminError("--prefix reads AWS's records: it cannot be combined with --no-trail")
    if args.since is None:
        raise AdminError("--prefix needs --since (and optionally --until, default now)")
    until = args.until or datetime.now(UTC)
    if until < args.since:
        raise AdminError("--until is before --since")
    s3 = make("s3")
    bucket = args.bucket or _data_bucket(args.slug, s3, make)
    try:
        report = custody_trail.window_report(
            _event_source(args, make, s3), s3, bucket=bucket, prefix=args.prefix,
            start=args.since, end=until, trail_name=args.trail)
    except trail_evidence.EvidenceError as err:
        raise AdminError(str(err)) from None
    if args.json:
        for line in custody_trail.json_lines(report):
            print(line)
    else:
        print(custody_trail.format_table(report))
    evidence = report.section.evidence
    if evidence is not None and not evidence.intact:
        print(f"{PROG}: the audit trail's evidence for this window is not intact",
              file=sys.stderr)
        return EXIT_EVIDENCE_BROKEN
    return 0


def cmd_cost(args: argparse.Namespace, make: MakeClient) -> int:
    """Offline: reads only the registry and the dated price file, never AWS."""
    from admin import cost

    customer = registered_customer(args.registry, args.slug, error=AdminError)
    volumes = cost.Volumes(
        stored_gb=args.stored_gb, uploaded_gb=args.uploaded_gb,
        files_uploaded=args.files_uploaded, downloaded_gb=args.downloaded_gb,
        files_downloaded=args.files_downloaded, overwritten_fraction=args.overwritten_fraction)
    try:
        prices = cost.load_prices(args.prices)
    except (OSError, ValueError) as err:
        raise AdminError(f"price file {args.prices}: {err}") from None
    if args.json:
        items = cost.estimate(customer, volumes, prices)
        print(json.dumps({"customer": args.slug, "as_of": prices["as_of"],
                          "region": prices["region"], "currency": prices["currency"],
                          "items": [vars(i) for i in items],
                          "total": round(cost.total(items), 2)}, indent=2))
    else:
        print(cost.render(customer, volumes, prices))
    return 0


def cmd_placement(args: argparse.Namespace, make: MakeClient) -> int:
    """Offline: reads only the registry and the accounts file."""
    from admin import placement as report_placement
    from phi_core import placement

    directory = registry_dir(args.registry)
    customers = healthy_customers(args.registry)
    try:
        accounts = report_placement.accounts_for(directory, args.accounts)
    except placement.PlacementError as err:
        raise AdminError("; ".join(err.problems)) from None
    slug = args.for_slug or args.assign
    if slug is None:
        report = report_placement.survey(customers, accounts)
        if args.json:
            print(json.dumps(report_placement.as_json(report), indent=2))
        else:
            print(report_placement.render(report))
        for problem in [*report.unplaced, *report.exceeded]:
            print(f"{PROG}: {problem}", file=sys.stderr)
        return 1 if report.unplaced or report.exceeded else 0
    customer = registered_customer(args.registry, slug, error=AdminError)
    if args.assign and not accounts.source:
        raise AdminError(f"{slug}: account: nothing to record without an accounts file "
                         f"({directory.parent / placement.ACCOUNTS_FILE}): every customer is in "
                         "the one account the CLI deploys to")
    if customer.account is not None:
        print(f"{slug} is placed in {customer.account} ({customer.source_file}); moving a "
              "customer means a new bucket and key there: not something this command does")
        return 0 if args.for_slug else 1
    label = report_placement.propose_for(customer, customers, accounts)
    if label is None:
        raise AdminError(f"{slug}: account: fits in no exchange account of "
                         f"{accounts.source or 'the registry'} (see 'phi-exchange-admin "
                         "placement'); add an account or request the quotas it lacks")
    chosen = accounts.get(label)
    assert chosen is not None
    if args.assign:
        try:
            report_placement.record(Path(customer.source_file), label)
        except (OSError, ValueError) as err:
            raise AdminError(str(err)) from None
        print(f"{slug}: placed in {chosen.described}; recorded in {customer.source_file}")
    else:
        print(f"{slug}: fits best in {chosen.described}")
    return 0


# --- helpers --------------------------------------------------------------------------------


def _data_bucket(slug: str, s3: Any, make: MakeClient) -> str:
    """The customer's data bucket in the caller's account and the client's region."""
    region = s3.meta.region_name
    if not region:
        raise AdminError("no region: pass --region (the customer stack's region)")
    account = str(make("sts").get_caller_identity()["Account"])
    return naming.data_bucket_name(slug, account, region)


def _importer_rows(dsn: str) -> Callable[[str, str], dict[str, dict[str, Any]]]:
    def rows(bucket: str, key: str) -> dict[str, dict[str, Any]]:
        try:
            import psycopg

            from importer.store import custody_chain, gate_chain
        except ImportError:
            raise AdminError("--dsn needs psycopg: pip install 'psycopg[binary]'") from None
        try:
            with psycopg.connect(dsn, connect_timeout=10) as conn:
                found = custody_chain(conn, bucket, key)
                # A version stopped at the malware gate has no custody row, only its gate's.
                for version_id, gate in gate_chain(conn, bucket, key).items():
                    found.setdefault(version_id, {})["gate"] = gate
                return found
        except psycopg.Error as err:
            raise AdminError("importer database: " + " ".join(str(err).split())) from None

    return rows



def _iam_user_customer(registry: str | None, slug: str) -> CustomerConfig:
    customer = registered_customer(registry, slug, error=AdminError)
    if customer.access is not AccessMode.IAM_USER:
        raise AdminError(f"customer {slug!r} uses access = '{customer.access.value}'; only "
                         "'iam-user' customers have an access key of ours")
    return customer


def _unfinished_versions(described: dict[str, Any]) -> list[str]:
    return [version for version, stages in described.get("VersionIdsToStages", {}).items()
            if "AWSPENDING" in stages and "AWSCURRENT" not in stages]


def _write_private(path: Path, text: str) -> None:
    try:
        write_private(path, text)
    except PrivateFileError as err:
        raise AdminError(str(err)) from None


def _format_report(report: CustomerReport) -> str:
    lines = [f"{report.slug}: user {report.user_name}, secret {report.secret_name}"]
    if report.problem and not report.keys:
        return "\n".join([*lines, f"  {report.problem}"])
    if not report.rotation_enabled:
        lines.append("  rotation: not enabled on the secret")
    else:
        last = report.last_rotated.strftime("%Y-%m-%d") if report.last_rotated else "never"
        upcoming = "unknown"
        if report.next_rotation and report.days_to_rotation is not None:
            upcoming = (f"{report.next_rotation:%Y-%m-%d} "
                        f"(in {report.days_to_rotation} days)")
        lines.append(f"  rotation: every {report.interval_days} days; last {last}, "
                     f"next {upcoming}")
    if report.problem:
        lines.append(f"  problem: {report.problem}")
    lines.append(f"  {'KEY ID':<22}{'STATUS':<10}{'AGE':>8}  STATE")
    for key in report.keys:
        lines.append(f"  {key.access_key_id:<22}{key.status:<10}{key.age_days:>6} d  "
                     f"{key.state}")
    return "\n".join(lines)


def _client_error_line(err: ClientError) -> str:
    error = err.response.get("Error", {})
    message = " ".join(str(error.get("Message", "")).split())
    return f"{err.operation_name}: {error.get('Code', 'Error')}: {message}"


# --- parsing and the entry point ------------------------------------------------------------


def _add_global_options(parser: argparse.ArgumentParser, *, on_command: bool) -> None:
    # Accepted before and after the command; after it, an option left out keeps the value
    # given (or defaulted) before it.
    def default(value: str | None) -> str | None:
        return argparse.SUPPRESS if on_command else value

    parser.add_argument("--registry", metavar="DIR", default=default(None),
                        help="customer registry directory (default: $PHI_EXCHANGE_REGISTRY, "
                        "else the project's customers/)")
    parser.add_argument("--region", default=default(None),
                        help="AWS region (default: from the environment or profile)")
    parser.add_argument("--profile", default=default(None),
                        help="AWS profile (default: the default credential chain)")
    parser.add_argument("--endpoint-url", default=default(None),
                        help="endpoint URL for every service, e.g. a local emulator")


def _time(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-12-01T09:30:00Z)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def botocore_error_line(err: BotoCoreError) -> str:
    """What to do about a failure before any request reached AWS, in one line."""
    if isinstance(err, NoRegionError):
        return ("no AWS region: pass --region REGION, or set AWS_REGION (or a region in your "
                "AWS profile)")
    if isinstance(err, NoCredentialsError):
        return ("no AWS credentials: pass --profile NAME or set AWS_PROFILE, or set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if isinstance(err, ProfileNotFound):
        return f"{err}: check --profile / AWS_PROFILE against ~/.aws/config"
    if isinstance(err, EndpointConnectionError):
        return f"{err}: check --endpoint-url, the region and the network"
    return str(err)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Operator commands for partners' access keys and custody.")
    _add_global_options(parser, on_command=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    rotate = commands.add_parser("rotate", help="rotate a customer's access key now")
    rotate.add_argument("slug", metavar="SLUG")
    rotate.set_defaults(run=cmd_rotate)

    credentials = commands.add_parser(
        "credentials", help="show the current access key for hand-over (terminal or --output)")
    credentials.add_argument("slug", metavar="SLUG")
    credentials.add_argument("--output", metavar="FILE", type=Path,
                             help="write to FILE, created with mode 0600; never overwrites")
    credentials.set_defaults(run=cmd_credentials)

    keys = commands.add_parser("keys", help="every iam-user customer's keys and their state")
    keys.add_argument("--json", action="store_true", help="machine-readable output")
    keys.set_defaults(run=cmd_keys)

    custody = commands.add_parser(
        "custody", help="an object's chain of custody: versions, uploaders, checksums, import")
    custody.add_argument("slug", metavar="SLUG")
    custody.add_argument("key", metavar="KEY", nargs="?",
                         help="object key, e.g. inbound/claims.csv (default: found from "
                         "--local-file in the --manifest files)")
    custody.add_argument("--version-id", help="show this version only (default: every one)")
    custody.add_argument("--local-file", type=Path, metavar="PATH",
                         help="compare this file's checksum with every version")
    custody.add_argument("--manifest", type=Path, metavar="PATH", action="append", default=[],
                         help="a client custody manifest (manifest.jsonl); repeatable")
    custody.add_argument("--dsn", help="the importer's database (default: not consulted)")
    custody.add_argument("--bucket", help="the bucket (default: the customer's data bucket "
                         "in the caller's account and region)")
    custody.add_argument("--verify-bytes", action="store_true",
                         help="also read each version and recompute its checksum")
    custody.add_argument("--json", action="store_true", help="machine-readable output (JSON "
                         "lines with --prefix)")
    custody.add_argument("--prefix", metavar="P", help="every event on keys under P in the "
                         "time range --since/--until (a table, or JSON lines with --json); "
                         "'' for the whole bucket")
    custody.add_argument("--since", type=_time, metavar="T", help="start of the window, ISO "
                         "8601 (default: an hour before the object's first version)")
    custody.add_argument("--until", type=_time, metavar="T", help="end of the window "
                         "(default: two hours after its last version, or now)")
    custody.add_argument("--trail", default=naming.TRAIL_NAME,
                         help=f"the audit trail (default {naming.TRAIL_NAME})")
    custody.add_argument("--no-trail", action="store_true",
                         help="do not read AWS's records (CloudTrail, access logs)")
    custody.add_argument("--source", choices=("custody-bucket", "athena"),
                         default="custody-bucket", help="where CloudTrail events are read "
                         "(default: the trail's custody bucket; athena for large estates, "
                         "docs/custody.md)")
    custody.add_argument("--athena-table", metavar="DB.TABLE",
                         help="the CloudTrail table (with --source athena)")
    custody.add_argument("--athena-workgroup", default="primary",
                         help="Athena workgroup (default primary)")
    custody.add_argument("--athena-output", metavar="S3URI",
                         help="query result location (default: the workgroup's)")
    custody.add_argument("--athena-table-ddl", action="store_true",
                         help="print the CREATE TABLE statement of --athena-table for the "
                         "trail's log files (partitioned by day from --since, default "
                         "2020-01-01), and exit")
    custody.set_defaults(run=cmd_custody)

    cost = commands.add_parser(
        "cost", help="a customer's itemized monthly AWS cost, from stated volumes (offline)")
    cost.add_argument("slug", metavar="SLUG")
    for name, kind, default, what in [
        ("--stored-gb", float, None, "GB kept in the bucket (current versions)"),
        ("--uploaded-gb", float, None, "GB the partner sends per month"),
        ("--files-uploaded", int, None, "files the partner sends per month"),
        ("--downloaded-gb", float, 0.0, "GB the partner fetches per month (default 0)"),
        ("--files-downloaded", int, 0, "files the partner fetches per month (default 0)"),
        ("--overwritten-fraction", float, 0.0,
         "share of stored data replaced per month, kept as noncurrent versions (default 0)"),
    ]:
        cost.add_argument(name, type=kind, default=default, required=default is None,
                          help=what)
    cost.add_argument("--prices", type=Path, default=None,
                      help="dated price file (default: pricing/us-east-1.toml)")
    cost.add_argument("--json", action="store_true", help="machine-readable output")
    cost.set_defaults(run=cmd_cost)

    placement = commands.add_parser(
        "placement", help="quota use per exchange account, and where a new customer fits "
        "(offline)")
    placement.add_argument("--accounts", type=Path, default=None,
                           help="the accounts file (default: accounts.toml next to the "
                           "registry; none: one account, the deploying credentials')")
    which = placement.add_mutually_exclusive_group()
    which.add_argument("--for", dest="for_slug", metavar="SLUG",
                       help="propose the exchange account for this registered customer")
    which.add_argument("--assign", metavar="SLUG",
                       help="propose, and record it as the customer file's account field")
    placement.add_argument("--json", action="store_true", help="machine-readable output")
    placement.set_defaults(run=cmd_placement)

    lifecycle = lifecycle_cli.add_commands(commands)  # onboard, offboard, status

    for sub in (rotate, credentials, keys, custody, cost, placement, *lifecycle):
        _add_global_options(sub, on_command=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = AwsOptions(region=args.region, profile=args.profile,
                         endpoint_url=args.endpoint_url)

    def make(service: str) -> Any:
        return make_client(service, options)

    try:
        return int(args.run(args, make))
    except (RegistryError, AdminError, LifecycleError) as err:
        print(f"{PROG}: {err}", file=sys.stderr)
    except ClientError as err:
        print(f"{PROG}: {_client_error_line(err)}", file=sys.stderr)
    except BotoCoreError as err:
        print(f"{PROG}: {botocore_error_line(err)}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 1


if __name__ == "__main__":
    sys.exit(main())
