"""The settings that cross parts: each stated once, with why.

The registry uses them as defaults, the stacks as values, the rotation Lambda as fallbacks for
its environment, the operator CLI to explain a key's state.
"""

from __future__ import annotations

# The partner's access key: a new one every year; the previous one keeps working two weeks
# (time to switch), then is deactivated, and deleted thirty days later (time to notice a
# partner that had not switched, and reactivate while investigating).
ROTATION_INTERVAL_DAYS = 365
GRACE_DAYS = 14
DELETE_AFTER_DAYS = 30

# HIPAA keeps required documentation six years (45 CFR 164.316(b)(2)): the audit trail's
# Object Lock and the access logs. Six years with their leap days.
EVIDENCE_RETENTION_DAYS = 6 * 365 + 2  # 2192

# Every bucket refuses older TLS (bucket-policy deny on s3:TlsVersion).
MINIMUM_TLS_VERSION = 1.2

# Lifecycle of a customer bucket: overwritten or deleted versions kept this long; parts of an
# upload never completed removed after this many days (long enough for the client to resume).
NONCURRENT_VERSION_DAYS = 90
ABORT_INCOMPLETE_MULTIPART_DAYS = 7

# roles-anywhere: IAM Roles Anywhere's expiry notices (the trust anchor's notification
# settings), days ahead; the operator CLI's status warns from the same day. The partner's CA
# needs weeks to issue, exchange and register a successor; a workload certificate less.
CA_EXPIRY_NOTICE_DAYS = 60
CERTIFICATE_EXPIRY_NOTICE_DAYS = 30
