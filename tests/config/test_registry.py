"""The partner registry: every validation rule has a good case and a refused case."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from stacks.config import (
    AccessMode,
    Direction,
    RegistryError,
    load_customer_file,
    load_one_customer,
    load_registry,
    parse_customer,
)

REPO = Path(__file__).resolve().parents[2]

IAM_USER: dict[str, Any] = {
    "slug": "acme",
    "access": "iam-user",
    "contacts": ["ops@acme.example"],
}
CROSS_ACCOUNT: dict[str, Any] = {
    "slug": "globex",
    "access": "cross-account",
    "partner_principals": ["arn:aws:iam::111122223333:role/transfer"],
    "contacts": ["ops@globex.example"],
}
ASSUME_ROLE: dict[str, Any] = {
    "slug": "initech",
    "access": "assume-role",
    "partner_principals": ["arn:aws:iam::444455556666:role/bridge"],
    "external_id": "initech-external-id-01",
    "contacts": ["ops@initech.example"],
}


def with_changes(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def problems_of(data: dict[str, Any], source: str = "customers/x") -> list[str]:
    with pytest.raises(RegistryError) as caught:
        parse_customer(data, source=source)
    return caught.value.problems


# --- the shipped registry --------------------------------------------------------------------


def test_shipped_examples_cover_every_access_mode():
    registry = load_registry(REPO / "customers")
    assert {c.access for c in registry.values()} == set(AccessMode)
    assert registry["acme"].access is AccessMode.IAM_USER


def test_defaults_apply_when_fields_are_omitted():
    config = parse_customer(IAM_USER, source="acme.toml")
    assert config.directions == (Direction.INBOUND, Direction.OUTBOUND)
    assert config.prefixes == ("inbound/", "outbound/")
    assert config.retention.noncurrent_version_days == 90
    assert config.retention.abort_incomplete_multipart_days == 7
    assert config.rotation is not None and config.rotation.interval_days == 365
    assert config.rotation.grace_days == 14


def test_config_is_frozen():
    config = parse_customer(IAM_USER, source="acme.toml")
    with pytest.raises(AttributeError):
        config.slug = "other"  # type: ignore[misc]


# --- one good and one refused case per rule --------------------------------------------------


@pytest.mark.parametrize("slug", ["ab", "acme", "a1-b2", "x" * 20])
def test_valid_slugs_are_accepted(slug):
    assert parse_customer(with_changes(IAM_USER, slug=slug), source=f"{slug}.toml").slug == slug


@pytest.mark.parametrize(
    ("slug", "rule"),
    [
        ("A", "2 to 20"),
        ("x" * 21, "2 to 20"),
        ("Acme", "lower-case"),
        ("1acme", "starting with a letter"),
        ("acme-", "not ending with a hyphen"),
        ("ac--me", "single hyphens"),
        ("ac_me", "lower-case"),
        ("all", "reserved"),
        ("log-archive", "reserved"),  # PhiExchange-log-archive: the log archive's stack
        ("pipeline", "reserved"),  # PhiExchange-pipeline, -pipeline-2: the pipelines' stacks
        ("pipeline-2", "reserved"),
        (7, "must be a string"),
    ],
)
def test_bad_slugs_are_refused(slug, rule):
    (problem,) = problems_of(with_changes(IAM_USER, slug=slug), source="(inline)")
    assert problem.startswith("(inline): slug: ")
    assert rule in problem


def test_file_name_must_match_slug():
    (problem,) = problems_of(IAM_USER, source="customers/acme-health.toml")
    assert "customers/acme-health.toml: slug: must match the file name" in problem


@pytest.mark.parametrize("field", ["slug", "access", "contacts"])
def test_required_fields_are_required(field):
    problems = problems_of(with_changes(IAM_USER, **{field: None}), source="(inline)")
    assert any(p.startswith(f"(inline): {field}: required") for p in problems)


def test_unknown_fields_are_refused_at_every_level():
    data = with_changes(IAM_USER, contact=["typo@acme.example"],
                        retention={"noncurrent_versions_days": 5},
                        rotation={"grace": 3})
    problems = problems_of(data, source="(inline)")
    assert any(p.startswith("(inline): contact: unknown field") for p in problems)
    assert any(p.startswith("(inline): retention.noncurrent_versions_days: unknown field")
               for p in problems)
    assert any(p.startswith("(inline): rotation.grace: unknown field") for p in problems)


def test_access_mode_must_be_known():
    (problem,) = problems_of(with_changes(IAM_USER, access="sftp"), source="(inline)")
    assert problem == ("(inline): access: must be one of: iam-user, cross-account, "
                       "assume-role, roles-anywhere (got 'sftp')")


@pytest.mark.parametrize("directions", [["inbound"], ["outbound"], ["outbound", "inbound"]])
def test_directions_subset_is_accepted_in_canonical_order(directions):
    config = parse_customer(with_changes(IAM_USER, directions=directions), source="acme.toml")
    assert list(config.directions) == [d for d in Direction if d.value in directions]


@pytest.mark.parametrize(
    ("directions", "rule"),
    [([], "at least one"), (["sideways"], "must be 'inbound' or 'outbound'"),
     (["inbound", "inbound"], "duplicates"), ("inbound", "must be a list")],
)
def test_bad_directions_are_refused(directions, rule):
    problems = problems_of(with_changes(IAM_USER, directions=directions))
    assert any(rule in p for p in problems)


@pytest.mark.parametrize(
    "principal",
    [
        "arn:aws:iam::111122223333:role/transfer",
        "arn:aws:iam::111122223333:role/service/path/transfer",
        "arn:aws:iam::111122223333:user/batch.uploader",
        "arn:aws-us-gov:iam::111122223333:role/transfer",
        "111122223333",
    ],
)
def test_principal_arns_and_account_ids_are_accepted(principal):
    config = parse_customer(with_changes(CROSS_ACCOUNT, partner_principals=[principal]),
                            source="globex.toml")
    assert config.partner_principals == (principal,)


@pytest.mark.parametrize(
    ("principal", "rule"),
    [
        ("*", "wildcards are not allowed"),
        ("arn:aws:iam::111122223333:role/*", "wildcards are not allowed"),
        ("arn:aws:iam::111122223333:*", "wildcards are not allowed"),
        ("arn:aws:s3:::some-bucket", "must be an IAM role or user ARN"),
        ("arn:aws:iam::1111:role/short-account", "must be an IAM role or user ARN"),
        ("arn:aws:iam::111122223333:group/partners", "must be an IAM role or user ARN"),
        ("arn:aws:sts::111122223333:assumed-role/r/s", "must be an IAM role or user ARN"),
        ("11112222333", "must be an IAM role or user ARN"),
    ],
)
def test_malformed_or_wildcard_principals_are_refused(principal, rule):
    (problem,) = problems_of(with_changes(CROSS_ACCOUNT, partner_principals=[principal]))
    assert problem.startswith("customers/x: partner_principals[0]: ")
    assert rule in problem


def test_principals_are_refused_for_iam_user_mode():
    data = with_changes(IAM_USER, partner_principals=["arn:aws:iam::111122223333:role/x"])
    (problem,) = problems_of(data)
    assert "partner_principals: not allowed with access = 'iam-user'" in problem


@pytest.mark.parametrize("base", [CROSS_ACCOUNT, ASSUME_ROLE])
def test_principals_are_required_for_foreign_principal_modes(base):
    problems = problems_of(with_changes(base, partner_principals=None))
    assert any("partner_principals: required" in p for p in problems)
    problems = problems_of(with_changes(base, partner_principals=[]))
    assert any("partner_principals: must list at least one" in p for p in problems)


def test_external_id_rules():
    assert parse_customer(ASSUME_ROLE, source="initech.toml").external_id
    assert any("external_id: required" in p
               for p in problems_of(with_changes(ASSUME_ROLE, external_id=None)))
    assert any("16 to 1224 characters" in p
               for p in problems_of(with_changes(ASSUME_ROLE, external_id="short")))
    assert any("16 to 1224 characters" in p
               for p in problems_of(with_changes(ASSUME_ROLE, external_id="has spaces in it ok?")))
    assert any("external_id: only allowed with access = 'assume-role'" in p
               for p in problems_of(with_changes(CROSS_ACCOUNT, external_id="x" * 20)))


@pytest.mark.parametrize("cidr", ["203.0.113.0/24", "198.51.100.7/32", "2001:db8::/32"])
def test_valid_cidrs_are_accepted(cidr):
    config = parse_customer(with_changes(IAM_USER, allowed_source_ips=[cidr]),
                            source="acme.toml")
    assert config.allowed_source_ips == (cidr,)


@pytest.mark.parametrize(
    ("cidr", "rule"),
    [("203.0.113.0/33", "must be a CIDR"), ("203.0.113.5/24", "no host bits"),
     ("not-an-ip", "must be a CIDR"), ("0.0.0.0/0", "allows every address"),
     ("::/0", "allows every address")],
)
def test_bad_cidrs_are_refused(cidr, rule):
    (problem,) = problems_of(with_changes(IAM_USER, allowed_source_ips=[cidr]))
    assert problem.startswith("customers/x: allowed_source_ips[0]: ")
    assert rule in problem


@pytest.mark.parametrize(
    ("table", "field", "value", "rule"),
    [
        ("retention", "noncurrent_version_days", 0, "between 1 and 3650"),
        ("retention", "noncurrent_version_days", 3651, "between 1 and 3650"),
        ("retention", "abort_incomplete_multipart_days", 31, "between 1 and 30"),
        ("retention", "abort_incomplete_multipart_days", "7", "whole number"),
        ("retention", "abort_incomplete_multipart_days", True, "whole number"),
        ("rotation", "interval_days", 366, "between 7 and 365"),
        ("rotation", "grace_days", 0, "between 1 and 90"),
        ("rotation", "delete_after_days", 1.5, "whole number"),
    ],
)
def test_out_of_range_numbers_are_refused(table, field, value, rule):
    (problem,) = problems_of(with_changes(IAM_USER, **{table: {field: value}}))
    assert problem.startswith(f"customers/x: {table}.{field}: ")
    assert rule in problem


def test_grace_period_must_be_shorter_than_rotation_interval():
    data = with_changes(IAM_USER, rotation={"interval_days": 30, "grace_days": 30})
    (problem,) = problems_of(data)
    assert "rotation.grace_days: must be shorter than rotation.interval_days" in problem
    ok = parse_customer(with_changes(IAM_USER, rotation={"interval_days": 30, "grace_days": 29}),
                        source="acme.toml")
    assert ok.rotation is not None and ok.rotation.grace_days == 29


def test_rotation_is_only_for_iam_user_mode():
    (problem,) = problems_of(with_changes(CROSS_ACCOUNT, rotation={"interval_days": 90}))
    assert "rotation: only allowed with access = 'iam-user'" in problem


@pytest.mark.parametrize("contacts", [["a@b.example"], ["x.y+tag@sub.example.org"]])
def test_valid_contacts_are_accepted(contacts):
    assert parse_customer(with_changes(IAM_USER, contacts=contacts),
                          source="acme.toml").contacts == tuple(contacts)


@pytest.mark.parametrize("contacts", [[], ["not-an-address"], ["a@b"], "ops@acme.example"])
def test_bad_contacts_are_refused(contacts):
    assert any(p.startswith("customers/x: contacts")
               for p in problems_of(with_changes(IAM_USER, contacts=contacts)))


# --- the malware gate -------------------------------------------------------------------------

OPT_OUT_REASON = "Partner scans every file at source under contract 12-A (security review 2026-10)"


def test_the_malware_gate_is_on_by_default_for_inbound_partners():
    config = parse_customer(IAM_USER, source="acme.toml")
    assert config.malware_scan.enabled and config.scanned
    outbound_only = parse_customer(with_changes(CROSS_ACCOUNT, directions=["outbound"]),
                                   source="globex.toml")
    assert not outbound_only.scanned  # nothing arrives, nothing to scan


def test_an_opt_out_with_its_reason_is_accepted():
    config = parse_customer(with_changes(IAM_USER, malware_scan={
        "enabled": False, "reason": f"  {OPT_OUT_REASON}  "}), source="acme.toml")
    assert not config.scanned
    assert config.malware_scan.reason == OPT_OUT_REASON


@pytest.mark.parametrize(("malware_scan", "rule"), [
    ({"enabled": False}, "malware_scan.reason: required with enabled = false"),
    ({"enabled": False, "reason": "they said so"}, "malware_scan.reason: must be 20 to 500"),
    ({"enabled": False, "reason": "x" * 501}, "malware_scan.reason: must be 20 to 500"),
    ({"enabled": False, "reason": OPT_OUT_REASON + "\nsecond line"},
     "malware_scan.reason: must be 20 to 500 printable characters on one line"),
    ({"enabled": False, "reason": 42}, "malware_scan.reason: must be a string"),
    ({"enabled": True, "reason": OPT_OUT_REASON}, "malware_scan.reason: only allowed with "
     "enabled = false"),
    ({"enabled": "no"}, "malware_scan.enabled: must be true or false"),
    ({"enable": False}, "malware_scan"),
])
def test_bad_opt_outs_are_refused(malware_scan, rule):
    (problem,) = problems_of(with_changes(IAM_USER, malware_scan=malware_scan))
    assert problem.startswith(f"customers/x: {rule}"), problem


def test_an_opt_out_is_refused_for_a_partner_that_sends_nothing():
    (problem,) = problems_of(with_changes(CROSS_ACCOUNT, directions=["outbound"], malware_scan={
        "enabled": False, "reason": OPT_OUT_REASON}))
    assert "malware_scan: only allowed when the customer sends inbound" in problem


# --- all problems at once, from files ---------------------------------------------------------


def test_every_problem_in_a_file_is_reported_at_once():
    data = with_changes(CROSS_ACCOUNT, slug="Bad Slug", access="ftp", contacts=["nope"],
                        allowed_source_ips=["1.2.3.4/40"], colour="blue")
    problems = problems_of(data, source="customers/bad.toml")
    fields = {p.split(": ")[1] for p in problems}
    assert {"slug", "access", "contacts[0]", "allowed_source_ips[0]", "colour"} <= fields
    assert all(p.startswith("customers/bad.toml: ") for p in problems)


def write(directory: Path, name: str, text: str | bytes) -> Path:
    path = directory / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_every_problem_in_every_file_is_reported_as_one_error(tmp_path):
    write(tmp_path, "good.toml", 'slug = "good"\naccess = "iam-user"\ncontacts = ["a@b.example"]\n')
    write(tmp_path, "bad1.toml", 'slug = "bad1"\naccess = "iam-user"\n')
    write(tmp_path, "bad2.toml",
          'slug = "bad2"\naccess = "cross-account"\ncontacts=["a@b.example"]\n')
    with pytest.raises(RegistryError) as caught:
        load_registry(tmp_path)
    message = str(caught.value)
    assert message.startswith("customer registry: 2 problems")
    assert f"{tmp_path}/bad1.toml: contacts: required" in message
    assert f"{tmp_path}/bad2.toml: partner_principals: required" in message


def test_duplicate_slugs_are_refused(tmp_path):
    text = 'slug = "dup"\naccess = "iam-user"\ncontacts = ["a@b.example"]\n'
    write(tmp_path, "dup.toml", text)
    write(tmp_path, "dup-copy.toml", text)
    with pytest.raises(RegistryError) as caught:
        load_registry(tmp_path)
    assert f"{tmp_path}/dup.toml: slug: 'dup' is already registered by " \
        f"{tmp_path}/dup-copy.toml" in caught.value.problems


@pytest.mark.parametrize(
    ("content", "rule"),
    [
        (b"slug = \"x\"\naccess = \xff\xfe\n", "not UTF-8"),
        ("slug = [unclosed\n", "not valid TOML"),
        ("x" * 70_000, "larger than"),
    ],
)
def test_unreadable_files_are_refused_with_the_file_named(tmp_path, content, rule):
    path = write(tmp_path, "weird.toml", content)
    with pytest.raises(RegistryError) as caught:
        load_customer_file(path)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{path}: (file): ")
    assert rule in problem


def test_empty_registry_is_refused(tmp_path):
    with pytest.raises(RegistryError, match="no customer files"):
        load_registry(tmp_path)


def test_unknown_slug_lists_registered_customers():
    with pytest.raises(RegistryError) as caught:
        load_one_customer(REPO / "customers", "nobody")
    assert "not registered; registered customers: acme, globex, hooli, initech" in str(caught.value)


def _registry_with_a_broken_neighbour(tmp_path: Path) -> Path:
    registry = tmp_path / "registry"
    registry.mkdir()
    (registry / "acme.toml").write_text((REPO / "customers" / "acme.toml").read_text())
    (registry / "broken.toml").write_text('slug = "broken"\naccess = "nope"\n')
    return registry


def test_one_healthy_customer_loads_while_another_file_is_broken(tmp_path):
    registry = _registry_with_a_broken_neighbour(tmp_path)
    customer, warnings = load_one_customer(registry, "acme")
    assert customer.slug == "acme"
    assert warnings and all(w.startswith(f"{registry}/broken.toml: ") for w in warnings)
    assert any("access: must be one of" in w for w in warnings)


def test_a_broken_customer_is_refused_with_its_own_problems_only(tmp_path):
    registry = _registry_with_a_broken_neighbour(tmp_path)
    with pytest.raises(RegistryError) as caught:
        load_one_customer(registry, "broken")
    # Not registered as a healthy customer; acme's file is not blamed.
    assert "acme.toml" not in str(caught.value).split("registered customers")[0]


def test_every_customer_still_needs_every_file_healthy(tmp_path):
    """What `-c customer=all` and CI use: one broken file stops them."""
    registry = _registry_with_a_broken_neighbour(tmp_path)
    with pytest.raises(RegistryError, match=r"broken\.toml: access"):
        load_registry(registry)


def test_a_slug_claimed_twice_is_refused_for_that_slug(tmp_path):
    registry = _registry_with_a_broken_neighbour(tmp_path)
    (registry / "acme2.toml").write_text((REPO / "customers" / "acme.toml").read_text())
    with pytest.raises(RegistryError, match="already registered"):
        load_one_customer(registry, "acme")


def test_two_customers_whose_names_would_meet_are_refused(tmp_path):
    """acme-logs's data bucket would be acme's access-log bucket: refused at validation,
    naming both, whatever the order of the files."""
    registry = tmp_path / "registry"
    registry.mkdir()
    (registry / "acme.toml").write_text((REPO / "customers" / "acme.toml").read_text())
    (registry / "acme-logs.toml").write_text(
        (REPO / "customers" / "acme.toml").read_text().replace('"acme"', '"acme-logs"'))
    with pytest.raises(RegistryError) as caught:
        load_registry(registry)
    (problem,) = caught.value.problems
    assert problem.startswith(f"{registry}/acme-logs.toml: slug: its data bucket would be "
                              "named like acme's access-log bucket")
    customer, warnings = load_one_customer(registry, "acme")
    assert customer.slug == "acme" and len(warnings) == 1


# Every pattern matches the whole value, ASCII only: `re.match` with `$` accepts a trailing
# newline, `\w` accepts letters IAM, STS and S3 refuse.
@pytest.mark.parametrize(("base", "field", "value"), [
    (IAM_USER, "slug", "acme\n"),
    (CROSS_ACCOUNT, "partner_principals", ["111122223333\n"]),
    (CROSS_ACCOUNT, "partner_principals", ["arn:aws:iam::111122223333:role/transfer\n"]),
    (CROSS_ACCOUNT, "partner_principals", ["arn:aws:iam::111122223333:role/tránsfer"]),
    (CROSS_ACCOUNT, "partner_principals",  # full-width digits
     ["arn:aws:iam::\uff11\uff11\uff11\uff11\uff12\uff12\uff12\uff12\uff13\uff13\uff13\uff13:role/t"]),
    (ASSUME_ROLE, "external_id", "initech-external-id-01\n"),
    (ASSUME_ROLE, "external_id", "initech-éxternal-id-01"),
    (IAM_USER, "contacts", ["ops@acme.example\n"]),
    (IAM_USER, "contacts", ["opé@acme.example"]),
])
def test_patterns_match_the_whole_value_in_ascii(base, field, value):
    problems = problems_of(with_changes(base, **{field: value}))
    assert any(p.startswith(f"customers/x: {field}") for p in problems), problems
