"""The local run's steps: access stack, audit stack, customer stack, partner round trip,
importer, malware gate, inbound originals, key rotation, custody, summary.

``python -m localrun up`` runs them in order against a fresh emulator. Each step takes the
:class:`~localrun.context.LocalRun` and returns a :class:`~localrun.context.StepResult`. A step
that fails for any reason ends the run with a one-line reason (the traceback, if there was one,
goes to ``localrun.log`` in the run directory); the emulator stays up for inspection.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import re
import subprocess
import sys
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from localaws import server
from localaws.coverage import coverage
from localaws.server import ACCOUNT_ID, REGION, EmulatorError
from localrun import (
    checks,
    custody,
    identities,
    importer,
    malware_gate,
    partner,
    partner_ca,
    receipts,
)
from localrun.context import REPO_ROOT, Credentials, LocalRun, StepResult, refused_403
from localrun.partner import SAMPLE_INBOUND, SAMPLE_OUTBOUND
from phi_core import naming

# Where tests/admin/test_lifecycle_e2e.py and others find the round trip's sample files.
__all__ = ["SAMPLE_INBOUND", "SAMPLE_OUTBOUND"]

ACCESS_STACK_ID = "AccessStack"
AUDIT_STACK_ID = "AuditStack"
CDK_STACK_ID = "CustomerStack"
CDK_CLI = REPO_ROOT / "node_modules" / ".bin" / "cdk"  # the pinned CLI (package.json)
# Generous: a cold jsii cache makes the first synth take ~15 s on two cores.
CDK_TIMEOUT_SECONDS = 300
ASSEMBLY_DIR = "cdk.out"
LOG_FILE = "localrun.log"
LAMBDA_SERVICE = "lambda.amazonaws.com"

log = logging.getLogger("localrun")


class StepFailed(RuntimeError):
    pass


# The CLI's lines worth quoting when it fails: a resource's failure, or its own error line.
_CDK_FAILURE = re.compile(r"CREATE_FAILED|ROLLBACK|❌|Error|error|failed", re.ASCII)


def _cdk_command(args: list[str]) -> list[str]:
    if not CDK_CLI.exists():
        raise StepFailed(f"{CDK_CLI} is missing: install the pinned CLI first (npm ci)")
    return [str(CDK_CLI), *args, "--no-notices"]


def _cdk_failure(args: list[str], returncode: int, log_path: Path) -> StepFailed:
    lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines()
             if line.strip()]
    # A resource's failure reads best without the CLI's progress columns.
    failed = [line.split("CREATE_FAILED", 1)[1].strip(" |") for line in lines
              if "CREATE_FAILED" in line]
    reason = (failed or [line for line in lines if _CDK_FAILURE.search(line)]
              or lines[-1:] or ["no output"])[0]
    return StepFailed(f"cdk {' '.join(args[:2])} failed (exit {returncode}): "
                      f"{' '.join(reason.split())[:900]}; see {log_path}")


def _cdk(run: LocalRun, args: list[str], *, log_name: str, cwd: Path,
         credentials: Credentials | None = None) -> None:
    """Run the pinned CDK CLI against the emulator; its output goes to a log in the run dir.
    ``credentials``: the CLI's own (default: the dummy operator's)."""
    command = _cdk_command(args)
    log_path = run.run_dir / log_name
    env = dict(run.env, **credentials.environment()) if credentials else run.env
    with log_path.open("wb") as log_file:
        try:
            completed = subprocess.run(  # noqa: S603 - the pinned CLI from node_modules
                command, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                timeout=CDK_TIMEOUT_SECONDS, check=False,
            )
        except subprocess.TimeoutExpired:
            raise StepFailed(f"cdk {args[0]} did not finish within {CDK_TIMEOUT_SECONDS} s; "
                             f"see {log_path}") from None
    if completed.returncode != 0:
        raise _cdk_failure(args, completed.returncode, log_path)


def synth_environment() -> dict[str, str]:
    """The synth needs no AWS at all (our stacks are environment-agnostic): no credentials, no
    endpoint, no profile, no metadata probing; the pinned CLI and this venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "PATH": os.pathsep.join([str(REPO_ROOT / "node_modules" / ".bin"),
                                 str(Path(sys.executable).parent), env.get("PATH", "")]),
        "AWS_EC2_METADATA_DISABLED": "true",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
        "JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION": "1",
    })
    return env


