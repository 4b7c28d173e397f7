"""``phi-exchange-admin onboard``: the partner kit, file by file, for every access mode; the
receipt key it hands over; the refusals; and the committed sample kit, regenerated and
compared byte for byte."""

from __future__ import annotations

import configparser
import hashlib
import json
import plistlib
import re
import shlex
import tomllib
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from fnmatch import fnmatch
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import boto3
import jinja2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from admin import onboarding, partner_policy
from admin.stack_outputs import LifecycleError, StackOutputs, parse_outputs
from partner_transfer import cli as partner_cli
from partner_transfer import receipts
from partner_transfer.profile import AuthMethod, load_profile
from phi_core import naming
from stacks.config import AccessMode, CustomerConfig, Direction, parse_customer
from tests.admin.lifecycle_support import (
    ACCOUNT,
    REGION,
    REPO,
    copy_registry,
    deploy,
    outputs_for,
    registry,
    run,
    write_outputs_file,
)

SAMPLE = REPO / "docs" / "sample-kit"
SAMPLE_COMMAND = ["onboard", "acme", "--outputs-file", str(SAMPLE / "outputs.json"),
                  "--access-key-id", "AKIAIOSFODNN7EXAMPLE", "--receipt-public-key",
                  str(SAMPLE / "receipt-public-key.pem"), "--support-contact",
                  "PHI exchange operations, phi-ops@example.org, +44 20 7946 0000"]
KEY_ID = "AKIAIOSFODNN7EXAMPLE"
# A made-up receipt key (its private half was never kept), as onboard writes it.
RECEIPT_PEM = (SAMPLE / "receipt-public-key.pem").read_bytes()


def inputs(slug: str, *, key: str | None = KEY_ID, receipt_key: bytes | None = RECEIPT_PEM,
           **changes: Any) -> onboarding.KitInputs:
    customer = registry()[slug]
    if changes:
        customer = replace(customer, **changes)
    outputs = parse_outputs(outputs_for(customer), source="test")
    return onboarding.KitInputs(customer=customer, outputs=outputs,
                                access_key_id=key if customer.access is AccessMode.IAM_USER
                                else None, receipt_public_key=receipt_key)


def variant(**fields: Any) -> CustomerConfig:
    data = {"slug": "umbrella", "access": "iam-user", "contacts": ["ops@umbrella.example"],
            **fields}
    return parse_customer(data, source="(test) umbrella")


def kit_for(customer: CustomerConfig, key: str | None = None) -> onboarding.KitInputs:
    return onboarding.KitInputs(customer=customer,
                                outputs=parse_outputs(outputs_for(customer), source="test"),
                                access_key_id=key)


# --- Cyberduck ------------------------------------------------------------------------------


def test_bookmark_parses_back_as_a_property_list_with_the_s3_connection() -> None:
    kit = inputs("acme")
    bookmark = plistlib.loads(onboarding.cyberduck_bookmark(kit))

    bucket = naming.data_bucket_name("acme", ACCOUNT, REGION)
    assert bookmark["Protocol"] == "s3"
    assert bookmark["Provider"] == "iterate GmbH"
    assert bookmark["Hostname"] == "s3.amazonaws.com"
    assert bookmark["Port"] == "443"
    assert bookmark["Username"] == KEY_ID
    assert bookmark["Path"] == f"/{bucket}/inbound/"
    assert bookmark["Region"] == REGION
    assert bookmark["Nickname"] == "PHI exchange - Acme Health (acme)"
    assert uuid.UUID(bookmark["UUID"]).version == 5
    assert bookmark["Custom"] == {"s3.encryption.algorithm": "aws:kms",
                                  f"s3.encryption.key.{bucket}": kit.outputs.kms_key_arn}
    assert not any("secret" in str(k).lower() for k in bookmark)


def test_bookmark_uuid_is_the_same_for_a_bucket_and_differs_between_buckets() -> None:
    first, again = inputs("acme"), inputs("acme")
    other = inputs("globex")
    assert onboarding.cyberduck_bookmark(first) == onboarding.cyberduck_bookmark(again)
    assert (plistlib.loads(onboarding.cyberduck_bookmark(first))["UUID"]
            != plistlib.loads(onboarding.cyberduck_bookmark(other))["UUID"])


def test_bookmark_of_an_outbound_only_partner_opens_the_download_folder() -> None:
    kit = kit_for(variant(directions=["outbound"]), KEY_ID)
    bookmark = plistlib.loads(onboarding.cyberduck_bookmark(kit))
    assert bookmark["Path"].endswith("/outbound/")


def test_cross_account_bookmark_carries_no_user_name() -> None:
    bookmark = plistlib.loads(onboarding.cyberduck_bookmark(inputs("globex")))
    assert "Username" not in bookmark
    assert bookmark["Path"] == f"/{naming.data_bucket_name('globex', ACCOUNT, REGION)}/inbound/"


def test_assume_role_kit_has_no_desktop_client_files() -> None:
    kit = inputs("initech")
    assert {"cyberduck", "winscp_url", "winscp_ini"}.isdisjoint(onboarding.file_names(kit))
    with pytest.raises(LifecycleError, match="assume-role"):
        onboarding.cyberduck_bookmark(kit)


def test_roles_anywhere_kit_has_no_desktop_files_no_policy_and_an_aws_profile() -> None:
    kit = inputs("hooli")
    names = onboarding.file_names(kit)
    assert {"cyberduck", "winscp_url", "winscp_ini", "policy"}.isdisjoint(names)
    assert names["aws_config"] == "aws-config-profile.ini"
    assert onboarding.first_transfer_commands(kit)[1].startswith(
        "partner-transfer profile init --outputs-file hooli-outputs.json --certificate "
        "YOUR-CERTIFICATE.pem --private-key YOUR-PRIVATE-KEY.pem")
    config = onboarding.aws_config_profile(kit)
    assert ("credential_process = aws_signing_helper credential-process --certificate "
            "YOUR-CERTIFICATE.pem --private-key YOUR-PRIVATE-KEY.pem --trust-anchor-arn "
            f"{kit.outputs.trust_anchor_arn} --profile-arn {kit.outputs.profile_arn} "
            f"--role-arn {kit.outputs.role_arn} --region {REGION}") in config


def test_roles_anywhere_instructions_give_the_subject_the_ca_and_its_expiry() -> None:
    text = " ".join(plain(onboarding.instructions_markdown(inputs("hooli"))).split())
    for expected in ("CN=hooli-transfer", "OU=Lab Results", "O=Hooli Labs",
                     "CN=Hooli Labs Partner Issuing CA,O=Hooli Labs,C=US", "2046-12-01",
                     "Send us its successor at least 60 days before",
                     "neither obtains IAM Roles Anywhere sessions itself",
                     "A certificate of your CA with another subject, or one from any other CA, "
                     "is refused"):
        assert expected in text, expected
    assert "secret access key" not in text and "external id" not in text.lower()


