"""Synthesizes customers the way ``cdk synth -c customer=all`` does, for the security tools.

The same app builder, the same ``cdk.json`` feature flags and the compliance gate on: a template
the tools read is a template the CLI would deploy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CDK_CONTEXT: dict[str, Any] = json.loads((REPO / "cdk.json").read_text())["context"]


@dataclass(frozen=True)
class SynthesizedApp:
    """The cloud assembly on disk, and each stack's template by CloudFormation stack name."""

    outdir: Path
    templates: dict[str, dict[str, Any]]
    template_files: dict[str, Path]


def synthesize(customers: Sequence[Any], outdir: Path) -> SynthesizedApp:
    """Synthesize every customer in ``customers`` (one stage each) plus the account-wide
    stacks, into ``outdir``, for an account the CDK pipeline deploys to (an accounts file
    with a ``[pipeline]`` in the matrix's pipeline account): its CDK-deploy role then also
    trusts the pipeline's role, and the matrix proves that grant too. Imports CDK lazily: the
    module itself needs no Node."""
    from phi_core import placement
    from security.matrix_model import PIPELINE_ACCOUNT, REGION
    from stacks.app_builder import build_app

    accounts = placement.Accounts(
        exchange=placement.Accounts.implicit().exchange,
        pipeline=placement.Pipeline(
            account=placement.Account("tooling", PIPELINE_ACCOUNT, REGION),
            repository="example-org/phi-exchange", branch="main",
            connection_arn=f"arn:aws:codeconnections:{REGION}:{PIPELINE_ACCOUNT}:connection/"
                           "0a1b2c3d-0000-4000-8000-00000000abcd"))
    app = build_app(list(customers), all_customers=True, outdir=str(outdir),
                    context=CDK_CONTEXT, accounts=accounts)
    assembly = app.synth()
    templates: dict[str, dict[str, Any]] = {}
    files: dict[str, Path] = {}
    for stack in assembly.stacks_recursively:
        templates[stack.stack_name] = stack.template
        files[stack.stack_name] = Path(stack.template_full_path)
    return SynthesizedApp(outdir=outdir, templates=templates, template_files=files)
