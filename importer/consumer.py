"""The queue loop: one message at a time, each ending as loaded, duplicate, skipped,
dead-lettered, or left for redelivery.

Poison handling: a permanent failure (:class:`~importer.errors.PermanentFailure`) sends the
original body, unchanged, to the dead-letter queue with the failure's kind and reason as
message attributes, *then* deletes the message. A crash between the two leaves a duplicate in
the dead-letter queue, never a lost message. The queue's redrive policy (``maxReceiveCount``
5) stays the backstop for everything else: a message whose failures are transient, or that
kills the importer, reaches the dead-letter queue after five deliveries.

Sending permanent failures at once, rather than letting the redrive policy do it, means the
operator sees *why* (the redrive policy moves a message without a reason), and a bad file is
not downloaded five times over an hour and a quarter of visibility timeouts.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError

from importer import gate_store, store
from importer.errors import ChecksumMismatch, PermanentFailure
from importer.fetch import Fetched, fetch_verified
from importer.gate import Imported, Notifier, ReceiptIssuer, receipt_body, scan_tag, stored_checksum
from importer.gate_store import Arrival, Verdict
from importer.message import (
    CLEAN,
    NULL_VERSION,
    IngestionEvent,
    ScanResultEvent,
    parse_message,
)
from phi_core import malware_gate

logger = logging.getLogger("importer")

# Longest wait between failed receives, in seconds.
MAX_PAUSE = 60.0
# SQS limits a message attribute value to 256 KiB; reasons are one line, kept short.
MAX_REASON = 1000


class ScanTagPending(Exception):
    """A clean verdict whose tag is not on the version yet: transient (the message returns)."""


class Outcome(enum.StrEnum):
    LOADED = "loaded"  # rows and custody row committed (or a batch manifest recorded)
    DUPLICATE = "duplicate"  # this version was already recorded: nothing written
    SKIPPED = "skipped"  # a folder marker: nothing to load
    WAITING = "waiting"  # one half of the gate recorded (arrival or verdict): the other decides
    STOPPED = "stopped"  # stopped at the malware gate: nothing loaded, notified, receipt
    DEAD_LETTERED = "dead-lettered"  # permanent failure: sent to the DLQ with its reason
    RETRY = "retry"  # transient failure: the message stays on the queue


@dataclass
class Importer:
    """Consumes ``queue_url`` with the ``s3`` and ``sqs`` clients, writing through the
    connection ``connect()`` returns (autocommit; reopened after a connection failure).

    ``dead_letter_queue_url``: where permanent failures go. ``work_dir`` (default: the
    system's temporary directory): where objects are fetched. ``retry_delay`` (default 60 s):
    the visibility timeout a transiently failed message gets, so it comes back sooner than
    the queue's 15 minutes (0 makes it visible again at once).
    """

    s3: Any
    sqs: Any
    queue_url: str
    dead_letter_queue_url: str
    connect: Callable[[], psycopg.Connection[Any]]
    work_dir: Path | None = None
    retry_delay: int = 60
    receipts: ReceiptIssuer | None = None
    notifier: Notifier | None = None
    # Customers the registry opted out of the malware gate, with the registry's reason. The
    # registry decides, never the message: a message claiming an opt-out for any other
    # customer still waits for GuardDuty's verdict.
    opted_out: Mapping[str, str] = field(default_factory=dict)
    _conn: psycopg.Connection[Any] | None = field(default=None, init=False, repr=False)

    # -- the loop ------------------------------------------------------------------------------

    def poll(self, *, wait_seconds: int = 20, max_messages: int = 1) -> list[Outcome]:
        """One ReceiveMessage (long poll up to ``wait_seconds``, default 20; up to
        ``max_messages``, default 1, at most 10) and the handling of what it returned."""
        resp = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_seconds,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [self.handle(message) for message in resp.get("Messages", [])]

    def run(self, *, wait_seconds: int = 20, max_messages: int = 1) -> None:
        """Poll until interrupted (Ctrl-C or SIGTERM turned into ``KeyboardInterrupt``).

        A failed receive (network, throttling beyond the client's retries) is logged and
        retried after a pause that doubles up to ``MAX_PAUSE`` seconds.
        """
        pause = 1.0
        while True:
            try:
                self.poll(wait_seconds=wait_seconds, max_messages=max_messages)
            except (ClientError, BotoCoreError) as exc:
                logger.error("cannot receive from %s: %s; again in %.0f s", self.queue_url,
                             " ".join(str(exc).split()), pause)
                time.sleep(pause)
                pause = min(MAX_PAUSE, pause * 2)
            else:
                pause = 1.0

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- one message ---------------------------------------------------------------------------

    def handle(self, message: dict[str, Any]) -> Outcome:
        """Process one received message and settle it (delete, dead-letter, or leave).

        Never raises (but ``KeyboardInterrupt``): a failure to settle is logged and the
        message comes back, which is safe because every load is idempotent.
        """
        body = str(message.get("Body", ""))
        try:
            event = parse_message(body)
            outcome, note = self._process(event)
        except PermanentFailure as failure:
            try:
                self._dead_letter(message, failure)
                self._delete(message)
            except Exception as exc:
                return self._transient(message, exc, f"could not dead-letter ({failure.kind})")
            logger.warning("dead-lettered message %s: %s: %s", message.get("MessageId"),
                           failure.kind, failure.reason)
            return Outcome.DEAD_LETTERED
        except Exception as exc:
            if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError):
                self.close()  # reconnect for the next message
            return self._transient(message, exc, "will retry")
        try:
            self._delete(message)
        except Exception as exc:  # done; the redelivery will find it recorded
            logger.error("%s %s%s, but the message could not be deleted: %s", outcome.value,
                         event.describe(), note, " ".join(str(exc).split()))
            return outcome
        logger.info("%s %s%s", outcome.value, event.describe(), note)
        return outcome

    def _transient(self, message: dict[str, Any], exc: Exception, what: str) -> Outcome:
        self._retry_later(message)
        logger.error("%s: message %s (receive count %s): %s: %s", what,
                     message.get("MessageId"),
                     message.get("Attributes", {}).get("ApproximateReceiveCount", "?"),
                     type(exc).__name__, " ".join(str(exc).split()))
        return Outcome.RETRY

    def _process(self, event: IngestionEvent | ScanResultEvent) -> tuple[Outcome, str]:
        if isinstance(event, ScanResultEvent):
            arrival, verdict = gate_store.record_half(self._connection(), event,
                                                      event.version_id)
            if arrival is None:
                return Outcome.WAITING, (f": scan result {event.result} recorded; waiting for "
                                         "the file's Object Created event")
            assert verdict is not None
            return self._decide(arrival, verdict)
        if event.is_folder_marker:
            return Outcome.SKIPPED, ": folder marker"
        version = event.version_id or NULL_VERSION
        arrival, verdict = gate_store.record_half(self._connection(), event, version)
        assert arrival is not None
        if event.customer in self.opted_out:
            return self._import(event, arrival, None)
        if not event.scan_required:
            logger.warning("%s: the message says the customer is opted out of the malware "
                           "gate, the registry does not: waiting for GuardDuty's verdict",
                           event.describe())
        if verdict is None:
            return Outcome.WAITING, ": arrived; waiting for the malware scan's result"
        return self._decide(arrival, verdict)

    # -- the malware gate ------------------------------------------------------------------------

    def _decide(self, arrival: Arrival, verdict: Verdict) -> tuple[Outcome, str]:
        """Both halves are here: import a clean version whose tag agrees, stop any other."""
        if not verdict.clean:
            return self._stop(arrival, verdict, f"GuardDuty's verdict is {verdict.result}"
                              + (f" ({', '.join(verdict.threats)})" if verdict.threats else ""))
        tag = scan_tag(self.s3, arrival.bucket, arrival.key, arrival.version_id)
        if tag is None:
            # GuardDuty tags in a post-scan action of its own; AWS does not say it lands before
            # the scan-result event. Not yet a reason to stop: the message comes back, and after
            # the queue's five deliveries it waits in the dead-letter queue, nothing imported.
            raise ScanTagPending(
                f"s3://{arrival.bucket}/{arrival.key} (version {arrival.version_id}): GuardDuty "
                f"says {CLEAN} but the version has no {malware_gate.SCAN_TAG_KEY} tag yet")
        if tag != CLEAN:
            return self._stop(arrival, verdict, f"the scan-result event says {CLEAN} but the "
                              f"version's {malware_gate.SCAN_TAG_KEY} tag says "
                              f"{tag or 'nothing'}")
        event = IngestionEvent(
            customer=arrival.customer, bucket=arrival.bucket, key=arrival.key,
            version_id=None if arrival.version_id == NULL_VERSION else arrival.version_id,
            size=arrival.size, etag=arrival.etag, time=arrival.time, event_id=arrival.event_id,
            requester=arrival.requester, source_ip=arrival.source_ip)
        return self._import(event, arrival, verdict)

    def _stop(self, arrival: Arrival, verdict: Verdict, reason: str) -> tuple[Outcome, str]:
        """Nothing is loaded; the security topic and the customer's contacts are told (at least
        once: a retry after a failure between publishing and recording tells them again);
        the stop is recorded (custody) and the partner gets a signed "rejected" receipt."""
        conn = self._connection()
        where = (arrival.bucket, arrival.key, arrival.version_id)
        if not gate_store.is_stopped(conn, *where):
            notified = (self.notifier.notify(arrival, result=verdict.result, reason=reason,
                                             threats=verdict.threats)
                        if self.notifier else [])
            gate_store.record_stop(conn, arrival, result=verdict.result, reason=reason,
                                   threats=verdict.threats, notified=notified)
        if self.receipts is not None and not gate_store.has_receipt(conn, *where):
            checksum = stored_checksum(self.s3, *where)
            self._issue(receipt_body(arrival, outcome="rejected", verdict=verdict,
                                     imported=None, checksum=checksum,
                                     issued_at=datetime.now(UTC)))
        logger.warning("stopped at the malware gate: s3://%s/%s (version %s): %s",
                       arrival.bucket, arrival.key, arrival.version_id, reason)
        return Outcome.STOPPED, f": {reason}; not imported"

    def _receipt_for_import(self, arrival: Arrival, verdict: Verdict | None) -> None:
        if self.receipts is None:
            return
        conn = self._connection()
        where = (arrival.bucket, arrival.key, arrival.version_id)
        if gate_store.has_receipt(conn, *where):
            return
        row = gate_store.custody_of(conn, *where) or gate_store.manifest_of(conn, *where)
        if row is None:  # recorded meanwhile by another delivery, which issues it
            return
        imported = Imported(import_id=int(row["id"]), row_count=int(row["row_count"]),
                            imported_at=row["imported_at"],
                            checksum_algorithm=str(row["checksum_algorithm"]),
                            checksum=str(row["checksum"]), size=int(row.get("size")
                                                                    or arrival.size))
        self._issue(receipt_body(arrival, outcome="imported", verdict=verdict,
                                 imported=imported,
                                 checksum=(imported.checksum_algorithm, imported.checksum),
                                 issued_at=datetime.now(UTC),
                                 opt_out_reason=self.opted_out.get(arrival.customer)))

    def _issue(self, body: dict[str, Any]) -> None:
        assert self.receipts is not None
        receipt_key, signature, key_arn = self.receipts.issue(body)
        gate_store.record_receipt(self._connection(), body, receipt_key=receipt_key,
                                  signature=signature, signing_key=key_arn)

    # -- loading ---------------------------------------------------------------------------------

    def _import(self, event: IngestionEvent, arrival: Arrival,
                verdict: Verdict | None) -> tuple[Outcome, str]:
        outcome, note = self._load(event)
        self._receipt_for_import(arrival, verdict)
        return outcome, note

    def _load(self, event: IngestionEvent) -> tuple[Outcome, str]:
        conn = self._connection()
        version = event.version_id or NULL_VERSION
        if store.is_loaded(conn, event.bucket, event.key, version):
            return Outcome.DUPLICATE, ": already recorded"
        with self._fetch(event) as fetched:
            if event.is_batch_manifest:
                result = store.load_batch_manifest(conn, event, fetched)
                what = f"batch manifest listing {result.row_count} file(s)"
            else:
                result = store.load_csv(conn, event, fetched)
                what = f"{result.row_count} row(s)"
        if not result.loaded:
            return Outcome.DUPLICATE, ": recorded meanwhile by another delivery"
        uploader = result.uploader
        source = f", uploader from {uploader.source}" if uploader else ""
        return Outcome.LOADED, f": {what}, custody id {result.custody_id}{source}"

    def _fetch(self, event: IngestionEvent) -> Fetched:
        """Fetch and verify; a mismatch is retried once at once, since bytes corrupted on the
        way are not the object's fault. A second mismatch is permanent."""
        def attempt() -> Fetched:
            return fetch_verified(self.s3, event.bucket, event.key, event.version_id,
                                  directory=self.work_dir, expected_size=event.size)

        try:
            return attempt()
        except ChecksumMismatch as first:
            logger.warning("checksum mismatch, fetching once more: %s", first.reason)
            return attempt()

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = self.connect()
        return self._conn

    # -- settling ------------------------------------------------------------------------------

    def _dead_letter(self, message: dict[str, Any], failure: PermanentFailure) -> None:
        def attribute(value: str) -> dict[str, str]:
            return {"DataType": "String", "StringValue": value}

        reason = " ".join(failure.reason.split())[:MAX_REASON]
        self.sqs.send_message(
            QueueUrl=self.dead_letter_queue_url,
            MessageBody=str(message.get("Body", "")),
            MessageAttributes={
                "failure": attribute(failure.kind),
                "reason": attribute(reason or failure.kind),
                "source-message-id": attribute(str(message.get("MessageId", "?"))),
                "failed-at": attribute(
                    datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")),
            },
        )

    def _delete(self, message: dict[str, Any]) -> None:
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def _retry_later(self, message: dict[str, Any]) -> None:
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"],
                VisibilityTimeout=self.retry_delay)
        except Exception as exc:  # the queue's own visibility timeout still brings it back
            logger.warning("could not shorten the visibility timeout: %s", exc)


def dead_letter_queue_of(sqs: Any, queue_url: str) -> str:
    """The URL of the dead-letter queue named by ``queue_url``'s redrive policy."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["RedrivePolicy"]).get("Attributes", {})
    policy = attributes.get("RedrivePolicy")
    if not policy:
        raise ValueError(f"queue {queue_url} has no redrive policy: pass --dead-letter-queue-url")
    arn = str(json.loads(policy)["deadLetterTargetArn"])
    _, _, _, _, account, name = arn.split(":", 5)
    return str(sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])
