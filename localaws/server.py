"""The emulator: moto's server on ``localhost``, TLS only, with the localaws extensions.

:func:`start` spawns ``python -m localaws.server`` with a run directory; the process installs
the extensions (always in its own process: they patch moto globally, and must not leak into a
test run or anything else that uses moto), generates a throwaway CA and server certificate in
the run directory (see :mod:`localaws.tls`), binds a free port on 127.0.0.1, writes
``emulator.json`` (pid, port, URL, CA bundle) once it listens, and serves until :func:`stop`
sends SIGTERM. ``--no-tls`` serves plain HTTP instead: only tests use it, to show that a
TLS-only bucket policy refuses plain HTTP.

Clients reach it at ``https://localhost:<port>``: the CDK CLI needs the host to be the string
``localhost`` (moto reads the template URL the CLI uploads by that name), and the certificate
names ``localhost``. :func:`client_environment` is the environment the CLI and boto3 need.

Source addresses: ``--source-address ADDR`` (repeatable) opens one more TLS listener per
address, on its own free port, whose requests carry ``aws:SourceIp = ADDR`` instead of the
real ``127.0.0.1``; ``emulator.json`` lists them under ``source_endpoints``. It stands for a
client whose traffic leaves another network through that address (a partner's NAT gateway):
which address a request comes from is a property of the path it takes, so it is chosen by the
port a client connects to, never by anything the client sends. Every listener serves the same
emulator (one process, one state); only ``aws:SourceIp`` differs.

moto's permission checks are off at start (moto's default); :func:`set_permission_checks`
switches them (``POST /moto-api/reset-auth``, ``Content-Type: text/plain``, body ``0`` for on,
``inf`` for off). Create the IAM users whose keys you will use *before* switching them on:
once on, only keys IAM knows are accepted, and the dummy operator key is not one of them.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from localaws import install, tls

HOST = "localhost"
BIND_ADDRESS = "127.0.0.1"
STATE_FILE = "emulator.json"
# The emulator's own endpoints: an AWS service assuming a role and the record of permission
# decisions (localaws.permissions), the record of EventBridge deliveries (localaws.events), of
# malware scans (localaws.malware_scan) and what SNS published (localaws.published).
SERVICE_SESSION_PATH = "/localaws/service-role-session"
AUTHORIZATIONS_PATH = "/localaws/authorizations"
DELIVERIES_PATH = "/localaws/event-deliveries"
SCANS_PATH = "/localaws/malware-scans"
PUBLISHED_PATH = "/localaws/sns-published"
LOG_FILE = "emulator.log"
# Dummy operator credentials. Not "testing": the AWS CRT client rejects that key id. moto
# accepts any key while permission checks are off and maps it to account 123456789012.
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"
OPERATOR_ACCESS_KEY_ID = "AKIALOCALRUNOPERATOR"
OPERATOR_SECRET_ACCESS_KEY = "local-run-operator-secret-not-a-real-key"  # noqa: S105


@dataclass(frozen=True)
class Emulator:
    """A running emulator: where it listens and what clients must trust."""

    url: str
    port: int
    ca_bundle: str | None
    pid: int
    # source address -> URL of the listener whose requests come from that address
    source_endpoints: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: Path) -> Emulator | None:
        try:
            data = json.loads((run_dir / STATE_FILE).read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return cls(**data)

    def url_from(self, source_address: str | None) -> str:
        """The URL to use so that requests come from ``source_address`` (None: the real
        127.0.0.1). Raises KeyError for an address the emulator was not started with."""
        return self.url if source_address is None else self.source_endpoints[source_address]


def client_environment(emulator: Emulator, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for boto3, the AWS CLI and the CDK CLI to use the emulator, and nothing else.

    Credentials and region are forced (a developer's real profile must never be picked up);
    ``AWS_PROFILE`` and session tokens are removed for the same reason.
    """
    env = dict(os.environ if base is None else base)
    for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                 "AWS_SECURITY_TOKEN", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        env.pop(name, None)
    env.update({
        "AWS_ENDPOINT_URL": emulator.url,
        "AWS_ACCESS_KEY_ID": OPERATOR_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": OPERATOR_SECRET_ACCESS_KEY,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        # No instance-metadata probing: there is no EC2 here, and probing costs seconds.
        "AWS_EC2_METADATA_DISABLED": "true",
        "CDK_DISABLE_CLI_TELEMETRY": "true",
    })
    if emulator.ca_bundle:
        env["AWS_CA_BUNDLE"] = emulator.ca_bundle
        env["NODE_EXTRA_CA_CERTS"] = emulator.ca_bundle
    return env


