"""The partner kit: everything a partner needs to connect, and never a secret.

Pure functions take the registry entry (:class:`~stacks.config.CustomerConfig`) and the
deployed stack's outputs (:class:`~admin.stack_outputs.StackOutputs`) and return file
contents; :func:`write_kit` writes them to a folder after :func:`check_no_secrets` has scanned
every byte. The same inputs always give the same bytes (no timestamps; the bookmark's UUID is
derived from the bucket name), so a kit can be regenerated and compared.

What the kit holds, by access mode (docs/onboarding.md):

=====================  ========  =============  ===========
file                   iam-user  cross-account  assume-role
=====================  ========  =============  ===========
README.md, README.html    yes        yes            yes
<slug>.toml (client)      yes        yes            yes
<slug>-outputs.json       yes        yes            yes
<slug>.duck (Cyberduck)   yes        yes (no key)   no
<slug>-winscp-url.txt     yes        yes (no key)   no
<slug>-WinSCP.ini         yes        yes (no key)   no
partner-iam-policy.json   no         yes            yes
aws-config-profile.ini    no         no             yes
SHA256SUMS                yes        yes            yes
=====================  ========  =============  ===========
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import plistlib
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from urllib.parse import quote

from admin import partner_policy
from admin.stack_outputs import LifecycleError, StackOutputs
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
DEFAULT_SUPPORT = "the operator who sent you this kit"


@dataclass(frozen=True)
class KitInputs:
    """What a kit is made from.

    ``access_key_id`` (default none): the partner's current access key id (iam-user only;
    never the secret); without it the desktop-client files carry no user name.
    ``support_contacts`` (default: none, the document then names "the operator who sent you
    this kit"): who the partner contacts at our side. ``next_rotation`` (default none): the
    next scheduled rotation date, when known (the kit is then no longer reproducible
    offline, so offline runs leave it out).
    """

    customer: CustomerConfig
    outputs: StackOutputs
    access_key_id: str | None = None
    support_contacts: tuple[str, ...] = ()
    next_rotation: date | None = None

    @property
    def slug(self) -> str:
        return self.customer.slug

    @property
    def name(self) -> str:
        return self.customer.display_name or self.customer.slug

    @property
    def desktop_clients(self) -> bool:
        """Whether the kit has Cyberduck and WinSCP files: they sign with a static access key,
        which an assume-role partner does not have."""
        return self.outputs.access is not AccessMode.ASSUME_ROLE

    @property
    def default_prefix(self) -> str:
        """Where desktop clients open: the upload folder, else the download folder."""
        prefix = self.outputs.inbound_prefix or self.outputs.outbound_prefix
        assert prefix is not None  # onboard refuses an offboarded stack, parse_outputs others
        return prefix


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
    if inputs.outputs.access is not AccessMode.IAM_USER:
        names["policy"] = "partner-iam-policy.json"
    if inputs.outputs.access is AccessMode.ASSUME_ROLE:
        names["aws_config"] = "aws-config-profile.ini"
    return names


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
        raise LifecycleError("assume-role partners get no desktop bookmark: a bookmark holds a "
                             "static access key, and the role is reached with temporary ones")
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
    id, from the default chain."""
    credentials = (Path(credentials_file_name(inputs.slug))
                   if inputs.outputs.access is AccessMode.IAM_USER else None)
    try:
        profile = profile_from_outputs(inputs.outputs.partner_outputs(),
                                       credentials_file=credentials)
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
    for the AWS CLI and any tool that reads AWS profiles."""
    outputs = inputs.outputs
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


def instructions_markdown(inputs: KitInputs) -> str:
    """The partner-facing instructions (Markdown): connection values, security rules, the
    three commands of a first upload, desktop clients, the rotation timeline, the partner-side
    policy and the values to give us (cross-account and assume-role), and whom to contact."""
    outputs, slug, names = inputs.outputs, inputs.slug, file_names(inputs)
    mode = outputs.access
    doc: list[str] = [
        f"# Secure file exchange: {_inline(inputs.name)} ({slug})",
        "",
        "This kit connects you to the S3 bucket we set up for exchanging files with you. "
        "Read the security rules before your first transfer.",
        "",
        _secret_notice(inputs),
        "",
        "## Your connection",
        "",
        "| setting | value |",
        "| --- | --- |",
        f"| bucket | `{outputs.bucket}` |",
        f"| region | `{outputs.region}` |",
        f"| S3 endpoint | `https://{outputs.s3_endpoint}` |",
        f"| bucket owner (our AWS account) | `{outputs.account}` |",
        f"| encryption key (AWS KMS) | `{outputs.kms_key_arn}` |",
    ]
    if outputs.inbound_prefix:
        doc.append(f"| upload folder: you write, write-only | `{outputs.inbound_prefix}` |")
    if outputs.outbound_prefix:
        doc.append(f"| download folder: you read, read-only | `{outputs.outbound_prefix}` |")
    doc += [f"| access | {_access_description(inputs)} |", ""]

    doc += ["## What is in this kit", "", "| file | what it is |", "| --- | --- |"]
    doc += [f"| `{name}` | {_FILE_ROLES[role]} |" for role, name in names.items()]
    doc += [f"| `{SUMS_FILE}` | SHA-256 of every file above: `sha256sum -c {SUMS_FILE}` |", ""]

    doc += ["## Security rules", "", *_security_rules(inputs), ""]
    doc += ["## Your first upload in three commands", "", *_first_upload(inputs), ""]
    doc += ["## Desktop clients", "", *_desktop_clients(inputs), ""]
    doc += ["## Credentials and rotation", "", *_rotation(inputs), ""]
    if mode is not AccessMode.IAM_USER:
        doc += ["## On your side: the IAM policy to attach", "", *_partner_policy(inputs), ""]
        doc += ["## The values to give us", "", *_values_to_give(inputs), ""]
    doc += ["## Who to contact", "", *_contacts(inputs), ""]
    doc += [f"Generated by `phi-exchange-admin onboard {slug}` from stack "
            f"`{naming.stack_name(slug)}`. Regenerate the kit after any change we announce."]
    return "\n".join(doc) + "\n"


_FILE_ROLES = {
    "readme": "these instructions",
    "readme_html": "these instructions, as a web page",
    "profile": "connection profile of the transfer client `partner-transfer`",
    "outputs": "your bucket's connection values, read by `partner-transfer profile init`",
    "cyberduck": "Cyberduck bookmark (double-click to import)",
    "winscp_url": "WinSCP session URL (paste it into WinSCP's login dialog)",
    "winscp_ini": "the same WinSCP site as a WinSCP.ini section",
    "policy": "the IAM policy to attach on your side (JSON)",
    "aws_config": "an AWS CLI profile that assumes our role with your external id",
}


def _inline(text: str) -> str:
    """Registry text made inert in Markdown (the HTML renderer escapes it as well)."""
    return re.sub(r"([\\`*_\[\]|<>#])", r"\\\1", text)


def _secret_notice(inputs: KitInputs) -> str:
    if inputs.outputs.access is AccessMode.IAM_USER:
        return ("> **This kit contains no secret key.** Your secret access key reaches you "
                "separately: your operator sends the credentials file "
                f"`{credentials_file_name(inputs.slug)}` through the secure channel agreed "
                "with you (they produce it with `phi-exchange-admin credentials "
                f"{inputs.slug}`), never with this kit and never by plain e-mail. Save it "
                "beside this kit's files, readable only by you (`chmod 600`).")
    return ("> **This kit contains no secret.** You sign in with the credentials of your own "
            "AWS principal; we never hold or send a secret key for it.")


def _access_description(inputs: KitInputs) -> str:
    outputs = inputs.outputs
    if outputs.access is AccessMode.IAM_USER:
        key = (f", access key id `{inputs.access_key_id}`" if inputs.access_key_id
               else " (the access key id is in your credentials file)")
        return f"IAM user `{outputs.user_name}` in our account{key}"
    principals = ", ".join(f"`{p}`" for p in inputs.customer.partner_principals)
    if outputs.access is AccessMode.ASSUME_ROLE:
        return (f"your principal ({principals}) assumes our role `{outputs.role_arn}` with "
                f"external id `{outputs.external_id}`; sessions last at most one hour")
    return f"your own principals, registered with us: {principals}"


def _security_rules(inputs: KitInputs) -> list[str]:
    outputs, customer = inputs.outputs, inputs.customer
    rules = [
        "- **TLS 1.2 or newer only.** The bucket refuses every request over plain HTTP or "
        "older TLS. Use the `https://` endpoint above.",
        "- **Encryption with our key.** Every object is stored encrypted with AWS KMS "
        "(SSE-KMS) under the key above. You need not do anything: the bucket's default "
        "encryption applies that key to uploads that carry no encryption headers. If your "
        "tool sends encryption headers, they must say `aws:kms` with exactly this key ARN: "
        "uploads naming another algorithm (SSE-S3/AES256), another key, `aws:kms` without "
        "this key, or a customer-provided key (SSE-C) are refused. `partner-transfer` and the "
        "Cyberduck bookmark name the key explicitly.",
        "- **The key only through S3.** You may use the key only through S3 (downloads "
        "decrypt, uploads encrypt); direct KMS calls are refused.",
    ]
    if outputs.inbound_prefix:
        rules.append(
            f"- **Uploads are write-only.** You can upload to `{outputs.inbound_prefix}` and "
            "list it, but you cannot read back, download or delete what you sent, so a leaked "
            "key cannot expose earlier files. Sending a file again under the same name stores "
            "a new version; we keep the earlier one.")
    if outputs.outbound_prefix:
        rules.append(f"- **Downloads are read-only.** You can list and download "
                     f"`{outputs.outbound_prefix}`; you cannot change or delete it.")
    rules.append("- **Only your folders.** You cannot list buckets, nor other folders: open the "
                 "bucket by its name (the bookmark and the URL do).")
    if customer.allowed_source_ips:
        ranges = ", ".join(f"`{c}`" for c in customer.allowed_source_ips)
        rules.append(f"- **Only from your registered addresses:** {ranges}. Requests from "
                     "anywhere else are refused.")
    rules.append("- **Verified transfers.** `partner-transfer` checks every file end to end "
                 "(CRC64NVME, verified by S3) and keeps a custody manifest of every transfer; "
                 "desktop clients do not. Prefer the client for health data.")
    return rules


def _first_upload(inputs: KitInputs) -> list[str]:
    slug, outputs = inputs.slug, inputs.outputs
    names = file_names(inputs)
    if outputs.access is AccessMode.IAM_USER:
        source = f"--credentials-file {credentials_file_name(slug)}"
        why = (f"writes the connection profile `{slug}.toml` for your credentials file (the "
               "kit's copy is the same profile, expecting the credentials file beside it; run "
               "the command with the file's path if you keep it elsewhere)")
    elif outputs.access is AccessMode.ASSUME_ROLE:
        source = "--aws-profile YOUR-SOURCE-PROFILE"
        why = (f"writes the connection profile `{slug}.toml`: it assumes our role with your "
               "external id, using the AWS profile of the principal you registered (leave out "
               "`--aws-profile` to use your default credentials)")
    else:
        source = "--aws-profile YOUR-PROFILE"
        why = (f"writes the connection profile `{slug}.toml` signing with the AWS profile of a "
               "principal you registered (leave out `--aws-profile` to use your default "
               "credentials)")
    if outputs.inbound_prefix:
        last = f"partner-transfer upload --profile {slug}.toml claims.csv"
        last_why = (f"uploads `claims.csv` to `{outputs.inbound_prefix}claims.csv`, verified "
                    "end to end")
    else:
        last = f"partner-transfer download --profile {slug}.toml {outputs.outbound_prefix} received"
        last_why = (f"downloads everything under `{outputs.outbound_prefix}` into `received/` "
                    "(this partner has no upload folder)")
    return [
        "```",
        "pip install partner-transfer",
        f"partner-transfer profile init --outputs-file {names['outputs']} {source} "
        f"-o {slug}.toml --force",
        last,
        "```",
        "",
        "1. installs the transfer client (Python 3.11 or newer). If we sent you the package "
        "file or its source folder instead, `pip install` that file or folder.",
        f"2. {why}.",
        f"3. {last_why}. `partner-transfer ls --profile {slug}.toml` lists what you may see; "
        "`partner-transfer --help` shows every command.",
    ]


def _desktop_clients(inputs: KitInputs) -> list[str]:
    outputs, names = inputs.outputs, file_names(inputs)
    if not inputs.desktop_clients:
        if outputs.inbound_prefix:
            example = (f"aws s3 cp claims.csv s3://{outputs.bucket}/{outputs.inbound_prefix} "
                       f"--profile phi-exchange-{inputs.slug}")
        else:
            example = (f"aws s3 cp s3://{outputs.bucket}/{outputs.outbound_prefix}FILE . "
                       f"--profile phi-exchange-{inputs.slug}")
        return [
            "Cyberduck and WinSCP bookmarks sign with a static access key, and our role is "
            "reached with temporary credentials, so this kit has none. Use `partner-transfer`, "
            f"or any tool that reads AWS profiles with the profile in `{names['aws_config']}` "
            f"(for example `{example}`).",
        ]
    if inputs.access_key_id:
        login = (f"with your access key id `{inputs.access_key_id}` and asks for your secret "
                 "access key when it first connects")
    elif outputs.access is AccessMode.IAM_USER:
        login = ("and asks for your access key id and secret access key (both are in your "
                 "credentials file)")
    else:
        login = ("and asks for an access key id and secret access key: those of an IAM user "
                 "you registered with us (a registered role has only temporary credentials: "
                 "use `partner-transfer` or an AWS profile)")
    place = f"`/{outputs.bucket}/{inputs.default_prefix}`"
    lines = [
        f"- **Cyberduck**: open `{names['cyberduck']}` (double-click, or Bookmark > Import). "
        f"It connects to `{cyberduck_hostname(outputs)}`, opens {place}, {login}. Cyberduck "
        "finds the bucket's region itself. The bookmark makes SSE-KMS with our key the default "
        "encryption for this bucket.",
        f"- **WinSCP**: paste the URL in `{names['winscp_url']}` into the host name box of the "
        "login dialog (or run `winscp.exe` with it) and Save the site; it opens "
        f"{place} in `{outputs.region}`. If your WinSCP keeps its configuration in an INI "
        f"file, you can append `{names['winscp_ini']}` to it instead.",
        "- Desktop clients do not verify transfers end to end nor keep a custody record; "
        "`partner-transfer` does.",
    ]
    if outputs.access is AccessMode.IAM_USER:
        lines.append("- After each key rotation (below), replace the access key id (the user "
                     "name) in the bookmark and the site, or import the new kit we send.")
    return lines


def _rotation(inputs: KitInputs) -> list[str]:
    outputs, customer = inputs.outputs, inputs.customer
    if outputs.access is AccessMode.CROSS_ACCOUNT:
        return ["You sign with your own principals' credentials: you manage and rotate them "
                "on your side. We hold no key for you, so nothing of ours rotates."]
    if outputs.access is AccessMode.ASSUME_ROLE:
        return ["Each session of our role lasts at most one hour; `partner-transfer` and the AWS "
                "CLI renew it. Rotate the credentials of your source principal on your side. "
                "The external id is not a password, but keep it to the people who need it."]
    rotation = customer.rotation or Rotation()
    grace, deleted = rotation.grace_days, rotation.grace_days + rotation.delete_after_days
    contacts = ", ".join(customer.contacts)
    lines = [
        f"Your access key is replaced every {rotation.interval_days} days. Day 0 is the day "
        "the new key is created:",
        "",
        "| day | what happens | what you do |",
        "| --- | --- | --- |",
        "| 0 | a new key is issued; the notice names its id (never the secret) | wait for the "
        "new credentials file from your operator |",
        f"| 0 to {grace} | both keys work | switch: replace the credentials file; update the "
        "access key id in desktop clients |",
        f"| {grace} | the previous key is deactivated: requests signed with it are refused "
        "| nothing, if you switched |",
        f"| {deleted} | the previous key is deleted | nothing |",
        "",
        f"Notices go to {contacts}. The new secret reaches you the same way as the first one: "
        "separately, from your operator, through the agreed secure channel.",
    ]
    if inputs.next_rotation:
        lines += ["", f"Next scheduled rotation: {inputs.next_rotation.isoformat()}."]
    return lines


def _partner_policy(inputs: KitInputs) -> list[str]:
    outputs, names = inputs.outputs, file_names(inputs)
    document = partner_policy.partner_side_policy(outputs)
    assert document is not None
    if outputs.access is AccessMode.ASSUME_ROLE:
        intro = [f"Attach `{names['policy']}` to the principal that assumes our role. It allows "
                 f"only `sts:AssumeRole` on `{outputs.role_arn}`; the role itself carries the "
                 "bucket and key permissions. Pass the external id in every AssumeRole call."]
    else:
        granted = []
        if outputs.inbound_prefix:
            granted.append(f"upload (write-only) under `{outputs.inbound_prefix}`")
        if outputs.outbound_prefix:
            granted.append(f"download under `{outputs.outbound_prefix}`")
        intro = [
            f"Our bucket and key policies grant your registered principals access, but AWS "
            "also requires your own identity policy. Attach "
            f"`{names['policy']}` to each principal you registered. It allows exactly: "
            + "; ".join(granted)
            + f"; listing only those folders of `{outputs.bucket}`; and the key "
            f"`{outputs.kms_key_arn}` only through S3 in {outputs.region} for this bucket. "
            "Nothing else: no other bucket, no delete, no direct KMS use.",
        ]
    return [*intro, "", "```json", partner_policy.render_policy(document).rstrip("\n"), "```"]


def _values_to_give(inputs: KitInputs) -> list[str]:
    customer, outputs = inputs.customer, inputs.outputs
    principals = "<br>".join(f"`{p}`" for p in customer.partner_principals) or "(none)"
    ranges = "<br>".join(f"`{c}`" for c in customer.allowed_source_ips) or "any (not restricted)"
    who = ("the principal that assumes our role" if outputs.access is AccessMode.ASSUME_ROLE
           else "the principals that sign your requests")
    return [
        "We grant access to what our registry says. Send us any change before you make it; "
        "we update the registry and redeploy, then send you a new kit.",
        "",
        "| what | registered now | format |",
        "| --- | --- | --- |",
        f"| {who} | {principals} | IAM role or user ARNs, or 12-digit account ids; no wildcards |",
        f"| the addresses you connect from | {ranges} | CIDR ranges, optional |",
        f"| who receives notices | {', '.join(customer.contacts)} | e-mail addresses |",
    ]


def _contacts(inputs: KitInputs) -> list[str]:
    support = ", ".join(_inline(c) for c in inputs.support_contacts) or DEFAULT_SUPPORT
    return [
        f"- Questions, problems, access changes: {support}.",
        "- A lost or leaked credential: tell us at once, by phone if you can; we revoke it.",
        f"- Our notices go to: {', '.join(inputs.customer.contacts)}.",
    ]


# --- Markdown to HTML: a tiny, escaping renderer ----------------------------------------------


_HEADING = re.compile(r"^(#{1,6}) (.*)$")
_ORDERED = re.compile(r"^\d+\. (.*)$")
_TABLE_SEPARATOR = re.compile(r"^\|( *:?-+:? *\|)+$")
_STYLE = ("body{font-family:system-ui,sans-serif;max-width:52em;margin:2em auto;padding:0 1em;"
          "line-height:1.5}code,pre{font-family:ui-monospace,monospace;background:#f4f4f4}"
          "pre{padding:.75em;overflow-x:auto}table{border-collapse:collapse}"
          "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}"
          "blockquote{border-left:4px solid #c00;margin:0;padding:.2em 1em;background:#fff4f4}")


def render_html(markdown: str, *, title: str) -> str:
    """A standalone HTML page from the Markdown subset the instructions use: headings,
    paragraphs, fenced code blocks, bulleted and numbered lists, tables, block quotes, and
    inline code, bold, ``<br>`` and http(s)/mailto links. Everything else is escaped: no raw
    HTML passes through, and a Content-Security-Policy forbids scripts and remote loads."""
    body: list[str] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            code = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                code.append(lines[i])
                i += 1
            body.append("<pre><code>" + html.escape("\n".join(code)) + "</code></pre>")
            i += 1
            continue
        heading = _HEADING.match(line)
        if heading:
            level = len(heading.group(1))
            body.append(f"<h{level}>{_inline_html(heading.group(2))}</h{level}>")
            i += 1
            continue
        if not line.strip():
            i += 1
            continue
        block, i = _take_block(lines, i)
        body.append(_render_block(block))
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        'style-src \'unsafe-inline\'">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style>",
        "</head>",
        "<body>",
        *body,
        "</body>",
        "</html>",
        "",
    ])


def _take_block(lines: Sequence[str], start: int) -> tuple[list[str], int]:
    """The lines of one block: up to a blank line, a heading or a code fence."""
    end = start
    while (end < len(lines) and lines[end].strip() and not lines[end].startswith("```")
           and not _HEADING.match(lines[end])):
        end += 1
    return list(lines[start:end]), end


def _render_block(block: list[str]) -> str:
    first = block[0]
    if first.startswith("|") and len(block) >= 2 and _TABLE_SEPARATOR.match(block[1]):
        head = _cells(first)
        rows = [_cells(row) for row in block[2:]]
        parts = ["<table>", "<thead><tr>"
                 + "".join(f"<th>{_inline_html(c)}</th>" for c in head) + "</tr></thead>",
                 "<tbody>"]
        parts += ["<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>"
                  for row in rows]
        return "\n".join([*parts, "</tbody>", "</table>"])
    if first.startswith("> "):
        text = " ".join(line[2:] if line.startswith("> ") else line for line in block)
        return f"<blockquote><p>{_inline_html(text)}</p></blockquote>"
    if first.startswith("- "):
        return _render_list(block, "ul", lambda line: line[2:] if line.startswith("- ") else None)
    if _ORDERED.match(first):
        return _render_list(block, "ol", lambda line: (m.group(1) if (m := _ORDERED.match(line))
                                                       else None))
    return f"<p>{_inline_html(' '.join(line.strip() for line in block))}</p>"


def _render_list(block: list[str], tag: str, item_text: Callable[[str], str | None]) -> str:
    items: list[str] = []
    for line in block:
        text = item_text(line)
        if text is not None:
            items.append(text)
        elif items:  # a continuation line of the previous item
            items[-1] += " " + line.strip()
    return (f"<{tag}>" + "".join(f"<li>{_inline_html(item)}</li>" for item in items)
            + f"</{tag}>")



def _cells(row: str) -> list[str]:
    inner = row.strip()[1:-1] if row.strip().endswith("|") else row.strip()[1:]
    cells = re.split(r"(?<!\\)\|", inner)
    return [c.strip().replace("\\|", "|") for c in cells]


_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\(((?:https?://|mailto:)[^\s)]+)\)")
_ESCAPED = re.compile(r"\\([\\`*_\[\]|<>#])")


def _inline_html(text: str) -> str:
    """Inline Markdown to HTML: code spans verbatim (escaped), then bold, links and ``<br>``
    on escaped text; backslash escapes become the literal character."""
    out: list[str] = []
    for index, part in enumerate(re.split(r"(`[^`]*`)", text)):
        if index % 2 == 1:
            out.append("<code>" + html.escape(part[1:-1]) + "</code>")
            continue
        literal: list[str] = []
        pieces = _ESCAPED.split(part)
        for n, piece in enumerate(pieces):
            # split() with one group alternates text, escaped character, text, ...
            literal.append(html.escape(piece) if n % 2 == 1 else _markup(piece))
        out.append("".join(literal))
    return "".join(out)


def _markup(text: str) -> str:
    escaped = html.escape(text)
    escaped = escaped.replace("&lt;br&gt;", "<br>")
    escaped = _BOLD.sub(r"<strong>\1</strong>", escaped)
    return _LINK.sub(lambda m: f'<a href="{m.group(2)}">{m.group(1)}</a>', escaped)


# --- the kit --------------------------------------------------------------------------------


def kit_files(inputs: KitInputs) -> dict[str, bytes]:
    """Every file of the kit, by name, ending with ``SHA256SUMS`` (``sha256sum -c``)."""
    names = file_names(inputs)
    markdown = instructions_markdown(inputs)
    contents: dict[str, bytes] = {
        names["readme"]: markdown.encode(),
        names["readme_html"]: render_html(
            markdown, title=f"Secure file exchange: {inputs.name} ({inputs.slug})").encode(),
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
