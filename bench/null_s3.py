"""A null-sink S3 endpoint for the upload benchmark: it speaks just enough of the S3 API for
single and multipart uploads, reads every byte and keeps none.

Why it exists: ``rclone serve s3`` MD5s every upload on one core (~180-200 MiB/s), so on the
1 GiB upload row every client measures rclone. This sink costs the server side one copy and a
CRC64NVME per byte (awscrt, ~9 GiB/s), so a client's own ceiling shows. It returns what S3
returns for the checksums (each part's CRC64NVME, and the full-object CRC64NVME combined from
the parts on completion), so partner-transfer's verification stays fully on.

Not S3: no storage, no listing of what was sent (an empty listing), no authentication (any
signature is accepted). Loopback only; HTTPS with ``--cert``/``--key``::

    python bench/null_s3.py --port 9000
"""

from __future__ import annotations

import argparse
import base64
import ssl
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from awscrt import checksums

BLOCK = 1024 * 1024
XMLNS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def encode(crc: int) -> str:
    return base64.b64encode(crc.to_bytes(8, "big")).decode()


class Uploads:
    """Multipart uploads in progress: upload id -> part number -> (crc, length)."""

    def __init__(self) -> None:
        self.parts: dict[str, dict[int, tuple[int, int]]] = {}
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    uploads: Uploads
    region = "eu-west-2"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _drain(self) -> tuple[int, int]:
        """Read the body into one reused buffer: (CRC64NVME, length)."""
        length = int(self.headers.get("Content-Length") or 0)
        buf = bytearray(min(BLOCK, max(length, 1)))
        view = memoryview(buf)
        crc, left = 0, length
        while left:
            got = self.rfile.readinto(view[: min(len(buf), left)])
            if not got:
                break
            crc = checksums.crc64nvme(view[:got], crc)
            left -= got
        return crc, length - left

    def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        if body:
            self.send_header("Content-Type", "application/xml")
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def do_PUT(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        crc, _ = self._drain()
        headers = {"ETag": f'"{crc:016x}"', "x-amz-checksum-crc64nvme": encode(crc)}
        if "uploadId" in query:
            with self.uploads.lock:
                parts = self.uploads.parts.setdefault(query["uploadId"][0], {})
                parts[int(query["partNumber"][0])] = (crc, int(self.headers["Content-Length"]))
        self._reply(200, headers=headers)

    def do_POST(self) -> None:
        query = parse_qs(urlsplit(self.path).query, keep_blank_values=True)
        self._drain()
        key = urlsplit(self.path).path.split("/", 2)[-1]
        if "uploads" in query:
            upload_id = uuid.uuid4().hex
            with self.uploads.lock:
                self.uploads.parts[upload_id] = {}
            body = (
                f"<InitiateMultipartUploadResult {XMLNS}><Key>{key}</Key>"
                f"<UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>"
            ).encode()
            headers = {}
            if self.headers.get("x-amz-checksum-algorithm"):
                headers["x-amz-checksum-algorithm"] = self.headers["x-amz-checksum-algorithm"]
            self._reply(200, body, headers)
            return
        with self.uploads.lock:
            parts = self.uploads.parts.pop(query["uploadId"][0], {})
        total = 0
        for number in sorted(parts):
            crc, length = parts[number]
            total = checksums.combine_crc64nvme(total, crc, length)
        body = (
            f"<CompleteMultipartUploadResult {XMLNS}><Key>{key}</Key>"
            f'<ETag>"{total:016x}-{len(parts)}"</ETag>'
            f"<ChecksumCRC64NVME>{encode(total)}</ChecksumCRC64NVME>"
            "<ChecksumType>FULL_OBJECT</ChecksumType></CompleteMultipartUploadResult>"
        ).encode()
        self._reply(200, body)

    def do_DELETE(self) -> None:
        self._drain()
        self._reply(204)

    def do_HEAD(self) -> None:
        path = urlsplit(self.path).path.strip("/")
        if "/" in path:
            self._reply(404)  # no object is ever stored
        else:
            self._reply(200, headers={"x-amz-bucket-region": self.region})

    def do_GET(self) -> None:
        body = f"<ListBucketResult {XMLNS}><IsTruncated>false</IsTruncated></ListBucketResult>"
        self._reply(200, body.encode())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--cert", help="PEM certificate: serve HTTPS only")
    parser.add_argument("--key", help="PEM private key of --cert")
    args = parser.parse_args()
    handler = type("Sink", (Handler,), {"uploads": Uploads()})
    server = ThreadingHTTPServer((args.host, args.port), handler)
    server.daemon_threads = True
    if args.cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.cert, args.key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
