"""Synthesizes the test customers once per test session: one app, one stage per customer, with
the compliance gate on (so a finding that is neither fixed nor acknowledged fails every test
here). Tests read templates from the result; none synthesizes on its own."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk.assertions import Template

from stacks.app_builder import build_app
from stacks.config import CustomerConfig, load_registry, parse_customer

REPO = Path(__file__).resolve().parents[2]
# The feature flags the CLI would pass from cdk.json, so tests synthesize what `cdk synth` does.
CDK_CONTEXT = json.loads((REPO / "cdk.json").read_text())["context"]

# Variants beyond the shipped examples, so each access mode is seen with other options.
EXTRA_CUSTOMERS = [
    {
        "slug": "umbrella",
        "access": "iam-user",
        "directions": ["inbound"],
        "allowed_source_ips": ["198.51.100.0/24"],
        "contacts": ["ops@umbrella.example"],
        "retention": {"noncurrent_version_days": 30, "abort_incomplete_multipart_days": 2},
    },
    {
        "slug": "dunder",
        "access": "cross-account",
        "directions": ["outbound"],
        "partner_principals": ["777788889999", "arn:aws:iam::777788889999:user/dunder-batch"],
        "contacts": ["ops@dunder.example"],
    },
    {
        # roles-anywhere with one subject attribute, inbound only, limited to one network.
        "slug": "stark",
        "access": "roles-anywhere",
        "directions": ["inbound"],
        "allowed_source_ips": ["203.0.113.0/24"],
        "roles_anywhere": {"ca_bundle": (REPO / "customers" / "hooli-ca.pem").read_text(),
                           "subject": {"CN": "stark-uploads"}},
        "contacts": ["ops@stark.example"],
    },
    {
        # Offboarded (registry as source of truth): data kept, every way in removed.
        "slug": "vandelay",
        "access": "iam-user",
        "offboarded": True,
        "contacts": ["ops@vandelay.example"],
    },
    {
        "slug": "soylent",
        "access": "assume-role",
        "partner_principals": ["arn:aws:iam::222233334444:role/soylent-transfer"],
        "external_id": "soylent-external-id-0001",
        "allowed_source_ips": ["192.0.2.0/24"],
        "contacts": ["ops@soylent.example"],
        # Opted out of the malware gate, with the reason the registry requires.
        "malware_scan": {"enabled": False, "reason": "Partner scans at source under contract "
                         "S-12; security review 2026-10"},
    },
]


def build_test_customers() -> dict[str, CustomerConfig]:
    customers = dict(load_registry(REPO / "customers"))
    for data in EXTRA_CUSTOMERS:
        customers[data["slug"]] = parse_customer(data, source=f"(test) {data['slug']}")
    return customers


@pytest.fixture(scope="session")
def customers() -> dict[str, CustomerConfig]:
    return build_test_customers()


@pytest.fixture(scope="session")
def stack_artifacts(customers: dict[str, CustomerConfig], tmp_path_factory) -> dict[str, Any]:
    """slug -> the synthesized stack artifact (template, metadata) of that customer."""
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = build_app(list(customers.values()), all_customers=True,
                             outdir=str(outdir), context=CDK_CONTEXT)
    assembly = app.synth()
    result = {}
    for slug in customers:
        (stack,) = assembly.get_nested_assembly(f"assembly-{slug}").stacks
        result[slug] = stack
    result["(audit)"] = assembly.get_stack_by_name("PhiExchange-audit")
    result["(access)"] = assembly.get_stack_by_name("PhiExchange-access")
    return result


@pytest.fixture(scope="session")
def audit_template(stack_artifacts: dict[str, Any]) -> Template:
    return Template.from_json(stack_artifacts["(audit)"].template)


@pytest.fixture(scope="session")
def templates(stack_artifacts: dict[str, Any]) -> dict[str, Template]:
    return {slug: Template.from_json(s.template) for slug, s in stack_artifacts.items()
            if not slug.startswith("(")}


def slugs_by_mode(mode: str) -> list[str]:
    """Active (not offboarded) customers of one access mode."""
    return sorted(s for s, c in build_test_customers().items()
                  if c.access.value == mode and not c.offboarded)


ALL_SLUGS = sorted(s for s, c in build_test_customers().items() if not c.offboarded)
OFFBOARDED_SLUGS = sorted(s for s, c in build_test_customers().items() if c.offboarded)
