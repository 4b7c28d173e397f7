"""The emulator process: TLS with a certificate made on the spot, start/stop, permission checks."""

from __future__ import annotations

import json
import os
import ssl
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from localaws import server, tls
from tests.localaws.conftest import PARTNER_ADDRESS, Aws


def _handshake(files: tls.TlsFiles, hostname: str) -> None:
    """A TLS handshake in memory, OpenSSL on both sides (what botocore and Node use): the
    client trusts only the generated CA. Raises ssl.SSLCertVerificationError on refusal."""
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(files.server_cert, files.server_key)
    client_context = ssl.create_default_context(cafile=str(files.ca_cert))
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_context.wrap_bio(client_in, client_out, server_hostname=hostname)
    server = server_context.wrap_bio(server_in, server_out, server_side=True)
    pending = [client, server]
    for _ in range(10):
        for end in list(pending):
            try:
                end.do_handshake()
                pending.remove(end)
            except ssl.SSLWantReadError:
                pass
        server_in.write(client_out.read())  # each side's bytes to the other
        client_in.write(server_out.read())
        if not pending:
            return
    raise AssertionError("the handshake did not finish")


def test_generated_certificate_is_valid_for_localhost_under_its_ca(tmp_path: Path) -> None:
    files = tls.generate(tmp_path / "tls")
    for name in ("localhost", "127.0.0.1"):
        _handshake(files, name)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(files, "example.com")
    assert stat.S_IMODE(files.server_key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700


def test_the_emulator_serves_tls_with_its_own_ca(aws: Aws) -> None:
    assert aws.emulator.url.startswith("https://localhost:")
    assert server.is_healthy(aws.emulator)
    # Without the generated CA (system CAs only), verification fails: the CA is really needed.
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(aws.emulator.url + "/moto-api/", timeout=5)  # noqa: S310


def test_client_environment_points_everything_at_the_emulator(aws: Aws) -> None:
    env = server.client_environment(aws.emulator, base={"AWS_PROFILE": "prod", "HOME": "/h"})
    assert env["AWS_ENDPOINT_URL"] == aws.emulator.url
    assert env["AWS_CA_BUNDLE"] == env["NODE_EXTRA_CA_CERTS"] == aws.emulator.ca_bundle
    assert "AWS_PROFILE" not in env  # a developer's real profile is never used
    assert env["AWS_ACCESS_KEY_ID"] != "testing"  # the CRT client rejects that key id


def test_permission_checks_refuse_unknown_keys_only_while_on(aws: Aws, unique) -> None:
    s3 = aws.client("s3")
    bucket = unique("auth")
    s3.create_bucket(Bucket=bucket)
    with aws.permission_checks():
        with pytest.raises(ClientError) as refused:
            s3.head_bucket(Bucket=bucket)
        assert refused.value.response["Error"]["Code"] in ("403", "InvalidAccessKeyId")
    s3.head_bucket(Bucket=bucket)  # off again


def test_start_refuses_a_second_emulator_and_stop_ends_it(tmp_path: Path) -> None:
    emulator = server.start(tmp_path)
    try:
        with pytest.raises(server.EmulatorError, match="already running"):
            server.start(tmp_path)
    finally:
        assert server.stop(tmp_path) is True
    assert not (tmp_path / server.STATE_FILE).exists()
    with pytest.raises(ProcessLookupError):
        os.kill(emulator.pid, 0)
    assert server.stop(tmp_path) is False  # nothing left to stop


def test_stop_never_signals_a_process_it_did_not_start(tmp_path: Path) -> None:
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        state = {"url": "https://localhost:1", "port": 1, "ca_bundle": None,
                 "pid": bystander.pid}
        (tmp_path / server.STATE_FILE).write_text(json.dumps(state))
        assert server.stop(tmp_path) is False
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_a_source_address_listener_serves_the_same_emulator(aws: Aws, unique) -> None:
    assert set(aws.emulator.source_endpoints) == {PARTNER_ADDRESS}
    assert aws.emulator.url_from(None) == aws.emulator.url
    other_port = aws.emulator.url_from(PARTNER_ADDRESS)
    assert other_port != aws.emulator.url and other_port.startswith("https://localhost:")
    bucket = unique("shared")
    aws.client("s3").create_bucket(Bucket=bucket)  # one process, one state
    aws.client("s3", source_address=PARTNER_ADDRESS).head_bucket(Bucket=bucket)
    with pytest.raises(KeyError):
        aws.emulator.url_from("198.51.100.1")  # never started: no silent fallback


def test_start_refuses_a_source_address_that_is_not_an_ip(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 address"):
        server.start(tmp_path, source_addresses=("partner.example",))
    assert not (tmp_path / server.STATE_FILE).exists()
