"""Hostile input to the customer registry: every input is either accepted, and then synthesizes
a stack that passes the compliance gate and the access-matrix rules, or refused with
RegistryError whose problems are each one line, ``<file>: <field>: <rule>``. Never another
exception, never a traceback.

Example counts are bounded for CI: validation-only properties run 100 (or 50) examples; the
property that synthesizes runs 2 examples of up to 4 customers in one app each.
"""

from __future__ import annotations

import ipaddress
import json
import re
import string
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, assume, given, settings
from hypothesis import strategies as st

from phi_core import naming
from security.access_matrix import STRANGER_ACCOUNT, build_universe, run_matrix
from security.synth import synthesize
from security.templates import ACCOUNT, collect_policies, resolve_template
from stacks.config import (
    MAX_FILE_BYTES,
    MAX_PRINCIPALS,
    MAX_SOURCE_CIDRS,
    RESERVED_SLUGS,
    CustomerConfig,
    RegistryError,
    load_customer_file,
    load_registry,
    parse_customer,
)

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FILES = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# One example per run (a synth and a matrix, ~20 s): each CI run draws a new one.
SYNTH = settings(max_examples=1, deadline=None, phases=[Phase.generate],
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

FIELDS = ["slug", "display_name", "access", "directions", "partner_principals", "external_id",
          "allowed_source_ips", "contacts", "retention", "rotation"]


def assert_clear_refusal(err: RegistryError, source: str) -> None:
    assert err.problems, "a refusal lists at least one problem"
    for problem in err.problems:
        assert "\n" not in problem and "\r" not in problem, f"multi-line problem: {problem!r}"
        assert problem.startswith(f"{source}: "), problem
        field, _, rule = problem[len(source) + 2:].partition(": ")
        assert field and rule, f"not <file>: <field>: <rule>: {problem!r}"
    assert str(err).splitlines()[0].endswith(("problem", "problems"))


def parse_or_refuse(data: dict[str, Any], source: str = "customers/x.toml"
                    ) -> CustomerConfig | None:
    try:
        return parse_customer(data, source=source)
    except RegistryError as err:
        assert_clear_refusal(err, source)
        return None


# --- strategies ---------------------------------------------------------------------------

# What tomllib can produce: strings, integers, floats, booleans, dates and times, arrays, tables.
scalars = st.one_of(
    st.text(max_size=40), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.datetimes(), st.dates(),
    st.times())
toml_values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12)

slugs = st.one_of(
    st.from_regex(r"[a-z][a-z0-9-]{0,24}", fullmatch=True),
    st.text(alphabet=string.ascii_letters + string.digits + "-_. /\\\n\u00e9\u0130", max_size=30),
)
accounts = st.from_regex(r"[0-9]{10,13}", fullmatch=True)
names = st.text(alphabet=string.ascii_letters + string.digits + "+=,.@-_*?/ :", min_size=0,
                max_size=70)
arns = st.builds(
    lambda partition, account, kind, name: f"arn:{partition}:iam::{account}:{kind}/{name}",
    st.sampled_from(["aws", "aws-cn", "aws-us-gov", "aws-iso", "", "AWS"]),
    accounts, st.sampled_from(["role", "user", "group", "root", "policy", ""]), names)
cidrs = st.one_of(
    st.builds(lambda ip, bits: f"{ip}/{bits}", st.ip_addresses(v=4), st.integers(-1, 33)),
    st.builds(lambda ip, bits: f"{ip}/{bits}", st.ip_addresses(v=6), st.integers(-1, 129)),
    st.ip_addresses().map(str), st.text(max_size=20))
numbers = st.one_of(st.integers(min_value=-(10**20), max_value=10**20), st.booleans(),
                    st.floats(allow_nan=True), st.text(max_size=5))
