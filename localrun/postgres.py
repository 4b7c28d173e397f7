"""An embedded PostgreSQL server for the local run and the tests, from the project's own pins.

The server binaries come from the PyPI wheel ``pgserver`` (requirements-dev.txt), which ships
PostgreSQL's ``initdb``, ``pg_ctl`` and ``postgres`` for Linux and macOS: no system package, no
download at run time. Only the binaries are used; the cluster is managed here, because
pgserver's own manager, run as root, adds a system user (``useradd``) and widens the
permissions of every folder above its data directory.

:func:`start` runs ``initdb`` into a private folder and ``pg_ctl start`` on a free port of
127.0.0.1 (and a unix socket in that folder), trust authentication, durability off (a local
cluster dies with its run); :func:`stop` stops it. PostgreSQL refuses to run as root, so when
we are root (CI, this machine) the server runs as the ``postgres`` user if there is one, else
``nobody``, and its folder must be reachable by that user: :func:`start_private` makes one
under the system's temporary directory (a 0700 folder of ours, such as pytest's, would not
do). :func:`start` records the server in a state file (JSON), so another process
(``python -m localrun down``) can stop it and remove its folder with :func:`stop`.

Where a real server is wanted instead, callers take a DSN (``--dsn`` / ``LOCALRUN_DSN`` for the
local run, ``PHI_EXCHANGE_TEST_DSN`` for the tests) and never start this one.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

# pg_ctl -w waits this long for the server to accept connections.
START_TIMEOUT_SECONDS = 60


class PostgresError(RuntimeError):
    """The embedded server could not be found, started or stopped (one line, with the log)."""


def bin_dir() -> Path:
    """The folder of the pinned wheel's ``initdb``/``pg_ctl``/``postgres``, found without
    importing pgserver (its import has side effects: a lock file, a runtime folder)."""
    spec = importlib.util.find_spec("pgserver")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        candidate = Path(location) / "pginstall" / "bin"
        if (candidate / "initdb").exists() and (candidate / "pg_ctl").exists():
            return candidate
    raise PostgresError("the embedded PostgreSQL (PyPI package pgserver) is not installed: "
                        "pip install -r requirements-dev.txt")


@dataclass(frozen=True)
class Postgres:
    """A running embedded cluster: superuser ``postgres``, trust authentication, 127.0.0.1."""

    port: int
    root: str
    run_as: str | None  # the system user the server runs as (None: ourselves)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    @property
    def data(self) -> Path:
        return Path(self.root) / "data"

    @property
    def log(self) -> Path:
        return Path(self.root) / "server.log"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_as() -> str | None:
    """``None`` (ourselves) unless we are root; then ``postgres`` if it exists, else
    ``nobody``."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise PostgresError("running as root and neither a postgres nor a nobody user exists")


def _tool(server: Postgres, *argv: str) -> None:
    try:
        subprocess.run(  # noqa: S603 - the pinned wheel's own binaries
            [str(bin_dir() / argv[0]), *argv[1:]], check=True, user=server.run_as,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=server.root,
            timeout=START_TIMEOUT_SECONDS + 30)
    except subprocess.CalledProcessError as error:
        detail = (error.stderr or b"").decode(errors="replace").strip()
        if server.log.exists():
            detail += " | server log: " + server.log.read_text(errors="replace")[-600:]
        raise PostgresError(f"{argv[0]} failed: {' '.join(detail.split())}") from None
    except subprocess.TimeoutExpired:
        raise PostgresError(f"{argv[0]} did not finish; see {server.log}") from None


def start_private(state: Path) -> Postgres:
    """:func:`start` in a new private folder of the system's temporary directory."""
    return start(Path(tempfile.mkdtemp(prefix="phi-exchange-pg-")), state)


def start(root: Path, state: Path) -> Postgres:
    """initdb + pg_ctl start in ``root`` (created if need be; it must be empty, and every
    folder above it traversable by the server's user); the server is recorded in ``state``."""
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise PostgresError(f"{root} is not empty: refusing to put a cluster there")
    server = Postgres(port=_free_port(), root=str(root), run_as=_run_as())
    if server.run_as is not None:
        entry = pwd.getpwnam(server.run_as)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    _tool(server, "initdb", "-D", str(server.data), "-U", "postgres", "--auth=trust",
          "--encoding=UTF8", "--locale=C", "--no-sync")
    # pg_ctl runs the server through the shell, hence the quoting.
    options = (f"-p {server.port} -k {shlex.quote(str(root))} "
               "-c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
               "-c full_page_writes=off")
    state.write_text(json.dumps(asdict(server)))
    _tool(server, "pg_ctl", "-D", str(server.data), "-l", str(server.log), "-w", "-t",
          str(START_TIMEOUT_SECONDS), "-o", options, "start")
    return server


def load(state: Path) -> Postgres | None:
    """The server recorded in ``state``, if any."""
    try:
        return Postgres(**json.loads(state.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def stop(state: Path, *, remove: bool = True) -> bool:
    """Stop the cluster recorded in ``state`` (immediate: nothing to keep) and, with
    ``remove`` (default), delete its folder and the state file. Returns whether one was
    running."""
    server = load(state)
    if server is None:
        return False
    running = (server.data / "postmaster.pid").exists()
    if running:
        with contextlib.suppress(PostgresError):
            _tool(server, "pg_ctl", "-D", str(server.data), "-m", "immediate", "-w", "stop")
    if remove:
        shutil.rmtree(server.root, ignore_errors=True)
        state.unlink(missing_ok=True)
    return running
