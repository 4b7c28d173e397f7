"""The partner kit: everything a partner needs to connect, and never a secret.

Pure functions take the registry entry (:class:`~stacks.config.CustomerConfig`) and the
deployed stack's outputs (:class:`~admin.stack_outputs.StackOutputs`) and return file
contents; :func:`write_kit` writes them to a folder after :func:`check_no_secrets` has scanned
every byte. The same inputs always give the same bytes (no timestamps; the bookmark's UUID is
derived from the bucket name), so a kit can be regenerated and compared.

What the kit holds, by access mode (docs/onboarding.md):

=====================  ========  =============  ===========  ==============
file                   iam-user  cross-account  assume-role  roles-anywhere
=====================  ========  =============  ===========  ==============
README.md, README.html    yes        yes            yes          yes
<slug>.toml (client)      yes        yes            yes          yes
<slug>-outputs.json       yes        yes            yes          yes
<slug>.duck (Cyberduck)   yes        yes (no key)   no           no
<slug>-winscp-url.txt     yes        yes (no key)   no           no
<slug>-WinSCP.ini         yes        yes (no key)   no           no
partner-iam-policy.json   no         yes            yes          no
aws-config-profile.ini    no         no             yes          yes (2)
receipt-public-key.pem    yes (1)    yes (1)        yes (1)      yes (1)
SHA256SUMS                yes        yes            yes          yes
=====================  ========  =============  ===========  ==============

(1) For a partner that sends (inbound), when the exchange's receipt key is known: the public
half of the key that signs receipts (``partner-transfer receipts verify``); the profile then
names it and the instructions give its fingerprint.
(2) With AWS's signing helper as the profile's ``credential_process``.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import os
import plistlib
import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import quote

import jinja2
from markdown_it import MarkdownIt
from markdown_it.token import Token

from admin import partner_policy
from admin.stack_outputs import LifecycleError, StackOutputs
from partner_transfer import receipts
from partner_transfer.errors import TransferError
from partner_transfer.profile import profile_from_outputs, render_profile
from phi_core import naming
from stacks.config import AccessMode, CustomerConfig, Rotation

CYBERDUCK_PROVIDER = "iterate GmbH"  # the vendor of Cyberduck's bundled S3 connection profile
WINSCP_FS_PROTOCOL_S3 = 7  # WinSCP's TFSProtocol fsS3
WINSCP_MIN_TLS_12 = 12  # WinSCP's TTlsVersion tls12
SUMS_FILE = "SHA256SUMS"
ACCESS_KEY_ID_PATTERN = re.compile(r"^[A-Z0-9]{16,128}$")
# Words that only a credentials document would contain. Lower-cased comparison.
SECRET_FIELD_NAMES = ("secret_access_key", "aws_secret_access_key", "secretaccesskey",
                      "aws_session_token")
# The shape of an AWS secret access key: 40 characters of base64, mixed case and digits.
_SECRET_SHAPE = re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")
EXAMPLE_UPLOAD = "claims.csv"  # the file of the first-upload example
EXAMPLE_DOWNLOAD_FOLDER = "received"  # where the first-download example writes
RECEIPT_KEY_FILE = "receipt-public-key.pem"


@dataclass(frozen=True)
class KitInputs:
    """What a kit is made from.

    ``access_key_id`` (default none): the partner's current access key id (iam-user only;
    never the secret); without it the desktop-client files carry no user name.
    ``support_contacts`` (default: none, the document then names "the operator who sent you
    this kit"): who the partner contacts at our side. ``next_rotation`` (default none): the
    next scheduled rotation date, when known (the kit is then no longer reproducible
    offline, so offline runs leave it out). ``receipt_public_key`` (default none): the
    exchange's receipt key as PEM (:func:`receipt_key_pem`), for a partner that sends; without
    it the kit says the key will follow.
    """

    customer: CustomerConfig
    outputs: StackOutputs
    access_key_id: str | None = None
    support_contacts: tuple[str, ...] = ()
    next_rotation: date | None = None
    receipt_public_key: bytes | None = None

    @property
    def slug(self) -> str:
        return self.customer.slug

    @property
    def name(self) -> str:
        return self.customer.display_name or self.customer.slug

    @property
    def desktop_clients(self) -> bool:
        """Whether the kit has Cyberduck and WinSCP files: they sign with a static access key,
        which an assume-role or roles-anywhere partner does not have."""
        return self.outputs.access not in (AccessMode.ASSUME_ROLE, AccessMode.ROLES_ANYWHERE)

    @property
    def receipt_key(self) -> bytes | None:
        """The receipt key the kit carries: only a partner that sends gets receipts."""
        return self.receipt_public_key if self.outputs.inbound_prefix else None

    @property
    def default_prefix(self) -> str:
        """Where desktop clients open: the upload folder, else the download folder."""
        prefix = self.outputs.inbound_prefix or self.outputs.outbound_prefix
        assert prefix is not None  # onboard refuses an offboarded stack, parse_outputs others
        return prefix


def receipt_key_pem(data: bytes, source: str) -> bytes:
    """The exchange's receipt key as the kit's PEM, from a PEM file's bytes (``--receipt-public-
    key``) or KMS GetPublicKey's DER: always the same bytes for the same key. Anything but an
    ECC NIST P-256 public key is refused (:class:`LifecycleError` naming ``source``)."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return receipts.pem_of(receipts.load_public_key(data))
        return receipts.public_key_pem(data)
    except receipts.ReceiptError as err:
        raise LifecycleError(f"{source}: {err}") from None


