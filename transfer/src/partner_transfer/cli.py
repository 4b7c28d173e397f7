"""The ``partner-transfer`` command. Every expected failure prints one line and exits with its
class's code (see :class:`~partner_transfer.errors.ExitCode`); ``--debug`` adds tracebacks."""

from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol, TextIO

from partner_transfer import __version__
from partner_transfer.api import Client
from partner_transfer.errors import ErrorContext, ExitCode, TransferError, classify
from partner_transfer.options import Options
from partner_transfer.profile import (
    MIB,
    AuthMethod,
    Profile,
    find_profile_path,
    load_profile,
    make_tuning,
    profile_from_outputs,
    profile_from_secret,
    read_secret_file,
    read_stack_outputs_file,
    render_profile,
)
from partner_transfer.progress import make_reporter
from partner_transfer.results import FileResult

# Summary counts: what happened first, then what did not.
_SUMMARY_ORDER = {"ok": 0, "skipped": 1, "match": 2, "failed": 3, "refused": 4}
MAX_FAILURE_LINES = 20  # per-file failure lines printed; the custody manifest has them all
_VERBS = {
    "ok": {"upload": "uploaded", "download": "downloaded"},
    "skipped": {"upload": "unchanged", "download": "unchanged"},
}


class Console(Protocol):
    """Where lines go: a rich ``Console`` on a terminal (and in tests), else :class:`_Plain`."""

    @property
    def is_terminal(self) -> bool: ...

    def print(self, *objects: Any, **kwargs: Any) -> None: ...


class _Plain:
    """Plain lines to a stream, for pipes and scripts, where rich's start-up cost buys
    nothing (no colours, no bar). Takes rich's ``print`` keywords and ignores the styling."""

    is_terminal = False

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def print(self, *objects: Any, end: str = "\n", **_: Any) -> None:
        self._stream.write(" ".join(str(o) for o in objects) + end)
        self._stream.flush()


def _console(stream: TextIO, *, stderr: bool) -> Console:
    if not stream.isatty():
        return _Plain(stream)
    from rich.console import Console as RichConsole

    return RichConsole(stderr=stderr, soft_wrap=True)


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors on one line with exit code 2."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(ExitCode.USAGE, f"{self.prog}: error: {message} (see --help)\n")


def human(n: int | None) -> str:
    """Bytes in binary units: ``1536`` -> ``"1.5 KiB"``."""
    if n is None:
        return "?"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _common(quiet_ok: bool = True) -> _Parser:
    p = _Parser(add_help=False)
    p.add_argument(
        "--profile",
        help="connection profile (TOML); default: $PARTNER_TRANSFER_PROFILE",
    )
    if quiet_ok:
        p.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    p.add_argument("--debug", action="store_true", help="log requests and show tracebacks")
    p.add_argument("--state-dir", type=Path, help="resume journals (default: from the profile)")
    p.add_argument(
        "--manifest", type=Path, help="custody manifest file (default: from the profile)"
    )
    return p


def _tuning() -> _Parser:
    p = _Parser(add_help=False)
    p.add_argument("--concurrency", type=int, help="parallel requests (default: profile, 8)")
    p.add_argument("--part-size", type=int, metavar="MIB", help="part size in MiB (default: 16)")
    p.add_argument("--retry-mode", choices=["standard", "adaptive"], help="default: standard")
    p.add_argument("--max-attempts", type=int, help="attempts per request (default: 5)")
    p.add_argument("--dry-run", action="store_true", help="say what would happen, change nothing")
    return p


