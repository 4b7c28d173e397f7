"""Step 5, the importer: what the partner uploaded, from the ingestion queue into PostgreSQL.

How a message reaches the queue here: the partner's uploads are S3 ``Object Created`` events of
a bucket with EventBridge notifications on; the emulator builds S3's event and delivers it the
way EventBridge does, through the *deployed* rule (its event pattern and its input
transformer, read from the customer stack) to the *deployed* queue, and only if the queue's
policy and its key's policy admit EventBridge for that rule (``localaws.events``; moto alone
sends nothing usable). Nothing here writes to the queue. The step first reads the emulator's
record of those deliveries, so a message that never arrived is reported with the reason.

Then the reference importer runs as a separate process, as an operator would run it:
``python -m importer --queue-url ... --dsn ... --once --create-schema``, against the emulator
(as a session of the access stack's importer role, assumed by a user carrying its principal
tag, with permission checks on) and a PostgreSQL:
the embedded server of the pinned ``pgserver`` wheel (``localrun.postgres``), started for the
run (recorded in ``postgres.json`` of the run directory) and stopped and removed by ``down``,
or the server of ``--dsn`` (``LOCALRUN_DSN``), where the run uses a fresh schema of its own.
The step then reads back the custody rows and the rows the importer wrote, and checks each
custody row against the object S3 holds and the checksum the partner's client recorded.

The malware gate: for a scanned customer each upload is imported only once GuardDuty's verdict
is in too. Here the emulator's stand-in scanner (``localaws.malware_scan``) scans each new
inbound version as the plan's role, tags it and puts GuardDuty's scan-result event on the bus,
where the customer's scan-result rule delivers it to the same queue. The step checks those
deliveries, then each upload's signed ``imported`` receipt: read by the partner, verified with
the receipt key's public key (``localrun.receipts``), and agreeing with the custody row and
the client's own record.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from typing import Any

import psycopg
from psycopg.rows import dict_row

from localaws import server
from localaws.server import REGION
from localrun import identities, postgres
from localrun import receipts as partner_receipts
from localrun.context import REPO_ROOT, LocalRun, StepResult
from partner_transfer import receipts
from partner_transfer.manifest import BATCH_FOLDER
from phi_core import malware_gate, naming

IMPORTER_TIMEOUT_SECONDS = 180
OBJECT_CREATED = "Object Created"
# Where the run records its embedded PostgreSQL (localrun.postgres), for down.
POSTGRES_STATE = "postgres.json"
# Receives of up to ten messages each; the run's uploads need one or two.
MAX_RECEIVES = 5


class ImportFailed(RuntimeError):
    pass


def redact(dsn: str) -> str:
    """A DSN fit for a log or a summary: any password hidden."""
    dsn = re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", dsn, flags=re.IGNORECASE)
    return re.sub(r"(://[^:/@\s]+:)[^@\s]+@", r"\1***@", dsn)


def database(run: LocalRun) -> str:
    """The DSN the importer writes to, starting the embedded server on first use."""
    if run.dsn is not None:
        return run.dsn
    state = run.run_dir / POSTGRES_STATE
    try:
        embedded = postgres.load(state) or postgres.start_private(state)
    except postgres.PostgresError as error:
        raise ImportFailed(f"the embedded PostgreSQL did not start: {error}") from None
    run.dsn = embedded.dsn()
    run.database = (f"embedded PostgreSQL (PyPI pgserver) at 127.0.0.1:{embedded.port}, data "
                    f"in {embedded.root} (removed by down): psql \"{embedded.dsn()}\"")
    run.save()
    return run.dsn


def _own_schema(dsn: str, run: LocalRun) -> str:
    """A user-given server: a fresh schema for this run, first on the search path."""
    schema = f"localrun_{run.customer.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    run.database = f"{redact(dsn)}, schema {schema}"
    run.save()
    return f"{dsn} options=-csearch_path={schema}"


def run_importer(run: LocalRun, dsn: str) -> tuple[list[str], str]:
    """``python -m importer --once`` until the queue is empty, as a session of the importer
    role; returns its summary lines and who it ran as."""
    importer = identities.session(run, identities.IMPORTER)
    env = dict(run.env, **importer.credentials.environment())
    queue_url = run.audit_outputs["IngestionQueueUrl"]
    (run.run_dir / "importer").mkdir(exist_ok=True)
    lines: list[str] = []
    sqs = run.client("sqs")
    for _ in range(MAX_RECEIVES):
        with run.permission_checks():
            completed = subprocess.run(  # noqa: S603 - our own importer, from this venv
                [sys.executable, "-m", "importer", "--queue-url", queue_url, "--dsn", dsn,
                 "--once", "--wait-seconds", "1", "--max-messages", "10", "--create-schema",
                 "--endpoint-url", run.emulator.url, "--region", REGION, "--retry-delay", "0",
                 "--work-dir", str(run.run_dir / "importer")],
                cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                timeout=IMPORTER_TIMEOUT_SECONDS, check=False)
        with (run.run_dir / "importer.log").open("a") as log:
            log.write(completed.stderr)
        if completed.returncode != 0:
            raise ImportFailed(f"python -m importer exited {completed.returncode}: "
                               f"{' '.join(completed.stderr.split())[-600:]}")
        lines.append(completed.stdout.strip())
        depth = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])[
            "Attributes"]
        if int(depth["ApproximateNumberOfMessages"]) + int(
                depth["ApproximateNumberOfMessagesNotVisible"]) == 0:
            return lines, importer.label
    errors = [line for line in completed.stderr.splitlines() if " ERROR " in line]
    raise ImportFailed(f"the ingestion queue still holds messages after {MAX_RECEIVES} "
                       f"receives: {lines}"
                       + (f"; last error: {errors[-1].split(' ERROR ', 1)[1][:400]}"
                          if errors else "") + f"; see {run.run_dir / 'importer.log'}")


def uploads(run: LocalRun) -> list[dict[str, Any]]:
    """The partner's successful uploads, from its custody manifest."""
    manifest = (run.run_dir / "partner" / "state" / "partner-transfer" / run.customer /
                "manifest.jsonl")
    records = [json.loads(line) for line in manifest.read_text().splitlines()]
    return [r for r in records if r["direction"] == "upload" and r["result"] == "ok"]


