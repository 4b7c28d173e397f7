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
    stacks, into ``outdir``. Imports CDK lazily: the module itself needs no Node."""
    from stacks.app_builder import build_app

    app = build_app(list(customers), all_customers=True, outdir=str(outdir),
                    context=CDK_CONTEXT)
    assembly = app.synth()
    templates: dict[str, dict[str, Any]] = {}
    files: dict[str, Path] = {}
    for stack in assembly.stacks_recursively:
        templates[stack.stack_name] = stack.template
        files[stack.stack_name] = Path(stack.template_full_path)
    return SynthesizedApp(outdir=outdir, templates=templates, template_files=files)
