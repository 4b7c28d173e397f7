"""The roles-anywhere credential source: its profile fields and their rules, ``profile init``
from a roles-anywhere stack's outputs, every way the certificate and key files can be wrong
(one line, exit 3), and the session it builds: the first credentials fetched at once, a
refusal one line with exit 5, and credentials that renew themselves.

The session tests talk HTTPS to a small IAM Roles Anywhere stand-in started here (answers
``POST /sessions`` as the service does: credentials, or a JSON error). Certificates are
throwaway ones made with ``cryptography``; nothing here touches a real CA or AWS.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from partner_transfer.clients import load_x509_material, make_clients, make_session
from partner_transfer.errors import ExitCode, TransferError
from partner_transfer.profile import (
    AuthMethod,
    load_profile,
    parse_profile,
    render_profile,
)
from tests.transfer.conftest import (
    ACCOUNT,
    KEY_ARN,
    REGION,
    admin_client,
    cli,
    cli_subprocess,
)

ANCHOR_ID = str(uuid.UUID(int=1))
PROFILE_ID = str(uuid.UUID(int=2))
TRUST_ANCHOR_ARN = f"arn:aws:rolesanywhere:{REGION}:{ACCOUNT}:trust-anchor/{ANCHOR_ID}"
PROFILE_ARN = f"arn:aws:rolesanywhere:{REGION}:{ACCOUNT}:profile/{PROFILE_ID}"
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/phi-exchange-acme-partner"
BUCKET = f"phi-acme-{ACCOUNT}-{REGION}"


# -- throwaway certificates ------------------------------------------------------------------


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme Health"),
        ]
    )


@dataclass
class CA:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @classmethod
    def create(cls) -> CA:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name("Acme Test CA"))
            .issuer_name(_name("Acme Test CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(
        self,
        cn: str = "acme-transfer-01",
        *,
        key: PrivateKey | None = None,
        not_before: datetime | None = None,
        not_after: datetime | None = None,
        is_ca: bool = False,
    ) -> tuple[x509.Certificate, PrivateKey]:
        key = key or ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - timedelta(minutes=5))
            .not_valid_after(not_after or now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
            .sign(self.key, hashes.SHA256())
        )
        return cert, key


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


@dataclass
class Files:
    """A valid certificate, key (mode 0600) and chain in ``root``; tests break one of them."""

    root: Path
    cert: Path
    key: Path
    chain: Path
    subject: str


@pytest.fixture
def files(tmp_path: Path, ca: CA) -> Files:
    cert, key = ca.issue()
    paths = Files(
        tmp_path,
        tmp_path / "client.pem",
        tmp_path / "client-key.pem",
        tmp_path / "chain.pem",
        cert.subject.rfc4514_string(),
    )
    paths.cert.write_bytes(cert_pem(cert))
    paths.key.touch(mode=0o600)
    paths.key.write_bytes(key_pem(key))
    paths.chain.write_bytes(cert_pem(ca.cert))
    return paths


# -- profiles --------------------------------------------------------------------------------


def ra_profile(
    files: Files | None = None, *, top: dict[str, Any] | None = None, **auth: Any
) -> dict[str, Any]:
    """A roles-anywhere profile mapping; ``auth`` overrides [auth] (None removes a field)."""
    section: dict[str, Any] = {
        "method": "roles-anywhere",
        "certificate": str(files.cert) if files else "client.pem",
        "private_key": str(files.key) if files else "client-key.pem",
        "trust_anchor_arn": TRUST_ANCHOR_ARN,
        "profile_arn": PROFILE_ARN,
        "role_arn": ROLE_ARN,
    }
    section.update(auth)
    data: dict[str, Any] = {
        "customer": "acme",
        "bucket": BUCKET,
        "region": REGION,
        "bucket_owner": ACCOUNT,
        "kms_key_arn": KEY_ARN,
        "inbound_prefix": "inbound/",
        "outbound_prefix": "outbound/",
        "auth": {k: v for k, v in section.items() if v is not None},
    }
    data.update(top or {})
    return {k: v for k, v in data.items() if v is not None}


def problems_of(data: dict[str, Any]) -> str:
    with pytest.raises(TransferError) as caught:
        parse_profile(data, source="p.toml")
    assert caught.value.code is ExitCode.CONFIG
    return caught.value.message


def test_roles_anywhere_profile_parses_with_paths_relative_to_the_profile(tmp_path: Path) -> None:
    profile = parse_profile(
        ra_profile(certificate_chain="chain.pem", private_key_passphrase_env="ACME_KEY_PASS"),
        base=tmp_path,
    )
    auth = profile.auth
    assert auth.method is AuthMethod.ROLES_ANYWHERE
    assert auth.certificate == tmp_path / "client.pem"
    assert auth.private_key == tmp_path / "client-key.pem"
    assert auth.certificate_chain == tmp_path / "chain.pem"
    assert (auth.trust_anchor_arn, auth.profile_arn, auth.role_arn) == (
        TRUST_ANCHOR_ARN,
        PROFILE_ARN,
        ROLE_ARN,
    )
    assert auth.private_key_passphrase_env == "ACME_KEY_PASS"
    assert auth.describe() == f"certificate {tmp_path / 'client.pem'} via IAM Roles Anywhere"
    assert profile.resolved_rolesanywhere_endpoint_url() is None  # AWS's regional endpoint


def test_rolesanywhere_endpoint_defaults_to_endpoint_url_and_can_be_set_apart() -> None:
    local = parse_profile(ra_profile(top={"endpoint_url": "https://localhost:4566"}))
    assert local.resolved_rolesanywhere_endpoint_url() == "https://localhost:4566"
    apart = parse_profile(
        ra_profile(
            top={
                "endpoint_url": "http://127.0.0.1:5000",
                "rolesanywhere_endpoint_url": "https://localhost:4567",
            }
        )
    )
    assert apart.resolved_rolesanywhere_endpoint_url() == "https://localhost:4567"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"certificate": None}, "auth.certificate is required"),
        ({"private_key": None}, "auth.private_key is required"),
        ({"trust_anchor_arn": None}, "auth.trust_anchor_arn is required"),
        ({"profile_arn": None}, "auth.profile_arn is required"),
        ({"role_arn": None}, "auth.role_arn is required"),
        ({"certificate": ""}, "auth.certificate must be a non-empty string, not an empty string"),
        ({"private_key": 5}, "auth.private_key must be a non-empty string, not the number 5"),
        (
            {"certificate_chain": ""},
            "auth.certificate_chain must be a non-empty string, not an empty string",
        ),
        (
            {"trust_anchor_arn": f"arn:aws:rolesanywhere:{REGION}:{ACCOUNT}:trust-anchor/x"},
            "auth.trust_anchor_arn must be an IAM Roles Anywhere trust-anchor ARN "
            "(arn:aws:rolesanywhere:REGION:ACCOUNT:trust-anchor/UUID)",
        ),
        (
            {"profile_arn": TRUST_ANCHOR_ARN},
            "auth.profile_arn must be an IAM Roles Anywhere profile ARN "
            "(arn:aws:rolesanywhere:REGION:ACCOUNT:profile/UUID)",
        ),
        (
            {"role_arn": PROFILE_ARN},
            "auth.role_arn must be an IAM role ARN",
        ),
        (
            {"trust_anchor_arn": TRUST_ANCHOR_ARN.replace(REGION, "us-east-1")},
            "auth.trust_anchor_arn is in region us-east-1, not the profile's region eu-west-2: "
            "IAM Roles Anywhere is regional, use the ARNs from this customer's stack",
        ),
        (
            {"profile_arn": PROFILE_ARN.replace(REGION, "us-east-1")},
            "auth.profile_arn is in region us-east-1, not the profile's region eu-west-2",
        ),
        (
            {"role_arn": ROLE_ARN.replace(ACCOUNT, "210987654321")},
            "auth.trust_anchor_arn, auth.profile_arn, auth.role_arn are not all in one "
            "partition and account",
        ),
        (
            {"private_key_passphrase_env": "correct horse battery"},
            "auth.private_key_passphrase_env must be the name of an environment variable",
        ),
        (
            {"external_id": "x"},
            "auth.external_id is not used by method roles-anywhere: remove it",
        ),
        (
            {"credentials_file": "c.json"},
            "auth.credentials_file is not used by method roles-anywhere: remove it",
        ),
        (
            {"aws_profile": "acme"},
            "auth.aws_profile is not used by method roles-anywhere: remove it",
        ),
        ({"private_key_pem": "-----BEGIN"}, "unknown field auth.private_key_pem"),
    ],
)
def test_each_bad_roles_anywhere_field_is_named(change: dict[str, Any], message: str) -> None:
    assert message in problems_of(ra_profile(**change))


@pytest.mark.parametrize(
    ("top", "message"),
    [
        (
            {"endpoint_url": "http://127.0.0.1:5000"},
            "endpoint_url must be https://HOST[:PORT] for auth.method roles-anywhere: IAM Roles "
            "Anywhere is reached over TLS only (or set rolesanywhere_endpoint_url)",
        ),
        (
            {"rolesanywhere_endpoint_url": "http://localhost:4566"},
            "rolesanywhere_endpoint_url must be https://HOST[:PORT] for auth.method "
            "roles-anywhere: IAM Roles Anywhere is reached over TLS only",
        ),
        (
            {"rolesanywhere_endpoint_url": "https://localhost:4566/sessions"},
            "rolesanywhere_endpoint_url must be https://HOST[:PORT] with no path",
        ),
        (
            {"rolesanywhere_endpoint_url": ""},
            "rolesanywhere_endpoint_url must be a non-empty string, not an empty string",
        ),
    ],
)
def test_the_roles_anywhere_endpoint_must_be_https_host_and_port(
    top: dict[str, Any], message: str
) -> None:
    assert message in problems_of(ra_profile(top=top))


def test_an_https_endpoint_with_a_port_and_trailing_slash_is_accepted() -> None:
    url = "https://localhost:4566/"
    assert parse_profile(ra_profile(top={"endpoint_url": url})).endpoint_url == url


@pytest.mark.parametrize("method", ["default", "aws-profile", "credentials-file", "assume-role"])
def test_roles_anywhere_fields_are_refused_for_other_methods(method: str) -> None:
    data = ra_profile(
        method=method,
        aws_profile="acme",
        credentials_file="c.json",
        external_id="x",
        certificate_chain="chain.pem",
        private_key_passphrase_env="P",
        top={"rolesanywhere_endpoint_url": "https://localhost:4566"},
    )
    message = problems_of(data)
    for name in (
        "certificate",
        "private_key",
        "certificate_chain",
        "trust_anchor_arn",
        "profile_arn",
        "private_key_passphrase_env",
    ):
        assert (
            f"auth.{name} is only for method roles-anywhere: remove it or set "
            'method = "roles-anywhere"' in message
        )
    assert "rolesanywhere_endpoint_url is only for auth.method roles-anywhere" in message
    assert "auth.role_arn" not in message  # assume-role has a role too


def test_every_roles_anywhere_problem_is_reported_at_once() -> None:
    data = ra_profile(
        certificate="",
        private_key=None,
        trust_anchor_arn="arn:aws:rolesanywhere:eu-west-2:123:trust-anchor/x",
        profile_arn=PROFILE_ARN.replace(REGION, "us-west-2"),
        role_arn="role/partner",
        external_id="x",
        top={"endpoint_url": "http://127.0.0.1:5000"},
    )
    message = problems_of(data)
    assert message.startswith("invalid connection profile p.toml: ")
    assert "\n" not in message
    for expected in (
        "auth.certificate must be a non-empty string",
        "auth.private_key is required",
        "auth.trust_anchor_arn must be an IAM Roles Anywhere trust-anchor ARN",
        "auth.profile_arn is in region us-west-2",
        "auth.role_arn must be an IAM role ARN",
        "auth.external_id is not used by method roles-anywhere",
        "endpoint_url must be https://HOST[:PORT] for auth.method roles-anywhere",
    ):
        assert expected in message


def test_a_rendered_roles_anywhere_profile_loads_back_unchanged(tmp_path: Path) -> None:
    profile = parse_profile(
        ra_profile(
            certificate_chain="chain.pem",
            private_key_passphrase_env="ACME_KEY_PASS",
            top={"rolesanywhere_endpoint_url": "https://localhost:4566"},
        ),
        base=tmp_path,
    )
    text = render_profile(profile)
    assert "external_id" not in text and "credentials_file" not in text
    assert parse_profile(tomllib.loads(text)) == profile
    no_chain = parse_profile(ra_profile(), base=tmp_path)
    assert '# certificate_chain = "intermediates.pem"' in render_profile(no_chain)


# -- profile init ----------------------------------------------------------------------------


def ra_outputs(mode: str = "roles-anywhere") -> dict[str, str]:
    outputs = {
        "CustomerSlug": "acme",
        "AccessMode": mode,
        "BucketName": BUCKET,
        "BucketRegion": REGION,
        "BucketOwnerAccount": ACCOUNT,
        "KmsKeyArn": KEY_ARN,
        "InboundPrefix": "inbound/",
        "OutboundPrefix": "outbound/",
    }
    if mode == "roles-anywhere":
        outputs.update(
            PartnerRoleArn=ROLE_ARN,
            TrustAnchorArn=TRUST_ANCHOR_ARN,
            RolesAnywhereProfileArn=PROFILE_ARN,
        )
    else:
        outputs.update(PartnerUserName="u", PartnerSecretArn="arn:s")
    return outputs


def write_outputs(root: Path, mode: str = "roles-anywhere") -> Path:
    path = root / "out.json"
    path.write_text(json.dumps({"PhiExchange-acme": ra_outputs(mode)}))
    return path


def test_init_fills_the_three_arns_from_roles_anywhere_outputs(
    files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(files.root)
    target = files.root / "acme.toml"
    result = cli(
        "profile", "init", "--outputs-file", write_outputs(files.root),
        "--certificate", "client.pem", "--private-key", "client-key.pem",
        "--certificate-chain", "chain.pem", "-o", target,
    )  # fmt: skip
    assert result.code == 0, result.err
    assert result.out == (
        f"wrote {target} for acme (certificate {files.cert} via IAM Roles Anywhere)\n"
    )
    auth = load_profile(target).auth
    assert auth.method is AuthMethod.ROLES_ANYWHERE
    assert (auth.trust_anchor_arn, auth.profile_arn, auth.role_arn) == (
        TRUST_ANCHOR_ARN,
        PROFILE_ARN,
        ROLE_ARN,
    )
    # Relative paths on the command line are stored absolute.
    assert (auth.certificate, auth.private_key, auth.certificate_chain) == (
        files.cert,
        files.key,
        files.chain,
    )


@pytest.mark.parametrize(
    ("given", "missing"),
    [
        (["--certificate", "client.pem"], "missing --private-key"),
        (["--private-key", "client-key.pem"], "missing --certificate"),
        ([], "missing --certificate and --private-key"),
    ],
)
def test_init_for_roles_anywhere_names_the_missing_option(
    tmp_path: Path, given: list[str], missing: str
) -> None:
    result = cli(
        "profile", "init", "--outputs-file", write_outputs(tmp_path), *given,
        "-o", tmp_path / "p.toml",
    )  # fmt: skip
    assert result.code == ExitCode.USAGE
    assert result.err == (
        "partner-transfer: roles-anywhere access needs --certificate FILE (the PEM certificate "
        "your CA issued for this client) and --private-key FILE (its PEM private key); "
        f"{missing}\n"
    )
    assert not (tmp_path / "p.toml").exists()


def test_init_refuses_certificate_options_for_other_access_modes(tmp_path: Path) -> None:
    result = cli(
        "profile", "init", "--outputs-file", write_outputs(tmp_path, "iam-user"),
        "--credentials-file", tmp_path / "c.json", "--certificate", "c.pem",
        "--certificate-chain", "chain.pem", "-o", tmp_path / "p.toml",
    )  # fmt: skip
    assert result.code == ExitCode.USAGE
    assert result.err == (
        "partner-transfer: --certificate, --certificate-chain: only for roles-anywhere access; "
        "this stack's access mode is iam-user\n"
    )
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    from_secret = cli(
        "profile", "init", "--from-secret", secret, "--private-key", "k.pem",
        "-o", tmp_path / "p.toml",
    )  # fmt: skip
    assert from_secret.code == ExitCode.USAGE
    assert from_secret.err == (
        "partner-transfer: --private-key: only for roles-anywhere access, not with "
        "--from-secret (iam-user access)\n"
    )


def test_init_checks_the_certificate_files_before_writing(files: Files, ca: CA) -> None:
    past = datetime(2024, 1, 1, tzinfo=UTC)
    cert, key = ca.issue(not_before=past, not_after=past + timedelta(days=30))
    files.cert.write_bytes(cert_pem(cert))
    files.key.write_bytes(key_pem(key))
    target = files.root / "p.toml"
    result = cli(
        "profile", "init", "--outputs-file", write_outputs(files.root),
        "--certificate", files.cert, "--private-key", files.key, "-o", target,
    )  # fmt: skip
    assert result.code == ExitCode.CONFIG
    assert result.err == (
        f"partner-transfer: certificate {files.cert} ({files.subject}) expired on "
        "2024-01-31 00:00:00 UTC: ask your CA for a new certificate\n"
    )
    assert not target.exists()


# -- the certificate, key and chain files ----------------------------------------------------


def profile_toml(files: Files, *, endpoint: str | None = None, **auth: Any) -> Path:
    """A roles-anywhere profile file next to ``files``."""
    data = ra_profile(files, **auth)
    lines = [f"{k} = {json.dumps(v)}" for k, v in data.items() if k != "auth"]
    if endpoint:
        lines.append(f"endpoint_url = {json.dumps(endpoint)}")
    lines.append(f"state_dir = {json.dumps(str(files.root / 'state'))}")
    lines += ["", "[auth]"] + [f"{k} = {json.dumps(v)}" for k, v in data["auth"].items()]
    path = files.root / "acme.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _missing(f: Files, ca: CA) -> str:
    f.cert.unlink()
    return (
        f"certificate file {f.cert} does not exist: fix auth.certificate in the connection profile"
    )


def _cert_folder(f: Files, ca: CA) -> str:
    f.cert.unlink()
    f.cert.mkdir()
    return (
        f"certificate file {f.cert} is a folder, not a file: fix auth.certificate in the "
        "connection profile"
    )


def _not_pem(f: Files, ca: CA) -> str:
    f.cert.write_text("subject=CN = acme-transfer-01\nnot a certificate\n")
    return (
        f"certificate file {f.cert} is not a PEM certificate: expected -----BEGIN CERTIFICATE-----"
    )


def _der(f: Files, ca: CA) -> str:
    cert = x509.load_pem_x509_certificate(f.cert.read_bytes())
    f.cert.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return (
        f"certificate file {f.cert} is not a PEM certificate: expected -----BEGIN CERTIFICATE-----"
    )


def _swapped(f: Files, ca: CA) -> str:
    f.cert.write_bytes(f.key.read_bytes())
    return (
        f"certificate file {f.cert} is not a PEM certificate: it holds a private key; are "
        "certificate and private_key swapped?"
    )


def _ca_cert(f: Files, ca: CA) -> str:
    cert, key = ca.issue("Acme Issuing CA", is_ca=True)
    f.cert.write_bytes(cert_pem(cert))
    f.key.write_bytes(key_pem(key))
    return (
        f"certificate {f.cert} (O=Acme Health,CN=Acme Issuing CA) is a CA certificate: use the "
        "end-entity certificate your CA issued for this client, not the CA's own"
    )


def _expired(f: Files, ca: CA) -> str:
    start = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    cert, key = ca.issue(not_before=start, not_after=start + timedelta(days=365))
    f.cert.write_bytes(cert_pem(cert))
    f.key.write_bytes(key_pem(key))
    return (
        f"certificate {f.cert} ({f.subject}) expired on 2026-03-01 12:00:00 UTC: ask your CA "
        "for a new certificate"
    )


def _not_yet_valid(f: Files, ca: CA) -> str:
    start = datetime(2099, 1, 2, 3, 4, 5, tzinfo=UTC)
    cert, key = ca.issue(not_before=start, not_after=start + timedelta(days=1))
    f.cert.write_bytes(cert_pem(cert))
    f.key.write_bytes(key_pem(key))
    return (
        f"certificate {f.cert} ({f.subject}) is not valid until 2099-01-02 03:04:05 UTC: check "
        "this machine's clock, or wait"
    )


def _key_readable(f: Files, ca: CA) -> str:
    f.key.chmod(0o644)
    return (
        f"private key file {f.key} is accessible by group or others (mode 0644): run "
        f"`chmod 600 {f.key}`"
    )


def _key_group_writable(f: Files, ca: CA) -> str:
    f.key.chmod(0o620)
    return (
        f"private key file {f.key} is accessible by group or others (mode 0620): run "
        f"`chmod 600 {f.key}`"
    )


def _key_missing(f: Files, ca: CA) -> str:
    f.key.unlink()
    return (
        f"private key file {f.key} does not exist: fix auth.private_key in the connection profile"
    )


def _key_not_pem(f: Files, ca: CA) -> str:
    f.key.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    return (
        f"private key file {f.key} is not a PEM private key: expected -----BEGIN PRIVATE KEY-----"
    )


def _key_is_cert(f: Files, ca: CA) -> str:
    f.key.write_bytes(f.cert.read_bytes())
    return (
        f"private key file {f.key} is not a PEM private key: it holds a certificate; are "
        "certificate and private_key swapped?"
    )


def _key_encrypted(f: Files, ca: CA) -> str:
    key = serialization.load_pem_private_key(f.key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    f.key.write_bytes(key_pem(key, b"s3cret-passphrase"))
    return (
        f"private key file {f.key} is encrypted: set auth.private_key_passphrase_env to the name "
        "of an environment variable holding its passphrase, or decrypt it (`openssl pkey -in KEY "
        "-out KEY.plain`, then `chmod 600`)"
    )


def _key_ed25519(f: Files, ca: CA) -> str:
    f.key.write_bytes(key_pem(ed25519.Ed25519PrivateKey.generate()))
    return (
        f"private key {f.key} has key type Ed25519: IAM Roles Anywhere signs with RSA or EC keys "
        "only"
    )


def _key_mismatch(f: Files, ca: CA) -> str:
    f.key.write_bytes(key_pem(ec.generate_private_key(ec.SECP256R1())))
    return (
        f"private key {f.key} does not match certificate {f.cert} ({f.subject}): its public key "
        "differs; use the key the certificate was issued for"
    )


def _chain_garbage(f: Files, ca: CA) -> str:
    f.chain.write_text("intermediates go here\n")
    return (
        f"certificate chain file {f.chain} holds no PEM certificates: expected one or more "
        "-----BEGIN CERTIFICATE----- blocks (your CA's intermediates)"
    )


def _chain_missing(f: Files, ca: CA) -> str:
    f.chain.unlink()
    return (
        f"certificate chain file {f.chain} does not exist: fix auth.certificate_chain in the "
        "connection profile"
    )


BAD_FILES = [
    _missing,
    _cert_folder,
    _not_pem,
    _der,
    _swapped,
    _ca_cert,
    _expired,
    _not_yet_valid,
    _key_readable,
    _key_group_writable,
    _key_missing,
    _key_not_pem,
    _key_is_cert,
    _key_encrypted,
    _key_ed25519,
    _key_mismatch,
    _chain_garbage,
    _chain_missing,
]


@pytest.mark.parametrize("breakage", BAD_FILES, ids=lambda b: b.__name__.strip("_"))
def test_each_bad_certificate_file_is_one_line_with_exit_3(
    files: Files, ca: CA, breakage: Any
) -> None:
    expected = breakage(files, ca)
    profile = profile_toml(files, certificate_chain=str(files.chain))
    result = cli("ls", "--profile", profile)
    assert (result.code, result.err) == (ExitCode.CONFIG, f"partner-transfer: {expected}\n")
    assert result.out == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_certificate_is_one_line(files: Files) -> None:
    files.cert.chmod(0)
    result = cli("ls", "--profile", profile_toml(files))
    assert (result.code, result.err) == (
        ExitCode.CONFIG,
        f"partner-transfer: certificate file {files.cert} cannot be read (Permission denied): "
        "check its permissions\n",
    )


def test_an_encrypted_key_needs_its_passphrase_variable(
    files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = serialization.load_pem_private_key(files.key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    files.key.write_bytes(key_pem(key, b"s3cret-passphrase"))
    profile = load_profile(profile_toml(files, private_key_passphrase_env="ACME_KEY_PASS"))
    monkeypatch.delenv("ACME_KEY_PASS", raising=False)
    with pytest.raises(TransferError) as unset:
        make_clients(profile)
    assert (unset.value.code, unset.value.message) == (
        ExitCode.CONFIG,
        f"private key {files.key}: environment variable ACME_KEY_PASS "
        "(auth.private_key_passphrase_env) is not set: set it to the key's passphrase",
    )
    monkeypatch.setenv("ACME_KEY_PASS", "wrong")
    with pytest.raises(TransferError) as wrong:
        make_clients(profile)
    assert (wrong.value.code, wrong.value.message) == (
        ExitCode.CONFIG,
        f"private key file {files.key} cannot be decrypted with the passphrase in ACME_KEY_PASS",
    )


def test_a_passphrase_variable_for_a_key_that_is_not_encrypted_is_not_passed_on(
    files: Files, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The library refuses (TypeError) a passphrase for a plain key: it gets none."""
    from partner_transfer.clients import load_x509_material

    monkeypatch.setenv("ACME_KEY_PASS", "not-needed")
    profile = load_profile(profile_toml(files, private_key_passphrase_env="ACME_KEY_PASS"))
    material = load_x509_material(profile.auth)
    assert material.passphrase is None
    assert serialization.load_pem_private_key(material.private_key, password=None)