def receipt_key_fingerprint(pem: bytes) -> str:
    """SHA-256 of the key's DER, as ``partner-transfer receipts verify`` prints it."""
    return receipts.fingerprint(receipts.load_public_key(pem))


def validate_access_key_id(value: str) -> str:
    """An IAM access key id (upper-case letters and digits); refuses anything else, notably a
    secret access key pasted by mistake."""
    if not ACCESS_KEY_ID_PATTERN.match(value):
        raise LifecycleError("--access-key-id must be an IAM access key id (16 or more "
                             "upper-case letters and digits, e.g. AKIA...), never the secret key")
    return value


# --- file names -----------------------------------------------------------------------------


def file_names(inputs: KitInputs) -> dict[str, str]:
    """Role -> file name, for the files this customer's kit has."""
    slug = inputs.slug
    names = {"readme": "README.md", "readme_html": "README.html", "profile": f"{slug}.toml",
             "outputs": f"{slug}-outputs.json"}
    if inputs.desktop_clients:
        names |= {"cyberduck": f"{slug}.duck", "winscp_url": f"{slug}-winscp-url.txt",
                  "winscp_ini": f"{slug}-WinSCP.ini"}
    if inputs.outputs.access in (AccessMode.CROSS_ACCOUNT, AccessMode.ASSUME_ROLE):
        names["policy"] = "partner-iam-policy.json"
    if inputs.outputs.access in (AccessMode.ASSUME_ROLE, AccessMode.ROLES_ANYWHERE):
        names["aws_config"] = "aws-config-profile.ini"
    if inputs.receipt_key is not None:
        names["receipt_key"] = RECEIPT_KEY_FILE
    return names


# roles-anywhere: where the partner keeps its workload certificate and key (its own files).
CERTIFICATE_PLACEHOLDER = "YOUR-CERTIFICATE.pem"
PRIVATE_KEY_PLACEHOLDER = "YOUR-PRIVATE-KEY.pem"


def credentials_file_name(slug: str) -> str:
    """Where the kit expects the hand-over file: beside the profile."""
    return f"{slug}-credentials.json"


# --- desktop clients ------------------------------------------------------------------------