def _filters() -> _Parser:
    p = _Parser(add_help=False)
    p.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="GLOB",
        help="only files whose relative path or name matches (repeatable)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="GLOB",
        help="skip files whose relative path or name matches (repeatable)",
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="partner-transfer",
        description="Send and fetch files in your exchange bucket, verified end to end.",
    )
    parser.add_argument("--version", action="version", version=f"partner-transfer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    common, tuning, filters = _common(), _tuning(), _filters()

    up = sub.add_parser("upload", parents=[common, tuning, filters], help="upload files/folders")
    up.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    up.add_argument("--to", metavar="PREFIX", help="key prefix (default: the inbound prefix)")
    up.add_argument(
        "--commit-manifest",
        action="store_true",
        help="after every file succeeded, upload the batch manifest last",
    )

    down = sub.add_parser("download", parents=[common, tuning], help="download a key or prefix")
    down.add_argument("source", metavar="KEY|PREFIX/")
    # A string, not a Path: "dir/" must keep its separator (download into that folder).
    down.add_argument("dest", metavar="DEST", help="file, or folder (created) ending in /")
    down.add_argument(
        "--allow-unverified",
        action="store_true",
        help="accept objects without a full-object checksum (not recommended)",
    )

    sync = sub.add_parser("sync", help="upload or download only what differs (by checksum)")
    sync_sub = sync.add_subparsers(dest="direction", required=True, parser_class=_Parser)
    sync_up = sync_sub.add_parser("up", parents=[common, tuning, filters], help="local -> S3")
    sync_up.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    sync_up.add_argument("--to", metavar="PREFIX", help="key prefix (default: inbound prefix)")
    sync_up.add_argument(
        "--commit-manifest",
        action="store_true",
        help="after every file succeeded, upload the batch manifest last",
    )
    sync_down = sync_sub.add_parser("down", parents=[common, tuning], help="S3 -> local")
    sync_down.add_argument("source", metavar="KEY|PREFIX/")
    sync_down.add_argument("dest", metavar="DEST")
    sync_down.add_argument(
        "--allow-unverified",
        action="store_true",
        help="accept objects without a full-object checksum",
    )

    ver = sub.add_parser(
        "verify",
        parents=[common, filters],
        help="compare local files with S3's stored checksums, no download",
    )
    ver.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    ver.add_argument("--prefix", help="key prefix the files live under (default: inbound)")
    ver.add_argument("--concurrency", type=int, help="parallel requests (default: profile, 8)")

    ls = sub.add_parser("ls", parents=[common], help="list objects")
    ls.add_argument("prefix", nargs="?", help="default: every prefix the profile allows")

    clean = sub.add_parser("cleanup", parents=[common], help="abort interrupted uploads")
    clean.add_argument(
        "--remote", action="store_true", help="also abort uploads S3 holds under the upload prefix"
    )
    clean.add_argument(
        "--older-than-days",
        type=float,
        default=0,
        metavar="DAYS",
        help="only uploads started this long ago (default: 0, all)",
    )
    clean.add_argument("--dry-run", action="store_true", help="say what would be aborted")

    prof = sub.add_parser("profile", help="create or show a connection profile")
    prof_sub = prof.add_subparsers(dest="action", required=True, parser_class=_Parser)
    init = prof_sub.add_parser(
        "init",
        parents=[_common(quiet_ok=True)],
        help="write a profile from stack outputs or the rotation secret",
    )
    source = init.add_mutually_exclusive_group(required=True)
    source.add_argument("--stack", metavar="NAME", help="read outputs of this deployed stack")
    source.add_argument(
        "--outputs-file",
        type=Path,
        metavar="FILE",
        help="cdk deploy --outputs-file JSON (pick a stack with --stack-name)",
    )
    source.add_argument(
        "--from-secret",
        type=Path,
        metavar="FILE",
        help="the rotation secret JSON your operator sent (iam-user access)",
    )
    init.add_argument("--stack-name", help="stack in --outputs-file (default: the only one)")
    init.add_argument(
        "--credentials-file",
        type=Path,
        metavar="FILE",
        help="iam-user: the rotation secret JSON, referenced by path",
    )
    init.add_argument(
        "--aws-profile",
        metavar="NAME",
        help="AWS named profile for credentials (also used to read --stack)",
    )
    init.add_argument(
        "--certificate",
        type=Path,
        metavar="FILE",
        help="roles-anywhere: your client certificate (PEM), referenced by path",
    )
    init.add_argument(
        "--private-key",
        type=Path,
        metavar="FILE",
        help="roles-anywhere: the certificate's private key (PEM, RSA or EC, mode 600)",
    )
    init.add_argument(
        "--certificate-chain",
        type=Path,
        metavar="FILE",
        help="roles-anywhere: your CA's intermediate certificates (PEM; default: none)",
    )
    init.add_argument("--region", help="region of --stack (default: your AWS config)")
    init.add_argument("--endpoint-url", help="S3/STS endpoint for local runs (emulators)")
    init.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.add_argument(
        "--receipt-public-key",
        type=Path,
        metavar="FILE",
        help="the exchange's receipt key (your kit's receipt-public-key.pem), referenced by path",
    )
    show = prof_sub.add_parser("show", parents=[_common()], help="print the effective profile")
    del show

    rec = sub.add_parser("receipts", help="check the exchange's signed receipts of your uploads")
    rec_sub = rec.add_subparsers(dest="action", required=True, parser_class=_Parser)
    check = rec_sub.add_parser(
        "verify",
        parents=[common],
        help="verify every receipt offline and match them with your custody manifest",
    )
    check.add_argument(
        "--public-key",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="the exchange's receipt key (PEM); repeatable, e.g. the old and the new key during "
        "a key replacement (default: the profile's receipt_public_key)",
    )
    check.add_argument(
        "--since",
        type=_since,
        metavar="TIME",
        help="only uploads at or after this ISO 8601 time, UTC unless it names an offset "
        "(default: every upload in the manifest)",
    )
    check.add_argument(
        "--grace",
        type=_grace,
        default=DEFAULT_GRACE_MINUTES,
        metavar="MINUTES",
        help="an upload without a receipt is pending this long, then MISSING "
        f"(default: {DEFAULT_GRACE_MINUTES})",
    )
    return parser


DEFAULT_GRACE_MINUTES = 60


def _since(text: str) -> datetime:
    from partner_transfer.receipts import parse_time

    moment = parse_time(text)
    if moment is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time like 2026-11-28 or 2026-11-28T14:00Z"
        )
    return moment


