"""A throwaway certificate authority and a ``localhost`` server certificate, made on the spot.

The emulator serves only TLS because the buckets it hosts refuse plain HTTP (their policies deny
``aws:SecureTransport = false``), exactly as in AWS. Clients trust the emulator through the CA
file alone: boto3 and the AWS CLI read ``AWS_CA_BUNDLE``, the CDK CLI (Node) reads
``NODE_EXTRA_CA_CERTS``. Nothing is added to the system trust store, and the CA's private key
is discarded as soon as the server certificate is signed, so the CA can sign nothing else.

The server certificate names ``localhost`` (DNS) and ``127.0.0.1`` / ``::1`` (IP): the CDK CLI
only deploys through an endpoint whose host is the string ``localhost`` (moto reads the template
URL the CLI uploads by that name).
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

import trustme

# The server certificate is short-lived on purpose: a local run lasts minutes; a day covers a
# long debugging session. (trustme's CA certificate has its own fixed validity; its private key
# never leaves this process and is gone when generate() returns, so it signs nothing else.)
VALIDITY = datetime.timedelta(days=1)
# Tolerates a little clock skew between the machine and whatever validates the certificate.
BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class TlsFiles:
    """Where the generated PEM files live. ``ca_cert`` is what clients trust."""

    ca_cert: Path
    server_cert: Path
    server_key: Path


def generate(directory: Path, *, hostname: str = "localhost") -> TlsFiles:
    """Create a CA and a server certificate for ``hostname`` (and 127.0.0.1, ::1) in
    ``directory`` (mode 0700), with trustme (ECDSA P-256).

    Returns the paths; the server key is written with mode 0600. Each call makes new keys.
    """
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    now = datetime.datetime.now(datetime.UTC)
    authority = trustme.CA(organization_name="phi-exchange local run")
    leaf = authority.issue_cert(hostname, "127.0.0.1", "::1", common_name=hostname,
                                organization_name="phi-exchange local run",
                                not_before=now - BACKDATE, not_after=now + VALIDITY)
    files = TlsFiles(
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
    )
    files.ca_cert.write_bytes(authority.cert_pem.bytes())
    files.server_cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    # Created with 0600 from the start: the key is never readable by others, even briefly.
    fd = os.open(files.server_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(leaf.private_key_pem.bytes())
    return files