def cyberduck_hostname(outputs: StackOutputs) -> str:
    """Cyberduck's S3 host. In the commercial partition the global ``s3.amazonaws.com``:
    Cyberduck's documentation says not to set a regional endpoint when connecting to a single
    bucket (it finds the bucket's region itself). Elsewhere the regional endpoint."""
    if outputs.partition == "aws":
        return "s3.amazonaws.com"
    return outputs.s3_endpoint


def bookmark_uuid(outputs: StackOutputs) -> str:
    """Stable per bucket, so a re-issued bookmark replaces the old one instead of adding one."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"phi-exchange:cyberduck:{outputs.bucket}"))


def cyberduck_bookmark(inputs: KitInputs) -> bytes:
    """A Cyberduck bookmark (``.duck``: an XML property list, the format of Cyberduck's
    ``HostDictionary``) for the S3 protocol: the bucket's folder as default path (partners
    cannot list buckets), the access key id as user name (never the secret), and SSE-KMS with
    the customer key as this bucket's default encryption (``Custom`` holds Cyberduck's
    ``s3.encryption.algorithm`` and ``s3.encryption.key.<bucket>`` settings). ``Region`` is not
    a key Cyberduck reads (it queries the bucket's region); it is there for people."""
    if not inputs.desktop_clients:
        raise LifecycleError(f"{inputs.outputs.access} partners get no desktop bookmark: a "
                             "bookmark holds a static access key, and the role is reached with "
                             "temporary ones")
    outputs = inputs.outputs
    bookmark: dict[str, object] = {
        "Protocol": "s3",
        "Provider": CYBERDUCK_PROVIDER,
        "Nickname": f"PHI exchange - {inputs.name} ({inputs.slug})",
        "UUID": bookmark_uuid(outputs),
        "Hostname": cyberduck_hostname(outputs),
        "Port": "443",
        "Path": f"/{outputs.bucket}/{inputs.default_prefix}",
        "Region": outputs.region,
        "Comment": (f"Bucket {outputs.bucket} in {outputs.region}; SSE-KMS with "
                    f"{outputs.kms_key_arn}; TLS 1.2+. The secret access key is not in this "
                    "file: your operator sends it separately."),
        "Custom": {
            "s3.encryption.algorithm": "aws:kms",
            f"s3.encryption.key.{outputs.bucket}": outputs.kms_key_arn,
        },
    }
    if inputs.access_key_id:
        bookmark["Username"] = inputs.access_key_id
    return plistlib.dumps(bookmark, fmt=plistlib.FMT_XML, sort_keys=True)


def winscp_url(inputs: KitInputs) -> str:
    """A WinSCP session URL for S3: ``s3://KEYID;x-S3DefaultRegion=REGION@s3.REGION.amazonaws.com
    /BUCKET/PREFIX`` (WinSCP's syntax ``<username>;<advanced>@<host>/<path>``, the advanced
    part being raw site settings). Without a key id, ``s3://HOST/BUCKET/PREFIX``; the region
    is then set in the site (the .ini file)."""
    outputs = inputs.outputs
    path = f"/{quote(outputs.bucket)}/{quote(inputs.default_prefix)}"
    if not inputs.access_key_id:
        return f"s3://{outputs.s3_endpoint}{path}"
    userinfo = f"{quote(inputs.access_key_id, safe='')};x-S3DefaultRegion={quote(outputs.region)}"
    return f"s3://{userinfo}@{outputs.s3_endpoint}{path}"


def winscp_site_name(inputs: KitInputs) -> str:
    return f"PHI exchange {inputs.slug}"


def winscp_ini(inputs: KitInputs) -> str:
    """The same site as a WinSCP.ini section (for WinSCP installations that keep their
    configuration in an INI file): S3 protocol, TLS (minimum 1.2), the bucket folder, the
    region, the access key id (never the secret)."""
    outputs = inputs.outputs
    lines = [
        f"; WinSCP site for {inputs.name} ({inputs.slug}). Append to WinSCP.ini (INI storage)",
        "; or paste the session URL instead. No secret key here: WinSCP asks for it.",
        f"[Sessions\\{quote(winscp_site_name(inputs))}]",
        f"HostName={outputs.s3_endpoint}",
        "PortNumber=443",
        f"FSProtocol={WINSCP_FS_PROTOCOL_S3}",
        "Ftps=1",
        f"MinTlsVersion={WINSCP_MIN_TLS_12}",
        f"S3DefaultRegion={outputs.region}",
        f"RemoteDirectory=/{outputs.bucket}/{inputs.default_prefix.rstrip('/')}",
    ]
    if inputs.access_key_id:
        lines.append(f"UserName={inputs.access_key_id}")
    return "\n".join(lines) + "\n"


# --- the transfer client --------------------------------------------------------------------


def connection_profile(inputs: KitInputs) -> str:
    """The ``partner-transfer`` connection profile (TOML), rendered by the client's own
    functions. iam-user: credentials from ``<slug>-credentials.json`` beside the profile;
    cross-account: the default AWS credential chain; assume-role: our role with the external
    id, from the default chain; roles-anywhere: sessions for the partner's certificate and
    key, named by placeholders the partner replaces. With the receipt key, the profile names
    the kit's ``receipt-public-key.pem`` beside it."""
    credentials = (Path(credentials_file_name(inputs.slug))
                   if inputs.outputs.access is AccessMode.IAM_USER else None)
    receipt_key = Path(RECEIPT_KEY_FILE) if inputs.receipt_key is not None else None
    certificate = inputs.outputs.access is AccessMode.ROLES_ANYWHERE
    try:
        profile = profile_from_outputs(
            inputs.outputs.partner_outputs(), credentials_file=credentials,
            receipt_public_key=receipt_key,
            # roles-anywhere: the partner's own files, beside the profile by default.
            certificate=Path(CERTIFICATE_PLACEHOLDER) if certificate else None,
            private_key=Path(PRIVATE_KEY_PLACEHOLDER) if certificate else None)
    except TransferError as err:
        raise LifecycleError(f"cannot make the connection profile: {err}") from None
    return render_profile(profile, comment=(
        f"Connection profile for {inputs.name} ({inputs.slug}), from stack "
        f"{naming.stack_name(inputs.slug)}.\nRelative paths resolve against this file's folder."))


def outputs_json(inputs: KitInputs) -> str:
    """The stack outputs a partner needs, in the ``cdk deploy --outputs-file`` shape that
    ``partner-transfer profile init --outputs-file`` reads."""
    document = {naming.stack_name(inputs.slug): inputs.outputs.partner_outputs()}
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def aws_config_profile(inputs: KitInputs) -> str:
    """An ``~/.aws/config`` profile that assumes our role with the external id (assume-role),
    or obtains its sessions from IAM Roles Anywhere through AWS's signing helper
    (roles-anywhere), for the AWS CLI and any tool that reads AWS profiles."""
    outputs = inputs.outputs
    if outputs.access is AccessMode.ROLES_ANYWHERE:
        return "\n".join([
            "# Add to ~/.aws/config. Install AWS's signing helper (aws_signing_helper, see",
            "# https://docs.aws.amazon.com/rolesanywhere/latest/userguide/credential-helper.html)",
            "# and replace the two paths with your certificate and its private key. No secret",
            "# here: the key stays in your file. If your CA issues through intermediates, add",
            "# --intermediates FILE (their PEM) to the command.",
            f"[profile phi-exchange-{inputs.slug}]",
            "credential_process = aws_signing_helper credential-process"
            f" --certificate {CERTIFICATE_PLACEHOLDER} --private-key {PRIVATE_KEY_PLACEHOLDER}"
            f" --trust-anchor-arn {outputs.trust_anchor_arn}"
            f" --profile-arn {outputs.profile_arn} --role-arn {outputs.role_arn}"
            f" --region {outputs.region}",
            f"region = {outputs.region}",
            "",
        ])
    return "\n".join([
        "# Add to ~/.aws/config. Replace YOUR-SOURCE-PROFILE with the profile holding the",
        "# credentials of the principal you registered with us. No secret here.",
        f"[profile phi-exchange-{inputs.slug}]",
        f"role_arn = {outputs.role_arn}",
        f"external_id = {outputs.external_id}",
        "source_profile = YOUR-SOURCE-PROFILE",
        f"region = {outputs.region}",
        "duration_seconds = 3600",
        "",
    ])


# --- the instructions -----------------------------------------------------------------------
#
# The prose lives in admin/kit_templates/ (Jinja2): one template per access mode, each extending
# instructions.md.j2. This module computes the values (names, commands, dates, the policy JSON)
# and the templates place them. The output is Markdown, so Jinja's HTML autoescaping does not
# apply; instead every ``{{ value }}`` passes through escape_markdown() unless a filter below
# has already made it Markdown (a code span or a fenced block).

TEMPLATES = Path(__file__).with_name("kit_templates")


class Markdown(str):
    """Text that is already Markdown (built by :func:`code_span`, :func:`code_spans` or
    :func:`code_block`): templates output it as is, everything else is escaped."""


# Characters that start Markdown syntax anywhere in a line: backslash escapes, code spans,
# emphasis, links and images, raw HTML and autolinks, headings' closing #, table cells, and
# GitHub's strikethrough (README.md is also read on sites that render more than CommonMark).
_MARKDOWN_INLINE = re.compile(r"([\\`*_\[\]<>#|~])")
# An entity or character reference (&amp; &#60;) would be decoded; a bare & would not.
_ENTITY_START = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
# What makes a line a list item, block quote or setext underline when it starts the line.
_LINE_START = re.compile(r"^(?:([-+=])|(\d{1,9})([.)]))")


def escape_markdown(text: object) -> str:
    """``text`` as inert Markdown: rendered, it reads exactly as ``text`` with its whitespace
    runs (line breaks included) collapsed to single spaces and control characters dropped,
    and it opens no element (no emphasis, link, code, HTML, heading, list or table cell),
    wherever in a line or table cell a template puts it."""
    cleaned = "".join(ch for ch in str(text) if ch.isspace() or unicodedata.category(ch) != "Cc")
    flat = " ".join(cleaned.split())
    escaped = _ENTITY_START.sub(r"\\&", _MARKDOWN_INLINE.sub(r"\\\1", flat))
    return _LINE_START.sub(lambda m: (f"\\{m.group(1)}" if m.group(1)
                                      else f"{m.group(2)}\\{m.group(3)}"), escaped)


def code_span(value: object) -> Markdown:
    """``value`` as a code span, for names, ARNs, prefixes, CIDRs and the commands this module
    builds. A backtick, a pipe or a line break would end the span or the table cell around
    it, and a code span cannot escape them: such a value is refused (:class:`LifecycleError`).
    """
    text = str(value)
    if any(ch in text for ch in "`|\r\n"):
        raise LifecycleError(f"cannot write {text!r} into the instructions: a backtick, pipe or "
                             "line break has no place in a name or ARN")
    return Markdown(f"`{text}`")


def code_spans(values: Iterable[object], none: str = "(none)") -> Markdown:
    """Values as code spans separated by commas; ``none`` (escaped) when there are none."""
    spans = [code_span(v) for v in values]
    return Markdown(", ".join(spans) if spans else escape_markdown(none))


def code_block(text: str, info: str = "") -> Markdown:
    """A fenced code block: its content is verbatim, so the fence is one backtick longer than
    any run of backticks inside."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return Markdown(f"{fence}{info}\n{text.rstrip(chr(10))}\n{fence}")


def _finalize(value: object) -> object:
    return value if isinstance(value, Markdown) else escape_markdown(value)


_TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    # The output is Markdown: HTML autoescaping would be the wrong escape (and would leave
    # Markdown syntax live). _finalize escapes every value for Markdown instead.
    autoescape=False,  # noqa: S701
    finalize=_finalize,
    undefined=jinja2.StrictUndefined,  # a value the code forgot fails the render, loudly
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_TEMPLATES.filters |= {"code": code_span, "codes": code_spans, "code_block": code_block}


@dataclass(frozen=True)
class RotationDates:
    """An iam-user key rotation, by day (day 0: the new key is created) and, when the next
    rotation is known, by date."""

    interval_days: int
    grace_days: int
    deleted_day: int
    next_rotation: date | None = None

    @property
    def deactivated_on(self) -> date | None:
        return self.next_rotation + timedelta(days=self.grace_days) if self.next_rotation else None

    @property
    def deleted_on(self) -> date | None:
        return self.next_rotation + timedelta(days=self.deleted_day) if self.next_rotation else None


def rotation_dates(inputs: KitInputs) -> RotationDates:
    """The registry's rotation schedule (its defaults where it says nothing)."""
    rotation = inputs.customer.rotation or Rotation()
    return RotationDates(interval_days=rotation.interval_days, grace_days=rotation.grace_days,
                         deleted_day=rotation.grace_days + rotation.delete_after_days,
                         next_rotation=inputs.next_rotation)


def first_transfer_commands(inputs: KitInputs) -> list[str]:
    """The three shell commands of a first transfer: install the client, write its profile
    from the kit's outputs file, upload (or, without an upload folder, download)."""
    slug, outputs = inputs.slug, inputs.outputs
    if outputs.access is AccessMode.IAM_USER:
        source = f"--credentials-file {credentials_file_name(slug)}"
    elif outputs.access is AccessMode.ASSUME_ROLE:
        source = "--aws-profile YOUR-SOURCE-PROFILE"
    elif outputs.access is AccessMode.ROLES_ANYWHERE:
        source = (f"--certificate {CERTIFICATE_PLACEHOLDER} "
                  f"--private-key {PRIVATE_KEY_PLACEHOLDER}")
    else:
        source = "--aws-profile YOUR-PROFILE"
    profile = file_names(inputs)["profile"]
    if inputs.receipt_key is not None:
        source += f" --receipt-public-key {RECEIPT_KEY_FILE}"
    if outputs.inbound_prefix:
        transfer = f"partner-transfer upload --profile {profile} {EXAMPLE_UPLOAD}"
    else:
        transfer = (f"partner-transfer download --profile {profile} {outputs.outbound_prefix} "
                    f"{EXAMPLE_DOWNLOAD_FOLDER}")
    return [
        "pip install partner-transfer",
        f"partner-transfer profile init --outputs-file {file_names(inputs)['outputs']} "
        f"{source} -o {profile} --force",
        transfer,
    ]


def aws_cli_example(inputs: KitInputs) -> str:
    """An AWS CLI command using the kit's AWS profile (assume-role)."""
    outputs, profile = inputs.outputs, f"phi-exchange-{inputs.slug}"
    if outputs.inbound_prefix:
        return (f"aws s3 cp {EXAMPLE_UPLOAD} s3://{outputs.bucket}/{outputs.inbound_prefix} "
                f"--profile {profile}")
    return f"aws s3 cp s3://{outputs.bucket}/{outputs.outbound_prefix}FILE . --profile {profile}"


def receipts_command(inputs: KitInputs) -> str:
    """The command that checks the receipts of what the partner sent."""
    return f"partner-transfer receipts verify --profile {file_names(inputs)['profile']}"


def instructions_markdown(inputs: KitInputs) -> str:
    """The partner-facing instructions (Markdown), from ``kit_templates/<access mode>.md.j2``:
    connection values, security rules, the three commands of a first transfer, the signed
    receipts and how to verify them (a partner that sends), desktop clients, the rotation
    timeline, the partner-side policy and the values to give us (cross-account and
    assume-role), and whom to contact."""
    outputs, customer = inputs.outputs, inputs.customer
    document = partner_policy.partner_side_policy(outputs)
    key = inputs.receipt_key
    return _render(
        f"{outputs.access.value}.md.j2",
        name=inputs.name,
        slug=inputs.slug,
        stack=naming.stack_name(inputs.slug),
        outputs=outputs,
        access_key_id=inputs.access_key_id,
        files=file_names(inputs),
        sums_file=SUMS_FILE,
        credentials_file=credentials_file_name(inputs.slug),
        principals=customer.partner_principals,
        source_ranges=customer.allowed_source_ips,
        contacts=customer.contacts,
        support_contacts=inputs.support_contacts,
        commands=first_transfer_commands(inputs),
        example_upload=EXAMPLE_UPLOAD,
        example_download_folder=EXAMPLE_DOWNLOAD_FOLDER,
        cyberduck_host=cyberduck_hostname(outputs),
        default_path=(f"/{outputs.bucket}/{inputs.default_prefix}" if inputs.desktop_clients
                      else None),
        aws_cli_example=(aws_cli_example(inputs) if "aws_config" in file_names(inputs)
                         else None),
        certificate_subject=(customer.roles_anywhere.subject if customer.roles_anywhere
                             else ()),
        ca_certificates=(customer.roles_anywhere.certificates if customer.roles_anywhere
                         else ()),
        certificate_placeholder=CERTIFICATE_PLACEHOLDER,
        private_key_placeholder=PRIVATE_KEY_PLACEHOLDER,
        rotation=rotation_dates(inputs),
        policy_json=partner_policy.render_policy(document) if document is not None else None,
        receipts_prefix=naming.RECEIPTS_PREFIX,
        receipts_command=receipts_command(inputs),
        receipt_key_fingerprint=receipt_key_fingerprint(key) if key is not None else None,
    )


def _render(template: str, /, **values: object) -> str:
    try:
        return _TEMPLATES.get_template(template).render(**values)
    except jinja2.TemplateNotFound as err:  # an installation without its package data
        raise LifecycleError(f"cannot write the instructions: template {err.name} is missing "
                             f"from {TEMPLATES}; reinstall phi-exchange") from None


# --- the instructions as a web page ---------------------------------------------------------

# CommonMark plus tables. Raw HTML off: any "<tag>" in the Markdown is shown, never parsed.
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")
_STYLE = ("body{font-family:system-ui,sans-serif;max-width:52em;margin:2em auto;padding:0 1em;"
          "line-height:1.5}code,pre{font-family:ui-monospace,monospace;background:#f4f4f4}"
          "pre{padding:.75em;overflow-x:auto}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
          "blockquote{border-left:4px solid #c00;margin:0;padding:.2em 1em;background:#fff4f4}")


def html_page(markdown: str) -> str:
    """A standalone HTML page of ``markdown`` (markdown-it-py: CommonMark and tables, raw HTML
    shown as text), titled with its first heading's text, with a small fixed style and a
    Content-Security-Policy that forbids scripts and remote loads."""
    tokens = _MARKDOWN.parse(markdown)
    body = _MARKDOWN.renderer.render(tokens, _MARKDOWN.options, {})
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        'style-src \'unsafe-inline\'">',
        f"<title>{html.escape(_first_heading(tokens))}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        body.rstrip("\n"),
        "</body>",
        "</html>",
        "",
    ])


