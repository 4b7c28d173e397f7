"""The roles-anywhere partner's certificate authority in the local run: a throwaway one.

The registry holds the partner's real CA certificate (``customers/<ca_bundle_file>``), whose
key is the partner's and nowhere here. So the local run plays the partner's PKI itself: it
creates a throwaway CA (:mod:`localaws.x509_ca`), issues the partner's workload certificate
with the registered subject, and deploys the stack from a copy of the registry
(``<run_dir>/registry``) in which that customer's CA file is the throwaway CA's certificate.
Everything else in the copy is the registry as it is.

It also issues the certificates the round trip shows refused: one of the same CA with another
subject, and one of a second, unregistered CA with the registered subject.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from localaws.x509_ca import IssuedCertificate, ThrowawayCA
from phi_core.placement import ACCOUNTS_FILE
from stacks.config import CustomerConfig

REGISTRY_DIR = "registry"
CERTIFICATES_DIR = Path("partner") / "certificates"
# Long enough for a run that is kept up for a working day, short enough to be thrown away.
VALID_DAYS = 2


@dataclass(frozen=True)
class PartnerCertificates:
    """Where the partner's certificate and key files are (key files are 0600)."""

    certificate: Path
    private_key: Path
    other_subject: tuple[Path, Path]  # (certificate, key): same CA, another CN
    other_ca: tuple[Path, Path]  # (certificate, key): an unregistered CA, the registered subject


class LocalRegistryError(RuntimeError):
    pass


def registry_of(run_dir: Path) -> Path | None:
    """The run's own registry copy, if the customer needed one."""
    path = run_dir / REGISTRY_DIR
    return path if path.is_dir() else None


def certificates_of(run_dir: Path) -> PartnerCertificates:
    base = run_dir / CERTIFICATES_DIR
    return PartnerCertificates(
        certificate=base / "partner.pem", private_key=base / "partner-key.pem",
        other_subject=(base / "other-subject.pem", base / "other-subject-key.pem"),
        other_ca=(base / "other-ca.pem", base / "other-ca-key.pem"))


def prepare(run_dir: Path, registry: Path, config: CustomerConfig) -> Path | None:
    """For a roles-anywhere customer: the throwaway CA, the partner's certificates and the
    registry copy to deploy from (returned). None for the other access modes."""
    settings = config.roles_anywhere
    if settings is None:
        return None
    if not settings.ca_file:
        raise LocalRegistryError(
            f"{config.source_file}: roles_anywhere.ca_bundle: the local run replaces the CA "
            "file with a throwaway CA; name the bundle with ca_bundle_file")
    label = config.display_name or config.slug
    ca = ThrowawayCA.create(f"{label} local-run CA (throwaway)", valid_days=VALID_DAYS,
                            organization=label)
    stranger = ThrowawayCA.create(f"{label} unregistered CA (throwaway)",
                                  valid_days=VALID_DAYS)
    subject = dict(settings.subject)
    files = certificates_of(run_dir)
    _write(files.certificate, files.private_key, ca.issue(subject, valid_days=VALID_DAYS))
    _write(*files.other_subject,
           ca.issue({**subject, "CN": f"{subject['CN']}-other"}, valid_days=VALID_DAYS))
    _write(*files.other_ca, stranger.issue(subject, valid_days=VALID_DAYS))
    copy = run_dir / REGISTRY_DIR
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir(parents=True)
    for source in (*registry.glob("*.toml"), *registry.glob("*.pem")):
        shutil.copyfile(source, copy / source.name)
    # app.py reads the accounts file next to the registry: keep the one next to the original.
    accounts = registry.parent / ACCOUNTS_FILE
    if accounts.is_file():
        shutil.copyfile(accounts, run_dir / ACCOUNTS_FILE)
    (copy / settings.ca_file).write_bytes(ca.certificate_pem)
    return copy


def _write(certificate: Path, key: Path, issued: IssuedCertificate) -> None:
    certificate.parent.mkdir(parents=True, exist_ok=True)
    certificate.write_bytes(issued.certificate_pem + issued.chain_pem)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(issued.private_key_pem)
