"""What every command shares: the profile and options, the clients (built on first use through
the one seam, :func:`~partner_transfer.clients.make_clients`), the preflight, and how failures
are named."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from partner_transfer import engine, s3args
from partner_transfer.errors import ErrorContext, TransferError, classify
from partner_transfer.options import Options
from partner_transfer.preflight import Preflight
from partner_transfer.profile import Profile
from partner_transfer.progress import NullReporter, Reporter
from partner_transfer.results import FileResult

if TYPE_CHECKING:
    from partner_transfer.batch import Run
    from partner_transfer.clients import Clients
    from partner_transfer.crt import Credentials, CrtS3, KeyPair
    from partner_transfer.ranged import RangedGets


class Connection:
    """One profile's connection state for the life of a :class:`~partner_transfer.api.Client`.

    ``clients`` (default: built from the profile on first use) and ``reporter`` (default: no
    progress output) can be injected; ``on_result`` is called with each file's result.
    """

    def __init__(
        self,
        profile: Profile,
        options: Options,
        *,
        clients: Clients | None,
        reporter: Reporter | None,
        on_result: Callable[[FileResult], None] | None,
    ) -> None:
        self.profile = profile
        self.options = options
        self.concurrency = options.concurrency or profile.tuning.concurrency
        self.part_size = options.part_size or profile.tuning.part_size
        self.reporter: Reporter = reporter or NullReporter()
        self.on_result = on_result
        self._clients = clients
        self.target = s3args.Target(profile.bucket, profile.bucket_owner, profile.kms_key_arn)
        self.state_dir: Path = options.state_dir or profile.resolved_state_dir()
        self.manifest_path: Path = (
            options.manifest or profile.manifest or self.state_dir / "manifest.jsonl"
        )
        self.preflight = Preflight(self)
        self._crt: CrtS3 | None = None
        self._crt_lock = threading.Lock()
        self._ranged: RangedGets | None = None
        self.access_key_hint = ""

    def static_credentials(self) -> KeyPair | None:
        """Keys known without botocore: the profile's credentials file, or the environment's
        key pair when the profile uses the default chain (whose first source it is)."""
        from partner_transfer.crt import env_credentials
        from partner_transfer.profile import AuthMethod, load_secret_credentials

        auth = self.profile.auth
        if auth.method is AuthMethod.CREDENTIALS_FILE:
            assert auth.credentials_file is not None
            pair = load_secret_credentials(auth.credentials_file, bucket=self.profile.bucket)
            return pair.access_key_id, pair.secret_access_key, None
        if auth.method is AuthMethod.DEFAULT:
            return env_credentials()
        return None

    def access_key_id(self) -> str:
        """The access key id requests are signed with (resolving credentials if needed)."""
        static = self.static_credentials()
        if static is not None:
            return static[0]
        frozen = self.clients.session.get_credentials()
        if frozen is None:
            from botocore.exceptions import NoCredentialsError

            raise self.classify(NoCredentialsError(), "authenticate")
        return str(frozen.get_frozen_credentials().access_key)

    @property
    def crt(self) -> CrtS3:
        """The CRT S3 client for single requests (one per connection, built on first use)."""
        with self._crt_lock:
            if self._crt is None:
                from partner_transfer.crt import CrtS3

                credentials: Credentials
                static = self.static_credentials()
                if static is not None:
                    credentials = static
                else:
                    session = self.clients.session

                    def credentials() -> KeyPair:
                        found = session.get_credentials()
                        if found is None:
                            from botocore.exceptions import NoCredentialsError

                            raise NoCredentialsError()
                        frozen = found.get_frozen_credentials()
                        return frozen.access_key, frozen.secret_key, frozen.token

                if static is not None:
                    from partner_transfer.errors import mask_access_key

                    self.access_key_hint = mask_access_key(static[0])
                self._crt = CrtS3(
                    self.profile,
                    credentials,
                    concurrency=self.concurrency,
                    max_attempts=self.profile.tuning.max_attempts,
                )
            return self._crt

    @property
    def ranged(self) -> RangedGets:
        """Ranged GETs for large downloads, signed with the CRT client's credentials."""
        crt = self.crt
        with self._crt_lock:
            if self._ranged is None:
                from partner_transfer.ranged import RangedGets

                self._ranged = RangedGets(crt, max_attempts=self.profile.tuning.max_attempts)
            return self._ranged

    def close_idle(self) -> None:
        """Close the idle connections of ranged GETs (the CRT client keeps its own pool)."""
        if self._ranged is not None:
            self._ranged.close()

    @property
    def clients(self) -> Clients:
        if self._clients is None:
            from partner_transfer.clients import make_clients

            try:
                self._clients = make_clients(self.profile, concurrency=self.concurrency)
            except Exception as exc:
                raise self.classify(exc, "connect") from None
        return self._clients

    @property
    def caller_arn(self) -> str | None:
        return self.preflight.known_caller_arn

    def error_context(self, operation: str, key: str = "") -> ErrorContext:
        return ErrorContext(
            operation=operation,
            bucket=self.profile.bucket,
            key=key,
            principal=self.preflight.known_caller_arn or "",
            region=self.profile.region,
            credential_source=self.profile.auth.describe(),
            access_key_hint=(
                self._clients.access_key_hint if self._clients else self.access_key_hint
            ),
        )

    def classify(self, exc: BaseException, operation: str, key: str = "") -> TransferError:
        return classify(exc, self.error_context(operation, key))

    def engine(self, pool: ThreadPoolExecutor, run: Run) -> engine.Engine:
        return engine.Engine(
            s3=self.crt,
            target=self.target,
            pool=pool,
            state_dir=self.state_dir,
            advance=self.reporter.advance,
            stop=run.stop,
            fsync=self.options.fsync,
        )

    def emit(self, result: FileResult) -> None:
        if self.on_result is not None:
            self.on_result(result)