def _first_heading(tokens: Sequence[Token]) -> str:
    """The text of the first heading, as a reader sees it (escapes and code marks removed)."""
    for opening, inline in itertools.pairwise(tokens):
        if opening.type == "heading_open" and inline.children is not None:
            return "".join(child.content for child in inline.children)
    return ""


# --- the kit --------------------------------------------------------------------------------


def kit_files(inputs: KitInputs) -> dict[str, bytes]:
    """Every file of the kit, by name, ending with ``SHA256SUMS`` (``sha256sum -c``)."""
    names = file_names(inputs)
    markdown = instructions_markdown(inputs)
    contents: dict[str, bytes] = {
        names["readme"]: markdown.encode(),
        names["readme_html"]: html_page(markdown).encode(),
        names["profile"]: connection_profile(inputs).encode(),
        names["outputs"]: outputs_json(inputs).encode(),
    }
    if inputs.desktop_clients:
        contents[names["cyberduck"]] = cyberduck_bookmark(inputs)
        contents[names["winscp_url"]] = (winscp_url(inputs) + "\n").encode()
        contents[names["winscp_ini"]] = winscp_ini(inputs).encode()
    document = partner_policy.partner_side_policy(inputs.outputs)
    if document is not None:
        contents[names["policy"]] = partner_policy.render_policy(document).encode()
    if "aws_config" in names:
        contents[names["aws_config"]] = aws_config_profile(inputs).encode()
    if inputs.receipt_key is not None:
        contents[names["receipt_key"]] = inputs.receipt_key
    sums = "".join(f"{hashlib.sha256(data).hexdigest()}  {name}\n"
                   for name, data in sorted(contents.items()))
    contents[SUMS_FILE] = sums.encode()
    return contents


