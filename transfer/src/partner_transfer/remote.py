"""What the bucket holds: listings, and the full-object checksums of objects (from S3, or for
write-only prefixes from this host's custody manifest)."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from partner_transfer import checksums, crt, s3args
from partner_transfer.errors import is_client_error
from partner_transfer.manifest import read_manifest

if TYPE_CHECKING:
    from partner_transfer.context import Connection


class Remote:
    """Read-only questions about the bucket, for one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        # (manifest size when read, last upload record per key): see uploads_recorded.
        self._recorded: tuple[int, dict[str, dict[str, Any]]] | None = None
        self._recorded_lock = threading.Lock()

    def objects(self, prefix: str) -> Iterable[dict[str, Any]]:
        """Every object under ``prefix`` (ListObjectsV2 pages): Key, Size, LastModified."""
        conn = self._conn
        try:
            found = conn.crt.list_objects(prefix, conn.profile.bucket_owner)
        except Exception as exc:
            raise conn.classify(exc, "list", prefix) from None
        yield from found

    def stored_checksums(self, key: str) -> tuple[list[checksums.Expected], dict[str, Any]] | None:
        """Full-object checksums S3 holds for ``key``; ``None`` if there is no such object.

        Partners may not read back what they sent (inbound is write-only, so a leaked key cannot
        fetch earlier uploads). When HEAD is refused for a key under an upload prefix, the
        object's existence and size come from the listing, and its checksum from this host's
        custody manifest: S3 verified that checksum when the upload completed.
        """
        conn = self._conn
        try:
            resp = conn.crt.request(
                "HeadObject", "HEAD", key, headers=s3args.read_object_headers(conn.target)
            ).result()
            head = crt.head_fields(resp.headers)
        except Exception as exc:
            if not is_client_error(exc):
                raise
            response = exc.response  # type: ignore[attr-defined]
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404:
                return None
            if status == 403 and key.startswith(conn.profile.upload_prefixes or ("\0",)):
                return self._uploaded_per_manifest(key)
            raise
        return checksums.expected_checksums(head), head

    def _uploaded_per_manifest(
        self, key: str
    ) -> tuple[list[checksums.Expected], dict[str, Any]] | None:
        listed = next((o for o in self.objects(key) if o["Key"] == key), None)
        if listed is None:
            return None
        size = int(listed["Size"])
        record = self.uploads_recorded().get(key)
        if record is not None and record.get("size") != size:
            record = None  # the object is not what this host last uploaded
        if record is None:
            return [], {"ContentLength": size, "unreadable": True}
        expected = checksums.Expected(
            str(record["checksum_algorithm"]), str(record["checksum"]), "manifest"
        )
        return [expected], {"ContentLength": size, "VersionId": record.get("version_id")}

    def uploads_recorded(self) -> dict[str, dict[str, Any]]:
        """This host's last successful upload record per key of this bucket, from the custody
        manifest; read once, and again only when the manifest has grown."""
        path = self._conn.manifest_path
        size = path.stat().st_size if path.exists() else 0
        with self._recorded_lock:
            if self._recorded is None or self._recorded[0] != size:
                index: dict[str, dict[str, Any]] = {}
                for r in read_manifest(path) if size else []:
                    if (
                        r.get("direction") == "upload"
                        and r.get("result") in ("ok", "skipped")
                        and r.get("bucket") == self._conn.profile.bucket
                        and r.get("checksum")
                    ):
                        index[str(r["key"])] = r
                self._recorded = (size, index)
            return self._recorded[1]