emails = st.one_of(st.emails(), st.text(max_size=30))
field_values: dict[str, st.SearchStrategy[Any]] = {
    "slug": slugs,
    "display_name": st.text(max_size=200),
    "access": st.one_of(st.sampled_from(["iam-user", "cross-account", "assume-role",
                                         "IAM-USER", "", "root"]), toml_values),
    "directions": st.one_of(st.lists(st.sampled_from(["inbound", "outbound", "both", ""]),
                                     max_size=3), toml_values),
    "partner_principals": st.one_of(st.lists(st.one_of(arns, accounts), max_size=4),
                                    toml_values),
    "external_id": st.one_of(st.text(min_size=0, max_size=40), toml_values),
    "allowed_source_ips": st.one_of(st.lists(cidrs, max_size=4), toml_values),
    "contacts": st.one_of(st.lists(emails, max_size=3), toml_values),
    "retention": st.one_of(st.dictionaries(
        st.sampled_from(["noncurrent_version_days", "abort_incomplete_multipart_days", "x"]),
        numbers, max_size=3), toml_values),
    "rotation": st.one_of(st.dictionaries(
        st.sampled_from(["interval_days", "grace_days", "delete_after_days", "y"]),
        numbers, max_size=4), toml_values),
}


def valid_base(mode: str, slug: str) -> dict[str, Any]:
    base: dict[str, Any] = {"slug": slug, "access": mode, "contacts": ["ops@partner.example"]}
    if mode != "iam-user":
        base["partner_principals"] = ["arn:aws:iam::210987654321:role/transfer"]
    if mode == "assume-role":
        base["external_id"] = "external-id-0123456789"
    return base


@st.composite
def mutated_customers(draw: st.DrawFn) -> dict[str, Any]:
    """A valid customer of a random mode, then one to four hostile changes: a field set to a
    targeted or arbitrary value, a field removed, an unknown field added."""
    data = valid_base(draw(st.sampled_from(["iam-user", "cross-account", "assume-role"])),
                      draw(st.from_regex(r"[a-z][a-z0-9]{1,10}", fullmatch=True)))
    for _ in range(draw(st.integers(1, 4))):
        change = draw(st.sampled_from(["set", "set", "set", "delete", "unknown"]))
        name = draw(st.sampled_from(FIELDS))
        if change == "set":
            data[name] = draw(field_values[name])
        elif change == "delete":
            data.pop(name, None)
        else:
            data[draw(st.text(min_size=1, max_size=20))] = draw(toml_values)
    return data


def _network(address: Any, bits: int) -> str:
    return str(ipaddress.ip_network(f"{address}/{bits}", strict=False))


valid_slugs = st.from_regex(r"[a-z][a-z0-9]{1,18}", fullmatch=True).filter(
    lambda s: s not in RESERVED_SLUGS)


@st.composite
def valid_customers(draw: st.DrawFn, slug: str | None = None) -> dict[str, Any]:
    """Customers the registry must accept, across its whole valid range."""
    mode = draw(st.sampled_from(["iam-user", "cross-account", "assume-role"]))
    data = valid_base(mode, slug or draw(valid_slugs))
    data["directions"] = draw(st.sampled_from([["inbound"], ["outbound"], ["inbound", "outbound"],
                                               ["outbound", "inbound"]]))
    if mode != "iam-user":
        principal = st.one_of(
            st.from_regex(r"[0-9]{12}", fullmatch=True),
            st.builds(lambda a, k, p, n: f"arn:aws:iam::{a}:{k}/{p}{n}",
                      st.from_regex(r"[0-9]{12}", fullmatch=True),
                      st.sampled_from(["role", "user"]),
                      st.sampled_from(["", "team/", "a/b/"]),
                      st.from_regex(r"[A-Za-z0-9+=,.@_-]{1,20}", fullmatch=True)))
        data["partner_principals"] = draw(st.lists(principal, min_size=1, max_size=4,
                                                   unique=True))
    if mode == "assume-role":
        data["external_id"] = draw(st.from_regex(r"[A-Za-z0-9+=,.@:/_-]{16,40}",
                                                 fullmatch=True))
    data["allowed_source_ips"] = draw(st.lists(st.one_of(
        st.builds(_network, st.ip_addresses(v=4), st.integers(8, 32)),
        st.builds(_network, st.ip_addresses(v=6), st.integers(16, 128))), max_size=3,
        unique=True))
    data["retention"] = {"noncurrent_version_days": draw(st.integers(1, 3650)),
                         "abort_incomplete_multipart_days": draw(st.integers(1, 30))}
    if mode == "iam-user":
        interval = draw(st.integers(8, 365))
        data["rotation"] = {"interval_days": interval,
                            "grace_days": draw(st.integers(1, min(90, interval - 1))),
                            "delete_after_days": draw(st.integers(1, 365))}
    return data