class Synth:
    """``cdk synth -c customer=<slug>`` of the whole app into the run's own cloud assembly,
    started in the background: it needs no emulator, so it runs while the emulator starts and
    ``cdk bootstrap`` runs (both mostly wait). One synth serves every deploy (what a pipeline
    does): the compliance gate runs once, the stacks come from the same assembly, and our own
    ``--output`` never races a concurrent ``cdk synth`` writing ./cdk.out."""

    def __init__(self, run_dir: Path, customer: str) -> None:
        registry = partner_ca.registry_of(run_dir)  # a roles-anywhere run's registry copy
        self.args = ["synth", "-c", f"customer={customer}", "--output",
                     str(run_dir / ASSEMBLY_DIR), "--quiet",
                     *(["-c", f"registry={registry}"] if registry else [])]
        self.log_path = run_dir / "cdk-synth.log"
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(  # noqa: S603 - the pinned CLI from node_modules
                _cdk_command(self.args), cwd=REPO_ROOT, env=synth_environment(),
                stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def wait(self) -> None:
        try:
            returncode = self.process.wait(timeout=CDK_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.stop()
            raise StepFailed(f"cdk synth did not finish within {CDK_TIMEOUT_SECONDS} s; see "
                             f"{self.log_path}") from None
        if returncode != 0:
            raise _cdk_failure(self.args, returncode, self.log_path)

    def stop(self) -> None:
        """End the synth if it still runs (the run failed before it was needed)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _gaps(run: LocalRun, stack_id: str) -> str:
    template = json.loads((run.run_dir / ASSEMBLY_DIR / f"{stack_id}.template.json").read_text())
    gaps = coverage(template)
    return ("not emulated: " + "; ".join(str(g) for g in gaps)) if gaps else ""


def deploy_access(run: LocalRun) -> StepResult:
    """Step 2: bootstrap, one synth of the app (access, audit and this customer's stacks), then
    the real ``cdk deploy AccessStack`` from that cloud assembly, with the CDK bootstrap's own
    roles (as an administrator deploys it, once per account, first); then the people of our
    account who assume its roles (:mod:`localrun.identities`)."""
    started = time.monotonic()
    proved: list[str] = []
    synth = run.synth or Synth(run.run_dir, run.customer)
    try:
        # From the run directory, where no cdk.json is: bootstrap needs no synth of our app.
        _cdk(run, ["bootstrap", f"aws://{ACCOUNT_ID}/{REGION}"],
             log_name="cdk-bootstrap.log", cwd=run.run_dir)
        proved.append(f"cdk bootstrap aws://{ACCOUNT_ID}/{REGION}: CDKToolkit stack created "
                      "(its bucket refuses plain HTTP, as in AWS)")
        synth.wait()
    finally:
        synth.stop()
    proved.append(f"cdk synth -c customer={run.customer}: {ACCESS_STACK_ID}, {AUDIT_STACK_ID} "
                  f"and {CDK_STACK_ID}, compliance gate passed")
    _cdk(run, ["deploy", ACCESS_STACK_ID, "--app", str(run.run_dir / ASSEMBLY_DIR),
               "--require-approval", "never"], log_name="cdk-deploy-access.log", cwd=REPO_ROOT)
    proved.append(checks.check_access_stack(run))
    proved.extend(identities.create_people(run))
    proved.append(identities.untagged_refused(run, (
        naming.CDK_DEPLOY_ROLE_NAME, naming.IMPORTER_ROLE_NAME, naming.OPERATOR_ROLE_NAME)))
    return StepResult("access stack", "ok", time.monotonic() - started, proved,
                      _gaps(run, ACCESS_STACK_ID))


def _deploy_as_deployer(run: LocalRun, args: list[str], *, log_name: str) -> str:
    """``cdk deploy`` as the tagged deployer, permission checks on: the CLI assumes
    phi-exchange-cdk-deploy (the synthesizer's deploy role) and the bootstrap's publishing
    role, and hands the stack to CloudFormation with phi-exchange-deployment, each allowed or
    refused by the emulator."""
    key = identities.user_key(run, identities.DEPLOYER)
    since, _ = server.authorizations(run.emulator)
    with run.permission_checks():
        _cdk(run, args, log_name=log_name, cwd=REPO_ROOT, credentials=key)
    _, records = server.authorizations(run.emulator, since)
    seen = {(r["action"], r["resource"].rsplit("/", 1)[-1]) for r in records if r["allowed"]}
    wanted = {("sts:AssumeRole", naming.CDK_DEPLOY_ROLE_NAME),
              ("iam:PassRole", naming.DEPLOYMENT_ROLE_NAME)}
    if not wanted <= seen:
        raise StepFailed(f"the deploy did not go through the account roles: missing "
                         f"{sorted(wanted - seen)} in the emulator's record")
    return (f"as {identities.DEPLOYER} ({identities.role_tag(naming.CDK_DEPLOY_ROLE_NAME)[0]}"
            f" = true), permission checks on: the CLI assumed {naming.CDK_DEPLOY_ROLE_NAME} "
            f"and passed {naming.DEPLOYMENT_ROLE_NAME} to CloudFormation (iam:PassRole, its "
            "trust of cloudformation.amazonaws.com); CloudFormation's own calls as that role "
            "are not checked (moto creates resources in-process)")


def deploy_audit(run: LocalRun) -> StepResult:
    """Step 3: the real ``cdk deploy AuditStack`` through the account roles, and read back
    what it created."""
    started = time.monotonic()
    assembly = run.run_dir / ASSEMBLY_DIR
    audit_outputs = run.run_dir / "audit-outputs.json"
    through = _deploy_as_deployer(
        run, ["deploy", AUDIT_STACK_ID, "--app", str(assembly), "--require-approval", "never",
              "--outputs-file", str(audit_outputs)], log_name="cdk-deploy-audit.log")
    run.audit_outputs = json.loads(audit_outputs.read_text())[naming.AUDIT_STACK_NAME]
    run.save()
    proved = [f"cdk deploy {AUDIT_STACK_ID}: stack {naming.AUDIT_STACK_NAME}, outputs "
              f"{', '.join(sorted(run.audit_outputs))}", through]
    proved.extend(check(run) for check in checks.AUDIT_CHECKS)
    return StepResult("audit stack", "ok", time.monotonic() - started, proved,
                      _gaps(run, AUDIT_STACK_ID))


def deploy_customer(run: LocalRun) -> StepResult:
    """Step 4: the real ``cdk deploy CustomerStack`` through the account roles (the CLI's
    default method, change sets, as in a real deployment: localaws restores the outputs moto
    drops), then the checks of :mod:`localrun.checks`."""
    started = time.monotonic()
    outputs_file = run.run_dir / "outputs.json"
    through = _deploy_as_deployer(
        run, ["deploy", CDK_STACK_ID, "--app", str(run.run_dir / ASSEMBLY_DIR),
              "--require-approval", "never", "--outputs-file", str(outputs_file)],
        log_name="cdk-deploy.log")
    stack_name = naming.stack_name(run.customer)
    run.outputs = json.loads(outputs_file.read_text())[stack_name]
    run.save()
    proved = [f"cdk deploy {CDK_STACK_ID} (-c customer={run.customer}): stack {stack_name}, "
              f"outputs {', '.join(sorted(run.outputs))}", through]
    proved.extend(check(run) for check in checks.DEPLOYMENT_CHECKS)
    proved.append(checks.check_ingestion_rule(run))
    return StepResult("customer stack", "ok", time.monotonic() - started, proved,
                      _gaps(run, CDK_STACK_ID))


def partner_round_trip(run: LocalRun) -> StepResult:
    """Step 4 (see :mod:`localrun.partner`)."""
    if run.outputs.get("Offboarded") == "true":
        return StepResult("partner round trip", "not-applicable", 0.0,
                          detail="the customer is offboarded: the stack grants no partner "
                          "anything")
    return partner.round_trip(run)


def rotate(run: LocalRun) -> StepResult:
    """Step 5 (iam-user customers): a key rotation through the real rotation handler, called
    in-process (Lambda cannot run here) with the deployed function's environment, *as the
    deployed function's role*: the emulator, playing Lambda, issues a session of that role only
    if its trust policy admits lambda.amazonaws.com, and with permission checks on every call
    the handler makes is decided by the role's policy. Then both keys work during the grace
    period, and after it (the sweep, with the clock moved past the grace period) only the new
    key does."""
    mode = run.outputs.get("AccessMode")
    if mode != "iam-user":
        return StepResult("key rotation", "not-applicable", 0.0, detail=(
            f"access mode {mode}: the partner signs as its own principal (or a session of our "
            "role), so there is no access key of ours to rotate; the stack has no rotation "
            "function"))
    started = time.monotonic()
    proved: list[str] = []
    function = run.client("lambda").get_function_configuration(
        FunctionName=naming.rotation_function_name(run.customer))
    function_env = function["Environment"]["Variables"]
    role_arn = function["Role"]
    try:
        role = run.service_role_credentials(LAMBDA_SERVICE, role_arn, function["FunctionName"])
    except EmulatorError as refused:
        raise StepFailed(str(refused)) from None
    old = run.partner_credentials()
    lambdas = str(REPO_ROOT / "lambdas")
    if lambdas not in sys.path:
        sys.path.insert(0, lambdas)  # where Lambda finds key_rotation (the asset root)
    handler = importlib.import_module("key_rotation.handler")
    rotation = importlib.import_module("key_rotation.rotation")

    token = str(uuid.uuid4())
    # The function's environment plus what the Lambda runtime adds: the role's session.
    env = dict(function_env, **role.environment(), TEST_ATTEMPTS="5", TEST_RETRY_SECONDS="0.5")
    with run.permission_checks(), run.environment(**env):
        handler._session.cache_clear()  # a fresh session reads this environment
        for step in rotation.STEPS:
            handler.main({"SecretId": function_env["SECRET_ARN"], "ClientRequestToken": token,
                          "Step": step}, None)
    proved.append(f"as the function's role {role_arn.rsplit('/', 1)[-1]} (a session the "
                  "emulator issued as lambda.amazonaws.com after checking the role's trust "
                  "policy), permission checks on: the rotation handler ran createSecret, "
                  "setSecret, testSecret, finishSecret with the deployed function's environment")
    new = run.partner_credentials()
    if new.access_key_id == old.access_key_id:
        raise StepFailed("AWSCURRENT still holds the old key after the rotation")
    bucket = run.outputs["BucketName"]
    source = next(iter(partner.source_addresses(run.config.allowed_source_ips)), None)
    prefix = run.outputs.get("InboundPrefix") or run.outputs["OutboundPrefix"]

    def works(creds: Credentials) -> bool:
        # A listing of its own prefix: no new object (the importer has already run).
        s3 = run.client("s3", creds, source_address=source)
        return not refused_403(lambda: s3.list_objects_v2(Bucket=bucket, Prefix=prefix))

    probe = f"list {prefix}"
    with run.permission_checks():
        both = works(old) and works(new)
    if not both:
        raise StepFailed("during the grace period both keys must work")
    proved.append(f"grace period: old key {_masked(old)} and new key {_masked(new)} both "
                  f"{probe}")

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
    proved.append(f"after the grace period (clock +{grace_days + 1} days) the sweep, as the "
                  f"same role, deactivated {_masked(old)}: it is refused, the new key works")
    return StepResult("key rotation", "ok", time.monotonic() - started, proved)


def _masked(creds: Credentials) -> str:
    return f"{creds.access_key_id[:4]}…{creds.access_key_id[-4:]}"


STEPS: tuple[tuple[str, Callable[[LocalRun], StepResult]], ...] = (
    ("access stack", deploy_access),
    ("audit stack", deploy_audit),
    ("customer stack", deploy_customer),
    ("partner round trip", partner_round_trip),
    ("importer", importer.import_inbound),
    ("malware gate", malware_gate.stop_at_the_gate),
    ("inbound originals", partner.keep_originals),
    ("key rotation", rotate),
    ("custody from the trail", custody.custody_from_the_trail),
)


def _one_line(error: BaseException) -> str:
    if isinstance(error, ClientError):
        info = error.response.get("Error", {})
        operation = getattr(error, "operation_name", "a call")
        return (f"{operation} answered {info.get('Code', '?')}: "
                f"{info.get('Message') or 'no message'}")
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def run_steps(run: LocalRun, *, on_result: Callable[[StepResult], None]) -> bool:
    """Run every step; stop at the first failure. Returns whether no step failed.

    Any failure of a step, expected or not, becomes that step's one-line reason; an unexpected
    one also leaves its traceback in ``localrun.log`` of the run directory."""
    for name, step in STEPS:
        started = time.monotonic()
        try:
            result = step(run)
        except NotImplementedError as missing:
            result = StepResult(name, "not-implemented", time.monotonic() - started,
                                detail=str(missing))
        except (StepFailed, checks.CheckFailed, partner.PartnerStepFailed,
                importer.ImportFailed, identities.IdentityFailed,
                custody.CustodyFailed, malware_gate.GateFailed,
                receipts.ReceiptFailed) as failure:
            result = StepResult(name, "failed", time.monotonic() - started, detail=str(failure))
        except (ClientError, BotoCoreError, EmulatorError, OSError, ValueError, KeyError,
                RuntimeError, AssertionError, subprocess.SubprocessError) as error:
            with (run.run_dir / LOG_FILE).open("a") as trace:
                trace.write(f"--- {name} ---\n{traceback.format_exc()}\n")
            result = StepResult(name, "failed", time.monotonic() - started,
                                detail=f"{_one_line(error)} (traceback in "
                                f"{run.run_dir / LOG_FILE})")
        run.results.append(result)
        run.save()
        on_result(result)
        if result.status == "failed":
            return False
    return True


def not_exercised(run: LocalRun) -> list[str]:
    """What the run did not exercise, whatever it proved: the summary always says so, and it
    follows what actually ran (a step that failed or did not apply changes the list)."""
    status = {r.name.split(" (")[0]: r.status for r in run.results}
    lines = []
    missing = [name for name, _ in STEPS if name not in status]
    if missing:
        lines.append(f"steps not run (an earlier step failed): {', '.join(missing)}")
    if status.get("audit stack") == "ok":
        lines.append("CloudFormation's own calls as phi-exchange-deployment were not checked: "
                     "the emulator checked the CLI's AssumeRole of phi-exchange-cdk-deploy and "
                     "its iam:PassRole of the deployment role, but moto creates the resources "
                     "in-process, so the deployment role's policy decided nothing (the access "
                     "matrix in make test covers it)")
    lines.append("break-glass was not assumed (it needs MFA, which no local user has)")
    if status.get("custody from the trail") == "ok":
        lines.append("no CloudTrail service ran: the emulator wrote the trail's S3 data "
                     "events, log files and signed digests (localaws.cloudtrail, delivered when "
                     "the custody step asked, not every five minutes and hourly), signed with "
                     "its own key; no management event and no CloudWatch Logs event was written")
    else:
        lines.append("the audit trail's evidence was not read (the custody step did not run)")
    if status.get("importer") == "ok":
        lines.append("the handoff message was not sent by AWS: the emulator stood in for S3's "
                     "EventBridge notification and EventBridge's delivery (localaws.events), "
                     "using the deployed rule, its input transformer and the deployed queue; "
                     "the importer ran once, by hand (--once), not as a service")
    if status.get("malware gate") == "ok" or (
            status.get("importer") == "ok" and run.config.scanned):
        lines.append("GuardDuty did not scan: the emulator's stand-in (localaws.malware_scan) "
                     "read and tagged each new inbound version as the plan's role, with the "
                     "role's grants, the bucket policy and the customer key's policy evaluated, "
                     "but knows one threat only (the EICAR test file), opens no archive, and "
                     "scans at once, where GuardDuty takes seconds to minutes")
    if status.get("malware gate") == "ok":
        lines.append("no gate notice reached anyone: the importer published to the security "
                     "topic and the gate-notices topic, whose e-mail subscriptions stay pending "
                     "(the step read the notices back from the emulator's record)")
    elif status.get("importer") == "not-applicable":
        lines.append("the handoff queue and the importer did not run: this customer has no "
                     "inbound direction")
    else:
        lines.append("the handoff queue and the importer did not run")
    if status.get("key rotation") == "ok":
        lines.append("key rotation: the handler was called in-process (Lambda never ran it), "
                     "with the clock moved for the sweep; Secrets Manager's rotation schedule "
                     "and the daily sweep schedule never fired, and the function's dead-letter "
                     "queue, error alarm and log group saw nothing")
        lines.append("no notice reached anyone: the rotation published to the notices topic, "
                     "whose e-mail subscriptions stay pending (nothing is sent here)")
    else:
        lines.append("no key was rotated and no notice was sent" + (
            " (no access key of ours in this access mode)"
            if status.get("key rotation") == "not-applicable" else ""))
    if run.outputs.get("AccessMode") == "roles-anywhere":
        lines.append("IAM Roles Anywhere: the emulator checked each CreateSession (signature, "
                     "chain, profile, trust policy) but sends no expiry event (the trust "
                     "anchor's notification settings are stored only), checks no revocation "
                     "list, and the partner's CA was the run's throwaway one, not the "
                     "registry's (its key is the partner's)")
    lines.append("S3 never calls KMS for a caller here: no KMS key policy or KMS permission is "
                 "exercised by an upload, a download or the importer's reads and receipt writes "
                 "(the offline access matrix in make test covers them); the exceptions are the "
                 "stand-in scanner's decrypt through S3 and the importer's own kms:Sign")
    lines.append("Block Public Access, object ownership, lifecycle rules (KeepInboundOriginals "
                 "too: nothing expires here) and key rotation are stored, not enforced")
    return lines


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
    lines.append("\nNot exercised by this run (docs/local-run.md):")
    lines.extend(f"  - {line}" for line in not_exercised(run))
    lines.append(
        f"\nUse it:   eval \"$(python -m localrun env --run-dir {run.run_dir})\"  "
        "(then aws/boto3 talk to the emulator)"
        f"\nStop it:  make demo-down  (or: python -m localrun down --run-dir {run.run_dir})"
    )
    return "\n".join(lines)
