"""The partner lifecycle subcommands of ``phi-exchange-admin``: ``onboard``, ``offboard`` and
``status``. ``admin/cli.py`` adds them with :func:`add_commands`; each handler takes the parsed
arguments (with the global ``--registry``, ``--region``, ``--profile``, ``--endpoint-url``)
and ``make(service)``, the CLI's one client factory, and raises :class:`LifecycleError` for an
expected refusal (one line on stderr, exit status 1).

    phi-exchange-admin onboard SLUG [--output DIR] [--outputs-file FILE] [--access-key-id ID]
                                    [--receipt-public-key FILE] [--support-contact TEXT ...]
    phi-exchange-admin offboard SLUG [--export-custody FILE] [--dry-run] [--yes]
    phi-exchange-admin status [--json] [--manifest PATH ...] [--dsn DSN] [--max-listed N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from admin.registry import healthy_customers, registered_customer
from admin.stack_outputs import (
    LifecycleError,
    StackOutputs,
    describe_outputs,
    identity_mismatches,
    read_outputs_file,
    require_current,
)
from phi_core import naming
from phi_core import secret as secret_schema
from stacks.config import AccessMode, CustomerConfig

MakeClient = Callable[[str], Any]
PROG = "phi-exchange-admin"


def add_commands(commands: Any) -> list[argparse.ArgumentParser]:
    """Add ``onboard``, ``offboard`` and ``status`` to an argparse subparsers object; returns
    the three parsers (so the caller can add its global options to each)."""
    onboard = commands.add_parser(
        "onboard", help="write a partner kit (bookmarks, client profile, instructions); "
        "never a secret")
    onboard.add_argument("slug", metavar="SLUG")
    onboard.add_argument("-o", "--output", type=Path, metavar="DIR",
                         help="kit folder (default: ./<SLUG>-partner-kit); an earlier kit there "
                         "is replaced, anything else is refused")
    onboard.add_argument("--outputs-file", type=Path, metavar="FILE",
                         help="read the stack outputs from this `cdk deploy --outputs-file` "
                         "JSON, offline (default: describe stack PhiExchange-<SLUG>)")
    onboard.add_argument("--access-key-id", metavar="ID",
                         help="iam-user: the partner's current access key id (default: read "
                         "from the partner secret when online; none offline)")
    onboard.add_argument("--receipt-public-key", type=Path, metavar="FILE",
                         help="the receipt signing key's public key (PEM) for the kit (default: "
                         f"online, KMS GetPublicKey of {naming.RECEIPT_SIGNING_KEY_ALIAS}; "
                         "offline, none: the kit then says the key will follow)")
    onboard.add_argument("--support-contact", action="append", default=[], metavar="TEXT",
                         help="who the partner contacts at our side; repeatable (default: "
                         "'the operator who sent you this kit')")
    onboard.set_defaults(run=cmd_onboard)

    offboard = commands.add_parser(
        "offboard", help="revoke a partner's access now; keep its data, key and logs")
    offboard.add_argument("slug", metavar="SLUG")
    offboard.add_argument("--export-custody", type=Path, metavar="FILE",
                          help="also write a final custody report (JSON, mode 0600, never "
                          "overwritten) after revoking")
    offboard.add_argument("--dry-run", action="store_true",
                          help="say what would be done, change nothing")
    offboard.add_argument("--yes", action="store_true",
                          help="do not ask for confirmation (required when not in a terminal)")
    offboard.set_defaults(run=cmd_offboard)

    status = commands.add_parser(
        "status", help="every customer: access mode, state, key age, days to rotation, "
        "last upload")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--manifest", type=Path, metavar="PATH", action="append", default=[],
                        help="a client custody manifest to read uploads from; repeatable")
    status.add_argument("--dsn", help="the importer's database, for the last imported upload "
                        "(default: not consulted)")
    status.add_argument("--max-listed", type=int, default=10_000, metavar="N",
                        help="list at most N objects per bucket for the last upload "
                        "(default: 10000)")
    status.set_defaults(run=cmd_status)
    return [onboard, offboard, status]


# --- onboard --------------------------------------------------------------------------------


def cmd_onboard(args: argparse.Namespace, make: MakeClient) -> int:
    from admin import onboarding

    customer = _registered(args.registry, args.slug)
    if getattr(customer, "offboarded", False):
        raise LifecycleError(f"customer {customer.slug!r} is offboarded in the registry: no kit")
    given_key = (onboarding.validate_access_key_id(args.access_key_id)
                 if args.access_key_id else None)
    known_secrets: list[str] = []
    next_rotation: date | None = None
    if args.outputs_file is not None:
        outputs = read_outputs_file(args.outputs_file, customer.slug)
        key_id = given_key
    else:
        found = describe_outputs(make("cloudformation"), customer.slug)
        if found is None:
            raise LifecycleError(f"stack {naming.stack_name(customer.slug)} does not exist: "
                                 f"deploy first (cdk deploy CustomerStack -c "
                                 f"customer={customer.slug}), or pass --outputs-file")
        outputs = found
        key_id = None
        if outputs.access is AccessMode.IAM_USER and not outputs.offboarded:
            key_id, known_secrets, next_rotation = _current_key(outputs, make, given_key)
    if outputs.offboarded:
        raise LifecycleError(f"{outputs.source} is offboarded (it grants nothing): no kit")
    require_current(customer, outputs)
    if key_id and outputs.access is not AccessMode.IAM_USER:
        raise LifecycleError(f"--access-key-id applies to iam-user customers only; "
                             f"{customer.slug} uses {outputs.access.value}")
    receipt_key, receipt_note = _receipt_key(args, outputs, make)
    inputs = onboarding.KitInputs(customer=customer, outputs=outputs, access_key_id=key_id,
                                  support_contacts=tuple(args.support_contact),
                                  next_rotation=next_rotation, receipt_public_key=receipt_key)
    directory = args.output or Path(f"{customer.slug}-partner-kit")
    written = onboarding.write_kit(directory, onboarding.kit_files(inputs),
                                   known_secrets=known_secrets)
    print(f"partner kit for {customer.slug} ({outputs.access.value}) written to {directory}: "
          + ", ".join(p.name for p in written))
    if receipt_note:
        print(receipt_note)
    if outputs.access is AccessMode.IAM_USER:
        if not key_id:
            print("note: no access key id in the kit (offline run without --access-key-id): "
                  "the desktop-client files ask the partner for it")
        print("The kit holds no secret. Hand the secret access key over separately, through "
              f"the agreed secure channel: {PROG} credentials {customer.slug} --output "
              f"{onboarding.credentials_file_name(customer.slug)}")
    else:
        print("The kit holds no secret. The partner attaches partner-iam-policy.json on its "
              "side (see README.md in the kit).")
    return 0


def _receipt_key(args: argparse.Namespace, outputs: StackOutputs,
                 make: MakeClient) -> tuple[bytes | None, str]:
    """The receipt key's public half for the kit (PEM), and the line that says what the kit
    holds. Only a partner that sends gets receipts. ``--receipt-public-key`` is used as given;
    online, KMS ``GetPublicKey`` by the key's alias; offline, or when KMS cannot give it (the
    audit stack not deployed, the key of the wrong kind, no ``kms:GetPublicKey``), the kit is
    written without it and the line says so and what to do: the key is not needed to connect,
    and a later kit carries it."""
    from admin import onboarding

    if not outputs.inbound_prefix:
        return None, ""
    alias = naming.RECEIPT_SIGNING_KEY_ALIAS
    if args.receipt_public_key is not None:
        try:
            data = args.receipt_public_key.read_bytes()
        except OSError as err:
            raise LifecycleError(f"--receipt-public-key {args.receipt_public_key}: "
                                 f"{err.strerror or err}") from None
        pem = onboarding.receipt_key_pem(data, f"--receipt-public-key {args.receipt_public_key}")
        source = str(args.receipt_public_key)
    elif args.outputs_file is not None:
        return None, (f"note: no {onboarding.RECEIPT_KEY_FILE} in the kit (offline run without "
                      "--receipt-public-key): the partner cannot verify receipts until it has "
                      f"the key; send a kit made online, or pass the PEM of {alias}")
    else:
        try:
            der = make("kms").get_public_key(KeyId=alias)["PublicKey"]
            pem = onboarding.receipt_key_pem(bytes(der), f"KMS key {alias}")
        except (ClientError, LifecycleError) as err:
            reason = (err.response.get("Error", {}).get("Code", "") if isinstance(
                err, ClientError) else str(err))
            return None, (f"warning: no {onboarding.RECEIPT_KEY_FILE} in the kit: cannot read "
                          f"the public key of {alias} ({reason}); deploy the audit stack (it "
                          f"creates the key) and grant kms:GetPublicKey, then run onboard again "
                          f"before the partner relies on receipts")
        source = f"KMS {alias}"
    fingerprint = onboarding.receipt_key_fingerprint(pem)
    return pem, (f"receipt key ({source}) in {onboarding.RECEIPT_KEY_FILE}, SHA-256 "
                 f"{fingerprint} (the kit's README gives it; read it to the partner on request)")


def _current_key(outputs: StackOutputs, make: MakeClient,
                 given: str | None) -> tuple[str, list[str], date | None]:
    """The partner's current access key id, the secret values the kit must not contain, and
    the next rotation date. With ``given``, the id is checked against IAM and the secret is
    not read at all."""
    sm = make("secretsmanager")
    secret_id = outputs.secret_arn or naming.partner_secret_name(outputs.slug)
    described = sm.describe_secret(SecretId=secret_id)
    next_rotation = described.get("NextRotationDate") if described.get("RotationEnabled") else None
    next_day = next_rotation.date() if isinstance(next_rotation, datetime) else None
    user = outputs.user_name or naming.partner_user_name(outputs.slug)
    if given:
        active = {k["AccessKeyId"] for k in make("iam").list_access_keys(
            UserName=user)["AccessKeyMetadata"] if k["Status"] == "Active"}
        if given not in active:
            raise LifecycleError(f"{given} is not an active access key of {user} (active: "
                                 f"{', '.join(sorted(active)) or 'none'})")
        return given, [], next_day
    try:
        value = sm.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        raise LifecycleError(f"cannot read the partner secret {secret_id} ({code}) to find the "
                             f"current access key id: pass --access-key-id (see {PROG} keys)"
                             ) from None
    try:
        key = secret_schema.parse_secret_string(
            value.get("SecretString"),
            require=(secret_schema.ACCESS_KEY_ID, secret_schema.SECRET_ACCESS_KEY))
    except secret_schema.SecretError:
        raise LifecycleError(f"secret {secret_id} does not hold an access key document "
                             "(see docs/rotation.md)") from None
    return key.access_key_id, [key.secret_access_key], next_day


# --- offboard -------------------------------------------------------------------------------


def cmd_offboard(args: argparse.Namespace, make: MakeClient,
                 confirm: Callable[[str], str] | None = None) -> int:
    from admin import offboarding

    customer = _registered(args.registry, args.slug)
    outputs = describe_outputs(make("cloudformation"), customer.slug)
    if outputs is None:
        raise LifecycleError(f"stack {naming.stack_name(customer.slug)} does not exist: there "
                             "is no access to revoke")
    wrong = identity_mismatches(customer, outputs)
    if wrong:
        raise LifecycleError("; ".join(wrong) + ": refusing to guess what to revoke")
    steps = offboarding.plan(customer, outputs)
    if args.dry_run:
        print(f"offboard {customer.slug} would:")
        print("\n".join(f"  - {step}" for step in steps))
        return 0
    export: Path | None = args.export_custody
    if export is not None and export.exists():
        raise LifecycleError(f"{export} already exists; refusing to overwrite it")
    if not args.yes:
        _confirm(customer.slug, steps, confirm)
    result = offboarding.offboard(customer, outputs, s3=make("s3"), iam=make("iam"),
                                  secretsmanager=make("secretsmanager"))
    print(f"{customer.slug}: " + ("access revoked now." if not result.failures else
                                  "access revoked only in part: see the failures below."))
    print("\n".join(f"  - {action}" for action in result.actions))
    for failure in result.failures:
        print(f"  - FAILED: {failure}")
    if export is not None:
        report = offboarding.custody_report(customer, outputs, result, s3=make("s3"),
                                            now=datetime.now(UTC))
        offboarding.write_private_json(export, report)
        print(f"final custody report: {export} (mode 0600; "
              f"{report['summary']['object_versions']} object versions listed)")
    print("To make it permanent:")
    print("\n".join(f"  {n}. {step}" for n, step in enumerate(result.next_steps, 1)))
    if result.failures:
        raise LifecycleError(f"{len(result.failures)} offboarding step(s) failed (listed above); "
                             "fix the cause and run the same command again (it is idempotent)")
    return 0


def _confirm(slug: str, steps: Sequence[str],
             confirm: Callable[[str], str] | None) -> None:
    if confirm is None:
        if not sys.stdin.isatty():
            raise LifecycleError("offboard changes access now: pass --yes (or run it in a "
                                 "terminal to confirm), or --dry-run to see what it would do")
        confirm = input
    print(f"offboard {slug} will:")
    print("\n".join(f"  - {step}" for step in steps))
    if confirm(f"Type {slug} to revoke its access now: ").strip() != slug:
        raise LifecycleError("not confirmed; nothing was changed")


# --- status ---------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace, make: MakeClient) -> int:
    from admin import status

    if args.max_listed < 1:
        raise LifecycleError("--max-listed must be at least 1")
    registry = healthy_customers(args.registry)
    now = datetime.now(UTC)
    clients = {name: make(name) for name in ("cloudformation", "s3", "iam", "secretsmanager")}
    with contextlib.ExitStack() as stack:
        importer = _importer_lookup(args.dsn, stack) if args.dsn else None
        statuses = [status.customer_status(
            customer, cloudformation=clients["cloudformation"], s3=clients["s3"],
            iam=clients["iam"], secretsmanager=clients["secretsmanager"], now=now,
            importer=importer, manifests=args.manifest, max_listed=args.max_listed)
            for customer in sorted(registry.values(), key=lambda c: c.slug)]
    if args.json:
        print(json.dumps([s.to_json() for s in statuses], indent=2))
    else:
        print(status.format_status(statuses, now=now))
    return 0


def _importer_lookup(dsn: str, stack: contextlib.ExitStack) -> Callable[[str, str], Any]:
    """The newest imported upload per (customer, bucket), over one connection that ``stack``
    closes."""
    from admin import status

    try:
        import psycopg
    except ImportError:
        raise LifecycleError("--dsn needs psycopg: pip install 'psycopg[binary]'") from None
    try:
        conn = stack.enter_context(psycopg.connect(dsn, connect_timeout=10, autocommit=True))
    except psycopg.Error as err:
        raise LifecycleError("importer database: " + " ".join(str(err).split())) from None

    def lookup(customer: str, bucket: str) -> status.LastUpload | None:
        try:
            return status.last_imported_upload(conn, customer, bucket)
        except psycopg.Error as err:
            raise LifecycleError("importer database: " + " ".join(str(err).split())) from None

    return lookup


# --- helpers --------------------------------------------------------------------------------


def _registered(registry: str | None, slug: str) -> CustomerConfig:
    return registered_customer(registry, slug, error=LifecycleError)
