"""Large downloads: concurrent ranged GETs, each written into the temporary file as its bytes
arrive.

Why this is our own code and not a library's: the CRT's ``GET_OBJECT`` (``recv_filepath``)
collects each whole part (8-16 MiB) in its own buffer before writing it, so every byte is
copied twice and the second copy runs after the part has left the CPU's caches (measured: the
download was CPU-bound in the kernel at ~0.4x s5cmd); its ``on_body`` hands Python whole parts
in order; botocore (and urllib3 under it) return each read as a new ``bytes``. Here each
connection reads its response with the standard library's ``http.client`` (HTTP/1.1, TLS by
``ssl``, certificates verified) into a small reused buffer, which is hashed (CRC64NVME) and
written at its offset with ``os.pwrite`` while it is still in the CPU's cache: one copy out of
the socket (the TLS decryption, over HTTPS), one into the page cache, no second pass over the
file to hash it. ``recv`` and ``pwrite`` release the GIL, so the connections overlap. Requests
are signed by the CRT's SigV4 signer with the CRT client's credentials
(:meth:`~partner_transfer.crt.CrtS3.sign`).

The hash covers exactly the bytes written, at the offsets they were written to: each range's
answer must be the range asked for (``Content-Range``), every chunk is written whole
(:func:`~partner_transfer.engine.write_all`), and the ranges' CRCs are combined in offset order
into the object's CRC64NVME, which the caller compares with the stored checksum before the
rename. What stays as before: every range is pinned to the HEAD's ETag (``If-Match``),
failures are the ``ClientError`` shapes botocore raises, and retries follow the profile's
``max_attempts``.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import random
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from partner_transfer.checksums import combine_crc64nvme, crc64nvme_update
from partner_transfer.engine import Stopped, write_all
from partner_transfer.errors import ExitCode, TransferError

if TYPE_CHECKING:
    from partner_transfer.crt import CrtS3

CHUNK = 1024 * 1024  # read and written at a time: small enough to stay in the CPU's caches
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
# Answers worth another try (as the CRT and botocore retry them).
_RETRY_STATUS = frozenset({500, 502, 503, 504})
_RETRY_CODES = frozenset({"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout"})
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class _Retry(Exception):
    """A failure of one attempt that another attempt may not have."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _Progress:
    """How much of a range is written, and the CRC64NVME of those bytes (kept across retries,
    which resume at the first byte not yet written)."""

    written = 0
    crc = 0


