"""The importer's failure classes: permanent ones go to the dead-letter queue at once.

Everything else (database down, throttling, network, access denied by a misconfigured role) is
transient: the message stays on the queue and comes back; the queue's redrive policy moves it
to the dead-letter queue after ``maxReceiveCount`` (5) failed deliveries.
"""

from __future__ import annotations


class PermanentFailure(Exception):
    """Retrying cannot help: the message goes to the dead-letter queue with ``reason``.

    ``kind`` is a short machine-readable class (``invalid-message``, ``missing-object``,
    ``checksum-mismatch``, ``unverifiable``, ``malformed-file``) sent as a message attribute.
    """

    kind = "permanent"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidMessage(PermanentFailure):
    """The message body is not what the ingestion handoff rule sends."""

    kind = "invalid-message"


class ObjectMissing(PermanentFailure):
    """The object version named by the message does not exist (deleted, or never written)."""

    kind = "missing-object"


class ChecksumMismatch(PermanentFailure):
    """The bytes received do not match the stored or recorded full-object checksum."""

    kind = "checksum-mismatch"


class Unverifiable(PermanentFailure):
    """The object carries no full-object checksum to verify against; never loaded."""

    kind = "unverifiable"


class MalformedFile(PermanentFailure):
    """The file is not a well-formed UTF-8 CSV with a header (or not a valid batch manifest)."""

    kind = "malformed-file"
