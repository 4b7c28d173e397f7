"""The local run's steps: deploy, partner round trip, key rotation, summary.

``python -m localrun up`` runs them in order against a fresh emulator. Each step takes the
:class:`~localrun.context.LocalRun` and returns a :class:`~localrun.context.StepResult`.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from localaws.coverage import coverage
from localaws.server import ACCOUNT_ID, REGION
from localrun import checks
from localrun.context import REPO_ROOT, LocalRun, StepResult
from stacks import naming

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


def partner_round_trip(run: LocalRun) -> StepResult:
    """Step 4: the partner's connection profile, an upload and a download as the partner.

    To be written with the transfer client (``partner_transfer``). What it has to work with:

    - ``run.outputs``: the stack outputs (BucketName, KmsKeyArn, InboundPrefix, ...), the same
      keys the profile generator reads from a real stack;
    - ``run.partner_credentials()``: the partner's key from the customer's secret (read as the
      operator; call it before switching permission checks on);
    - ``with run.permission_checks():`` IAM checks on for the block (only IAM keys work);
    - ``with run.environment(AWS_ACCESS_KEY_ID=..., AWS_SECRET_ACCESS_KEY=...):`` this process's
      environment pointed at the emulator (endpoint, CA bundle), for code that builds its own
      clients; ``run.env`` is the same for subprocesses (``python -m partner_transfer ...``);
    - objects must go to ``inbound/`` (write-only for the partner) and be read from
      ``outbound/`` (read-only for the partner): put the outbound sample there as the operator;
    - uploads must name ``ServerSideEncryption="aws:kms"`` and the customer key: the bucket
      policy refuses a PutObject without those headers, and (here) multipart parts, which
      carry none (docs/local-run.md, "Findings"): keep the sample under the multipart
      threshold until that policy is settled.
    """
    raise NotImplementedError(
        "step 4 (partner round trip) is not implemented yet: it needs the transfer client "
        "(partner_transfer); see localrun.flow.partner_round_trip's docstring for the hooks"
    )


def rotate(run: LocalRun) -> StepResult:
    """Step 5: a key rotation through the real rotation handler, against the emulator.

    To be written with the rotation handler (``lambdas/key_rotation/handler.py``). Lambda
    cannot be invoked here (moto's Lambda needs Docker): call ``key_rotation.handler.main``
    in-process inside ``with run.environment(**function_env):``, where ``function_env`` is the
    deployed function's environment (``run.client("lambda").get_function_configuration(
    FunctionName=naming.rotation_function_name(run.customer))["Environment"]["Variables"]``),
    with the Secrets Manager events createSecret/setSecret/testSecret/finishSecret. To run it
    with permission checks on, use ``run.admin_credentials()`` (created before switching them
    on) as the function's credentials. Then show ``run.partner_credentials("AWSPREVIOUS")``
    and ``run.partner_credentials()`` both still work during the grace period.
    """
    raise NotImplementedError(
        "step 5 (key rotation) is not implemented yet: it needs the rotation handler "
        "(lambdas/key_rotation); see localrun.flow.rotate's docstring for the hooks"
    )


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
        "are enforced for uploads. It does not prove AWS enforces every policy the same way: "
        "S3 never calls KMS here, so KMS permissions are not exercised, and Block Public "
        "Access, object ownership and lifecycle are stored but not enforced "
        "(docs/local-run.md)."
    )
    lines.append(
        f"\nUse it:   eval \"$(python -m localrun env --run-dir {run.run_dir})\"  "
        "(then aws/boto3 talk to the emulator)"
        f"\nStop it:  python -m localrun down --run-dir {run.run_dir}"
    )
    return "\n".join(lines)
