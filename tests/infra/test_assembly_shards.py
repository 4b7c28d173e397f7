"""Synthesizing in several processes (stacks/assembly_shards.py): the joined cloud assembly is
the one a single process writes, file for file, for every customer (``-c customer=all``) and
for several pipelines (``-c pipeline=1``); the gate's report lists the same findings."""

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
from stacks import assembly_shards
from stacks.app_builder import build_app, build_pipeline_app
from stacks.config import load_registry, parse_audit_settings
from tests.infra.conftest import CDK_CONTEXT, REPO
from tests.infra.test_pipeline import ACCOUNTS, PLACED

# What app.py reads from cdk.json, so the in-process reference synthesizes the same app.
AUDIT = parse_audit_settings({k: CDK_CONTEXT[k] for k in (
    "audit_retention_days", "audit_lock_mode", "security_contacts") if k in CDK_CONTEXT})


def _app_py(context: dict[str, Any], outdir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CDK_CONTEXT_JSON": json.dumps({**CDK_CONTEXT, **context}),
           "CDK_OUTDIR": str(outdir)}
    return subprocess.run([sys.executable, str(REPO / "app.py")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _files(assembly: Path) -> dict[str, Any]:
    """Every file of the assembly by path; the gate's report as the set of its findings."""
    files: dict[str, Any] = {}
    for path in sorted(p for p in assembly.rglob("*") if p.is_file()):
        name = str(path.relative_to(assembly))
        files[name] = path.read_bytes()
        if name == assembly_shards.REPORT:
            report = json.loads(path.read_text())
            files[name] = sorted(
                (plugin["pluginName"], plugin["conclusion"],
                 sorted(json.dumps(f, sort_keys=True)
                        for f in plugin["violations"] + plugin["suppressedViolations"]))
                for plugin in report["pluginReports"])
    return files


def test_every_customer_in_two_processes_is_the_assembly_of_one(tmp_path: Path) -> None:
    customers = list(load_registry(REPO / "customers").values())
    assert len(customers) >= 3  # so the second shard holds a customer
    build_app(customers, all_customers=True, context=CDK_CONTEXT, audit_settings=AUDIT,
              outdir=str(tmp_path / "one")).synth()
    result = _app_py({"customer": "all", "synth_processes": 2}, tmp_path / "two")
    assert result.returncode == 0, result.stderr
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert list(two) == list(one)  # no shard directory left behind
    assert [name for name in one if one[name] != two[name]] == []
    # Again into the same directory (cdk synth, then cdk ls or deploy): the same assembly.
    again = _app_py({"customer": "all", "synth_processes": 2}, tmp_path / "two")
    assert again.returncode == 0, again.stderr
    assert _files(tmp_path / "two") == two
    # Three processes, one customer each: two shards joined in order.
    three = _app_py({"customer": "all", "synth_processes": 3}, tmp_path / "three")
    assert three.returncode == 0, three.stderr
    assert _files(tmp_path / "three") == one


def test_two_pipelines_in_two_processes_are_the_assembly_of_one(tmp_path: Path) -> None:
    """Pipeline 2 deploys exchange-2 (globex); pipeline 1 the log archive and the rest."""
    registry = tmp_path / "customers"
    registry.mkdir()
    for source in sorted((REPO / "customers").glob("*.toml")):
        slug = source.stem
        lines = source.read_text().splitlines(keepends=True)
        at = next(i for i, line in enumerate(lines) if line.startswith("slug ="))
        lines.insert(at + 1, f'account = "{PLACED[slug]}"\n')
        (registry / source.name).write_text("".join(lines))
    for source in (REPO / "customers").glob("*.pem"):  # CA bundles the files name
        (registry / source.name).write_text(source.read_text())
    two_pipelines = dataclasses.replace(ACCOUNTS, exchange=tuple(
        dataclasses.replace(a, pipeline=2) if a.label == "exchange-2" else a
        for a in ACCOUNTS.exchange))
    (tmp_path / "accounts.toml").write_text(_accounts_toml(two_pipelines))
    customers = [dataclasses.replace(c, account=PLACED[c.slug])
                 for c in load_registry(REPO / "customers").values()]
    where, _ = placement.check((c.placed for c in customers), two_pipelines)
    build_pipeline_app(customers, where, context=CDK_CONTEXT, audit_settings=AUDIT,
                       outdir=str(tmp_path / "one")).synth()
    result = _app_py({"pipeline": 1, "registry": str(registry), "synth_processes": 2},
                     tmp_path / "two")
    assert result.returncode == 0, result.stderr
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert list(two) == list(one)
    assert [name for name in one if one[name] != two[name]] == []
    # Each pipeline deploys its own accounts, under its own names.
    manifest = json.loads(one["manifest.json"])
    stacks = {a["properties"]["stackName"] for a in manifest["artifacts"].values()
              if a["type"] == "aws:cloudformation:stack"}
    assert stacks == {naming.pipeline_stack_name(1), naming.pipeline_stack_name(2)}
    second = json.loads(one["PipelineStack-2.template.json"])
    deployed = {a["Configuration"]["StackName"]
                for r in second["Resources"].values() if r["Type"] == "AWS::CodePipeline::Pipeline"
                for s in r["Properties"]["Stages"] for a in s["Actions"]
                if a["ActionTypeId"]["Provider"] == "CloudFormation"}
    assert deployed == {naming.AUDIT_STACK_NAME, "PhiExchange-globex"}
    names = json.dumps(second)
    for name in (naming.pipeline_role_name(2), naming.pipeline_artifact_key_alias(2),
                 naming.pipeline_artifact_bucket_name("555555555555", "eu-west-2", 2)):
        assert f'"{name}"' in names
    # Its synth step's `make pipeline-diff` reads every account's stacks, its own or not.
    for account in ("111111111111", "222222222222", "444444444444", "999999999999"):
        assert f"iam::{account}:role/cdk-*-lookup-role-{account}-*" in names


def _oversized(slug: str) -> str:
    """A valid registry file whose partner role's trust policy is over IAM's 2,048
    characters: refused at synth."""
    path = "/".join(["p" * 60] * 8)
    principals = ", ".join(f'"arn:aws:iam::{200000000000 + i}:role/{path}/{"r" * 64}"'
                           for i in range(20))
    return (f'slug = "{slug}"\naccess = "assume-role"\ndirections = ["inbound"]\n'
            'contacts = ["ops@big.example"]\n'
            f'partner_principals = [{principals}]\nexternal_id = "{"e" * 1224}"\n')


def _accounts_toml(accounts: placement.Accounts) -> str:
    assert accounts.pipeline is not None and accounts.log_archive is not None
    home, archive = accounts.pipeline.account, accounts.log_archive
    lines = ["[pipeline]", f'label = "{home.label}"', f'account_id = "{home.account_id}"',
             f'region = "{home.region}"', f'repository = "{accounts.pipeline.repository}"',
             f'connection_arn = "{accounts.pipeline.connection_arn}"', "",
             "[log_archive]", f'label = "{archive.label}"',
             f'account_id = "{archive.account_id}"', f'region = "{archive.region}"']
    for account in accounts.exchange:
        lines += ["", "[[exchange]]", f'label = "{account.label}"',
                  f'account_id = "{account.account_id}"', f'region = "{account.region}"',
                  f"production = {str(account.production).lower()}",
                  f"pipeline = {account.pipeline}"]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("units", "cores", "requested", "expected"), [
    (3, 2, None, 1),  # too few customers to be worth a second Node process
    (80, 2, None, 2),
    (1000, 2, None, 2),  # one process per core
    (1000, 8, None, 8),
    (3, 2, 2, 2),  # asked for
    (3, 2, 9, 3),  # never more processes than customers
    (0, 2, 2, 1),
])
def test_how_many_processes(units: int, cores: int, requested: int | None,
                            expected: int) -> None:
    assert assembly_shards.shard_count(units, cores, requested) == expected


def test_shards_are_contiguous_runs_in_order() -> None:
    assert assembly_shards.split(list("abcdefg"), 3) == [list("abc"), list("de"), list("fg")]
    assert assembly_shards.split(["a"], 2) == [["a"], []]


def test_a_shard_that_repeats_a_stage_is_refused(tmp_path: Path) -> None:
    def assembly(directory: Path, artifacts: dict[str, Any]) -> Path:
        directory.mkdir()
        (directory / "manifest.json").write_text(json.dumps(
            {"version": "55.0.0", "artifacts": artifacts}))
        (directory / "tree.json").write_text(json.dumps(
            {"version": "tree-0.1", "tree": {"id": "App", "path": "", "children": {}}}))
        return directory

    stage = {"type": "cdk:cloud-assembly",
             "properties": {"directoryName": "assembly-acme", "displayName": "acme"}}
    outdir = assembly(tmp_path / "out", {"assembly-acme": stage})
    shard = assembly(tmp_path / "shard", {"assembly-acme": stage})
    with pytest.raises(assembly_shards.ShardError,
                       match=r"manifest.json: artifacts.assembly-acme: already in another shard"):
        assembly_shards.join(outdir, [shard])


def test_failing_shards_fail_the_synth_each_reported_and_leave_nothing_behind(
        tmp_path: Path) -> None:
    """A customer whose partner role's trust policy is over IAM's 2,048 characters in the first
    run (this process) and one in the second: synth fails with both registry problems (one
    line each, whichever process finishes first), no traceback, and the output directory
    holds no shard's partial assembly."""
    registry = tmp_path / "customers"
    registry.mkdir()
    for source in (*(REPO / "customers").glob("*.toml"), *(REPO / "customers").glob("*.pem")):
        (registry / source.name).write_text(source.read_text())
    for slug in ("aa-big", "zz-big"):
        (registry / f"{slug}.toml").write_text(_oversized(slug))
    result = _app_py({"customer": "all", "registry": str(registry), "synth_processes": 2},
                     tmp_path / "out")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "aa-big" in result.stderr and "zz-big" in result.stderr
    assert not list((tmp_path / "out").glob(".shard-*"))


def test_a_bad_template_validation_value_is_one_line(tmp_path: Path) -> None:
    result = _app_py({"customer": "all", "template_validation": "some"}, tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: context: 1 problem",
        "  - -c template_validation=some: the only value is 'all' (validate every template of "
        "-c customer=all or -c pipeline=1)"]


def test_a_bad_process_count_is_one_line(tmp_path: Path) -> None:
    result = _app_py({"customer": "all", "synth_processes": "two"}, tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "error: context: 1 problem",
        "  - -c synth_processes=two: must be a whole number, 1 or more"]
