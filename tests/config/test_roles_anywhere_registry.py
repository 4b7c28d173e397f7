"""The roles-anywhere registry fields: the partner's CA bundle and the certificate subject.

Every rule has a refused case with its one line (file, field, rule); the certificates are made
here with ``cryptography`` (the emulator's throwaway CA for good ones, a builder for the kinds
of bad CA certificate a partner might send).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from localaws.x509_ca import ThrowawayCA
from stacks import certificates
from stacks.config import AccessMode, RegistryError, load_customer_file, parse_customer

NOW = datetime(2026, 12, 2, tzinfo=UTC)
GOOD_CA = ThrowawayCA.create("Partner CA", valid_days=365, not_before=NOW - timedelta(days=1))
ROLES_ANYWHERE: dict[str, Any] = {
    "slug": "hooli",
    "access": "roles-anywhere",
    "contacts": ["pki@hooli.example"],
    "roles_anywhere": {"ca_bundle": GOOD_CA.certificate_pem.decode(),
                       "subject": {"CN": "hooli-transfer", "OU": "Lab Results"}},
}


def changed(**fields: Any) -> dict[str, Any]:
    data = copy.deepcopy(ROLES_ANYWHERE)
    for name, value in fields.items():
        if value is None:
            data["roles_anywhere"].pop(name, None)
        else:
            data["roles_anywhere"][name] = value
    return data


def problems_of(data: dict[str, Any], **kwargs: Any) -> list[str]:
    with pytest.raises(RegistryError) as caught:
        parse_customer(data, source="customers/hooli.toml", now=NOW, **kwargs)
    return caught.value.problems


def ca_pem(*, ca: bool = True, key_cert_sign: bool = True, key: Any = None,
           days: tuple[int, int] = (-1, 365)) -> str:
    """A self-signed certificate with the given flaws, PEM."""
    private = key or ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Odd CA")])
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
               .public_key(private.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(NOW + timedelta(days=days[0]))
               .not_valid_after(NOW + timedelta(days=days[1])))
    builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None),
                                    critical=True)
    builder = builder.add_extension(x509.KeyUsage(
        digital_signature=not key_cert_sign, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign,
        crl_sign=key_cert_sign, encipher_only=False, decipher_only=False), critical=True)
    certificate = builder.sign(private, hashes.SHA256())
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def test_a_good_entry_is_read_with_its_ca_and_subject() -> None:
    config = parse_customer(ROLES_ANYWHERE, source="customers/hooli.toml", now=NOW)
    assert config.access is AccessMode.ROLES_ANYWHERE
    settings = config.roles_anywhere
    assert settings is not None
    assert settings.subject == (("CN", "hooli-transfer"), ("OU", "Lab Results"))
    (ca,) = settings.certificates
    assert ca.subject == "CN=Partner CA" and ca.key == "EC P-256"
    assert settings.ca_expires == GOOD_CA.certificate.not_valid_after_utc
    assert config.partner_principals == () and config.rotation is None


def test_the_shipped_example_reads_its_ca_from_the_file_next_to_it() -> None:
    config = load_customer_file(Path("customers/hooli.toml"))
    assert config.roles_anywhere is not None
    assert config.roles_anywhere.ca_file == "hooli-ca.pem"
    assert config.roles_anywhere.certificates[0].key == "EC P-384"


@pytest.mark.parametrize(("pem", "rule"), [
    (ca_pem(ca=False), "is not a CA certificate (basic constraints CA:TRUE)"),
    (ca_pem(key_cert_sign=False), "key usage must include Certificate Sign (keyCertSign)"),
    (ca_pem(days=(-400, -1)), "expired on 2026-12-01"),
    (ca_pem(days=(10, 400)), "is not valid before 2026-12-12"),
    # cryptography no longer signs with SHA-1: made once with openssl req -x509 -sha1 (its key
    # was not kept).
    (Path(__file__).with_name("sha1-signed-ca.pem").read_text(),
     "is signed with SHA1; IAM Roles Anywhere accepts SHA-256"),
    (ca_pem(key=rsa.generate_private_key(public_exponent=65537, key_size=1024)),  # noqa: S505
     "has an RSA key of 1024 bits; at least 2048"),
    (ca_pem(key=ec.generate_private_key(ec.SECP256K1())),
     "has an EC key on secp256k1; use P-256 or P-384"),
], ids=["not-a-ca", "no-cert-sign", "expired", "not-yet-valid", "sha1", "rsa-1024",
        "secp256k1"])
def test_a_ca_aws_would_refuse_or_that_cannot_work_is_refused(pem: str, rule: str) -> None:
    problems = problems_of(changed(ca_bundle=pem))
    assert all(p.startswith("customers/hooli.toml: roles_anywhere.ca_bundle: certificate 1 "
                            "(CN=Odd CA): ") for p in problems)
    assert any(rule in p for p in problems), problems


def test_a_signature_algorithm_cryptography_cannot_read_is_one_line() -> None:
    """The example CA with its signature algorithm's OID changed to SM2-with-SM3 (which
    cryptography does not implement): one line, no traceback."""
    pem = Path(__file__).with_name("unknown-signature-ca.pem").read_text()
    (problem,) = problems_of(changed(ca_bundle=pem))
    assert problem == (
        "customers/hooli.toml: roles_anywhere.ca_bundle: certificate 1 (CN=Hooli Labs Partner "
        "Issuing CA,O=Hooli Labs,C=US): cannot be read as a CA certificate IAM Roles Anywhere "
        "accepts (Signature algorithm OID: 1.2.156.10197.1.501 not recognized)")


def test_a_private_key_in_the_bundle_is_refused_and_not_echoed() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    (problem,) = problems_of(changed(ca_bundle=GOOD_CA.certificate_pem.decode() + key))
    assert "contains a private key: only the CA's certificate belongs here" in problem
    assert "PRIVATE KEY-----\n" not in problem and key.splitlines()[1] not in problem


@pytest.mark.parametrize(("bundle", "rule"), [
    ("not a certificate", "is not PEM: expected one or more -----BEGIN CERTIFICATE----- blocks"),
    ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
     "is not a readable PEM certificate bundle"),
    (GOOD_CA.certificate_pem.decode() * 16, "characters; a trust anchor takes at most 8000"),
], ids=["not-pem", "unreadable", "too-long"])
def test_a_bundle_that_is_not_certificates_or_too_long_is_refused(bundle: str, rule: str) -> None:
    problems = problems_of(changed(ca_bundle=bundle))
    assert any(rule in p for p in problems), problems


@pytest.mark.parametrize(("subject", "field", "rule"), [
    ({"OU": "Lab"}, "roles_anywhere.subject.CN", "required"),
    ({"CN": "x", "EMAIL": "a@b"}, "roles_anywhere.subject.EMAIL",
     "not a subject attribute IAM Roles Anywhere maps"),
    ({"CN": "hooli-*"}, "roles_anywhere.subject.CN", "no wildcards"),
    ({"CN": ""}, "roles_anywhere.subject.CN", "must be a non-empty string"),
    ({"CN": 7}, "roles_anywhere.subject.CN", "must be a non-empty string"),
    ({"CN": "x" * 257}, "roles_anywhere.subject.CN", "at most 256"),
    ({"CN": "a,b"}, "roles_anywhere.subject.CN", "letters, digits, spaces and _.:/=+-@"),
    ({"CN": " hooli"}, "roles_anywhere.subject.CN", "no leading or trailing spaces"),
    ({"CN": "x", "C": "USA"}, "roles_anywhere.subject.C", "two capital letters"),
])
def test_subject_attributes_are_checked(subject: dict[str, Any], field: str, rule: str) -> None:
    (problem,) = problems_of(changed(subject=subject))
    assert problem.startswith(f"customers/hooli.toml: {field}: ")
    assert rule in problem


def test_missing_pieces_are_each_named_at_once() -> None:
    problems = problems_of(changed(ca_bundle=None, subject=None))
    assert problems == [
        "customers/hooli.toml: roles_anywhere: exactly one of ca_bundle_file (a .pem file next "
        "to this file) or ca_bundle (the PEM inline) is required",
        "customers/hooli.toml: roles_anywhere.subject: required: a table of the subject "
        "attributes every certificate of the partner carries, e.g. { CN = \"acme-transfer\", "
        "OU = \"Claims\" }"]
    (problem,) = problems_of({k: v for k, v in ROLES_ANYWHERE.items() if k != "roles_anywhere"})
    assert "roles_anywhere: required with access = 'roles-anywhere'" in problem


def test_the_mode_takes_no_partner_principals_and_other_modes_no_ca() -> None:
    (problem,) = problems_of({**ROLES_ANYWHERE, "partner_principals": ["111122223333"]})
    assert "partner_principals: not allowed with access = 'roles-anywhere'" in problem
    problems = problems_of({"slug": "acme", "access": "iam-user", "contacts": ["a@b.example"],
                            "roles_anywhere": ROLES_ANYWHERE["roles_anywhere"]})
    assert problems == ["customers/hooli.toml: slug: must match the file name 'hooli.toml' "
                        "(expected slug 'hooli' or file 'acme.toml')",
                        "customers/hooli.toml: roles_anywhere: only allowed with access = "
                        "'roles-anywhere'"]


@pytest.mark.parametrize("name", ["../etc/ca.pem", "/etc/ssl/ca.pem", "CA.PEM", "ca.crt",
                                  "sub/ca.pem"])
def test_the_bundle_file_is_a_plain_pem_name_next_to_the_entry(tmp_path: Path, name: str) -> None:
    (problem,) = problems_of(changed(ca_bundle=None, ca_bundle_file=name),
                             read_beside=lambda _: pytest.fail("must not be read"))
    assert "roles_anywhere.ca_bundle_file: must be the name of a .pem file in the registry's " \
           "directory" in problem


def test_a_missing_or_unreadable_bundle_file_is_one_line(tmp_path: Path) -> None:
    entry = tmp_path / "hooli.toml"
    entry.write_text('slug = "hooli"\naccess = "roles-anywhere"\ncontacts = ["a@b.example"]\n'
                     '[roles_anywhere]\nca_bundle_file = "hooli-ca.pem"\n'
                     'subject = { CN = "hooli-transfer" }\n')
    with pytest.raises(RegistryError) as caught:
        load_customer_file(entry)
    assert caught.value.problems == [
        f"{entry}: roles_anywhere.ca_bundle_file: hooli-ca.pem: no such file next to the "
        "customer's file"]
    (tmp_path / "hooli-ca.pem").write_bytes(b"\xff\xfe not ascii")
    with pytest.raises(RegistryError) as caught:
        load_customer_file(entry)
    assert "hooli-ca.pem: cannot be read as ASCII PEM" in caught.value.problems[0]
    (tmp_path / "hooli-ca.pem").write_bytes(GOOD_CA.certificate_pem)
    assert load_customer_file(entry).roles_anywhere is not None


def test_the_core_reads_each_certificate_of_a_bundle() -> None:
    other = ThrowawayCA.create("Second CA", key="rsa", valid_days=30)
    found, problems = certificates.read_ca_bundle(
        (GOOD_CA.certificate_pem + other.certificate_pem).decode(), now=datetime.now(UTC))
    assert problems == []
    assert [c.subject for c in found] == ["CN=Partner CA", "CN=Second CA"]
    assert [c.key for c in found] == ["EC P-256", "RSA 2048"]
    assert all(len(c.sha256_fingerprint.split(":")) == 32 for c in found)


def test_a_rollover_bundle_may_hold_an_expired_ca_beside_a_valid_one() -> None:
    """The day the old CA of a rollover expires must not turn every synth red: time is a
    problem only when no CA of the bundle is valid, and never for an offboarded partner."""
    expired = ca_pem(days=(-400, -1))
    config = parse_customer(changed(ca_bundle=expired + GOOD_CA.certificate_pem.decode()),
                            source="customers/hooli.toml", now=NOW)
    assert config.roles_anywhere is not None and len(config.roles_anywhere.certificates) == 2
    gone = {**changed(ca_bundle=expired), "offboarded": True}
    assert parse_customer(gone, source="customers/hooli.toml", now=NOW).offboarded
    (problem,) = problems_of(changed(ca_bundle=expired))
    assert problem.endswith("expired on 2026-12-01")
