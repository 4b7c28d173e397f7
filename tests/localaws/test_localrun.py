"""localrun's handling of failures and its small pure helpers, without an emulator or a deploy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from localaws.server import Emulator
from localrun import flow
from localrun.context import LocalRun, StepResult
from localrun.importer import redact
from localrun.partner import source_addresses

REPO = Path(__file__).resolve().parents[2]


def fake_run(tmp_path: Path) -> LocalRun:
    emulator = Emulator(url="https://localhost:1", port=1, ca_bundle=None, pid=0)
    return LocalRun(run_dir=tmp_path, customer="acme", emulator=emulator)


def test_any_failure_of_a_step_is_one_line_and_stops_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def ok(run: LocalRun) -> StepResult:
        return StepResult("first", "ok", 0.1, ["did it"])

    def broken(run: LocalRun) -> StepResult:
        return {}["PartnerSecretArn"]  # what an unexpected mode used to do

    def never(run: LocalRun) -> StepResult:
        raise AssertionError("a step after a failure ran")

    monkeypatch.setattr(flow, "STEPS", (("first", ok), ("second", broken), ("third", never)))
    run = fake_run(tmp_path)
    reported: list[StepResult] = []
    assert flow.run_steps(run, on_result=reported.append) is False
    assert [(r.name, r.status) for r in reported] == [("first", "ok"), ("second", "failed")]
    detail = reported[1].detail
    assert "\n" not in detail and detail.startswith("KeyError: 'PartnerSecretArn'")
    assert "Traceback" in (tmp_path / flow.LOG_FILE).read_text()
    text = flow.summary(run)
    assert "steps not run (an earlier step failed): third" in text
    assert "Stop it:  make demo-down" in text


def test_a_cdk_failure_names_the_resource_and_its_reason(tmp_path: Path) -> None:
    log = tmp_path / "cdk-deploy.log"
    log.write_text(
        "PhiExchange-audit |  0/15 | 5:09:03 PM | CREATE_IN_PROGRESS | AWS::CloudFormation::Stack\n"
        "PhiExchange-audit |  1/15 | 5:09:03 PM | CREATE_FAILED | AWS::CloudTrail::Trail | "
        "Trail (Trail76E5F934) InsufficientEncryptionPolicyException: Insufficient permissions\n"
        "❌  PhiExchange-audit failed to deploy\n")
    failure = flow._cdk_failure(["deploy", "AuditStack"], 1, log)
    message = str(failure)
    assert "\n" not in message
    assert message.startswith("cdk deploy AuditStack failed (exit 1): AWS::CloudTrail::Trail | "
                              "Trail (Trail76E5F934) InsufficientEncryptionPolicyException")
    assert str(log) in message


def test_source_addresses_take_one_host_of_each_network() -> None:
    assert source_addresses(("203.0.113.0/24", "2001:db8:1234::/48", "198.51.100.7/32")) == (
        "203.0.113.1", "2001:db8:1234::1", "198.51.100.7")


def test_the_synth_environment_carries_no_aws_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "prod")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREAL")
    env = flow.synth_environment()
    assert not {k for k in env if k.startswith("AWS_")} - {"AWS_EC2_METADATA_DISABLED"}
    assert env["PATH"].split(":")[0].endswith("node_modules/.bin")


def test_up_with_an_unknown_customer_is_one_line_and_starts_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "localrun", "up", "--customer", "nobody", "--run-dir",
         str(run_dir)], cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert result.stdout.strip().startswith("error: unknown customer 'nobody'; registered:")
    assert len(result.stdout.strip().splitlines()) == 1 and not result.stderr
    assert not run_dir.exists()


def test_a_dsn_never_shows_its_password() -> None:
    assert redact("host=db port=5432 user=imp password=s3cret dbname=x") == (
        "host=db port=5432 user=imp password=*** dbname=x")
    assert redact("postgresql://imp:s3cret@db:5432/x") == "postgresql://imp:***@db:5432/x"
    assert redact("host=127.0.0.1 user=postgres") == "host=127.0.0.1 user=postgres"


@pytest.mark.parametrize(("statuses", "expected", "absent"), [
    ({"importer": "ok", "malware gate": "ok", "inbound originals": "ok", "key rotation": "ok",
      "custody from the trail": "ok"},
     ["the emulator stood in for S3's EventBridge notification", "Lambda never ran it",
      "no notice reached anyone", "CloudFormation's own calls as phi-exchange-deployment",
      "KeepInboundOriginals too: nothing expires",
      "no CloudTrail service ran: the emulator wrote the trail's S3 data events",
      "GuardDuty did not scan: the emulator's stand-in", "no gate notice reached anyone"],
     ["did not run", "evidence was not read"]),
    ({"importer": "not-applicable", "malware gate": "not-applicable",
      "inbound originals": "not-applicable", "key rotation": "not-applicable"},
     ["the importer did not run: this customer has no inbound direction",
      "no key was rotated and no notice was sent (no access key of ours",
      "the audit trail's evidence was not read"],
     ["Lambda never", "GuardDuty did not scan", "no gate notice"]),
])
def test_the_summary_says_what_was_not_exercised(
    tmp_path: Path, statuses: dict[str, str], expected: list[str], absent: list[str]
) -> None:
    run = fake_run(tmp_path)
    run.results = [StepResult(name, "ok", 1.0) for name in (
        "access stack", "audit stack", "customer stack", "partner round trip")]
    run.results += [StepResult(name, status, 1.0) for name, status in statuses.items()]
    text = "\n".join(flow.not_exercised(run))
    for phrase in expected:
        assert phrase in text
    for phrase in absent:
        assert phrase not in text