def import_inbound(run: LocalRun) -> StepResult:
    """Step 5 (module docstring)."""
    inbound = run.outputs.get("InboundPrefix")
    if not inbound:
        return StepResult("importer", "not-applicable", 0.0, detail=(
            "the customer has no inbound direction: nothing arrives for the importer (no "
            "ingestion rule is deployed for it)"))
    started = time.monotonic()
    uploaded = uploads(run)
    keys = {u["key"] for u in uploaded}
    proved = [handoff(run, keys, OBJECT_CREATED)]
    if run.config.scanned:
        proved.append(scanned(run, keys))
    try:
        dsn = database(run)
        if run.database.startswith("embedded"):
            proved.append(f"database: {run.database}")
        else:
            # The run's own schema, for the later steps too (the malware gate, custody).
            dsn = run.dsn = _own_schema(dsn, run)
            proved.append(f"database: {run.database}")
        summaries, importer = run_importer(run, dsn)
        proved.append(f"python -m importer --once (separate process, as {importer}, "
                      f"permission checks on): {'; '.join(summaries)}")
        proved.extend(_read_back(run, dsn, uploaded))
        proved.append(_imported_receipts(run, dsn, uploaded))
    except psycopg.Error as error:
        raise ImportFailed(f"PostgreSQL: {' '.join(str(error).split())}") from None
    return StepResult("importer", "ok", time.monotonic() - started, proved)


def handoff(run: LocalRun, keys: set[str], event: str) -> str:
    """The events of ``event`` type (detail-type) about ``keys`` reached the ingestion queue
    through the customer's rule: none refused, one delivered per key."""
    bucket, inbound = run.outputs["BucketName"], run.outputs["InboundPrefix"]
    deliveries = [d for d in server.event_deliveries(run.emulator)
                  if d["event"] == event
                  and d["object"].removeprefix(f"s3://{bucket}/") in keys]
    refused = [d for d in deliveries if d["outcome"] != "delivered"]
    if refused:
        raise ImportFailed(f"EventBridge did not deliver {refused[0]['object']} ({event}): "
                           f"{refused[0]['reason']}")
    delivered = {d["object"].removeprefix(f"s3://{bucket}/") for d in deliveries}
    if not keys <= delivered:
        raise ImportFailed(f"no {event} message for {sorted(keys - delivered)}")
    queue = run.audit_outputs["IngestionQueueUrl"].rsplit("/", 1)[-1]
    rules = sorted({d["rule"].rsplit("/", 1)[-1] for d in deliveries})
    source = ("S3" if event == OBJECT_CREATED else
              "GuardDuty (the emulator's stand-in, localaws.malware_scan)")
    return (f"{source} -> EventBridge -> SQS: {len(deliveries)} {event} event(s) under "
            f"{inbound} delivered to {queue} through the deployed rule {', '.join(rules)} and "
            "its input transformer, admitted by the queue's policy and the audit key's policy "
            "(emulated by localaws.events: moto alone delivers nothing usable)")


def scanned(run: LocalRun, keys: set[str]) -> str:
    """Every upload in ``keys`` was scanned once, clean, tagged, and its result delivered."""
    bucket = run.outputs["BucketName"]
    scans = [s for s in server.malware_scans(run.emulator)
             if s["object"].removeprefix(f"s3://{bucket}/") in keys]
    wrong = [s for s in scans if s["result"] != malware_gate.CLEAN or not s["tagged"]]
    if wrong:
        raise ImportFailed(f"the scanner found {wrong[0]['object']} {wrong[0]['result']}"
                           + (f", not tagged: {wrong[0]['reason']}"
                              if not wrong[0]["tagged"] else ""))
    if sorted(s["object"] for s in scans) != sorted(f"s3://{bucket}/{k}" for k in keys):
        raise ImportFailed(f"scanned {[s['object'] for s in scans]}, uploaded {sorted(keys)}")
    role = naming.scanner_role_name(run.customer)
    return (f"malware scan: {len(scans)} version(s) scanned as {role} (the plan's role, its "
            f"grants and the customer key's policy evaluated), each {malware_gate.CLEAN} and "
            f"tagged {malware_gate.SCAN_TAG_KEY}; "
            + handoff(run, keys, malware_gate.SCAN_RESULT_DETAIL_TYPE))


