"""The local run's steps: deploy, partner round trip, key rotation, summary.

``python -m localrun up`` runs them in order against a fresh emulator. Each step takes the
:class:`~localrun.context.LocalRun` and returns a :class:`~localrun.context.StepResult`.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from botocore.exceptions import ClientError

from localaws.coverage import coverage
from localaws.server import ACCOUNT_ID, REGION
from localrun import checks
from localrun.context import REPO_ROOT, Credentials, LocalRun, StepResult
from phi_core import naming

CDK_STACK_ID = "CustomerStack"
CDK_CLI = REPO_ROOT / "node_modules" / ".bin" / "cdk"  # the pinned CLI (package.json)
# Generous: a cold jsii cache makes the first synth take ~15 s on two cores.
CDK_TIMEOUT_SECONDS = 300


class StepFailed(RuntimeError):
    pass


def _cdk(run: LocalRun, args: list[str], *, log_name: str, cwd: Path) -> None:
    """Run the pinned CDK CLI against the emulator; its output goes to a log in the run dir."""
    if not CDK_CLI.exists():
        raise StepFailed(f"{CDK_CLI} is missing: install the pinned CLI first (npm ci)")
    log_path = run.run_dir / log_name
    with log_path.open("wb") as log:
        completed = subprocess.run(  # noqa: S603 - the pinned CLI from node_modules
            [str(CDK_CLI), *args, "--no-notices"],
            cwd=cwd, env=run.env, stdout=log, stderr=subprocess.STDOUT,
            timeout=CDK_TIMEOUT_SECONDS, check=False,
        )
    if completed.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise StepFailed(f"cdk {args[0]} failed (exit {completed.returncode}); last lines of "
                         f"{log_path}:\n{tail}")


def deploy(run: LocalRun) -> StepResult:
    """Steps 2-3: the real ``cdk bootstrap`` and ``cdk deploy`` against the emulator, then read
    back and check what was deployed (see :mod:`localrun.checks`)."""
    started = time.monotonic()
    proved: list[str] = []

    # From the run directory, where no cdk.json is: bootstrap then needs no synth of our app.
    _cdk(run, ["bootstrap", f"aws://{ACCOUNT_ID}/{REGION}"], log_name="cdk-bootstrap.log",
         cwd=run.run_dir)
    proved.append(f"cdk bootstrap aws://{ACCOUNT_ID}/{REGION}: CDKToolkit stack created "
                  "(its bucket refuses plain HTTP, as in AWS)")

    outputs_file = run.run_dir / "outputs.json"
    assembly = run.run_dir / "cdk.out"
    _cdk(run, [
        "deploy", CDK_STACK_ID, "-c", f"customer={run.customer}",
        "--require-approval", "never",
        # The CLI's default method, change sets, as in a real deployment (localaws restores
        # the outputs moto drops for change-set stacks).
        # Our own cloud assembly: never race a concurrent `cdk synth` writing ./cdk.out.
        "--output", str(assembly),
        "--outputs-file", str(outputs_file),
    ], log_name="cdk-deploy.log", cwd=REPO_ROOT)
    stack_name = naming.stack_name(run.customer)
    run.outputs = json.loads(outputs_file.read_text())[stack_name]
    proved.append(f"cdk deploy {CDK_STACK_ID} -c customer={run.customer}: stack {stack_name}, "
                  f"outputs {', '.join(sorted(run.outputs))}")

    for check in checks.DEPLOYMENT_CHECKS:
        proved.append(check(run))

    template = json.loads((assembly / f"{CDK_STACK_ID}.template.json").read_text())
    gaps = coverage(template)
    detail = ""
    if gaps:
        detail = "not emulated: " + "; ".join(str(g) for g in gaps)
    return StepResult("deploy", "ok", time.monotonic() - started, proved, detail)


SAMPLE_INBOUND = b"member_id,claim_id,amount\n1001,C-1,125.00\n1002,C-2,80.50\n"
SAMPLE_OUTBOUND = b"claim_id,status,paid\nC-1,paid,125.00\n"
MULTIPART_SAMPLE_MIB = 20  # over the client's 16 MiB part size: exercises a multipart upload


def _partner_cli(run: LocalRun, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """The partner's own command, ``partner-transfer``, as a separate process."""
    env = dict(run.env, XDG_STATE_HOME=str(run.run_dir / "partner" / "state"))
    return subprocess.run(  # noqa: S603 - our own client, from this venv
        [sys.executable, "-m", "partner_transfer", *map(str, args)],
        cwd=run.run_dir, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def _expect_cli(result: subprocess.CompletedProcess[str], what: str, code: int = 0) -> None:
    if result.returncode != code:
        raise StepFailed(f"{what}: exit {result.returncode} (expected {code}): "
                         f"{(result.stderr or result.stdout).strip()[-800:]}")


def _denied(call: Callable[[], object]) -> bool:
    try:
        call()
    except ClientError as error:
        return error.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return False


def partner_round_trip(run: LocalRun) -> StepResult:
    """Step 4: as the partner, with the emulator's permission checks on: generate the
    connection profile from the deployed stack, upload a small and a multipart-size file to
    ``inbound/``, download what we put in ``outbound/``, and show the custody manifest."""
    started = time.monotonic()
    proved: list[str] = []
    partner = run.run_dir / "partner"
    partner.mkdir(exist_ok=True)

    # The operator's hand-over: the secret's JSON in a private file (phi-exchange-admin
    # credentials does the same against AWS).
    credentials_file = partner / f"{run.customer}-credentials.json"
    fd = os.open(credentials_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(run.partner_secret(), fh)
    profile = partner / "profile.toml"
    _expect_cli(_partner_cli(run, "profile", "init", "--outputs-file", run.run_dir /
                             "outputs.json", "--credentials-file", credentials_file,
                             "--endpoint-url", run.emulator.url, "-o", profile, "--force"),
                "partner-transfer profile init")
    proved.append(f"connection profile generated from the stack outputs: {profile}")

    bucket, key_arn = run.outputs["BucketName"], run.outputs["KmsKeyArn"]
    run.client("s3").put_object(Bucket=bucket, Key="outbound/remittance.csv",
                                Body=SAMPLE_OUTBOUND, ServerSideEncryption="aws:kms",
                                SSEKMSKeyId=key_arn, ChecksumAlgorithm="CRC64NVME")
    small = partner / "claims.csv"
    small.write_bytes(SAMPLE_INBOUND)
    large = partner / "claims-large.csv"
    with large.open("wb") as fh:
        fh.write(os.urandom(MULTIPART_SAMPLE_MIB * 1024 * 1024))
    creds = run.partner_credentials()

    with run.permission_checks():
        _expect_cli(_partner_cli(run, "upload", "--profile", profile, "--quiet", small, large),
                    "partner-transfer upload")
        proved.append(f"as the partner (IAM checks on): uploaded {small.name} and "
                      f"{large.name} ({MULTIPART_SAMPLE_MIB} MiB, multipart) to inbound/, "
                      "SSE-KMS with the customer key, full-object CRC64NVME")
        received = partner / "received"
        _expect_cli(_partner_cli(run, "download", "--profile", profile, "--quiet",
                                 "outbound/remittance.csv", received / "remittance.csv"),
                    "partner-transfer download")
        if (received / "remittance.csv").read_bytes() != SAMPLE_OUTBOUND:
            raise StepFailed("the downloaded file differs from what was put in outbound/")
        proved.append("downloaded outbound/remittance.csv, checksum verified, exact bytes")
        s3 = run.client("s3", creds)
        if not _denied(lambda: s3.get_object(Bucket=bucket, Key="inbound/claims.csv")):
            raise StepFailed("the partner could read back inbound/claims.csv")
        if not _denied(lambda: s3.put_object(Bucket=bucket, Key="outbound/x.csv", Body=b"x",
                                             ServerSideEncryption="aws:kms",
                                             SSEKMSKeyId=key_arn)):
            raise StepFailed("the partner could write to outbound/")
        proved.append("the partner's key cannot read back inbound/ nor write outbound/ (403)")

    stored = run.client("s3").head_object(Bucket=bucket, Key="inbound/claims-large.csv",
                                          ChecksumMode="ENABLED")
    if stored.get("SSEKMSKeyId") != key_arn:
        raise StepFailed(f"inbound/claims-large.csv is stored with {stored.get('SSEKMSKeyId')}")
    manifest = partner / "state" / "partner-transfer" / run.customer / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    last = json.loads(lines[-1])
    proved.append(f"custody manifest {manifest} ({len(lines)} lines); last: "
                  f"{last['direction']} {last['key']} version {last['version_id']} "
                  f"{last['checksum_algorithm']} {last['checksum']} by {last['caller_arn']} "
                  f"-> {last['result']}")
    return StepResult("partner round trip", "ok", time.monotonic() - started, proved)


def rotate(run: LocalRun) -> StepResult:
    """Step 5: a key rotation through the real rotation handler (called in-process: Lambda
    cannot run here), with the deployed function's environment and the emulator's permission
    checks on; then both keys work during the grace period, and after it (the sweep, with the
    clock moved past the grace period) only the new key does."""
    started = time.monotonic()
    proved: list[str] = []
    function_env = run.client("lambda").get_function_configuration(
        FunctionName=naming.rotation_function_name(run.customer))["Environment"]["Variables"]
    admin = run.admin_credentials()
    old = run.partner_credentials()
    lambdas = str(REPO_ROOT / "lambdas")
    if lambdas not in sys.path:
        sys.path.insert(0, lambdas)  # where Lambda finds key_rotation (the asset root)
    handler = importlib.import_module("key_rotation.handler")
    rotation = importlib.import_module("key_rotation.rotation")

    token = str(uuid.uuid4())
    env = dict(function_env, AWS_ACCESS_KEY_ID=admin.access_key_id,
               AWS_SECRET_ACCESS_KEY=admin.secret_access_key, TEST_ATTEMPTS="5",
               TEST_RETRY_SECONDS="0.5")
    with run.permission_checks(), run.environment(**env):
        handler._session.cache_clear()  # a fresh session reads this environment
        for step in rotation.STEPS:
            handler.main({"SecretId": function_env["SECRET_ARN"], "ClientRequestToken": token,
                          "Step": step}, None)
    proved.append("rotation handler ran createSecret, setSecret, testSecret, finishSecret "
                  "with the deployed function's environment")
    new = run.partner_credentials()
    if new.access_key_id == old.access_key_id:
        raise StepFailed("AWSCURRENT still holds the old key after the rotation")
    bucket = run.outputs["BucketName"]

    def works(creds: Credentials) -> bool:
        return not _denied(lambda: run.client("s3", creds).put_object(
            Bucket=bucket, Key=f"inbound/rotation-probe-{creds.access_key_id[-4:]}.txt",
            Body=b"probe", ServerSideEncryption="aws:kms",
            SSEKMSKeyId=run.outputs["KmsKeyArn"]))

    with run.permission_checks():
        both = works(old) and works(new)
    if not both:
        raise StepFailed("during the grace period both keys must work")
    proved.append(f"grace period: old key {_masked(old)} and new key {_masked(new)} both "
                  "upload to inbound/")

    grace_days = int(function_env.get("GRACE_DAYS", "14"))
    later = datetime.now(UTC) + timedelta(days=grace_days + 1)
    with run.permission_checks(), run.environment(**env):
        handler._session.cache_clear()
        swept = rotation.handle_event({"action": "sweep"}, handler.settings_from_env(os.environ),
                                      handler.build_clients(), now=lambda: later)
        handler._session.cache_clear()
    with run.permission_checks():
        old_refused, new_ok = not works(old), works(new)
    if not (old_refused and new_ok):
        raise StepFailed(f"after the grace period: old key refused={old_refused}, "
                         f"new key works={new_ok}; sweep said {swept}")
    proved.append(f"after the grace period (clock +{grace_days + 1} days) the sweep "
                  f"deactivated {_masked(old)}: it is refused, the new key works")
    return StepResult("key rotation", "ok", time.monotonic() - started, proved)


def _masked(creds: Credentials) -> str:
    return f"{creds.access_key_id[:4]}…{creds.access_key_id[-4:]}"


STEPS: tuple[tuple[str, Callable[[LocalRun], StepResult]], ...] = (
    ("deploy", deploy),
    ("partner round trip", partner_round_trip),
    ("key rotation", rotate),
)


def run_steps(run: LocalRun, *, on_result: Callable[[StepResult], None]) -> bool:
    """Run every step; stop at the first failure. Returns whether no step failed."""
    for name, step in STEPS:
        started = time.monotonic()
        try:
            result = step(run)
        except NotImplementedError as missing:
            result = StepResult(name, "not-implemented", time.monotonic() - started,
                                detail=str(missing))
        except (StepFailed, checks.CheckFailed) as failure:
            result = StepResult(name, "failed", time.monotonic() - started, detail=str(failure))
        run.results.append(result)
        run.save()
        on_result(result)
        if result.status == "failed":
            return False
    return True


def summary(run: LocalRun, *, total_seconds: float | None = None) -> str:
    """Step 6: what was created and proved, what was not, and how to stop."""
    lines = [f"Local run of customer '{run.customer}' against {run.emulator.url} "
             f"(emulator pid {run.emulator.pid}, moto + localaws, TLS only)"]
    for result in run.results:
        lines.append(f"\n[{result.status}] {result.name} ({result.seconds:.1f} s)")
        lines.extend(f"  - {line}" for line in result.proved)
        if result.detail:
            lines.append(f"  {result.detail}")
    if total_seconds is not None:
        lines.append(f"\nTotal: {total_seconds:.1f} s.")
    lines.append(
        "\nWhat this proves: the real CDK CLI deploys the real template; the deployed "
        "configuration reads back as specified; the bucket policy's TLS and encryption denies "
        "are enforced; the partner's real client uploads, downloads and records custody under "
        "the emulator's IAM checks; a rotation through the real handler keeps the old key "
        "through the grace period and retires it after. It does not prove AWS enforces every "
        "policy the same way: S3 never calls KMS here, so KMS permissions are not exercised, "
        "and Block Public Access, object ownership and lifecycle are stored but not enforced "
        "(docs/local-run.md; the offline access matrix in make test covers the policies)."
    )
    lines.append(
        f"\nUse it:   eval \"$(python -m localrun env --run-dir {run.run_dir})\"  "
        "(then aws/boto3 talk to the emulator)"
        f"\nStop it:  make demo-down  (or: python -m localrun down --run-dir {run.run_dir})"
    )
    return "\n".join(lines)
