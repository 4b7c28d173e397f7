"""Cleanup: abandon interrupted uploads (journaled ones, and optionally any S3 holds)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from partner_transfer import engine, journal
from partner_transfer.batch import Run
from partner_transfer.errors import TransferError

if TYPE_CHECKING:
    from partner_transfer.context import Connection


def cleanup(conn: Connection, *, remote: bool = False, older_than_days: float = 0) -> list[str]:
    """Abandon interrupted uploads: abort each journaled upload and delete its journal.

    ``remote`` (default False) also aborts multipart uploads S3 holds under the upload
    prefixes that were started more than ``older_than_days`` (default 0) days ago, journal
    or not. Returns one line per action.
    """
    done: list[str] = []
    now = time.time()
    run = Run(batch_id="cleanup", writer=None)
    with ThreadPoolExecutor(1) as pool:
        eng = conn.engine(pool, run)
        for path, jr in journal.list_journals(conn.state_dir):
            if jr is None:
                path.unlink(missing_ok=True)
                done.append(f"removed unreadable journal {path.name}")
                continue
            if now - path.stat().st_mtime < older_than_days * 86400:
                continue
            if conn.options.dry_run:
                done.append(f"would abort upload of {jr.identity.key} ({jr.identity.local_path})")
                continue
            try:
                engine.abort_quietly(eng, jr.identity.key, jr.upload_id)
            except Exception as exc:
                raise conn.classify(exc, "abort the upload of", jr.identity.key) from None
            jr.remove()
            done.append(f"aborted upload of {jr.identity.key} ({jr.identity.local_path})")
        if remote:
            for prefix in conn.profile.upload_prefixes:
                done += _cleanup_remote(conn, eng, prefix, now - older_than_days * 86400)
    return done


def _cleanup_remote(conn: Connection, eng: engine.Engine, prefix: str, cutoff: float) -> list[str]:
    done = []
    paginator = conn.clients.s3.get_paginator("list_multipart_uploads")
    try:
        for page in paginator.paginate(
            Bucket=conn.profile.bucket,
            Prefix=prefix,
            ExpectedBucketOwner=conn.profile.bucket_owner,
        ):
            for up in page.get("Uploads", []):
                if up["Initiated"].timestamp() > cutoff:
                    continue
                if conn.options.dry_run:
                    done.append(f"would abort remote upload of {up['Key']}")
                    continue
                engine.abort_quietly(eng, up["Key"], up["UploadId"])
                done.append(f"aborted remote upload of {up['Key']}")
    except TransferError:
        raise
    except Exception as exc:
        raise conn.classify(exc, "list uploads under", prefix) from None
    return done