def test_bookmark_uses_the_regional_endpoint_outside_the_commercial_partition() -> None:
    outputs = outputs_for(registry()["acme"], region="cn-north-1")
    outputs["KmsKeyArn"] = outputs["KmsKeyArn"].replace("arn:aws:", "arn:aws-cn:")
    kit = onboarding.KitInputs(customer=registry()["acme"],
                               outputs=parse_outputs(outputs, source="test"))
    bookmark = plistlib.loads(onboarding.cyberduck_bookmark(kit))
    assert bookmark["Hostname"] == "s3.cn-north-1.amazonaws.com.cn"


# --- WinSCP ---------------------------------------------------------------------------------


def test_winscp_url_parses_back_into_key_id_region_host_bucket_and_prefix() -> None:
    url = urlparse(onboarding.winscp_url(inputs("acme")))

    assert url.scheme == "s3"
    assert url.hostname == f"s3.{REGION}.amazonaws.com"
    assert url.port is None  # 443, the S3 default
    assert url.password is None  # never a secret
    assert url.username is not None
    user, *advanced = unquote(url.username).split(";")
    assert user == KEY_ID
    assert advanced == [f"x-S3DefaultRegion={REGION}"]
    bucket, prefix = url.path.lstrip("/").split("/", 1)
    assert (bucket, prefix) == (naming.data_bucket_name("acme", ACCOUNT, REGION), "inbound/")


def test_winscp_url_without_a_key_id_has_no_user_part() -> None:
    url = urlparse(onboarding.winscp_url(inputs("globex")))
    assert url.username is None and url.password is None
    assert url.path == f"/{naming.data_bucket_name('globex', ACCOUNT, REGION)}/inbound/"


def test_winscp_ini_section_holds_s3_over_tls12_with_folder_region_and_key_id() -> None:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys keep their case
    parser.read_string(onboarding.winscp_ini(inputs("acme")))

    (section,) = parser.sections()
    assert section == "Sessions\\PHI%20exchange%20acme"
    site = parser[section]
    assert site["FSProtocol"] == "7" and site["Ftps"] == "1" and site["PortNumber"] == "443"
    assert site["MinTlsVersion"] == "12"
    assert site["HostName"] == f"s3.{REGION}.amazonaws.com"
    assert site["S3DefaultRegion"] == REGION
    assert site["RemoteDirectory"] == f"/{naming.data_bucket_name('acme', ACCOUNT, REGION)}/inbound"
    assert site["UserName"] == KEY_ID
    assert not any("password" in k.lower() or "secret" in k.lower() for k in site)


# --- the transfer client --------------------------------------------------------------------


@pytest.mark.parametrize(("slug", "method"), [
    ("acme", AuthMethod.CREDENTIALS_FILE), ("globex", AuthMethod.DEFAULT),
    ("initech", AuthMethod.ASSUME_ROLE), ("hooli", AuthMethod.ROLES_ANYWHERE)])
def test_connection_profile_loads_in_the_client(tmp_path: Path, slug: str,
                                                method: AuthMethod) -> None:
    kit = inputs(slug)
    path = tmp_path / f"{slug}.toml"
    path.write_text(onboarding.connection_profile(kit))

    profile = load_profile(path)
    assert (profile.bucket, profile.region, profile.kms_key_arn) == (
        kit.outputs.bucket, REGION, kit.outputs.kms_key_arn)
    assert (profile.inbound_prefix, profile.outbound_prefix) == (
        kit.outputs.inbound_prefix, kit.outputs.outbound_prefix)
    assert profile.auth.method is method
    if method is AuthMethod.CREDENTIALS_FILE:
        assert profile.auth.credentials_file == tmp_path / "acme-credentials.json"
    if method is AuthMethod.ASSUME_ROLE:
        assert profile.auth.external_id == registry()["initech"].external_id
    if method is AuthMethod.ROLES_ANYWHERE:
        # The partner's own files, named by placeholders beside the profile, and our ARNs.
        assert profile.auth.certificate == tmp_path / "YOUR-CERTIFICATE.pem"
        assert profile.auth.private_key == tmp_path / "YOUR-PRIVATE-KEY.pem"
        assert (profile.auth.role_arn, profile.auth.trust_anchor_arn,
                profile.auth.profile_arn) == (kit.outputs.role_arn,
                                              kit.outputs.trust_anchor_arn,
                                              kit.outputs.profile_arn)


def test_kit_outputs_file_feeds_profile_init_and_omits_our_secret_arn(tmp_path: Path) -> None:
    kit = inputs("acme")
    outputs_file = tmp_path / "acme-outputs.json"
    outputs_file.write_text(onboarding.outputs_json(kit))
    credentials = tmp_path / "acme-credentials.json"
    credentials.write_text("{}")

    code = partner_cli.run(["profile", "init", "--outputs-file", str(outputs_file),
                            "--credentials-file", str(credentials), "-o",
                            str(tmp_path / "acme.toml"), "--quiet"])

    assert code == 0
    assert load_profile(tmp_path / "acme.toml").bucket == kit.outputs.bucket
    assert "PartnerSecretArn" not in json.loads(outputs_file.read_text())["PhiExchange-acme"]


# --- the partner-side policy ----------------------------------------------------------------


def allowed_resources(outputs: StackOutputs) -> set[str]:
    resources = {outputs.bucket_arn, outputs.kms_key_arn}
    resources |= {f"{outputs.bucket_arn}/{d.prefix}*" for d in outputs.directions}
    if Direction.INBOUND in outputs.directions:  # a partner that sends reads its receipts
        resources.add(f"{outputs.bucket_arn}/receipts/*")
    return resources


def check_least_privilege(document: dict[str, Any], outputs: StackOutputs) -> None:
    """An independent reading of the policy: only Allow, only the customer's bucket, granted
    prefixes and key, no wildcard actions, listings and key use conditioned."""
    assert document["Version"] == "2012-10-17"
    allowed_actions = {
        f"{outputs.bucket_arn}/inbound/*": {"s3:PutObject", "s3:AbortMultipartUpload",
                                            "s3:ListMultipartUploadParts"},
        f"{outputs.bucket_arn}/outbound/*": {"s3:GetObject", "s3:GetObjectVersion",
                                             "s3:GetObjectAttributes",
                                             "s3:GetObjectVersionAttributes"},
        f"{outputs.bucket_arn}/receipts/*": {"s3:GetObject"},
        outputs.bucket_arn: {"s3:ListBucket", "s3:GetBucketLocation"},
        outputs.kms_key_arn: {"kms:Decrypt", "kms:GenerateDataKey"},
    }
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        assert set(statement) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        for resource in statement["Resource"]:
            assert resource in allowed_resources(outputs), resource
            assert set(statement["Action"]) <= allowed_actions[resource]
        assert not any("*" in action for action in statement["Action"])
        if "s3:ListBucket" in statement["Action"]:
            assert statement["Condition"]
        if any(a.startswith("kms:") for a in statement["Action"]):
            assert statement["Condition"]["StringEquals"] == {
                "kms:ViaService": f"s3.{outputs.region}.amazonaws.com"}
    if Direction.INBOUND not in outputs.directions:
        assert not any(r.endswith(("/inbound/*", "/receipts/*")) or a == "kms:GenerateDataKey"
                       for s in document["Statement"] for r in s["Resource"]
                       for a in s["Action"])


