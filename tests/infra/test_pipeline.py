"""The CDK pipeline (issue 19), offline: its synth passes the compliance gate, its waves run in
order (the log archive first, staging, then production after a manual approval), every deploy
action goes through the target account's own CDK-deploy role, and a change to one customer's
registry file changes that customer's stack and nothing else."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from phi_core import naming, placement
from stacks.app_builder import build_pipeline_app
from stacks.config import CustomerConfig, Retention, load_registry
from stacks.pipeline_stack import APPROVAL, SYNTH_COMMANDS
from tests.infra.conftest import CDK_CONTEXT, REPO

PIPELINE_ACCOUNT = "555555555555"
ACCOUNTS = placement.parse_accounts({
    "pipeline": {"label": "tooling", "account_id": PIPELINE_ACCOUNT, "region": "eu-west-2",
                 "repository": "example/phi-exchange", "branch": "main",
                 "connection_arn": "arn:aws:codeconnections:eu-west-2:555555555555:connection/"
                                   "0a1b2c3d-0000-4000-8000-00000000abcd"},
    "log_archive": {"label": "log-archive", "account_id": "999999999999",
                    "region": "eu-west-2"},
    "exchange": [
        {"label": "staging", "account_id": "444444444444", "region": "eu-west-2",
         "production": False},
        {"label": "exchange-1", "account_id": "111111111111", "region": "eu-west-2"},
        {"label": "exchange-2", "account_id": "222222222222", "region": "eu-west-2"},
    ],
}, source="accounts.toml")
PLACED = {"acme": "exchange-1", "globex": "exchange-2", "hooli": "exchange-1",
          "initech": "staging"}


def _customers() -> list[CustomerConfig]:
    registry = load_registry(REPO / "customers")
    return [dataclasses.replace(c, account=PLACED[c.slug]) for c in registry.values()]


def _synth(customers: list[CustomerConfig], outdir: Path) -> Path:
    where, _ = placement.check((c.placed for c in customers), ACCOUNTS)
    build_pipeline_app(customers, where, context=CDK_CONTEXT, outdir=str(outdir)).synth()
    return outdir


@pytest.fixture(scope="module")
def assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _synth(_customers(), tmp_path_factory.mktemp("pipeline"))


def _pipeline(assembly: Path) -> dict[str, Any]:
    template = json.loads((assembly / "PipelineStack.template.json").read_text())
    (pipeline,) = [r["Properties"] for r in template["Resources"].values()
                   if r["Type"] == "AWS::CodePipeline::Pipeline"]
    return pipeline


def test_the_pipeline_and_its_stages_pass_the_cdks_template_validation(assembly: Path) -> None:
    """Synthesized in-process with the validation on (``-c pipeline=1`` skips it): not even a
    warning."""
    report = json.loads((assembly / "validation-report.json").read_text())
    assert "CloudFormation Validate" not in {p["pluginName"] for p in report["pluginReports"]}


def test_the_waves_run_in_order_after_one_approval(assembly: Path) -> None:
    stages = _pipeline(assembly)["Stages"]
    assert [s["Name"] for s in stages] == [
        "Source", "Build", "UpdatePipeline", "Assets", "log-archive", "staging",
        "staging-customers-1", "production", "production-customers-1"]
    # One manual approval, first in the first wave that reaches an account.
    approvals = [(s["Name"], a["Name"], a["RunOrder"]) for s in stages for a in s["Actions"]
                 if a["ActionTypeId"]["Category"] == "Approval"]
    assert approvals == [("log-archive", APPROVAL, 1)]
    # The accounts' audit stacks go in the wave before their customers'.
    names = {s["Name"]: {a["Name"] for a in s["Actions"]} for s in stages}
    assert any(n.startswith("exchange-1.PhiExchange-audit") for n in names["production"])
    assert any(n.startswith("exchange-1-customers-1.PhiExchange-acme")
               for n in names["production-customers-1"])


def test_no_codepipeline_stage_exceeds_its_structural_limits() -> None:
    from stacks.pipeline_stack import MAX_ACTIONS_PER_STAGE, MAX_STAGES, wave_plan

    # 1,000 customers over the three exchange accounts: every wave within 50 actions.
    where = {f"c{i:04d}": ("staging", "exchange-1", "exchange-2")[i % 3] for i in range(1000)}
    plan = wave_plan(ACCOUNTS, where)
    assert all(wave.actions <= MAX_ACTIONS_PER_STAGE for wave in plan)
    assert 3 + len(plan) <= MAX_STAGES
    assert sum(len(s.customers) for w in plan for s in w.stages) == 1000
    # Past what one pipeline holds, the plan is refused with the reason.
    where = {f"c{i:04d}": "exchange-1" for i in range(2500)}
    with pytest.raises(ValueError, match=r"pipeline: 57 stages needed, CodePipeline allows 50"):
        wave_plan(ACCOUNTS, where)


def test_every_deploy_goes_through_the_target_accounts_own_roles(assembly: Path) -> None:
    deploys = [a for s in _pipeline(assembly)["Stages"] for a in s["Actions"]
               if a["ActionTypeId"]["Provider"] == "CloudFormation"]
    assert deploys
    for action in deploys:
        role = "".join(p if isinstance(p, str) else "aws" for p in action["RoleArn"]["Fn::Join"][1])
        account = role.split(":")[4]
        assert role == f"arn:aws:iam::{account}:role/{naming.CDK_DEPLOY_ROLE_NAME}", action["Name"]
        assert account != PIPELINE_ACCOUNT
    # The pipeline never deploys itself, nor any account's AccessStack.
    names = {a["Configuration"]["StackName"] for a in deploys}
    assert names == {"PhiExchange-log-archive", "PhiExchange-audit", "PhiExchange-acme",
                     "PhiExchange-globex", "PhiExchange-hooli", "PhiExchange-initech"}


def test_the_synth_step_runs_the_tests_the_gate_and_a_diff(assembly: Path) -> None:
    template = json.loads((assembly / "PipelineStack.template.json").read_text())
    specs = [json.loads(r["Properties"]["Source"]["BuildSpec"])
             for r in template["Resources"].values()
             if r["Type"] == "AWS::CodeBuild::Project" and "BuildSpec" in r["Properties"]["Source"]]
    synth = next(s for s in specs if "cdk.out" in json.dumps(s.get("artifacts", {})))
    assert synth["phases"]["build"]["commands"] == list(SYNTH_COMMANDS)
    assert SYNTH_COMMANDS == ("make test", "make pipeline-synth", "make pipeline-diff")
    # The targets exist and run the pipeline's app and a diff (make -n prints, runs nothing).
    for target, expected in (("pipeline-synth",
                              "cdk synth -c pipeline=1 -c template_validation=all"),
                             ("pipeline-diff", "cdk diff -c pipeline=1")):
        shown = subprocess.run(["make", "-n", "--no-print-directory", target], cwd=REPO,
                               capture_output=True, text=True, check=True, timeout=60).stdout
        assert expected in shown


def _templates(assembly: Path) -> dict[str, str]:
    return {str(p.relative_to(assembly)): p.read_text()
            for p in sorted(assembly.rglob("*.template.json"))}


def test_a_registry_change_changes_only_that_customers_stack(assembly: Path,
                                                             tmp_path: Path) -> None:
    customers = [dataclasses.replace(c, retention=Retention(noncurrent_version_days=45))
                 if c.slug == "acme" else c for c in _customers()]
    changed = _templates(_synth(customers, tmp_path / "changed"))
    before = _templates(assembly)
    assert changed.keys() == before.keys()
    different = [name for name in before if before[name] != changed[name]]
    assert len(different) == 1 and different[0].startswith("assembly-exchange-1-"), different
    assert "Customeracme" in different[0]


def test_the_pipeline_needs_its_table_in_the_accounts_file(tmp_path: Path) -> None:
    registry = tmp_path / "customers"
    registry.mkdir()
    (registry / "acme.toml").write_text('slug = "acme"\naccess = "iam-user"\n'
                                        'contacts = ["ops@acme.example"]\n')
    context = {**CDK_CONTEXT, "pipeline": 1, "registry": str(registry)}
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context),
           "CDK_OUTDIR": str(tmp_path / "out")}
    result = subprocess.run([sys.executable, str(REPO / "app.py")], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 1
    assert "pipeline: required for -c pipeline=1" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_account_in_another_region_is_refused_with_one_line_each() -> None:
    from stacks.config import RegistryError

    elsewhere = dataclasses.replace(
        ACCOUNTS, exchange=(*ACCOUNTS.exchange[:2],
                            dataclasses.replace(ACCOUNTS.exchange[2], region="us-east-1")))
    where, _ = placement.check([], elsewhere)
    with pytest.raises(RegistryError) as err:
        build_pipeline_app([], where, context=CDK_CONTEXT)
    assert err.value.problems == ["accounts.toml: pipeline.region: the pipeline deploys only "
                                  "to its own region (eu-west-2); exchange-2 is in us-east-1"]