class RangedGets:
    """Ranged GETs for one :class:`~partner_transfer.crt.CrtS3` endpoint, with a pool of idle
    keep-alive connections shared by the downloads of a command."""

    def __init__(self, crt: CrtS3, *, max_attempts: int) -> None:
        self._crt = crt
        self._max_attempts = max(max_attempts, 1)
        self._idle: list[http.client.HTTPConnection] = []
        self._live: set[socket.socket] = set()  # sockets of the responses being read
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None
        if crt.tls:
            # AWS_CA_BUNDLE as botocore and the CRT client honour it; else the system's store.
            self._tls = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or None)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    def download(
        self,
        key: str,
        fd: int,
        size: int,
        *,
        headers: Mapping[str, str],
        part_size: int,
        pool: ThreadPoolExecutor,
        connections: int,
        stop: threading.Event,
        on_progress: Callable[[int], None] | None = None,
    ) -> int:
        """Write the ``size`` bytes of ``key`` into ``fd`` at their offsets, in ranges of
        ``part_size`` fetched by up to ``connections`` tasks on ``pool``; ``headers`` go on
        every request. Returns the CRC64NVME of the bytes written (the whole object). The
        first failure stops the other tasks and is raised; so is
        :class:`~partner_transfer.engine.Stopped` once ``stop`` is set."""
        pending = ranges(size, part_size)
        lock = threading.Lock()
        failed = threading.Event()
        crcs: dict[int, tuple[int, int]] = {}  # offset -> (CRC64NVME, length) of each range

        def next_range() -> tuple[int, int] | None:
            with lock:
                return next(pending, None)

        def worker() -> None:
            buffer = bytearray(CHUNK)
            while (item := next_range()) is not None:
                if failed.is_set() or stop.is_set():
                    raise Stopped()
                crc = self._fetch(key, fd, item, headers, buffer, on_progress, failed, stop)
                with lock:
                    crcs[item[0]] = (crc, item[1])

        count = max(1, min(connections, -(-size // part_size)))
        futures: list[Future[None]] = [pool.submit(worker) for _ in range(count)]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            if any(f.exception() is not None for f in done):
                failed.set()
            wait(futures)
        except BaseException:  # Ctrl-C while waiting: stop the workers at their next chunk
            failed.set()
            # Unblock the reads and let every worker finish before the caller closes ``fd``
            # (a worker writing after that could write into a file that reuses the number).
            self._shut_live()
            wait(futures)
            raise
        errors = [f.exception() for f in futures]
        real = [e for e in errors if e is not None and not isinstance(e, Stopped)]
        if real:
            raise real[0]
        if any(errors):
            raise Stopped()
        return _combined(crcs, size)

    def _shut_live(self) -> None:
        with self._lock:
            live = list(self._live)
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # -- one range ------------------------------------------------------------------------------

    def _fetch(
        self,
        key: str,
        fd: int,
        item: tuple[int, int],
        headers: Mapping[str, str],
        buffer: bytearray,
        on_progress: Callable[[int], None] | None,
        failed: threading.Event,
        stop: threading.Event,
    ) -> int:
        """Fetch one range, retrying from the first byte not yet written; returns the range's
        CRC64NVME."""
        offset, length = item
        progress = _Progress()
        attempt = 0
        while True:
            attempt += 1
            try:
                self._attempt(
                    key, fd, offset, length, progress, headers, buffer, on_progress, failed, stop
                )
                return progress.crc
            except _Retry as retry:
                if failed.is_set() or stop.is_set():
                    raise Stopped() from None
                if attempt >= self._max_attempts:
                    raise retry.cause from None
                # Full jitter, as the CRT's and botocore's retry strategies.
                time.sleep(random.uniform(0, min(20.0, 0.5 * 2 ** (attempt - 1))))  # noqa: S311

    def _attempt(
        self,
        key: str,
        fd: int,
        offset: int,
        length: int,
        progress: _Progress,
        headers: Mapping[str, str],
        buffer: bytearray,
        on_progress: Callable[[int], None] | None,
        failed: threading.Event,
        stop: threading.Event,
    ) -> None:
        """One GET of the part of the range not yet written. Failures worth another try raise
        :class:`_Retry`."""
        crt = self._crt
        start = offset + progress.written
        end = offset + length - 1
        request = {**headers, "Range": f"bytes={start}-{end}"}
        connection = self._connection()
        healthy = False
        sock: socket.socket | None = None
        try:
            try:
                connection.request("GET", crt.path(key), headers=crt.sign("GET", key, request))
                sock = connection.sock
                if sock is not None:
                    with self._lock:
                        self._live.add(sock)
                response = connection.getresponse()
                self._check(response, key, start, end - start + 1)
                body = _Body(response, connection.sock)
            except (OSError, http.client.HTTPException) as exc:
                raise _Retry(_network(exc, key)) from None
            view = memoryview(buffer)
            while progress.written < length:
                if failed.is_set() or stop.is_set():
                    raise Stopped()
                want = min(len(view), length - progress.written)
                error: BaseException | None = None
                try:
                    got = body.fill(view[:want])
                except (OSError, http.client.HTTPException) as exc:
                    got, error = body.got, exc
                if got:
                    chunk = view[:got]
                    write_all(fd, chunk, offset + progress.written)
                    progress.crc = crc64nvme_update(chunk, progress.crc)
                    progress.written += got
                    if on_progress is not None:
                        on_progress(got)
                if error is not None or got < want:
                    closed = error or ConnectionError("the connection closed early")
                    raise _Retry(_network(closed, key))
            response.close()  # its body was read past it: done, the connection is reusable
            healthy = not response.will_close
        finally:
            if sock is not None:
                with self._lock:
                    self._live.discard(sock)
            if healthy:
                with self._lock:
                    self._idle.append(connection)
            else:
                connection.close()

    def _check(
        self, response: http.client.HTTPResponse, key: str, offset: int, length: int
    ) -> None:
        """The answer is the range asked for (206, or 200 with a matching Content-Range, as
        rclone answers); else raise the failure, as :class:`_Retry` if it is worth another
        try."""
        from partner_transfer.crt import client_error, error_fields

        status = response.status
        if status in (200, 206):
            found = _CONTENT_RANGE.fullmatch(response.getheader("Content-Range") or "")
            whole = status == 200 and found is None and offset == 0
            if found is not None:
                matches = int(found[1]) == offset and int(found[2]) == offset + length - 1
            else:
                matches = whole and response.length == length
            if matches and response.length == length:
                return
            response.close()
            raise _Retry(
                _network(ConnectionError(f"the server sent another range ({status})"), key)
            )
        body = response.read(65536) if status != 304 else b""
        code, message = error_fields(body, str(status))
        error = client_error(status, code, message, response.getheaders(), "GetObject")
        if status in _RETRY_STATUS or code in _RETRY_CODES:
            raise _Retry(error)
        raise error

    def _connection(self) -> http.client.HTTPConnection:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        crt = self._crt
        if self._tls is not None:
            return _Https(crt.host, timeout=CONNECT_TIMEOUT, context=self._tls)
        return _Http(crt.host, timeout=CONNECT_TIMEOUT)


class _Body:
    """Reads a response's body from the socket itself, once what ``http.client`` buffered past
    the headers is taken: one Python call per socket read (per TLS record over HTTPS), where
    ``HTTPResponse.readinto`` goes through three layers of Python for each. When the server
    closes the connection after this answer, ``http.client`` hands the socket to the response
    (``sock`` is ``None``): then the body is read through the response."""

    def __init__(self, response: http.client.HTTPResponse, sock: socket.socket | None) -> None:
        self._response = response
        self._sock = sock
        # what http.client's buffer holds past the headers (peek reads once if it is empty)
        self._buffered = len(response.fp.peek()) if sock is not None and response.fp else 0
        self.got = 0  # bytes put into the view by the last fill, also when it failed

    def fill(self, view: memoryview) -> int:
        """Fill ``view``; fewer bytes only if the connection closed."""
        self.got = 0
        if self._buffered and self._response.fp is not None:
            n = self._response.fp.readinto(view[: min(self._buffered, len(view))])
            self._buffered -= n
            self.got += n
        while self.got < len(view):
            if self._sock is not None:
                n = self._sock.recv_into(view[self.got :])
            else:
                n = self._response.readinto(view[self.got :])
            if not n:
                break
            self.got += n
        return self.got


class _Http(http.client.HTTPConnection):
    """Connect (and shake hands) within the connect timeout, then read with the read timeout."""

    def connect(self) -> None:
        super().connect()
        assert self.sock is not None
        self.sock.settimeout(READ_TIMEOUT)


class _Https(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        assert self.sock is not None
        self.sock.settimeout(READ_TIMEOUT)


def _network(error: BaseException, key: str) -> TransferError:
    return TransferError(
        ExitCode.NETWORK,
        f"network failure downloading {key} ({type(error).__name__}: {error}); check your "
        "connection and re-run",
    )


def _combined(crcs: Mapping[int, tuple[int, int]], size: int) -> int:
    """The CRC64NVME of the whole object from its ranges' CRCs, which must tile it exactly."""
    total, end = 0, 0
    for offset in sorted(crcs):
        crc, length = crcs[offset]
        if offset != end:
            raise TransferError(ExitCode.NETWORK, "a range of the download is missing; re-run")
        total = combine_crc64nvme(total, crc, length)
        end += length
    if end != size:
        raise TransferError(ExitCode.NETWORK, "the download is incomplete; re-run")
    return total


def ranges(size: int, part_size: int) -> Iterator[tuple[int, int]]:
    """``(offset, length)`` of each range of an object of ``size`` bytes."""
    for offset in range(0, size, part_size):
        yield offset, min(part_size, size - offset)
