"""The last step, custody: the partner's file as AWS recorded it, from the deployed trail.

All through the run the emulator's trail (``localaws.cloudtrail``, standing in for CloudTrail
with the audit stack's trail, its event selectors, bucket, key and policies) recorded every S3
data event on the customer bucket. This step asks it to deliver now (CloudTrail delivers log
files about every five minutes and a digest every hour), then runs the operator's command as an
operator would, in a separate process:

    phi-exchange-admin custody <slug> <key> --verify-bytes --manifest <partner's manifest>
                                            [--dsn <importer's database>]

for the partner's upload (``inbound/claims.csv``), or for the file it downloaded when the
customer only receives (``outbound/remittance.csv``). The command's whole answer goes into the
summary: each version with AWS's principal and source address beside the partner's claim, the
stored and recomputed checksums, the import, every event on the key, and the trail's evidence
checked (each log file's SHA-256 against its digest, the digest chain, the signatures against
the key ``ListPublicKeys`` publishes). The step fails unless the command exits 0 and names the
address the partner's requests came from and the evidence as intact.

First, the trail's part (``custody <slug> --prefix <prefix>``) runs as a session of the
operator role with the emulator's permission checks on: the role's own grants must read the
evidence (the whole answer above, the inbound version's stored checksum and bytes included, is
break-glass's, which no local user can assume: it needs MFA).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from localaws import cloudtrail
from localaws.server import REGION
from localrun import identities
from localrun.context import REPO_ROOT, LocalRun, StepResult
from localrun.importer import redact
from phi_core import naming

CUSTODY_TIMEOUT_SECONDS = 180
INTACT = "evidence: the trail's log files and digests are intact"


class CustodyFailed(RuntimeError):
    pass


def custody_command(run: LocalRun) -> list[str]:
    """The operator's command for the partner's file in this run."""
    outputs = run.outputs
    inbound, outbound = outputs.get("InboundPrefix"), outputs.get("OutboundPrefix")
    key = f"{inbound}claims.csv" if inbound else f"{outbound}remittance.csv"
    manifest = (run.run_dir / "partner" / "state" / "partner-transfer" / run.customer /
                "manifest.jsonl")
    command = [sys.executable, "-m", "admin.cli", "custody", run.customer, key,
               "--verify-bytes", "--manifest", str(manifest)]
    if inbound and run.dsn:
        command += ["--dsn", run.dsn]
    return [*command, "--endpoint-url", run.emulator.url, "--region", REGION]


def custody_from_the_trail(run: LocalRun) -> StepResult:
    started = time.monotonic()
    delivered = [d for d in cloudtrail.flush(run.emulator) if d["trail"] == naming.TRAIL_NAME]
    refused = [d for d in delivered if d["outcome"] != "delivered"]
    if refused:
        raise CustodyFailed(f"the trail could not deliver to the custody bucket: "
                            f"{refused[0]['reason']}")
    log_files = sum(1 for d in delivered if d["kind"] == "log file")
    command = custody_command(run)
    # With the run's administrator credentials, permission checks off: the whole answer, the
    # inbound version's stored checksum and bytes included, is break-glass's reach (no local
    # user has MFA). The operator role's own run, checks on, is _operator_reads_the_evidence.
    completed = subprocess.run(  # noqa: S603 - our own CLI, from this venv
        command, cwd=REPO_ROOT, env=run.env, capture_output=True, text=True,
        timeout=CUSTODY_TIMEOUT_SECONDS, check=False)
    answer = completed.stdout.rstrip()
    (run.run_dir / "custody.txt").write_text(answer + "\n")
    shown = redact(" ".join(["phi-exchange-admin", *command[3:-4]]))
    if completed.returncode != 0:
        raise CustodyFailed(f"{shown} exited {completed.returncode}: "
                            f"{' '.join(completed.stderr.split())[-600:]}")
    partner = run.partner
    address = getattr(partner, "source_address", None) or "127.0.0.1"
    if not re.search(rf" from {re.escape(address)}\b", answer):
        raise CustodyFailed(f"{shown}: AWS's record of the partner's request from {address} "
                            f"is not in the answer; see {run.run_dir / 'custody.txt'}")
    if INTACT not in answer:
        raise CustodyFailed(f"{shown}: the trail's evidence is not reported intact; see "
                            f"{run.run_dir / 'custody.txt'}")
    prefix = run.outputs.get("InboundPrefix") or run.outputs.get("OutboundPrefix") or ""
    proved = [
        _operator_reads_the_evidence(run, prefix),
        f"the emulator's trail delivered {log_files} log file(s) and a signed digest to the "
        f"custody bucket {run.audit_outputs.get('CustodyBucketName')} (SSE-KMS with the audit "
        "key, digests SSE-S3, under the bucket policy's CloudTrail grants)",
        f"{shown} answered (exit 0; also in {run.run_dir / 'custody.txt'}):\n"
        + "\n".join(f"      {line}" for line in answer.splitlines()),
    ]
    return StepResult("custody from the trail", "ok", time.monotonic() - started, proved)


def _operator_reads_the_evidence(run: LocalRun, prefix: str) -> str:
    """The operator role's own grants read the trail's evidence: ``custody --prefix`` (AWS's
    records only, no object of the customer's) as a session of the role, checks on."""
    operator = identities.session(run, identities.OPERATOR)
    since = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    command = [sys.executable, "-m", "admin.cli", "custody", run.customer, "--prefix", prefix,
               "--since", since, "--json", "--endpoint-url", run.emulator.url,
               "--region", REGION]
    shown = " ".join(["phi-exchange-admin", *command[3:-4]])
    with run.permission_checks():
        completed = subprocess.run(  # noqa: S603 - our own CLI, from this venv
            command, cwd=REPO_ROOT, env=dict(run.env, **operator.credentials.environment()),
            capture_output=True, text=True, timeout=CUSTODY_TIMEOUT_SECONDS, check=False)
    if completed.returncode != 0:
        raise CustodyFailed(f"as {operator.label}: {shown} exited {completed.returncode}: "
                            f"{' '.join(completed.stderr.split())[-600:]}")
    lines = [json.loads(line) for line in completed.stdout.splitlines() if line.strip()]
    events = [line for line in lines if line.get("type") == "event"]
    if not lines or lines[-1].get("type") != "evidence" or not lines[-1].get("intact"):
        raise CustodyFailed(f"as {operator.label}: {shown}: the evidence is not reported "
                            "intact")
    return (f"as {operator.label}, permission checks on: {shown} read {len(events)} "
            "event(s) and checked the trail's evidence (intact) with the role's own grants "
            "(DescribeTrails, ListPublicKeys, every version in the custody bucket, the "
            "customer's access logs; S3 never calls KMS here, so its audit-key grant is the "
            "access matrix's to prove)")