def check_no_secrets(files: Mapping[str, bytes], known_secrets: Iterable[str] = ()) -> None:
    """Refuse a kit that could carry a secret: a known secret value (e.g. the partner's current
    secret access key, when the operator's credentials can read it), a credentials field name
    (``secret_access_key``, ...), or anything shaped like an AWS secret access key. Names the
    file, never the value."""
    secrets = [s for s in known_secrets if s]
    for name, data in files.items():
        text = data.decode("utf-8", errors="replace")
        if any(secret in text for secret in secrets):
            raise LifecycleError(f"refusing to write the kit: {name} contains the partner's "
                                 "secret access key")
        lowered = text.lower()
        for field_name in SECRET_FIELD_NAMES:
            if field_name in lowered:
                raise LifecycleError(f"refusing to write the kit: {name} contains "
                                     f"'{field_name}'")
        for match in _SECRET_SHAPE.finditer(text):
            token = match.group(0)
            if (any(c.islower() for c in token) and any(c.isupper() for c in token)
                    and any(c.isdigit() for c in token)):
                raise LifecycleError(f"refusing to write the kit: {name} contains a value "
                                     "shaped like a secret access key")


def write_kit(directory: Path, files: Mapping[str, bytes], *,
              known_secrets: Iterable[str] = ()) -> list[Path]:
    """Write the kit into ``directory`` (created if missing) after :func:`check_no_secrets`.

    An existing directory is accepted only if it is empty or holds an earlier kit (its
    ``SHA256SUMS`` lists every file in it): the earlier kit's files are replaced or, if this
    kit has no such file, removed. Anything else is refused: nothing unrelated is overwritten.
    """
    check_no_secrets(files, known_secrets)
    if directory.exists() and not directory.is_dir():
        raise LifecycleError(f"{directory} exists and is not a folder")
    previous: set[str] = set()
    if directory.is_dir():
        present = {p.name for p in directory.iterdir()}
        leftovers = {n for n in present if n.startswith(".") and n.endswith(".tmp")}
        if present:
            previous = _previous_kit(directory) | leftovers  # leftovers: an interrupted write
            unknown = sorted(present - previous - {SUMS_FILE})
            if SUMS_FILE not in present or unknown:
                raise LifecycleError(
                    f"{directory} is not empty and does not hold an earlier kit "
                    f"({', '.join(unknown[:5]) or 'no ' + SUMS_FILE}); choose another --output")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in files.items():
        path = directory / name
        tmp = directory / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)
        written.append(path)
    for stale in sorted(previous - set(files)):
        (directory / stale).unlink(missing_ok=True)
    return written


def _previous_kit(directory: Path) -> set[str]:
    sums = directory / SUMS_FILE
    if not sums.is_file():
        return set()
    names = set()
    for line in sums.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("  ", 1)
        if len(parts) == 2 and "/" not in parts[1] and not parts[1].startswith("."):
            names.add(parts[1])
    return names