def test_a_bad_file_is_one_line_from_the_installed_command(files: Files) -> None:
    files.key.chmod(0o640)
    done = cli_subprocess("ls", "--profile", profile_toml(files))
    assert done.returncode == ExitCode.CONFIG
    assert done.stderr == (
        f"partner-transfer: private key file {files.key} is accessible by group or others "
        f"(mode 0640): run `chmod 600 {files.key}`\n"
    )
    assert "Traceback" not in done.stderr + done.stdout


# -- sessions, against a CreateSession stand-in ----------------------------------------------


@dataclass
class SessionService:
    """What the stand-in answers and what it received."""

    endpoint: str  # https://localhost:PORT
    ca_bundle: Path
    status: int = 201
    message: str = ""
    lifetime: timedelta = timedelta(hours=1)
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def calls(self) -> int:
        with self.lock:
            return len(self.requests)


class _SessionsHandler(BaseHTTPRequestHandler):
    service: SessionService

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        service = self.service
        with service.lock:
            service.requests.append(
                {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
            )
            n = len(service.requests)
        if service.status >= 300:
            answer: dict[str, Any] = {"message": service.message}
        else:
            expiry = datetime.now(UTC) + service.lifetime
            answer = {
                "credentialSet": [
                    {
                        "credentials": {
                            "accessKeyId": f"ASIAROLESANYWHERE{n:03d}",
                            "secretAccessKey": f"fake-secret-{n}",
                            "sessionToken": f"fake-token-{n}",
                            "expiration": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        }
                    }
                ]
            }
        data = json.dumps(answer).encode()
        self.send_response(service.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def session_tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    bundle = tmp_path_factory.mktemp("ra-tls") / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    return authority, bundle


@pytest.fixture
def sessions(
    session_tls: tuple[trustme.CA, Path], monkeypatch: pytest.MonkeyPatch
) -> Iterator[SessionService]:
    """An HTTPS CreateSession stand-in on localhost; AWS_CA_BUNDLE trusts it."""
    authority, bundle = session_tls
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SessionsHandler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    service = SessionService(f"https://localhost:{server.server_address[1]}", bundle)
    _SessionsHandler.service = service
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_CA_BUNDLE", str(bundle))
    yield service
    server.shutdown()
    server.server_close()


def test_credentials_come_from_create_session_with_the_certificate(
    files: Files, sessions: SessionService, moto_endpoint: str
) -> None:
    bucket = f"phi-ra{uuid.uuid4().hex[:8]}-{ACCOUNT}-{REGION}"
    admin_client(moto_endpoint).create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    profile = parse_profile(
        ra_profile(
            files,
            certificate_chain=str(files.chain),
            top={
                "bucket": bucket,
                "endpoint_url": moto_endpoint,  # S3 over http; sessions from the stand-in
                "rolesanywhere_endpoint_url": sessions.endpoint,
            },
        )
    )
    clients = make_clients(profile)
    assert sessions.calls() == 1  # fetched eagerly
    assert clients.access_key_hint == "ASIA…E001"
    assert clients.s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    request = sessions.requests[0]
    assert request["path"] == "/sessions"
    assert request["body"] == {
        "durationSeconds": 3600,
        "profileArn": PROFILE_ARN,
        "roleArn": ROLE_ARN,
        "trustAnchorArn": TRUST_ANCHOR_ARN,
    }
    headers = {k.lower(): v for k, v in request["headers"].items()}
    cert = x509.load_pem_x509_certificate(files.cert.read_bytes())
    assert headers["x-amz-x509"] == cert_der_b64(cert)
    assert headers["x-amz-x509-chain"] == cert_der_b64(
        x509.load_pem_x509_certificate(files.chain.read_bytes())
    )
    assert headers["authorization"].startswith(
        f"AWS4-X509-ECDSA-SHA256 Credential={cert.serial_number}/"
    )


def cert_der_b64(cert: x509.Certificate) -> str:
    import base64

    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def test_an_rsa_key_signs_too(files: Files, ca: CA, sessions: SessionService) -> None:
    cert, key = ca.issue(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    files.cert.write_bytes(cert_pem(cert))
    files.key.write_bytes(key_pem(key))
    auth = parse_profile(ra_profile(files)).auth
    make_session(auth, region=REGION, rolesanywhere_endpoint_url=sessions.endpoint)
    authorization = {k.lower(): v for k, v in sessions.requests[0]["headers"].items()}
    assert authorization["authorization"].startswith("AWS4-X509-RSA-SHA256 ")


def test_a_refused_session_is_one_line_with_exit_5(files: Files, sessions: SessionService) -> None:
    sessions.status, sessions.message = 403, "Untrusted signing certificate"
    profile = profile_toml(files, endpoint=sessions.endpoint)
    result = cli("ls", "--profile", profile)
    assert (result.code, result.err) == (
        ExitCode.ACCESS_DENIED,
        f"partner-transfer: IAM Roles Anywhere refused a session for certificate {files.cert} "
        f"(subject {files.subject}): Untrusted signing certificate; check trust_anchor_arn, "
        "profile_arn, role_arn and that your operator registered this certificate's subject\n",
    )
    done = cli_subprocess("ls", "--profile", profile)
    assert (done.returncode, done.stderr) == (result.code, result.err)


def test_a_failing_service_is_a_network_error(files: Files, sessions: SessionService) -> None:
    sessions.status, sessions.message = 503, "Service Unavailable"
    result = cli("ls", "--profile", profile_toml(files, endpoint=sessions.endpoint))
    assert (result.code, result.err) == (
        ExitCode.NETWORK,
        f"partner-transfer: IAM Roles Anywhere at {sessions.endpoint.removeprefix('https://')} "
        "failed (HTTP 503: Service Unavailable); try again later\n",
    )


def test_an_unreachable_endpoint_is_a_network_error(files: Files, sessions: SessionService) -> None:
    from tests.transfer.conftest import free_port

    host = f"localhost:{free_port()}"
    result = cli("ls", "--profile", profile_toml(files, endpoint=f"https://{host}"))
    assert result.code == ExitCode.NETWORK
    assert result.err.startswith(
        f"partner-transfer: network failure talking to IAM Roles Anywhere at {host} ("
    )
    assert result.err.endswith("); check your connection and re-run\n")
    assert result.err.count("\n") == 1


def test_an_untrusted_endpoint_certificate_says_to_set_the_ca_bundle(
    files: Files, sessions: SessionService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_CA_BUNDLE")
    result = cli("ls", "--profile", profile_toml(files, endpoint=sessions.endpoint))
    assert result.code == ExitCode.NETWORK
    assert result.err.endswith("; for a local emulator, set AWS_CA_BUNDLE to its CA file\n")
    assert sessions.calls() == 0


def test_credentials_renew_themselves_before_expiry(files: Files, sessions: SessionService) -> None:
    # botocore renews credentials that expire within 10 minutes before every use.
    sessions.lifetime = timedelta(minutes=5)
    auth = parse_profile(ra_profile(files)).auth
    session = make_session(auth, region=REGION, rolesanywhere_endpoint_url=sessions.endpoint)
    assert sessions.calls() == 1
    keys = [session.get_credentials().get_frozen_credentials().access_key for _ in range(2)]
    assert keys == ["ASIAROLESANYWHERE002", "ASIAROLESANYWHERE003"]
    assert sessions.calls() == 3


def test_a_refusal_when_renewing_is_the_same_one_line(
    files: Files, sessions: SessionService
) -> None:
    sessions.lifetime = timedelta(minutes=5)
    auth = parse_profile(ra_profile(files)).auth
    session = make_session(auth, region=REGION, rolesanywhere_endpoint_url=sessions.endpoint)
    sessions.status, sessions.message = 403, "Certificate revoked"
    with pytest.raises(TransferError) as caught:
        session.get_credentials().get_frozen_credentials()
    assert caught.value.code is ExitCode.ACCESS_DENIED
    assert caught.value.message.startswith(
        f"IAM Roles Anywhere refused a session for certificate {files.cert} "
        f"(subject {files.subject}): Certificate revoked; "
    )


def test_the_private_key_stays_out_of_reprs(files: Files) -> None:
    material = load_x509_material(parse_profile(ra_profile(files)).auth)
    assert b"PRIVATE KEY" in material.private_key
    assert "PRIVATE" not in repr(material) and material.subject in repr(material)


# -- live: the real client against the emulator's IAM Roles Anywhere ---------------------------

LIVE_SUBJECT = {"CN": "acme-transfer-01", "OU": "Claims"}


@dataclass(frozen=True)
class Live:
    """The emulator (its own process) with a partner CA as trust anchor, a profile, and a role
    that trusts the anchor for ``CN=acme-transfer-01`` and may list one bucket."""

    aws: Any  # tests.localaws.conftest.Aws
    ca: Any  # localaws.x509_ca.ThrowawayCA
    out: dict[str, str]

    @property
    def url(self) -> str:
        return str(self.aws.emulator.url)

    def decisions(self, since: int) -> list[dict[str, Any]]:
        """The permission decisions the emulator recorded from index ``since`` on."""
        from localaws import server

        return server.authorizations(self.aws.emulator, since)[1]

    def create_sessions(self, since: int) -> list[dict[str, Any]]:
        """The sessions IAM Roles Anywhere granted from index ``since`` on."""
        return [
            r
            for r in self.decisions(since)
            if r["action"] == "rolesanywhere:CreateSession" and r["allowed"]
        ]

    def mark(self) -> int:
        from localaws import server

        return server.authorizations(self.aws.emulator)[0]

    def write(self, root: Path, subject: dict[str, str], name: str,
              signature_hash: str = "sha256") -> Files:
        issued = self.ca.issue(subject, signature_hash=signature_hash)
        paths = Files(
            root,
            root / f"{name}.pem",
            root / f"{name}-key.pem",
            root / "unused-chain.pem",
            issued.certificate.subject.rfc4514_string(),
        )
        paths.cert.write_bytes(issued.certificate_pem)
        paths.key.touch(mode=0o600)
        paths.key.write_bytes(issued.private_key_pem)
        return paths

    def profile(self, files: Files) -> Path:
        region, account = "us-east-1", "123456789012"  # the emulator's
        lines = [
            'customer = "acme"',
            f'bucket = "{self.out["Bucket"]}"',
            f'region = "{region}"',
            f'bucket_owner = "{account}"',
            f'kms_key_arn = "arn:aws:kms:{region}:{account}:key/{uuid.UUID(int=3)}"',
            'inbound_prefix = "inbound/"',
            'outbound_prefix = "outbound/"',
            f'endpoint_url = "{self.url}"',  # S3, STS and /sessions
            f'state_dir = "{files.root / "state"}"',
            "",
            "[auth]",
            'method = "roles-anywhere"',
            f'certificate = "{files.cert}"',
            f'private_key = "{files.key}"',
            f'trust_anchor_arn = "{self.out["Anchor"]}"',
            f'profile_arn = "{self.out["Profile"]}"',
            f'role_arn = "{self.out["Role"]}"',
        ]
        path = files.root / f"{files.cert.stem}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path


@pytest.fixture(scope="module")
def live_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    pytest.importorskip("localaws.roles_anywhere")
    from localaws import server
    from localaws.x509_ca import ThrowawayCA
    from tests.localaws.conftest import Aws

    run_dir = tmp_path_factory.mktemp("ra-emulator")
    emulator = server.start(run_dir, tls_enabled=True)
    try:
        aws = Aws(emulator)
        ca = ThrowawayCA.create("Acme Partner CA")
        bucket = f"phi-acme-ra-{uuid.uuid4().hex[:10]}"
        trust = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "rolesanywhere.amazonaws.com"},
                    "Action": ["sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"],
                    "Condition": {
                        "ArnEquals": {
                            "aws:SourceArn": {"Fn::GetAtt": ["Anchor", "TrustAnchorArn"]}
                        },
                        "StringEquals": {"aws:PrincipalTag/x509Subject/CN": LIVE_SUBJECT["CN"]},
                    },
                }
            ],
        }
        allow_list = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::${Bucket}"},
                }
            ],
        }
        stack = aws.deploy(
            {
                "Resources": {
                    "Bucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": bucket}},
                    "Anchor": {
                        "Type": "AWS::RolesAnywhere::TrustAnchor",
                        "Properties": {
                            "Name": "acme-ca",
                            "Enabled": True,
                            "Source": {
                                "SourceType": "CERTIFICATE_BUNDLE",
                                "SourceData": {"X509CertificateData": ca.certificate_pem.decode()},
                            },
                        },
                    },
                    "Role": {
                        "Type": "AWS::IAM::Role",
                        "Properties": {
                            "RoleName": f"acme-partner-{uuid.uuid4().hex[:8]}",
                            "AssumeRolePolicyDocument": trust,
                            "Policies": [{"PolicyName": "list", "PolicyDocument": allow_list}],
                        },
                    },
                    "Profile": {
                        "Type": "AWS::RolesAnywhere::Profile",
                        "Properties": {
                            "Name": "acme",
                            "Enabled": True,
                            "DurationSeconds": 3600,
                            "RoleArns": [{"Fn::GetAtt": ["Role", "Arn"]}],
                        },
                    },
                },
                "Outputs": {
                    "Bucket": {"Value": {"Ref": "Bucket"}},
                    "Anchor": {"Value": {"Fn::GetAtt": ["Anchor", "TrustAnchorArn"]}},
                    "Profile": {"Value": {"Fn::GetAtt": ["Profile", "ProfileArn"]}},
                    "Role": {"Value": {"Fn::GetAtt": ["Role", "Arn"]}},
                },
            }
        )
        assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
        out = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
        yield Live(aws, ca, out)
    finally:
        server.stop(run_dir)