# --- validation only ------------------------------------------------------------------------


@FAST
@given(st.dictionaries(st.text(max_size=20), toml_values, max_size=8))
def test_arbitrary_tables_are_accepted_or_refused_with_one_line_problems(data):
    parse_or_refuse(data)


@FAST
@given(mutated_customers())
def test_mutated_customers_are_accepted_or_refused_with_one_line_problems(data):
    config = parse_or_refuse(data)
    if config is not None:  # accepted: it is what the file says, validated
        assert config.slug == data["slug"] and config.access.value == data["access"]
        assert naming.MAX_SLUG_LENGTH >= len(config.slug) >= 2


@FAST
@given(valid_customers())
def test_every_valid_customer_is_accepted(data):
    config = parse_customer(data, source=f"customers/{data['slug']}.toml")
    assert set(config.prefixes) == {f"{d}/" for d in data["directions"]}


@FILES
@given(st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.binary(min_size=1, max_size=8).map(lambda b: b * (MAX_FILE_BYTES // len(b) + 1)),
    st.sampled_from([b"\xef\xbb\xbfslug = 'x'", b"\xff\xfe", b"slug = \"\x00\"",
                     b"a = " + b"[" * 2000 + b"]" * 2000,
                     b"a = " + b"{b = " * 1500 + b"1" + b"}" * 1500])))
def test_any_file_content_is_accepted_or_refused_with_one_line_problems(content):
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "hostile.toml"
        path.write_bytes(content)
        try:
            load_customer_file(path)
        except RegistryError as err:
            assert_clear_refusal(err, str(path))


def test_deeply_nested_toml_is_refused_not_a_traceback(tmp_path: Path):
    """4 KB of nested arrays exhausts tomllib's recursion (RecursionError)."""
    path = tmp_path / "nested.toml"
    path.write_text("a = " + "[" * 2000 + "]" * 2000)
    with pytest.raises(RegistryError) as caught:
        load_customer_file(path)
    assert_clear_refusal(caught.value, str(path))


def test_a_field_name_with_a_line_break_stays_on_one_line():
    data = {**valid_base("iam-user", "acme"), "evil\nkey: x": 1, "retention": {"x\ny": 2}}
    with pytest.raises(RegistryError) as caught:
        parse_customer(data, source="customers/acme.toml")
    assert_clear_refusal(caught.value, "customers/acme.toml")


@settings(max_examples=25, deadline=None)
@given(st.lists(st.one_of(mutated_customers(), valid_customers()), min_size=1, max_size=4))
def test_a_registry_of_hostile_files_is_loaded_or_refused_as_a_whole(customers):
    with tempfile.TemporaryDirectory() as directory:
        for index, data in enumerate(customers):
            slug = data.get("slug")
            name = slug if isinstance(slug, str) and re.fullmatch(r"[a-z0-9-]+", slug) \
                else f"file{index}"
            text = "\n".join(f"{k!s} = {_toml(v)}" for k, v in data.items()
                             if isinstance(k, str) and re.fullmatch(r"[A-Za-z0-9_-]+", k))
            (Path(directory) / f"{name}.toml").write_text(text)
        try:
            registry = load_registry(Path(directory))
        except RegistryError as err:
            for problem in err.problems:
                assert "\n" not in problem and problem.startswith(directory), problem
        else:
            assert all(isinstance(c, CustomerConfig) for c in registry.values())


def _toml(value: Any) -> str:
    """A small TOML writer for the values the strategies make (enough for this test)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + "}"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return '"' + "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in text) + '"'


# --- accepted means deployable and safe -----------------------------------------------------


@st.composite
def accepted_registries(draw: st.DrawFn) -> list[CustomerConfig]:
    slugs = draw(st.lists(st.from_regex(r"[a-z][a-z0-9]{1,12}", fullmatch=True), min_size=2,
                          max_size=4, unique=True))
    configs = []
    for slug in slugs:
        config = parse_customer(draw(valid_customers(slug=f"hx-{slug}")),
                                source=f"(generated) hx-{slug}")
        configs.append(config)
    accounts = [p.split(":")[4] if p.startswith("arn:") else p
                for c in configs for p in c.partner_principals]
    # A partner account shared between customers, or equal to ours or to the matrix's
    # stranger, is a different scenario from the one the rules describe.
    assume(len(set(accounts)) == len(accounts))
    assume(not {ACCOUNT, STRANGER_ACCOUNT} & set(accounts))
    return configs


@SYNTH
@given(accepted_registries())
def test_accepted_customers_synthesize_past_the_gate_with_no_access_leak(customers):
    """One app per example, compliance gate on (a finding fails synth), then the access matrix
    over those customers: nothing allowed beyond the rules, nothing the rules allow denied."""
    with tempfile.TemporaryDirectory(prefix="hostile-synth-") as outdir:
        try:
            app = synthesize(customers, Path(outdir))
        except RegistryError as err:  # refused at synth (e.g. a policy over an AWS size limit)
            for problem in err.problems:
                assert "\n" not in problem and problem.startswith("(generated) "), problem
            return
    result = run_matrix(build_universe(customers, app))
    disagreements = [o for o in result.outcomes if not o.agrees]
    assert not disagreements, [describe_short(o) for o in disagreements[:10]]


def describe_short(outcome: Any) -> str:
    r = outcome.request
    return (f"{r.principal.label} {r.operation.label} {r.target.label} {r.network.label}: "
            f"expected {outcome.expected}, got {outcome.decision.decision}")


# --- accepted means deployable: AWS policy size limits --------------------------------------

TRUST_POLICY_LIMIT = 2048  # IAM "role trust policy length", default quota (characters)
BUCKET_POLICY_LIMIT = 20 * 1024  # S3 bucket policy size
KEY_POLICY_LIMIT = 32 * 1024  # KMS key policy size


def _largest(mode: str, slug: str, count: int) -> dict[str, Any]:
    path = "/".join(["p" * 60] * 8) + "/"  # IAM allows role paths up to 512 characters
    data: dict[str, Any] = {
        **valid_base(mode, slug),
        "partner_principals": [f"arn:aws:iam::{200000000000 + i}:role/{path}{'r' * 64}"
                               for i in range(min(count, MAX_PRINCIPALS))],
        "allowed_source_ips": [f"2001:db8:{i:x}::/48" for i in range(min(count,
                                                                         MAX_SOURCE_CIDRS))],
    }
    if mode == "assume-role":
        data["external_id"] = "e" * 1224
    return data


def _oversize(app_templates: dict[str, Any], stack: str) -> list[str]:
    """Policies of ``stack`` over their AWS limit, measured independently of stacks/ on the
    resolved documents without whitespace."""
    policies = collect_policies(resolve_template(app_templates[stack], stack))
    checks = [(p, TRUST_POLICY_LIMIT) for p in policies.trust_policies.values()]
    checks += [(p, BUCKET_POLICY_LIMIT) for p in policies.bucket_policies.values()]
    checks += [(p, KEY_POLICY_LIMIT) for p in policies.key_policies.values()]
    return [f"{p.name}: {size} > {limit}" for p, limit in checks
            if (size := len(json.dumps(p.document, separators=(",", ":")))) > limit]


@pytest.mark.parametrize(("mode", "count"), [("assume-role", 20), ("cross-account", 1000)])
def test_the_largest_customers_are_refused_or_fit_aws_policy_size_limits(
        mode: str, count: int, tmp_path: Path):
    """The registry's own bounds allow policies far over AWS's size limits (20 principals
    with 512-character role paths and a 1224-character external id overflow a role trust
    policy). Such a customer must be refused, with one-line problems, not deployed to fail."""
    slug = "big-" + mode.split("-")[0]
    source = f"customers/{slug}.toml"
    try:
        customer = parse_customer(_largest(mode, slug, count), source=source)
        app = synthesize([customer], tmp_path)
    except RegistryError as err:
        assert_clear_refusal(err, source)
        return
    assert not _oversize(app.templates, naming.stack_name(slug))