def _grace(text: str) -> int:
    try:
        minutes = int(text)
    except ValueError:
        minutes = -1
    if minutes < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of minutes (0 or more)")
    return minutes


def _options(args: argparse.Namespace) -> Options:
    part = getattr(args, "part_size", None)
    return Options(
        concurrency=getattr(args, "concurrency", None),
        part_size=part * MIB if part else None,
        include=tuple(getattr(args, "include", []) or ()),
        exclude=tuple(getattr(args, "exclude", []) or ()),
        dry_run=bool(getattr(args, "dry_run", False)),
        allow_unverified=bool(getattr(args, "allow_unverified", False)),
        commit_manifest=bool(getattr(args, "commit_manifest", False)),
        state_dir=args.state_dir,
        manifest=args.manifest,
    )


def _load(args: argparse.Namespace) -> Profile:
    from dataclasses import replace

    profile = load_profile(find_profile_path(args.profile))
    tuning = make_tuning(
        concurrency=getattr(args, "concurrency", None),
        part_size_mib=getattr(args, "part_size", None),
        retry_mode=getattr(args, "retry_mode", None),
        max_attempts=getattr(args, "max_attempts", None),
        base=profile.tuning,
    )
    return replace(profile, tuning=tuning)


class _Printer:
    """Prints one line per file on stdout (unless quiet); failures are printed at the end."""

    def __init__(self, console: Console, quiet: bool) -> None:
        self.console = console
        self.quiet = quiet

    def __call__(self, o: FileResult) -> None:
        if self.quiet or o.error is not None or o.result in ("mismatch", "missing"):
            return
        verb = _VERBS.get(o.result, {}).get(o.direction, o.result)
        checksum = f"  {o.algorithm}={o.checksum}" if o.checksum else ""
        note = f"  ({o.note})" if o.note else ""
        where = o.key if o.direction in ("upload", "verify") else o.local_path
        source = o.local_path if o.direction in ("upload", "verify") else o.key
        self.console.print(
            f"{verb:<14} {source} -> {where}  {human(o.size)}{checksum}{note}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )


def _finish(results: list[FileResult], err: Console, started: float, quiet: bool) -> int:
    failures = [o for o in results if o.failed]
    for o in failures[1:MAX_FAILURE_LINES]:
        message = o.error.message if o.error else f"{o.result}: {o.local_path} vs {o.key}"
        err.print(f"partner-transfer: {message}", highlight=False, markup=False, soft_wrap=True)
    if not quiet and (len(results) > 1 or not failures):
        counts: dict[str, int] = {}
        for o in results:
            counts[o.result] = counts.get(o.result, 0) + 1
        total = sum(o.size or 0 for o in results if o.result == "ok")
        ordered = sorted(counts.items(), key=lambda item: _SUMMARY_ORDER.get(item[0], 99))
        parts = ", ".join(f"{n} {r}" for r, n in ordered)
        elapsed = time.monotonic() - started
        err.print(f"{parts}; {human(total)} in {elapsed:.1f} s", highlight=False, markup=False)
    Client.raise_for(failures)
    return ExitCode.OK


def _profile_init(args: argparse.Namespace, out: Console) -> int:
    from partner_transfer.clients import make_operator_client

    if args.output.exists() and not args.force:
        raise TransferError(ExitCode.USAGE, f"{args.output} exists: pass --force to overwrite it")
    cred_file = args.credentials_file.expanduser().resolve() if args.credentials_file else None
    receipt_key = (
        _receipt_key_path(args.receipt_public_key) if args.receipt_public_key else None
    )
    x509_paths = {
        name: path.expanduser().resolve() if path else None
        for name, path in (
            ("certificate", args.certificate),
            ("private_key", args.private_key),
            ("certificate_chain", args.certificate_chain),
        )
    }
    if args.from_secret:
        given = [f"--{n.replace('_', '-')}" for n, path in x509_paths.items() if path]
        if given:
            raise TransferError(
                ExitCode.USAGE,
                f"{', '.join(given)}: only for roles-anywhere access, not with --from-secret "
                "(iam-user access)",
            )
        secret_path = args.from_secret.expanduser().resolve()
        profile = profile_from_secret(
            read_secret_file(secret_path),
            secret_path,
            endpoint_url=args.endpoint_url,
            receipt_public_key=receipt_key,
        )
        origin = f"generated from the rotation secret {secret_path}"
    else:
        if args.stack:
            cfn = make_operator_client(
                "cloudformation",
                aws_profile=args.aws_profile,
                region=args.region,
                endpoint_url=args.endpoint_url,
            )
            try:
                stacks = cfn.describe_stacks(StackName=args.stack)["Stacks"]
            except Exception as exc:
                raise classify(exc, ErrorContext(operation="describe stack")) from None
            outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
            origin = f"generated from stack {args.stack}"
        else:
            outputs = read_stack_outputs_file(args.outputs_file, args.stack_name)
            origin = f"generated from {args.outputs_file}"
        profile = profile_from_outputs(
            outputs,
            aws_profile=args.aws_profile,
            credentials_file=cred_file,
            endpoint_url=args.endpoint_url,
            receipt_public_key=receipt_key,
            **x509_paths,
        )
    if profile.auth.method is AuthMethod.ROLES_ANYWHERE:
        from partner_transfer.clients import load_x509_material

        # Checked now, so a wrong file is found when the profile is written.
        load_x509_material(profile.auth)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render_profile(profile, comment=origin), encoding="utf-8")
    if not args.quiet:
        out.print(
            f"wrote {args.output} for {profile.customer} ({profile.auth.describe()})",
            highlight=False,
            markup=False,
        )
    return ExitCode.OK