@pytest.fixture
def trust_live(live_emulator: Live, monkeypatch: pytest.MonkeyPatch) -> Live:
    """The emulator's CA trusted for S3, STS and the session request (AWS_CA_BUNDLE)."""
    monkeypatch.setenv("AWS_CA_BUNDLE", str(live_emulator.aws.emulator.ca_bundle))
    return live_emulator


@pytest.mark.e2e
@pytest.mark.xdist_group("roles-anywhere-live")
def test_live_the_partner_certificate_gets_credentials_that_work_for_s3(
    trust_live: Live, tmp_path: Path
) -> None:
    files = trust_live.write(tmp_path, LIVE_SUBJECT, "acme-transfer-01")
    profile_path = trust_live.profile(files)
    since = trust_live.mark()
    clients = make_clients(load_profile(profile_path))
    (created,) = trust_live.create_sessions(since)
    assert created["resource"] == trust_live.out["Role"]
    assert clients.access_key_hint.startswith("ASIA")
    with trust_live.aws.permission_checks():
        listed = clients.s3.list_objects_v2(Bucket=trust_live.out["Bucket"])
        assert listed["KeyCount"] == 0
        # The checks are on: what the role does not allow is refused.
        with pytest.raises(ClientError, match="AccessDenied"):
            clients.s3.put_object(Bucket=trust_live.out["Bucket"], Key="inbound/x", Body=b"x")
        # And through the command itself: the preflight (GetCallerIdentity) and the listing.
        result = cli("ls", "--profile", profile_path)
    assert (result.code, result.err, result.out) == (0, "", "")