def _imported_receipts(run: LocalRun, dsn: str, uploads: list[dict[str, Any]]) -> str:
    """Each upload's ``imported`` receipt, read by the partner and verified, agrees with its
    custody (or batch-manifest) row and with what the partner's client recorded."""
    verify_with = partner_receipts.public_key(run)
    scan = malware_gate.CLEAN if run.config.scanned else receipts.NOT_SCANNED
    shown = ""
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        for upload in uploads:
            key, version = upload["key"], upload["version_id"]
            receipt = partner_receipts.read_as_partner(run, key, version, verify_with)
            row = conn.execute(
                "SELECT id FROM batch_manifest WHERE key = %s AND version_id = %s"
                if f"/{BATCH_FOLDER}" in key else
                "SELECT id FROM custody WHERE key = %s AND version_id = %s",
                (key, version)).fetchone()
            partner_receipts.expect(
                receipt, outcome=receipts.IMPORTED, version_id=version,
                import_id=row["id"] if row else None,
                checksum={"algorithm": upload["checksum_algorithm"],
                          "value": upload["checksum"]})
            if receipt.scan_result != scan:
                raise ImportFailed(f"{receipt.object_key}: scan result {receipt.scan_result}, "
                                   f"expected {scan}")
            if key.endswith("claims.csv"):
                shown = (f"; e.g. {receipt.object_key}: {receipt.body['row_count']} row(s), "
                         f"import #{receipt.body['import_id']}, scan {receipt.scan_result}, "
                         f"{receipt.checksum[0]} {receipt.checksum[1]}")
    return (f"{len(uploads)} signed receipt(s) 'imported' under {naming.RECEIPTS_PREFIX}, read "
            f"by the partner (checks on) and verified with the public key of "
            f"{naming.RECEIPT_SIGNING_KEY_ALIAS} from KMS GetPublicKey "
            f"(partner_transfer.receipts.parse_and_verify); each names the version, the "
            f"client's checksum and the import{shown}")


def _read_back(run: LocalRun, dsn: str, uploads: list[dict[str, Any]]) -> list[str]:
    """Each upload has one custody row that matches S3 and the client's record; show them and
    the first rows of the small file."""
    lines = []
    s3 = run.client("s3")
    bucket = run.outputs["BucketName"]
    with psycopg.connect(dsn, autocommit=True, row_factory=dict_row) as conn:
        chain = {row["key"]: row for row in conn.execute(
            "SELECT * FROM custody_chain WHERE bucket = %s ORDER BY id", (bucket,))}
        for upload in uploads:
            key = upload["key"]
            if f"/{BATCH_FOLDER}" in key:
                continue  # a commit marker: imported into batch_manifest, not custody
            row = chain.get(key)
            if row is None:
                raise ImportFailed(f"no custody row for {key}")
            head = s3.head_object(Bucket=bucket, Key=key, VersionId=row["version_id"],
                                  ChecksumMode="ENABLED")
            if row["version_id"] != upload["version_id"] or row["size"] != head[
                    "ContentLength"]:
                raise ImportFailed(f"custody row of {key} names version {row['version_id']} "
                                   f"({row['size']} bytes), S3 and the client say "
                                   f"{upload['version_id']} ({head['ContentLength']} bytes)")
            if (row["checksum_algorithm"], row["checksum"]) != (
                    upload["checksum_algorithm"], upload["checksum"]):
                raise ImportFailed(f"custody row of {key} records {row['checksum_algorithm']} "
                                   f"{row['checksum']}, the client recorded "
                                   f"{upload['checksum_algorithm']} {upload['checksum']}")
            lines.append(
                f"custody #{row['id']} {key} version {row['version_id']}: {row['row_count']} "
                f"row(s), {row['checksum_algorithm']} {row['checksum']} "
                f"({row['checksum_source']}), KMS key {row['kms_key_id']}; AWS's record: "
                f"requester {row['requester']} from {row['source_ip']}; the uploader's claim: "
                f"{row['claimed_uploader_arn']} ({row['claimed_uploader_source']}); event "
                f"{row['event_id']}")
        small = min((r for r in chain.values() if r["row_count"]), default=None,
                    key=lambda r: r["row_count"])
        if small is not None:
            sample = conn.execute(
                "SELECT row_number, data FROM inbound_rows WHERE custody_id = %s "
                "ORDER BY row_number LIMIT 2", (small["id"],)).fetchall()
            lines.append(f"inbound_rows of {small['key']}: " + "; ".join(
                f"#{r['row_number']} {json.dumps(r['data'], sort_keys=True)}" for r in sample))
    return lines
