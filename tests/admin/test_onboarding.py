"""``phi-exchange-admin onboard``: the partner kit, file by file, for every access mode; the
refusals; and the committed sample kit, regenerated and compared byte for byte."""

from __future__ import annotations

import configparser
import hashlib
import json
import plistlib
import uuid
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import boto3
import pytest

from admin import onboarding, partner_policy
from admin.stack_outputs import LifecycleError, StackOutputs, parse_outputs
from partner_transfer import cli as partner_cli
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
                  "--access-key-id", "AKIAIOSFODNN7EXAMPLE", "--support-contact",
                  "PHI exchange operations, phi-ops@example.org, +44 20 7946 0000"]
KEY_ID = "AKIAIOSFODNN7EXAMPLE"


def inputs(slug: str, *, key: str | None = KEY_ID, **changes: Any) -> onboarding.KitInputs:
    customer = registry()[slug]
    if changes:
        customer = replace(customer, **changes)
    outputs = parse_outputs(outputs_for(customer), source="test")
    return onboarding.KitInputs(customer=customer, outputs=outputs,
                                access_key_id=key if customer.access is AccessMode.IAM_USER
                                else None)


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
    ("initech", AuthMethod.ASSUME_ROLE)])
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
        assert not any(r.endswith("/inbound/*") or a == "kms:GenerateDataKey"
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
    assert prefixes["Condition"]["StringLike"]["s3:prefix"] == [f"{d}/*" for d in directions]


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


# --- the instructions -----------------------------------------------------------------------


class _Tags(HTMLParser):
    """Counts start tags and checks that every non-void element is closed in order."""

    VOID = frozenset({"meta", "br"})

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.counts: dict[str, int] = {}
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(text: str) -> _Tags:
    parser = _Tags()
    parser.feed(text)
    parser.close()
    assert parser.stack == [], parser.stack
    return parser


def test_instructions_give_every_value_rule_and_command_of_a_first_upload() -> None:
    kit = inputs("acme")
    text = onboarding.instructions_markdown(kit)

    for value in (kit.outputs.bucket, REGION, kit.outputs.kms_key_arn, "`inbound/`",
                  "`outbound/`", ACCOUNT, KEY_ID, "secops@acme.example"):
        assert value in text, value
    assert "TLS 1.2 or newer" in text and "SSE-KMS" in text and "SSE-C" in text
    assert "pip install partner-transfer" in text
    assert ("partner-transfer profile init --outputs-file acme-outputs.json "
            "--credentials-file acme-credentials.json -o acme.toml") in text
    assert "partner-transfer upload --profile acme.toml claims.csv" in text
    assert "contains no secret key" in text
    assert "phi-exchange-admin credentials acme" in text
    # The rotation timeline with the registry's numbers: grace 14, deletion 14 + 30.
    assert "| 14 | the previous key is deactivated" in text
    assert "| 44 | the previous key is deleted" in text
    assert "every 365 days" in text


def test_cross_account_instructions_carry_the_policy_and_the_values_to_give_us() -> None:
    kit = inputs("globex")
    text = onboarding.instructions_markdown(kit)

    assert "## On your side: the IAM policy to attach" in text
    assert '"Sid": "UseKeyThroughS3"' in text
    assert "## The values to give us" in text
    assert "arn:aws:iam::111122223333:role/globex-file-transfer" in text
    assert "203.0.113.0/24" in text  # registered source ranges, also a security rule
    assert "--aws-profile YOUR-PROFILE" in text
    assert "nothing of ours rotates" in text


def test_instructions_render_to_html_with_headings_tables_lists_and_code() -> None:
    for slug in ("acme", "globex", "initech"):
        kit = inputs(slug)
        page = onboarding.kit_files(kit)["README.html"].decode()
        tags = parse_html(page)
        assert tags.counts["h1"] == 1 and tags.counts["h2"] >= 7
        assert tags.counts["table"] >= 2 and tags.counts["pre"] >= 1
        assert tags.counts["ul"] >= 1 and tags.counts["ol"] >= 1
        assert "script" not in tags.counts
        text = "".join(tags.text)
        assert kit.outputs.bucket in text and "pip install partner-transfer" in text


def test_html_renderer_escapes_everything_it_does_not_render() -> None:
    hostile = "\n".join([
        "# Title <script>alert(1)</script>",
        "",
        "A paragraph with <img src=x onerror=alert(1)> and **bold** and `<b>code</b>`.",
        "A [link](javascript:alert(1)) and a [good one](https://example.org/?a=1&b=2).",
        "",
        "| a | b |",
        "| --- | --- |",
        "| <iframe> | \\| pipe |",
        "",
        "```",
        "</code></pre><script>x()</script>",
        "```",
    ])
    page = onboarding.render_html(hostile, title="<t>")
    tags = parse_html(page)

    assert not {"script", "img", "iframe", "b"} & set(tags.counts)
    assert "&lt;script&gt;" in page and "&lt;img src=x" in page
    assert '<a href="https://example.org/?a=1&amp;b=2">good one</a>' in page
    assert 'href="javascript' not in page
    assert "<td>| pipe</td>" in page
    assert "<strong>bold</strong>" in page and "<code>&lt;b&gt;code&lt;/b&gt;</code>" in page


def test_registry_text_cannot_inject_markup_into_the_instructions() -> None:
    kit = inputs("acme", display_name="Acme <script>alert(1)</script> | **x**")
    page = onboarding.kit_files(kit)["README.html"].decode()
    assert "script" not in parse_html(page).counts
    assert "Acme &lt;script&gt;alert(1)&lt;/script&gt; | **x**" in page


# --- the kit as a whole ---------------------------------------------------------------------


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
    assert "Next scheduled rotation:" in (tmp_path / "kit" / "README.md").read_text()


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