@pytest.mark.e2e
@pytest.mark.xdist_group("roles-anywhere-live")
def test_live_a_certificate_its_ca_signed_with_sha384_signs_in_too(
    trust_live: Live, tmp_path: Path
) -> None:
    """P-384 CAs (the example partner's) often sign with SHA-384: the request must still
    name AWS4-X509-ECDSA-SHA256, what it is signed with (the library would name SHA384)."""
    files = trust_live.write(tmp_path, LIVE_SUBJECT, "acme-transfer-384", "sha384")
    since = trust_live.mark()
    clients = make_clients(load_profile(trust_live.profile(files)))
    assert len(trust_live.create_sessions(since)) == 1
    assert clients.access_key_hint.startswith("ASIA")


@pytest.mark.e2e
@pytest.mark.xdist_group("roles-anywhere-live")
def test_live_a_certificate_with_another_subject_is_refused_in_one_line(
    trust_live: Live, tmp_path: Path
) -> None:
    files = trust_live.write(tmp_path, {"CN": "someone-else", "OU": "Claims"}, "someone-else")
    since = trust_live.mark()
    result = cli("ls", "--profile", trust_live.profile(files))
    (refusal,) = [r for r in trust_live.decisions(since) if not r["allowed"]]
    assert trust_live.create_sessions(since) == []
    assert f"the trust policy of {trust_live.out['Role']} does not allow" in refusal["reason"]
    assert (result.code, result.err) == (
        ExitCode.ACCESS_DENIED,
        f"partner-transfer: IAM Roles Anywhere refused a session for certificate {files.cert} "
        f"(subject {files.subject}): {refusal['reason']}; check trust_anchor_arn, profile_arn, "
        "role_arn and that your operator registered this certificate's subject\n",
    )


