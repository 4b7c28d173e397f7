"""The user's commands, run for real: the pinned CDK CLI, offline, without credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CDK = REPO / "node_modules" / ".bin" / "cdk"

pytestmark = pytest.mark.skipif(not CDK.exists(), reason="run `make setup` (npm ci) first")


def offline_env(tmp_path: Path) -> dict[str, str]:
    """No AWS credentials or config at all, and the CLI's telemetry and notices off."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        HOME=str(tmp_path),  # no ~/.aws
        AWS_CONFIG_FILE=str(tmp_path / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"),
        AWS_EC2_METADATA_DISABLED="true",
        CDK_DISABLE_CLI_TELEMETRY="true",
        PATH=f"{REPO / 'node_modules' / '.bin'}{os.pathsep}{Path(sys.executable).parent}"
        f"{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def cdk(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CDK), *args, "--no-notices", "--output", str(tmp_path / "cdk.out")],
        cwd=REPO, env=offline_env(tmp_path), capture_output=True, text=True, timeout=300,
    )


@pytest.fixture(scope="module")
def acme_synth(tmp_path_factory) -> tuple[subprocess.CompletedProcess[str], Path]:
    tmp_path = tmp_path_factory.mktemp("cli")
    return cdk(tmp_path, "synth", "CustomerStack", "-c", "customer=acme", "--quiet"), tmp_path


def test_cdk_synth_acme_works_offline_without_credentials(acme_synth):
    result, tmp_path = acme_synth
    assert result.returncode == 0, result.stderr
    template = json.loads((tmp_path / "cdk.out" / "CustomerStack.template.json").read_text())
    names = [r["Properties"].get("BucketName") for r in template["Resources"].values()
             if r["Type"] == "AWS::S3::Bucket"]
    assert any("phi-acme-" in json.dumps(n) for n in names)


def test_stack_name_is_derived_from_the_slug(acme_synth):
    _, tmp_path = acme_synth
    manifest = json.loads((tmp_path / "cdk.out" / "manifest.json").read_text())
    stack = manifest["artifacts"]["CustomerStack"]
    assert stack["properties"]["stackName"] == "PhiExchange-acme"


def test_single_customer_template_equals_the_all_customers_template(acme_synth, stack_artifacts):
    """Two independent synths (the CLI for one customer, in-process for all) agree byte for
    byte: synth is deterministic and selecting a customer changes nothing in its template."""
    _, tmp_path = acme_synth
    single = json.loads((tmp_path / "cdk.out" / "CustomerStack.template.json").read_text())
    assert single == stack_artifacts["acme"].template


def test_unknown_customer_fails_with_the_registered_list(tmp_path):
    result = cdk(tmp_path, "synth", "CustomerStack", "-c", "customer=nobody", "--quiet")
    assert result.returncode != 0
    assert "-c customer=nobody: customer: not registered; registered customers: " \
        "acme, globex, hooli, initech" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_registry_fails_with_every_problem_and_no_traceback(tmp_path):
    registry = tmp_path / "registry"
    registry.mkdir()
    (registry / "one.toml").write_text('slug = "one"\naccess = "nope"\ncontacts = ["x"]\n')
    (registry / "two.toml").write_text('slug = "two"\naccess = "iam-user"\nfoo = 1\n')
    result = cdk(tmp_path, "synth", "-c", "customer=all", "-c", f"registry={registry}", "--quiet")
    assert result.returncode != 0
    for expected in [f"{registry}/one.toml: access: must be one of",
                     f"{registry}/one.toml: contacts[0]: must be an e-mail address",
                     f"{registry}/two.toml: contacts: required",
                     f"{registry}/two.toml: foo: unknown field"]:
        assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_the_cli_lists_every_stack_synthesized_in_two_processes(tmp_path):
    """`cdk synth -c customer=all`, then `cdk ls` into the same output, each run by the CLI in
    two processes (stacks/assembly_shards.py): every stack once, no shard left behind."""
    args = ("-c", "customer=all", "-c", "synth_processes=2")
    synth = cdk(tmp_path, "synth", *args, "--quiet")
    assert synth.returncode == 0, synth.stderr
    listed = cdk(tmp_path, "ls", *args)
    assert listed.returncode == 0, listed.stderr
    assert [line.split()[0] for line in listed.stdout.splitlines()] == [
        "AccessStack", "AuditStack", "acme/CustomerStack", "globex/CustomerStack",
        "hooli/CustomerStack", "initech/CustomerStack"]
    assert not list((tmp_path / "cdk.out").glob(".shard-*"))