@pytest.mark.parametrize("directions", [["inbound"], ["outbound"], ["inbound", "outbound"]])
def test_cross_account_policy_grants_only_the_customers_bucket_prefixes_and_key(
        directions: list[str]) -> None:
    customer = variant(access="cross-account", directions=directions,
                       partner_principals=["arn:aws:iam::111122223333:role/transfer"])
    kit = kit_for(customer)
    files = onboarding.kit_files(kit)

    document = json.loads(files["partner-iam-policy.json"])  # valid JSON, as written
    check_least_privilege(document, kit.outputs)
    prefixes = {s["Sid"]: s for s in document["Statement"]}["ListOwnPrefixes"]
    receipts_listed = ["receipts/*"] if "inbound" in directions else []
    assert prefixes["Condition"]["StringLike"]["s3:prefix"] == [
        f"{d}/*" for d in directions] + receipts_listed


def test_cross_account_policy_passes_parliament() -> None:
    import parliament

    document = partner_policy.partner_side_policy(inputs("globex").outputs)
    assert document is not None
    text = partner_policy.render_policy(document)
    findings = parliament.analyze_policy_string(text).findings
    assert [f.issue for f in findings] == []


def test_assume_role_policy_allows_only_assume_role_on_our_role() -> None:
    kit = inputs("initech")
    document = json.loads(onboarding.kit_files(kit)["partner-iam-policy.json"])
    assert document["Statement"] == [{
        "Sid": "AssumePhiExchangeRole", "Effect": "Allow", "Action": ["sts:AssumeRole"],
        "Resource": [f"arn:aws:iam::{ACCOUNT}:role/phi-exchange-initech-partner"]}]


def test_iam_user_kit_has_no_partner_side_policy() -> None:
    assert "partner-iam-policy.json" not in onboarding.kit_files(inputs("acme"))


# --- the instructions: reading Markdown and HTML independently of the code under test -------