@pytest.mark.e2e
@pytest.mark.xdist_group("roles-anywhere-live")
def test_live_short_sessions_are_renewed_by_calling_create_session_again(
    trust_live: Live, tmp_path: Path
) -> None:
    # A 900-second session expires within botocore's 15-minute refresh window: every use of
    # the credentials renews them, as a long transfer would near the end of each hour.
    files = trust_live.write(tmp_path, LIVE_SUBJECT, "acme-transfer-01")
    auth = load_profile(trust_live.profile(files)).auth
    since = trust_live.mark()
    session = make_session(
        auth, region="us-east-1", rolesanywhere_endpoint_url=trust_live.url, session_seconds=900
    )
    assert len(trust_live.create_sessions(since)) == 1  # the eager first session
    s3 = session.client("s3", endpoint_url=trust_live.url)
    keys = []
    with trust_live.aws.permission_checks():
        for _ in range(2):
            s3.list_objects_v2(Bucket=trust_live.out["Bucket"])
            keys.append(session.get_credentials().get_frozen_credentials().access_key)
    created = trust_live.create_sessions(since)
    # One per use: the two listings, and each key read after them.
    assert len(created) == 1 + 4
    assert len(set(keys)) == 2
    # The count is of renewals: an hour-long session is not renewed by the same uses.
    hourly = make_session(auth, region="us-east-1", rolesanywhere_endpoint_url=trust_live.url)
    since = trust_live.mark()
    with trust_live.aws.permission_checks():
        for _ in range(2):
            hourly.client("s3", endpoint_url=trust_live.url).list_objects_v2(
                Bucket=trust_live.out["Bucket"]
            )
            hourly.get_credentials().get_frozen_credentials()
    assert trust_live.create_sessions(since) == []