class _Endpoints:
    """The emulator's own endpoints (``/localaws/...``) in front of moto, and the services
    moto lacks: ``matched`` pairs a test of the request with the application that serves the
    requests it accepts (IAM Roles Anywhere's CreateSession: ``POST /sessions`` with an
    ``X-Amz-X509`` header); anything else goes to moto unchanged."""

    def __init__(self, app: Any, routes: Mapping[str, Any],
                 matched: tuple[tuple[Any, Any], ...] = ()) -> None:
        self.app, self.routes, self.matched = app, routes, matched

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        route = self.routes.get(str(environ.get("PATH_INFO", "")))
        if route is None:
            route = next((app for accepts, app in self.matched if accepts(environ)), None)
        return (route or self.app)(environ, start_response)


def make_app() -> Any:
    """moto's WSGI application with the localaws extensions installed."""
    install()
    # Imported late: moto's server module pulls in Flask and every backend index.
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from localaws import cloudtrail, events, malware_scan, permissions, published, roles_anywhere

    return _Endpoints(
        cloudtrail.DataEventMiddleware(
            permissions.ContextMiddleware(malware_scan.ScanAfterRequest(
                DomainDispatcherApplication(create_backend_app)))),
        {SERVICE_SESSION_PATH: permissions.service_session_endpoint,
         AUTHORIZATIONS_PATH: permissions.authorizations_endpoint,
         DELIVERIES_PATH: events.deliveries_endpoint,
         SCANS_PATH: malware_scan.scans_endpoint,
         PUBLISHED_PATH: published.published_endpoint,
         cloudtrail.FLUSH_PATH: cloudtrail.flush_endpoint},
        matched=((roles_anywhere.is_create_session, roles_anywhere.create_session_endpoint),),
    )


def event_deliveries(emulator: Emulator) -> list[dict[str, str]]:
    """Every EventBridge delivery the emulator attempted, delivered or refused, in order
    (localaws.events)."""
    answer: list[dict[str, str]] = json.loads(_request(emulator, DELIVERIES_PATH))
    return answer


def malware_scans(emulator: Emulator) -> list[dict[str, Any]]:
    """Every malware scan the emulator ran, in order (localaws.malware_scan)."""
    answer: list[dict[str, Any]] = json.loads(_request(emulator, SCANS_PATH))
    return answer


def sns_published(emulator: Emulator, topic_arn: str) -> list[dict[str, str]]:
    """What was published to ``topic_arn``, oldest first (localaws.published)."""
    answer: list[dict[str, str]] = json.loads(_request(
        emulator, f"{PUBLISHED_PATH}?{urllib.parse.urlencode({'topic': topic_arn})}"))
    return answer


def authorizations(emulator: Emulator, since: int = 0) -> tuple[int, list[dict[str, Any]]]:
    """The permission decisions the emulator recorded from index ``since`` on (allowed and
    refused, with the reason; localaws.permissions), and the index to ask from next time."""
    answer = json.loads(_request(emulator, f"{AUTHORIZATIONS_PATH}?since={int(since)}"))
    return int(answer["next"]), list(answer["records"])


def _ssl_context(files: tls.TlsFiles) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # TLS 1.2 is the floor our bucket policies demand; older versions are not offered at all.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(files.server_cert, files.server_key)
    return context


