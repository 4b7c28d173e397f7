"""Real servers for tests, each in its own process: a PostgreSQL cluster and a moto server.

PostgreSQL: ``initdb`` into a private temporary directory, ``pg_ctl start`` on a free port on
127.0.0.1 with its unix socket in that directory, ``pg_ctl stop`` at the end. The binaries are
found on PATH, else in Debian's ``/usr/lib/postgresql/<version>/bin`` (the ``postgresql``
package installs them there, off PATH). PostgreSQL refuses to run as root, so when the tests
run as root (CI does) the server runs as the ``postgres`` user (created by Debian's package),
else ``nobody``. Without the binaries the tests skip, except under ``CI`` where that is an
error: CI must install them (``.ci/run``).

moto: ``moto_server -H 127.0.0.1 -p PORT`` serves S3, SQS and STS on one port; credentials are
dummies (:data:`DUMMY_ENV`), never real ones, set per test so no other suite sees them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shlex
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

ACCOUNT = "123456789012"  # moto's account
REGION = "eu-west-2"
DUMMY_ENV = {
    # Not "testing": the CRT-based checksums in the transfer client reject it.
    "AWS_ACCESS_KEY_ID": "AKIAFAKEIMPORTER0001",
    "AWS_SECRET_ACCESS_KEY": "fake-secret-key-for-tests-only-000000000",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
}
_DEBIAN_BIN = Path("/usr/lib/postgresql")


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
    server = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(server), "-H", "127.0.0.1", "-p", str(port)],
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


def postgres_bin_dir() -> Path | None:
    """Where ``initdb`` and ``pg_ctl`` are: PATH first, else the newest Debian version."""
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl and Path(initdb).resolve().parent == Path(pg_ctl).resolve().parent:
        return Path(initdb).resolve().parent
    versions = []
    if _DEBIAN_BIN.is_dir():
        for child in _DEBIAN_BIN.iterdir():
            if re.fullmatch(r"[0-9]+", child.name) and (child / "bin" / "initdb").exists():
                versions.append((int(child.name), child / "bin"))
    return max(versions)[1] if versions else None


@dataclass(frozen=True)
class Postgres:
    """A running cluster: superuser ``postgres``, trust authentication on 127.0.0.1 only."""

    port: int
    root: Path

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"


def _run_as() -> str | None:
    """The user to run the server as: ``None`` (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise RuntimeError("running as root and neither a postgres nor a nobody user exists")


@contextlib.contextmanager
def running_postgres(bin_dir: Path) -> Iterator[Postgres]:
    """initdb + pg_ctl start in a fresh private directory; pg_ctl stop and remove it after.

    Durability is off (``fsync=off``, no ``initdb`` sync): a test cluster dies with its run.
    """
    user = _run_as()
    # Not under pytest's basetemp: that is private to our user, and the server may be another.
    root = Path(tempfile.mkdtemp(prefix="phi-exchange-pg-"))
    data, log = root / "data", root / "server.log"
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    port = free_port()

    def run(*argv: str) -> None:
        subprocess.run([str(bin_dir / argv[0]), *argv[1:]], check=True, user=user,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=root, timeout=120)

    started = False
    try:
        run("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
            "--locale=C", "--no-sync")
        # pg_ctl runs the server through the shell, hence the quoting.
        options = (f"-p {port} -k {shlex.quote(str(root))} -c listen_addresses=127.0.0.1 "
                   "-c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        run("pg_ctl", "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start")
        started = True
        yield Postgres(port=port, root=root)
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or b"").decode(errors="replace").strip()
        if log.exists():
            detail += "\n" + log.read_text(errors="replace")
        raise RuntimeError(f"PostgreSQL did not start: {detail}") from None
    finally:
        if started:
            with contextlib.suppress(subprocess.SubprocessError):
                run("pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


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
    """One PostgreSQL cluster per test package (stopped when the package is done)."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        reason = ("PostgreSQL server binaries (initdb, pg_ctl) are not on PATH or in "
                  "/usr/lib/postgresql/*/bin: install Debian's postgresql package")
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must install it: .ci/run)")
        pytest.skip(reason)
    with running_postgres(bin_dir) as server:
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