SEPARATOR_ROW = re.compile(r"^\|( *:?-+:? *\|)+$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
ISO_DATE = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


@dataclass
class MarkdownReading:
    """The blocks of a Markdown document of the kind the kit writes, read line by line."""

    headings: list[tuple[int, str]] = field(default_factory=list)
    tables: list[list[list[str]]] = field(default_factory=list)  # rows of cells, header first
    code_blocks: list[tuple[str, str]] = field(default_factory=list)  # (info string, content)
    bullets: int = 0
    numbered: int = 0
    quotes: int = 0
    prose: list[str] = field(default_factory=list)  # every line outside code blocks


def read_markdown(text: str) -> MarkdownReading:
    """Headings, tables, fenced code blocks, list items and block quotes; asserts that fences
    close and that every table row has its header's number of cells."""
    reading = MarkdownReading()
    lines = iter(text.splitlines())
    quoting = in_table = False
    for line in lines:
        if fence := re.match(r"^(`{3,})(.*)$", line):
            content = []
            for inner in lines:
                if inner.startswith(fence.group(1)) and not inner.strip("`"):
                    break
                content.append(inner)
            else:
                raise AssertionError(f"code block not closed: {line}")
            reading.code_blocks.append((fence.group(2), "\n".join(content)))
            quoting = in_table = False
            continue
        reading.prose.append(line)
        if line.startswith("|"):
            if not SEPARATOR_ROW.match(line):
                cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
                if not in_table:
                    reading.tables.append([])
                reading.tables[-1].append(cells)
                assert len(cells) == len(reading.tables[-1][0]), line
            in_table = True
            continue
        in_table = False
        if heading := re.match(r"^(#{1,6}) (.+)$", line):
            reading.headings.append((len(heading.group(1)), heading.group(2)))
        reading.bullets += line.startswith("- ")
        reading.numbered += bool(re.match(r"^\d+\. ", line))
        reading.quotes += line.startswith("> ") and not quoting
        quoting = line.startswith("> ")
    return reading


def plain(markdown: str) -> str:
    """Inline Markdown as a reader sees it: code spans' content, escapes and ** removed."""
    parts = []
    for index, part in enumerate(CODE_SPAN.split(markdown)):
        if index % 3 == 2:  # split() yields text, fence, code content, text, ...
            parts.append(part)
        elif index % 3 == 0:
            parts.append(re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", part.replace("**", "")))
    return "".join(parts)


def code_spans_of(reading: MarkdownReading) -> set[str]:
    return {m.group(2) for line in reading.prose for m in CODE_SPAN.finditer(line)}


class HtmlReading(HTMLParser):
    """Tags, headings, table cells, code blocks and text of an HTML page; asserts that every
    non-void element is closed in order."""

    VOID = frozenset({"meta", "br"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.counts: Counter[str] = Counter()
        self.headings: list[tuple[int, str]] = []
        self.tables: list[list[list[str]]] = []
        self.code_blocks: list[tuple[str, str]] = []
        self.hrefs: list[str | None] = []
        self.title = ""
        self.text: list[str] = []
        self._capture: list[str] | None = None
        self._code_class = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] += 1
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag == "a":
            self.hrefs.append(dict(attrs).get("href"))
        elif tag == "code" and "pre" in self.stack:
            self._code_class = dict(attrs).get("class") or ""
        if tag in {"h1", "h2", "h3", "h4", "h5", "h6", "td", "th", "pre", "title"}:
            self._capture = []

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"
        if self._capture is None:
            return
        captured = "".join(self._capture)
        if tag.startswith("h") and tag[1:].isdigit():
            self.headings.append((int(tag[1:]), " ".join(captured.split())))
        elif tag in {"td", "th"}:
            self.tables[-1][-1].append(" ".join(captured.split()))
        elif tag == "pre":
            self.code_blocks.append((self._code_class.removeprefix("language-"), captured))
        elif tag == "title":
            self.title = captured
        if tag in {"h1", "h2", "h3", "h4", "h5", "h6", "td", "th", "pre", "title"}:
            self._capture = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._capture is not None:
            self._capture.append(data)


def read_html(text: str) -> HtmlReading:
    reading = HtmlReading()
    reading.feed(text)
    reading.close()
    assert reading.stack == [], reading.stack
    return reading


def readme(kit: onboarding.KitInputs) -> MarkdownReading:
    return read_markdown(onboarding.instructions_markdown(kit))


def first_transfer_block(reading: MarkdownReading) -> list[str]:
    (block,) = [c for _, c in reading.code_blocks if c.startswith("pip install")]
    return block.splitlines()


def day_tables(reading: MarkdownReading) -> list[list[list[int]]]:
    """Tables whose first column holds day numbers: each row's numbers."""
    found = []
    for table in reading.tables:
        days = [[int(n) for n in re.findall(r"\d+", row[0])] for row in table[1:]]
        if days and all(days):
            found.append(days)
    return found


# --- the instructions: what they tell the partner -------------------------------------------


@pytest.mark.parametrize("slug", ["acme", "globex", "initech"])
def test_instructions_name_every_value_the_partner_connects_with(slug: str) -> None:
    kit = inputs(slug)
    outputs, customer = kit.outputs, kit.customer
    reading = readme(kit)

    expected = {outputs.bucket, outputs.region, f"https://{outputs.s3_endpoint}",
                outputs.account, outputs.kms_key_arn, *onboarding.file_names(kit).values(),
                "SHA256SUMS", f"phi-exchange-admin onboard {slug}"}
    expected |= {d.prefix for d in outputs.directions}
    expected |= set(customer.partner_principals) | set(customer.allowed_source_ips)
    if outputs.access is AccessMode.IAM_USER:
        expected |= {outputs.user_name or "", KEY_ID, f"{slug}-credentials.json",
                     f"phi-exchange-admin credentials {slug}"}
    if outputs.access is AccessMode.ASSUME_ROLE:
        expected |= {outputs.role_arn or "", outputs.external_id or ""}
    assert expected <= code_spans_of(reading), expected - code_spans_of(reading)
    for contact in customer.contacts:
        assert contact in "\n".join(reading.prose)


def test_instructions_name_only_the_prefixes_the_partner_is_granted() -> None:
    outbound_only = readme(kit_for(variant(directions=["outbound"]), KEY_ID))
    assert "outbound/" in code_spans_of(outbound_only)
    assert not any(span.startswith("inbound/") for span in code_spans_of(outbound_only))
    assert "203.0.113.0/24" not in "\n".join(readme(inputs("acme")).prose)


@pytest.mark.parametrize("slug", ["acme", "globex", "initech"])
def test_first_transfer_commands_work_with_the_kits_own_files(
        slug: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kit = inputs(slug)
    names = onboarding.file_names(kit)
    onboarding.write_kit(tmp_path, onboarding.kit_files(kit))
    monkeypatch.chdir(tmp_path)
    shipped = load_profile(tmp_path / names["profile"])
    if kit.outputs.access is AccessMode.IAM_USER:
        (tmp_path / onboarding.credentials_file_name(slug)).write_text("{}")
    install, init, transfer = first_transfer_block(readme(kit))
    assert readme(kit).numbered == 3  # one numbered explanation per command

    assert install == "pip install partner-transfer"
    program, *argv = shlex.split(init)
    assert program == "partner-transfer" and argv[:2] == ["profile", "init"]
    assert partner_cli.run([*argv, "--quiet"]) == 0
    made = load_profile(tmp_path / names["profile"])
    # The command writes the profile the kit ships, signing with the AWS profile it names.
    assert replace(made, auth=shipped.auth) == shipped
    if kit.outputs.access is AccessMode.IAM_USER:
        assert made.auth == shipped.auth
    else:
        named = argv[argv.index("--aws-profile") + 1]
        assert made.auth == replace(shipped.auth, method=made.auth.method, aws_profile=named)
        assert made.auth.method is (AuthMethod.ASSUME_ROLE if slug == "initech"
                                    else AuthMethod.AWS_PROFILE)

    if kit.outputs.inbound_prefix:  # the receipts check, with the kit's own key
        assert made.receipt_public_key == tmp_path / onboarding.RECEIPT_KEY_FILE
        (check,) = [c for _, c in readme(kit).code_blocks if "receipts verify" in c]
        program, *argv = shlex.split(check)
        args = partner_cli.build_parser().parse_args(argv)
        assert (program, args.command, args.action) == ("partner-transfer", "receipts", "verify")
        assert args.profile == names["profile"] and args.public_key == []

    program, *argv = shlex.split(transfer)
    args = partner_cli.build_parser().parse_args(argv)
    assert program == "partner-transfer" and args.profile == names["profile"]
    if kit.outputs.inbound_prefix:
        assert args.command == "upload" and args.paths == [Path("claims.csv")]
        assert f"{kit.outputs.inbound_prefix}claims.csv" in code_spans_of(readme(kit))
    else:
        assert args.command == "download" and args.source == kit.outputs.outbound_prefix


@pytest.mark.parametrize("slug", ["globex", "initech"])
def test_instructions_carry_the_partner_side_policy_exactly(slug: str) -> None:
    kit = inputs(slug)
    (policy,) = [json.loads(c) for info, c in readme(kit).code_blocks if info == "json"]

    assert policy == partner_policy.partner_side_policy(kit.outputs)
    assert policy == json.loads(onboarding.kit_files(kit)["partner-iam-policy.json"])


def test_iam_user_instructions_carry_no_policy() -> None:
    assert [info for info, _ in readme(inputs("acme")).code_blocks if info == "json"] == []


def test_rotation_timeline_is_computed_from_the_registry() -> None:
    customer = variant(rotation={"interval_days": 90, "grace_days": 7, "delete_after_days": 10})
    kit = replace(kit_for(customer, KEY_ID), next_rotation=date(2031, 5, 20))
    reading = readme(kit)

    assert day_tables(reading) == [[[0], [0, 7], [7], [17]]]
    assert re.search(r"\b90\b", "\n".join(reading.prose))
    assert set(ISO_DATE.findall("\n".join(reading.prose))) == {
        "2031-05-20", "2031-05-27", "2031-06-06"}
    default = readme(inputs("acme"))  # the registry's acme: grace 14, deleted 14 + 30
    assert day_tables(default) == [[[0], [0, 14], [14], [44]]]
    assert ISO_DATE.findall("\n".join(default.prose)) == []  # offline: no date, reproducible


@pytest.mark.parametrize("slug", ["globex", "initech"])
def test_only_iam_user_instructions_have_a_key_rotation_timeline(slug: str) -> None:
    assert day_tables(readme(inputs(slug))) == []


@pytest.mark.parametrize("slug", ["acme", "globex", "initech"])
def test_html_page_has_the_headings_tables_lists_and_code_of_the_markdown(slug: str) -> None:
    files = onboarding.kit_files(inputs(slug))
    markdown = read_markdown(files["README.md"].decode())
    page = read_html(files["README.html"].decode())
    assert len(markdown.headings) >= 7 and len(markdown.tables) >= 2 and markdown.code_blocks

    assert page.headings == [(level, plain(text)) for level, text in markdown.headings]
    assert page.title == page.headings[0][1]
    assert page.tables == [[[plain(cell) for cell in row] for row in table]
                           for table in markdown.tables]
    assert page.code_blocks == [(info, content + "\n") for info, content in markdown.code_blocks]
    assert page.counts["ul"] >= 1 and page.counts["ol"] == 1
    assert page.counts["li"] == markdown.bullets + markdown.numbered
    assert page.counts["blockquote"] == markdown.quotes == 1
    assert not {"script", "img", "iframe", "a"} & set(page.counts)


# --- the instructions: registry text stays text ---------------------------------------------


HOSTILE_NAME = "Acme <script>alert(1)</script> | **x** _y_ `z` [l](javascript:alert(1)) &amp; #"
# The most markup the registry's e-mail rule lets through (no <, >, [, ], ( or )).
HOSTILE_CONTACT = "|**a**_`b`~~c~~#&copy{d}@evil.example"
HOSTILE_SUPPORT = "ops\n# Injected heading\n- item <iframe> | `c` ~~s~~\n1. one"
# Renders raw HTML, as many Markdown viewers do: the escaping must not rely on html=False.
PERMISSIVE = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])


def markdown_structure(markdown: str) -> list[str]:
    """Every block and inline token type, in order: what the text does, not what it says."""
    structure = []
    for token in PERMISSIVE.parse(markdown):
        structure.append(token.type)
        structure += [f"  {child.type}" for child in token.children or []]
    return structure


def registry_text_kits() -> tuple[onboarding.KitInputs, onboarding.KitInputs]:
    """The same partner with plain and with hostile registry text (accepted by the registry's
    own parser) and support contacts."""
    def kit(name: str, contact: str, support: str) -> onboarding.KitInputs:
        customer = variant(display_name=name, contacts=[contact, "second@umbrella.example"])
        return replace(kit_for(customer, KEY_ID), support_contacts=(support, "desk"))
    return (kit("Acme Health", "ops@umbrella.example", "ops team"),
            kit(HOSTILE_NAME, HOSTILE_CONTACT, HOSTILE_SUPPORT))


def test_registry_text_cannot_inject_markup_into_the_instructions() -> None:
    plain_kit, hostile_kit = registry_text_kits()
    plain_files, hostile_files = onboarding.kit_files(plain_kit), onboarding.kit_files(hostile_kit)
    plain_md, hostile_md = plain_files["README.md"].decode(), hostile_files["README.md"].decode()

    assert markdown_structure(hostile_md) == markdown_structure(plain_md)
    assert "<script" not in PERMISSIVE.render(hostile_md)
    plain_page = read_html(plain_files["README.html"].decode())
    page = read_html(hostile_files["README.html"].decode())
    assert page.counts == plain_page.counts
    text = " ".join("".join(page.text).split())
    assert HOSTILE_NAME in page.headings[0][1] and HOSTILE_NAME in page.title
    assert HOSTILE_CONTACT in text and " ".join(HOSTILE_SUPPORT.split()) in text


def test_injection_check_notices_registry_text_left_unescaped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The mutation test of the one above: without escaping, its comparison fails."""
    monkeypatch.setattr(onboarding, "escape_markdown", str)
    plain_kit, hostile_kit = registry_text_kits()
    assert (markdown_structure(onboarding.instructions_markdown(hostile_kit))
            != markdown_structure(onboarding.instructions_markdown(plain_kit)))


PARAGRAPH = ["paragraph_open", "paragraph_close"]
TABLE = ["table_open", "thead_open", "tr_open", "th_open", "th_close", "tr_close", "thead_close",
         "tbody_open", "tr_open", "td_open", "td_close", "tr_close", "tbody_close", "table_close"]


def inert(escaped: str, original: str) -> bool:
    """Whether ``escaped`` reads as ``original`` (whitespace runs as one space) and opens no
    element, mid-line, alone on a line, in a heading, a list item and a table cell: the
    blocks are the context's own and the last inline part is text only."""
    words = " ".join(original.split())
    contexts = [
        (f"x {escaped} y", PARAGRAPH, f"x {words} y"),
        (escaped, PARAGRAPH if words else [], words),
        (f"# T {escaped} (s)", ["heading_open", "heading_close"], f"T {words} (s)"),
        (f"- i {escaped}.", ["bullet_list_open", "list_item_open", *PARAGRAPH,
                             "list_item_close", "bullet_list_close"], f"i {words}."),
        (f"| h |\n| --- |\n| {escaped} |", TABLE, words),
    ]
    for document, blocks, text in contexts:
        tokens = PERMISSIVE.parse(document)
        if [t.type for t in tokens if t.type != "inline"] != blocks:
            return False
        inline = [t for t in tokens if t.type == "inline"]
        children = (inline[-1].children or []) if inline else []
        if any(child.type != "text" for child in children):
            return False
        if "".join(child.content for child in children) != (text if inline else ""):
            return False
    return True


@given(st.text(alphabet=st.one_of(st.sampled_from("ab1 \n\t*_`[]()<>#|~&;!-+=.\\:/"),
                                  st.characters(exclude_categories=("Cc", "Cs"))),
               max_size=24))
@settings(max_examples=200, deadline=None)
def test_escaped_text_reads_as_written_and_opens_no_element(text: str) -> None:
    assert inert(onboarding.escape_markdown(text), text), onboarding.escape_markdown(text)


def test_escaping_drops_control_characters() -> None:
    assert onboarding.escape_markdown("a\x00b\x1bc\x7fd") == "abcd"


# What each escaping rule is for: dropped, the sample is no longer inert.
ESCAPE_RULES = {"\\": "\\*x\\*", "`": "`c`", "*": "**b**", "_": "_u_", "[]": "[l](https://x.io)",
                "<": "<https://x.io>", ">": "> quote", "#": "# heading", "|": "a | b",
                "~": "~~s~~"}


@pytest.mark.parametrize(("dropped", "sample"), ESCAPE_RULES.items())
def test_each_escaped_character_is_needed(monkeypatch: pytest.MonkeyPatch, dropped: str,
                                          sample: str) -> None:
    assert inert(onboarding.escape_markdown(sample), sample)
    kept = "".join(c for c in "\\`*_[]<>#|~" if c not in dropped)
    monkeypatch.setattr(onboarding, "_MARKDOWN_INLINE", re.compile(f"([{re.escape(kept)}])"))
    assert not inert(onboarding.escape_markdown(sample), sample)


@pytest.mark.parametrize(("rule", "sample"), [("_ENTITY_START", "&lt;b&gt;"),
                                               ("_LINE_START", "- item"),
                                               ("_LINE_START", "1. item")])
def test_entity_and_line_start_escapes_are_needed(monkeypatch: pytest.MonkeyPatch, rule: str,
                                                  sample: str) -> None:
    assert inert(onboarding.escape_markdown(sample), sample)
    monkeypatch.setattr(onboarding, rule, re.compile(r"(?!)"))  # matches nothing
    assert not inert(onboarding.escape_markdown(sample), sample)


def test_code_spans_refuse_what_would_end_them_and_code_blocks_outlast_backticks() -> None:
    for value in ("a`b", "a|b", "a\nb"):
        with pytest.raises(LifecycleError, match="cannot write"):
            onboarding.code_span(value)
    content = "x ``` y\n````\nz"
    page = read_html(onboarding.html_page(onboarding.code_block(content, "json")))
    assert page.code_blocks == [("json", content + "\n")]


def test_onboard_refuses_stack_outputs_that_would_break_out_of_code(tmp_path: Path) -> None:
    outputs = outputs_for(registry()["acme"]) | {"PartnerUserName": "user` **x** <b>y</b> `"}
    (tmp_path / "outputs.json").write_text(json.dumps({"PhiExchange-acme": outputs}))

    ran = run(REPO / "customers", ["onboard", "acme", "--outputs-file",
                                   str(tmp_path / "outputs.json"), "-o", str(tmp_path / "kit")])

    assert ran.code == 1 and ran.err.count("\n") == 1 and "cannot write" in ran.err
    assert not (tmp_path / "kit").exists()


def test_html_page_shows_raw_html_and_unsafe_links_as_text() -> None:
    hostile = "\n".join([
        "# Title <script>alert(1)</script>",
        "",
        "A paragraph with <img src=x onerror=alert(1)> and **bold** and `<b>code</b>`.",
        "A [link](javascript:alert(1)) and a [good one](https://example.org/?a=1&b=2).",
        "",
        "<iframe src=x></iframe>",
        "",
        "| a | b |",
        "| --- | --- |",
        "| <iframe> | \\| pipe |",
        "",
        "```",
        "</code></pre><script>x()</script>",
        "```",
    ])
    page = read_html(onboarding.html_page(hostile))

    assert not {"script", "img", "iframe", "b"} & set(page.counts)
    assert page.hrefs == ["https://example.org/?a=1&b=2"]
    assert page.title == "Title <script>alert(1)</script>"
    assert page.tables == [[["a", "b"], ["<iframe>", "| pipe"]]]
    assert page.code_blocks == [("", "</code></pre><script>x()</script>\n")]
    assert page.counts["strong"] == 1


# --- the receipt key ------------------------------------------------------------------------


@pytest.mark.parametrize("slug", ["acme", "globex"])  # initech only downloads
def test_a_partner_that_sends_gets_the_receipt_key_its_fingerprint_and_a_profile_naming_it(
        slug: str, tmp_path: Path) -> None:
    kit = inputs(slug)
    files = onboarding.kit_files(kit)
    onboarding.write_kit(tmp_path, files)

    assert files["receipt-public-key.pem"] == RECEIPT_PEM
    key = receipts.load_public_key(files["receipt-public-key.pem"])
    assert load_profile(tmp_path / f"{slug}.toml").receipt_public_key == (
        tmp_path / "receipt-public-key.pem")
    reading = readme(kit)
    assert ("Receipts: what we received" in [h for _, h in reading.headings])
    assert {receipts.fingerprint(key), "receipt-public-key.pem", "receipts/"} <= code_spans_of(
        reading)
    assert ("", f"partner-transfer receipts verify --profile {slug}.toml") in reading.code_blocks


def test_a_partner_that_only_downloads_gets_no_receipt_key_nor_receipts_section() -> None:
    kit = kit_for(variant(directions=["outbound"]), KEY_ID)
    kit = replace(kit, receipt_public_key=RECEIPT_PEM)

    assert "receipt_key" not in onboarding.file_names(kit)
    assert "receipt-public-key.pem" not in onboarding.kit_files(kit)
    assert "receipts" not in onboarding.instructions_markdown(kit).lower()
    assert "receipt_public_key = " not in onboarding.connection_profile(kit)


def test_a_kit_without_the_key_says_the_partner_must_ask_for_it(tmp_path: Path) -> None:
    kit = inputs("acme", receipt_key=None)
    files = onboarding.kit_files(kit)

    assert "receipt-public-key.pem" not in files
    assert "This kit does not hold our receipt key" in files["README.md"].decode()
    assert "--receipt-public-key" not in " ".join(onboarding.first_transfer_commands(kit))
    (tmp_path / "acme.toml").write_bytes(files["acme.toml"])
    assert load_profile(tmp_path / "acme.toml").receipt_public_key is None


@pytest.mark.parametrize(("content", "reason"), [
    (b"-----BEGIN PUBLIC KEY-----\nnot base64\n-----END PUBLIC KEY-----\n",
     "not a PEM public key"),
    (None, "No such file"),
])
def test_receipt_public_key_option_refuses_what_is_not_the_exchanges_kind_of_key(
        tmp_path: Path, content: bytes | None, reason: str) -> None:
    pem = tmp_path / "key.pem"
    if content is not None:
        pem.write_bytes(content)
    outputs = write_outputs_file(tmp_path / "outputs.json", registry()["acme"])

    ran = run(REPO / "customers", ["onboard", "acme", "--outputs-file", str(outputs),
                                   "--receipt-public-key", str(pem), "-o", str(tmp_path / "kit")])

    assert ran.code == 1 and ran.err.count("\n") == 1
    assert f"--receipt-public-key {pem}: " in ran.err and reason in ran.err
    assert not (tmp_path / "kit").exists()


def test_a_der_key_of_another_kind_is_refused_for_the_kit() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    der = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key(
    ).public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(LifecycleError, match="KMS key x: not an ECC NIST P-256 public key"):
        onboarding.receipt_key_pem(der, "KMS key x")


def receipt_signing_key(key_spec: str = "ECC_NIST_P256") -> bytes:
    """The audit stack's receipt key in moto, by its alias: its public key (DER)."""
    kms = boto3.client("kms", region_name=REGION)
    usage = "SIGN_VERIFY" if key_spec != "SYMMETRIC_DEFAULT" else "ENCRYPT_DECRYPT"
    key_id = kms.create_key(KeySpec=key_spec, KeyUsage=usage)["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=naming.RECEIPT_SIGNING_KEY_ALIAS, TargetKeyId=key_id)
    return bytes(kms.get_public_key(KeyId=key_id)["PublicKey"])


def test_onboard_online_puts_the_receipt_key_from_kms_in_the_kit(aws: None,
                                                                 tmp_path: Path) -> None:
    deploy(registry()["acme"])
    der = receipt_signing_key()

    ran = run(REPO / "customers", ["onboard", "acme", "--output", str(tmp_path / "kit")])

    assert ran.code == 0, ran.err
    pem = (tmp_path / "kit" / "receipt-public-key.pem").read_bytes()
    assert pem == receipts.public_key_pem(der)
    fingerprint = receipts.fingerprint(receipts.load_public_key(pem))
    assert f"receipt key (KMS {naming.RECEIPT_SIGNING_KEY_ALIAS}) in receipt-public-key.pem, " \
           f"SHA-256 {fingerprint}" in ran.out
    assert fingerprint in (tmp_path / "kit" / "README.md").read_text()


@pytest.mark.parametrize(("key_spec", "reason"), [
    (None, "(NotFoundException)"),
    ("SYMMETRIC_DEFAULT", "not an ECC NIST P-256 public key"),
], ids=["audit-stack-not-deployed", "alias-names-another-kind-of-key"])
def test_onboard_online_without_the_receipt_key_writes_the_kit_and_says_so(
        aws: None, tmp_path: Path, key_spec: str | None, reason: str) -> None:
    deploy(registry()["acme"])
    if key_spec is not None:
        receipt_signing_key(key_spec)

    ran = run(REPO / "customers", ["onboard", "acme", "--output", str(tmp_path / "kit")])

    assert ran.code == 0, ran.err
    (line,) = [x for x in ran.out.splitlines() if x.startswith("warning:")]
    assert line.startswith("warning: no receipt-public-key.pem in the kit: cannot read the "
                           f"public key of {naming.RECEIPT_SIGNING_KEY_ALIAS}")
    assert reason in line and "run onboard again" in line
    assert not (tmp_path / "kit" / "receipt-public-key.pem").exists()
    assert "This kit does not hold our receipt key" in (tmp_path / "kit" / "README.md").read_text()


# --- the kit as a whole ---------------------------------------------------------------------


def parse_kit_file(name: str, data: bytes) -> object:
    """A kit file read in its own format; fails on a file of no known format."""
    text = data.decode("utf-8")
    if name == "README.md":
        return read_markdown(text)
    if name.endswith(".html"):
        return read_html(text)
    if name.endswith(".toml"):
        return tomllib.loads(text)
    if name.endswith(".json"):
        return json.loads(text)
    if name.endswith(".duck"):
        return plistlib.loads(data)
    if name.endswith("-winscp-url.txt"):
        url = urlparse(text.strip())
        assert url.scheme == "s3" and url.hostname and text.count("\n") == 1
        return url
    if name.endswith(".ini"):
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_string(text)
        assert parser.sections()
        return parser
    if name == "SHA256SUMS":
        assert all(re.fullmatch(r"[0-9a-f]{64}  [^/\s]+", line) for line in text.splitlines())
        return text
    if name.endswith(".pem"):
        return receipts.load_public_key(data)
    raise AssertionError(f"no parser for {name}")


@pytest.mark.parametrize("slug", ["acme", "globex", "initech"])
def test_every_kit_file_parses_in_its_own_format(slug: str) -> None:
    for name, data in onboarding.kit_files(inputs(slug)).items():
        assert parse_kit_file(name, data) is not None, name


def test_onboard_without_its_templates_says_so_in_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(onboarding._TEMPLATES, "loader", jinja2.FileSystemLoader(tmp_path))
    outputs = write_outputs_file(tmp_path / "outputs.json", registry()["acme"])

    ran = run(REPO / "customers", ["onboard", "acme", "--outputs-file", str(outputs),
                                   "--output", str(tmp_path / "kit")])

    assert ran.code == 1 and ran.err.count("\n") == 1
    assert "template iam-user.md.j2 is missing" in ran.err
    assert not (tmp_path / "kit").exists()


def test_kit_templates_ship_with_the_package() -> None:
    """pyproject's package-data must match every template, or an installed onboard fails."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["admin"]
    templates = [p.relative_to(REPO / "admin") for p in onboarding.TEMPLATES.rglob("*")
                 if p.is_file()]
    assert {f"{mode.value}.md.j2" for mode in AccessMode} <= {t.name for t in templates}
    for template in templates:
        assert any(fnmatch(str(template), pattern) for pattern in patterns), template


def test_sums_file_lists_every_other_file_with_its_sha256() -> None:
    files = onboarding.kit_files(inputs("globex"))
    listed = dict(line.split("  ")[::-1] for line in files["SHA256SUMS"].decode().splitlines())
    assert set(listed) == set(files) - {"SHA256SUMS"}
    for name, digest in listed.items():
        assert hashlib.sha256(files[name]).hexdigest() == digest


def test_kit_is_the_same_bytes_every_time() -> None:
    assert onboarding.kit_files(inputs("acme")) == onboarding.kit_files(inputs("acme"))


@pytest.mark.parametrize("slug", ["acme", "globex", "initech"])
def test_no_kit_file_carries_a_secret_field(slug: str) -> None:
    for name, data in onboarding.kit_files(inputs(slug)).items():
        assert "secret_access_key" not in data.decode().lower(), name
    onboarding.check_no_secrets(onboarding.kit_files(inputs(slug)))


@pytest.mark.parametrize(("content", "reason"), [
    (b'{"secret_access_key": "x"}', "contains 'secret_access_key'"),
    (b"aws_secret_access_key = x", "contains 'secret_access_key'"),
    (b"key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY here", "shaped like a secret"),
    (b"known-secret-value", "the partner's secret access key"),
])
def test_kit_with_a_secret_is_refused_and_nothing_is_written(
        tmp_path: Path, content: bytes, reason: str) -> None:
    files = {"README.md": b"fine", "notes.txt": content}
    with pytest.raises(LifecycleError, match=reason) as refused:
        onboarding.write_kit(tmp_path / "kit", files, known_secrets=["known-secret-value"])
    assert b"known-secret-value" not in str(refused.value).encode()
    assert not (tmp_path / "kit").exists()


def test_access_key_id_option_refuses_a_secret_key() -> None:
    with pytest.raises(LifecycleError, match="never the secret"):
        onboarding.validate_access_key_id("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    assert onboarding.validate_access_key_id(KEY_ID) == KEY_ID


def test_write_kit_replaces_an_earlier_kit_and_removes_its_stale_files(tmp_path: Path) -> None:
    directory = tmp_path / "kit"
    onboarding.write_kit(directory, onboarding.kit_files(inputs("globex")))
    assert (directory / "globex.duck").exists()
    changed = onboarding.kit_files(inputs("acme"))

    onboarding.write_kit(directory, changed)

    assert {p.name for p in directory.iterdir()} == set(changed)


def test_write_kit_refuses_a_folder_holding_anything_else(tmp_path: Path) -> None:
    directory = tmp_path / "documents"
    directory.mkdir()
    (directory / "contract.pdf").write_bytes(b"%PDF")
    with pytest.raises(LifecycleError, match="does not hold an earlier kit"):
        onboarding.write_kit(directory, onboarding.kit_files(inputs("acme")))
    assert [p.name for p in directory.iterdir()] == ["contract.pdf"]


# --- the command ----------------------------------------------------------------------------


def test_sample_kit_is_reproducible_from_the_committed_outputs(tmp_path: Path) -> None:
    ran = run(REPO / "customers", [*SAMPLE_COMMAND, "--output", str(tmp_path / "acme")])

    assert ran.code == 0, ran.err
    committed = {p.name: p.read_bytes() for p in (SAMPLE / "acme").iterdir()}
    fresh = {p.name: p.read_bytes() for p in (tmp_path / "acme").iterdir()}
    assert fresh == committed


def test_onboard_offline_says_where_the_kit_is_and_how_to_hand_over_the_secret(
        tmp_path: Path) -> None:
    outputs = write_outputs_file(tmp_path / "outputs.json", registry()["acme"])
    ran = run(REPO / "customers", ["onboard", "acme", "--outputs-file", str(outputs),
                                   "--output", str(tmp_path / "kit")])

    assert ran.code == 0, ran.err
    assert "phi-exchange-admin credentials acme --output acme-credentials.json" in ran.out
    assert "no access key id in the kit" in ran.out
    assert "Username" not in plistlib.loads((tmp_path / "kit" / "acme.duck").read_bytes())
    assert ("note: no receipt-public-key.pem in the kit (offline run without "
            "--receipt-public-key)") in ran.out
    assert not (tmp_path / "kit" / "receipt-public-key.pem").exists()


def test_onboard_refuses_outputs_that_disagree_with_the_registry(tmp_path: Path) -> None:
    directory = copy_registry(tmp_path / "customers", "acme")
    (directory / "acme.toml").write_text((directory / "acme.toml").read_text().replace(
        'directions = ["inbound", "outbound"]', 'directions = ["inbound"]'))
    outputs = write_outputs_file(tmp_path / "outputs.json", registry()["acme"])

    ran = run(directory, ["onboard", "acme", "--outputs-file", str(outputs),
                          "--output", str(tmp_path / "kit")])

    assert ran.code == 1
    assert "registry says [inbound]" in ran.err and "Deploy first" in ran.err
    assert not (tmp_path / "kit").exists()


def test_onboard_refuses_a_stack_deployed_as_offboarded(tmp_path: Path) -> None:
    outputs = {k: v for k, v in outputs_for(registry()["globex"]).items()
               if not k.endswith("Prefix")} | {"Offboarded": "true"}
    (tmp_path / "outputs.json").write_text(json.dumps({"PhiExchange-globex": outputs}))

    ran = run(REPO / "customers", ["onboard", "globex", "--outputs-file",
                                   str(tmp_path / "outputs.json"), "-o", str(tmp_path / "kit")])

    assert ran.code == 1 and "is offboarded (it grants nothing): no kit" in ran.err


def test_stack_outputs_granting_no_prefix_are_refused_unless_offboarded() -> None:
    outputs = {k: v for k, v in outputs_for(registry()["globex"]).items()
               if not k.endswith("Prefix")}
    with pytest.raises(LifecycleError, match="the stack grants nothing"):
        parse_outputs(outputs, source="test")
    assert parse_outputs(outputs | {"Offboarded": "true"}, source="test").offboarded


def test_onboard_refuses_an_unregistered_customer(tmp_path: Path) -> None:
    ran = run(REPO / "customers", ["onboard", "nobody", "--outputs-file", "x.json"])
    assert ran.code == 1 and "SLUG=nobody: customer: not registered" in ran.err


def test_onboard_online_reads_the_stack_and_the_current_key_id_never_writing_the_secret(
        aws: None, tmp_path: Path) -> None:
    deployed = deploy(registry()["acme"])
    assert deployed.secret_access_key is not None

    ran = run(REPO / "customers", ["onboard", "acme", "--output", str(tmp_path / "kit")])

    assert ran.code == 0, ran.err
    bookmark = plistlib.loads((tmp_path / "kit" / "acme.duck").read_bytes())
    assert bookmark["Username"] == deployed.access_key_id
    for path in (tmp_path / "kit").iterdir():
        assert deployed.secret_access_key.encode() not in path.read_bytes(), path.name
    # The rotation dates, from the secret's schedule and the registry's grace and deletion days.
    described = boto3.client("secretsmanager", region_name=REGION).describe_secret(
        SecretId=naming.partner_secret_name("acme"))
    rotation = registry()["acme"].rotation
    assert rotation is not None
    rotates = described["NextRotationDate"].date()
    dates = {rotates + timedelta(days=days) for days in
             (0, rotation.grace_days, rotation.grace_days + rotation.delete_after_days)}
    readme_text = (tmp_path / "kit" / "README.md").read_text()
    assert {d.isoformat() for d in dates} <= set(ISO_DATE.findall(readme_text))


def test_onboard_online_refuses_to_write_the_secret_wherever_it_would_appear(
        aws: None, tmp_path: Path) -> None:
    deployed = deploy(registry()["acme"])
    assert deployed.secret_access_key is not None

    ran = run(REPO / "customers", ["onboard", "acme", "--output", str(tmp_path / "kit"),
                                   "--support-contact", deployed.secret_access_key])

    assert ran.code == 1
    assert "contains the partner's secret access key" in ran.err
    assert deployed.secret_access_key not in ran.err + ran.out
    assert not (tmp_path / "kit").exists()


def test_onboard_online_with_a_key_id_checks_it_is_active_without_reading_the_secret(
        aws: None, tmp_path: Path) -> None:
    deployed = deploy(registry()["acme"])
    iam = boto3.client("iam", region_name=REGION)
    assert deployed.access_key_id is not None
    iam.update_access_key(UserName="phi-exchange-acme-partner",
                          AccessKeyId=deployed.access_key_id, Status="Inactive")

    ran = run(REPO / "customers", ["onboard", "acme", "--output", str(tmp_path / "kit"),
                                   "--access-key-id", deployed.access_key_id])

    assert ran.code == 1
    assert f"{deployed.access_key_id} is not an active access key" in ran.err


def test_onboard_online_before_deploy_says_to_deploy(aws: None, tmp_path: Path) -> None:
    ran = run(REPO / "customers", ["onboard", "globex", "--output", str(tmp_path / "kit")])
    assert ran.code == 1
    assert "stack PhiExchange-globex does not exist" in ran.err