def _make_server(port: int, tls_files: tls.TlsFiles | None, app: Any,
                 source_address: str | None = None) -> Any:
    from werkzeug.serving import make_server

    from localaws.permissions import TlsAwareRequestHandler

    handler: type = TlsAwareRequestHandler
    if source_address is not None:
        address = source_address

        class SourceAddressHandler(TlsAwareRequestHandler):
            def make_environ(self) -> dict[str, Any]:
                environ = super().make_environ()
                environ["REMOTE_ADDR"] = address
                return environ

        handler = SourceAddressHandler
    return make_server(
        BIND_ADDRESS,
        port,
        app,
        threaded=True,
        request_handler=handler,
        ssl_context=_ssl_context(tls_files) if tls_files else None,
    )


# --- the emulator process ------------------------------------------------------------------


def serve(run_dir: Path, port: int, *, tls_enabled: bool = True,
          source_addresses: tuple[str, ...] = ()) -> None:
    """Body of ``python -m localaws.server``: serve until SIGTERM or SIGINT."""
    files = tls.generate(run_dir / "tls") if tls_enabled else None
    scheme = "https" if files else "http"
    app = make_app()
    server = _make_server(port, files, app)
    extra = {address: _make_server(0, files, app, address) for address in source_addresses}
    emulator = Emulator(
        url=f"{scheme}://{HOST}:{server.server_port}",
        port=int(server.server_port),
        ca_bundle=str(files.ca_cert) if files else None,
        pid=os.getpid(),
        source_endpoints={address: f"{scheme}://{HOST}:{listener.server_port}"
                          for address, listener in extra.items()},
    )
    for listener in extra.values():
        threading.Thread(target=listener.serve_forever, daemon=True).start()

    def _shutdown(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever() to return: call it from another thread.
        for listener in (server, *extra.values()):
            threading.Thread(target=listener.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _shutdown)
    signal.signal(signal.SIGINT, _shutdown)
    # Written atomically once the socket listens: whoever sees the file can connect.
    state = run_dir / STATE_FILE
    partial = state.with_suffix(".tmp")
    partial.write_text(json.dumps(asdict(emulator)))
    partial.replace(state)
    try:
        server.serve_forever()
    finally:
        state.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localaws.server", description=__doc__)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0, help="0 (default): a free port")
    parser.add_argument("--no-tls", action="store_true", help="plain HTTP (tests only)")
    parser.add_argument("--source-address", action="append", default=[], type=_ip_address,
                        help="one more listener whose requests come from this address "
                        "(aws:SourceIp); repeatable")
    args = parser.parse_args(argv)
    serve(args.run_dir.resolve(), args.port, tls_enabled=not args.no_tls,
          source_addresses=tuple(args.source_address))
    return 0


def _ip_address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None


# --- controlling the process ---------------------------------------------------------------


class EmulatorError(RuntimeError):
    pass


def _https_context(ca_bundle: str | None) -> ssl.SSLContext | None:
    return ssl.create_default_context(cafile=ca_bundle) if ca_bundle else None


def _request(emulator: Emulator, path: str, *, data: bytes | None = None,
             headers: Mapping[str, str] | None = None, timeout: float = 5) -> bytes:
    request = urllib.request.Request(  # noqa: S310 - the URL is our own https://localhost
        emulator.url + path, data=data, headers=dict(headers or {}),
        method="POST" if data is not None else "GET",
    )
    with urllib.request.urlopen(  # noqa: S310
        request, timeout=timeout, context=_https_context(emulator.ca_bundle)
    ) as response:
        body: bytes = response.read()
        return body


def is_healthy(emulator: Emulator) -> bool:
    try:
        _request(emulator, "/moto-api/reset-auth", timeout=2)
    except urllib.error.HTTPError:
        return True  # GET on reset-auth answers 400: the server is up and speaks TLS
    except (OSError, ssl.SSLError):
        return False
    return True


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_our_process(pid: int) -> bool:
    """Only ever signal an emulator this module started: check its command line."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _pid_alive(pid)  # no /proc (macOS): trust the pid file, it is ours
    return b"localaws.server" in cmdline


def start(
    run_dir: Path, *, port: int = 0, tls_enabled: bool = True, timeout: float = 120,
    source_addresses: tuple[str, ...] = (),
) -> Emulator:
    """Start the emulator process with state in ``run_dir``; return once it answers.
    ``source_addresses`` (default none): one more listener each, see the module docstring.
    ``timeout`` (default 120 s): importing moto's backends takes ~10 s of CPU, which on a
    busy two-core machine (load 15) was 50 s of wall time."""
    for address in source_addresses:
        ipaddress.ip_address(address)  # ValueError before anything starts
    run_dir.mkdir(parents=True, exist_ok=True)
    existing = Emulator.load(run_dir)
    if existing and _pid_alive(existing.pid) and is_healthy(existing):
        raise EmulatorError(
            f"an emulator is already running at {existing.url} (pid {existing.pid}); "
            "stop it first"
        )
    (run_dir / STATE_FILE).unlink(missing_ok=True)
    log = (run_dir / LOG_FILE).open("wb")
    env = dict(os.environ)
    # The emulator must not inherit an endpoint or auth setting meant for clients.
    env.pop("AWS_ENDPOINT_URL", None)
    env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "localaws.server", "--run-dir", str(run_dir), "--port", str(port),
         *([] if tls_enabled else ["--no-tls"]),
         *[arg for address in source_addresses for arg in ("--source-address", address)]],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        cwd=Path(__file__).resolve().parents[1],
        start_new_session=True,  # a Ctrl-C in the terminal stops the CLI, not the emulator
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmulatorError(
                f"the emulator exited with code {process.returncode}; see {run_dir / LOG_FILE}"
            )
        emulator = Emulator.load(run_dir)
        if emulator and is_healthy(emulator):
            return emulator
        time.sleep(0.1)
    process.terminate()
    raise EmulatorError(f"the emulator did not answer within {timeout:.0f} s; see "
                        f"{run_dir / LOG_FILE}")


def stop(run_dir: Path, *, timeout: float = 10) -> bool:
    """Stop the emulator recorded in ``run_dir``. Returns whether one was running."""
    emulator = Emulator.load(run_dir)
    if emulator is None or not _pid_alive(emulator.pid) or not _is_our_process(emulator.pid):
        (run_dir / STATE_FILE).unlink(missing_ok=True)
        return False
    os.kill(emulator.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(emulator.pid):
        time.sleep(0.1)
        _reap(emulator.pid)
    if _pid_alive(emulator.pid):
        os.kill(emulator.pid, signal.SIGKILL)
        _reap(emulator.pid)
    (run_dir / STATE_FILE).unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    # When this process started the emulator, collect its exit status (no zombie).
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def service_role_session(emulator: Emulator, *, service: str, role_arn: str,
                         session_name: str) -> dict[str, str]:
    """Credentials of a session of ``role_arn`` as the AWS ``service`` would assume it
    (``/localaws/service-role-session``: the role's trust policy must admit the service).
    Raises :class:`EmulatorError` with the emulator's reason when it refuses."""
    body = json.dumps({"Service": service, "RoleArn": role_arn,
                       "RoleSessionName": session_name}).encode()
    try:
        answer = _request(emulator, SERVICE_SESSION_PATH, data=body,
                          headers={"Content-Type": "application/json"})
    except urllib.error.HTTPError as error:
        reason = json.loads(error.read() or b"{}").get("error", str(error))
        raise EmulatorError(f"{service} cannot assume {role_arn}: {reason}") from None
    credentials: dict[str, str] = json.loads(answer)
    return credentials


def set_permission_checks(emulator: Emulator, *, enabled: bool) -> None:
    """Switch moto's IAM permission checks on or off (``/moto-api/reset-auth``)."""
    _request(
        emulator, "/moto-api/reset-auth",
        data=b"0" if enabled else b"inf",
        headers={"Content-Type": "text/plain"},
    )


if __name__ == "__main__":
    sys.exit(main())
