"""Real servers for tests, each in its own process: a PostgreSQL cluster and a moto server.

PostgreSQL: the embedded server of the pinned PyPI wheel ``pgserver`` (``localrun.postgres``:
``initdb`` into a private temporary directory, ``pg_ctl start`` on a free port of 127.0.0.1,
``pg_ctl stop`` at the end; as ``postgres`` or ``nobody`` when the tests run as root), so no
system package is needed. ``PHI_EXCHANGE_TEST_DSN`` (a libpq connection string to a database
whose user may create schemas) makes the tests use that real server instead; each test still
gets a schema of its own there. A missing wheel is an error, never a skip.

moto: ``moto_server -H 127.0.0.1 -p PORT`` serves S3, SQS and STS on one port; credentials are
dummies (:data:`DUMMY_ENV`), never real ones, set per test so no other suite sees them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
from botocore.config import Config

from importer import store
from localrun import postgres as embedded

ACCOUNT = "123456789012"  # moto's account
REGION = "eu-west-2"
DUMMY_ENV = {
    # Not "testing": the CRT-based checksums in the transfer client reject it.
    "AWS_ACCESS_KEY_ID": "AKIAFAKEIMPORTER0001",
    "AWS_SECRET_ACCESS_KEY": "fake-secret-key-for-tests-only-000000000",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}
# A real PostgreSQL server for the tests instead of the embedded one.
DSN_ENV = "PHI_EXCHANGE_TEST_DSN"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dummy_aws_environment(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """Dummy credentials and empty AWS config files under ``home`` for one test (restored by
    ``monkeypatch`` after it, so no other test suite sees them): nothing reads ~/.aws."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {
        **DUMMY_ENV,
        "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "XDG_STATE_HOME": str(home / "state"),
    }.items():
        monkeypatch.setenv(name, value)


def emulator_client(service: str, endpoint: str, config: Config | None = None) -> Any:
    """A client with the dummy credentials given explicitly, in its own session (never
    boto3's default one, which would keep them for later tests), for arranging and inspecting
    test state. ``config`` is merged over path-style addressing."""
    session = boto3.session.Session(
        aws_access_key_id=DUMMY_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=DUMMY_ENV["AWS_SECRET_ACCESS_KEY"], region_name=REGION)
    base = Config(s3={"addressing_style": "path"})
    return session.client(service, endpoint_url=endpoint,
                          config=base.merge(config) if config else base)


# --- moto -------------------------------------------------------------------------------------


@contextlib.contextmanager
def running_moto() -> Iterator[str]:
    """A moto server on 127.0.0.1; yields its endpoint URL, stops it afterwards."""
    port = free_port()
    # moto_server, with TCP_NODELAY: its handler writes each header unbuffered, and with
    # Nagle's algorithm on every response waited ~40 ms for the client's delayed ACK
    # (localaws.permissions.TlsAwareRequestHandler says the same for the emulator).
    launcher = ("from moto.moto_server.werkzeug_app import MotoRequestHandler\n"
                "MotoRequestHandler.disable_nagle_algorithm = True\n"
                "from moto.server import main\n"
                f"main(['-H', '127.0.0.1', '-p', '{port}'])\n")
    proc = subprocess.Popen(
        [sys.executable, "-c", launcher],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()  # noqa: S310 - local server
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- PostgreSQL -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Postgres:
    """A server the tests may use: ``dsn()`` connects as a user that may create schemas."""

    base_dsn: str

    def dsn(self) -> str:
        return self.base_dsn


@contextlib.contextmanager
def running_postgres() -> Iterator[Postgres]:
    """The embedded cluster in a fresh private directory (not under pytest's basetemp: that is
    private to our user, and the server may run as another); stopped and removed after."""
    state = Path(tempfile.mkdtemp(prefix="phi-exchange-pg-state-")) / "postgres.json"
    try:
        try:
            server = embedded.start_private(state)
        except embedded.PostgresError as error:
            raise RuntimeError(f"PostgreSQL did not start: {error}") from None
        yield Postgres(server.dsn())
    finally:
        embedded.stop(state)
        shutil.rmtree(state.parent, ignore_errors=True)


# --- pytest fixtures (imported by the conftest of each package that uses them) --------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy AWS credentials and config for one test."""
    dummy_aws_environment(monkeypatch, tmp_path / "aws-home")


@pytest.fixture(scope="package")
def moto_endpoint() -> Iterator[str]:
    """One moto server process per test package (stopped when the package is done): S3,
    SQS and STS."""
    with running_moto() as endpoint:
        yield endpoint


@pytest.fixture(scope="package")
def postgres() -> Iterator[Postgres]:
    """One PostgreSQL per test package: the embedded cluster (stopped when the package is
    done), or the server ``PHI_EXCHANGE_TEST_DSN`` names."""
    if os.environ.get(DSN_ENV):
        yield Postgres(os.environ[DSN_ENV])
        return
    with running_postgres() as server:
        yield server


@pytest.fixture
def dsn(postgres: Postgres) -> str:
    """A connection string to a fresh schema holding the importer's tables
    (``importer/schema.sql``), first on the search path: one per test, isolated."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    scoped = f"{postgres.dsn()} options=-csearch_path={schema}"
    with psycopg.connect(scoped, autocommit=True) as conn:
        store.apply_schema(conn)
    return scoped


@pytest.fixture
def db(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to the test's database, for arranging and inspecting."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        yield conn