def _receipt_key_path(path: Path) -> Path:
    """An absolute path to a PEM that holds the exchange's receipt key (checked now, so a wrong
    file is found when the profile is written, not when receipts are first verified)."""
    from partner_transfer.receipt_check import read_public_keys

    resolved = path.expanduser().resolve()
    read_public_keys([resolved])
    return resolved


def _receipts_verify(
    args: argparse.Namespace, out: Console, err: Console, quiet: bool
) -> int:
    """``receipts verify``: one line per finding (problems on stderr, the rest on stdout unless
    quiet), a summary, and the exit status of :func:`partner_transfer.receipt_check.exit_status`."""
    from partner_transfer import receipt_check, receipts

    profile = _load(args)
    paths = list(args.public_key) or (
        [profile.receipt_public_key] if profile.receipt_public_key else []
    )
    if not paths:
        raise TransferError(
            ExitCode.USAGE,
            "no receipt public key: pass --public-key FILE (your onboarding kit's "
            "receipt-public-key.pem) or set receipt_public_key in the connection profile",
        )
    keys = receipt_check.read_public_keys(paths)
    client = Client(profile, _options(args))
    report = client.check_receipts(keys, grace=timedelta(minutes=args.grace), since=args.since)
    for finding in report.findings:
        if finding.problem:
            err.print(finding.line, highlight=False, markup=False, soft_wrap=True)
        elif not quiet:
            out.print(finding.line, highlight=False, markup=False, soft_wrap=True)
    if not quiet:
        counts: dict[str, int] = {}
        for finding in report.findings:
            counts[finding.label] = counts.get(finding.label, 0) + 1
        ordered = sorted(counts.items(), key=lambda item: receipts.REPORT_ORDER.index(item[0]))
        found = ", ".join(f"{n} {label}" for label, n in ordered) or "nothing to check"
        since = f" since {args.since.isoformat()}" if args.since else ""
        prints = ", ".join(receipts.fingerprint(k) for k in keys)
        err.print(
            f"receipts{since}: {found}; {report.receipts_read} receipt(s) read from "
            f"s3://{profile.bucket}/{receipt_check.RECEIPTS_PREFIX}, checked against "
            f"{client.manifest_path}; exchange key SHA-256 {prints}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    return receipt_check.exit_status(report)


def run(
    argv: Sequence[str] | None = None, *, out: Console | None = None, err: Console | None = None
) -> int:
    """Parse ``argv`` and run the command; returns the exit code (raises only SystemExit)."""
    out = out or _console(sys.stdout, stderr=False)
    err = err or _console(sys.stderr, stderr=True)
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet = bool(getattr(args, "quiet", False))
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(asctime)s %(name)s %(message)s")
    started = time.monotonic()
    try:
        if args.command == "profile":
            if args.action == "init":
                return _profile_init(args, out)
            profile = load_profile(find_profile_path(args.profile))
            out.print(render_profile(profile), highlight=False, markup=False, end="")
            return ExitCode.OK
        if args.command == "receipts":
            return _receipts_verify(args, out, err, quiet)
        profile = _load(args)
        options = _options(args)
        reporter = make_reporter(err, quiet=quiet)
        client = Client(profile, options, reporter=reporter, on_outcome=_Printer(out, quiet))
        if args.command == "upload":
            results = client.upload(args.paths, args.to)
        elif args.command == "download":
            results = client.download(args.source, args.dest)
        elif args.command == "sync" and args.direction == "up":
            results = client.upload(args.paths, args.to, skip_identical=True)
        elif args.command == "sync":
            results = client.download(args.source, args.dest, skip_identical=True)
        elif args.command == "verify":
            results = client.verify(args.paths, args.prefix)
        elif args.command == "ls":
            for obj in client.ls(args.prefix):
                stamp = obj["LastModified"].strftime("%Y-%m-%d %H:%M:%S")
                out.print(
                    f"{stamp}  {human(obj['Size']):>10}  {obj['Key']}",
                    highlight=False,
                    markup=False,
                    soft_wrap=True,
                )
            return ExitCode.OK
        elif args.command == "cleanup":
            for line in client.cleanup(remote=args.remote, older_than_days=args.older_than_days):
                if not quiet:
                    out.print(line, highlight=False, markup=False, soft_wrap=True)
            return ExitCode.OK
        else:  # pragma: no cover - argparse rejects unknown commands
            parser.error(f"unknown command {args.command}")
        return _finish(results, err, started, quiet)
    except TransferError as exc:
        if args.debug:
            traceback.print_exc()
        err.print(f"partner-transfer: {exc.message}", highlight=False, markup=False, soft_wrap=True)
        return int(exc.code)
    except KeyboardInterrupt:
        err.print(
            "partner-transfer: interrupted: re-run the same command to resume",
            highlight=False,
            markup=False,
        )
        return ExitCode.INTERRUPTED
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        classified = classify(exc, ErrorContext())
        hint = " (re-run with --debug for details)" if classified.code is ExitCode.FAILURE else ""
        err.print(
            f"partner-transfer: {classified.message}{hint}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        return int(classified.code)


def main() -> int:
    """Console-script entry point."""
    return run(sys.argv[1:])
