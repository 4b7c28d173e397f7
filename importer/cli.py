"""``python -m importer``: consume the ingestion queue into PostgreSQL.

    python -m importer --queue-url URL --dsn DSN [--once] [--endpoint-url URL]

Options: ``--dead-letter-queue-url`` (default: the queue's redrive-policy target),
``--region`` (default: boto3's resolution), ``--endpoint-url`` (default: real AWS),
``--once`` (one receive, then exit; default: poll until interrupted), ``--wait-seconds``
(long-poll time, default 20), ``--max-messages`` (per receive, 1-10, default 1),
``--retry-delay`` (seconds before a transiently failed message returns, default 60),
``--work-dir`` (where objects are fetched, default the system's temporary directory),
``--create-schema`` (apply importer/schema.sql first; default off: the importer's role should
not own the schema), ``--signing-key`` (the KMS key that signs receipts, default its alias
``alias/phi-exchange/receipts``: the only name the importer's role may sign by),
``--registry`` (the customer registry; the customers it opts out of the malware gate are
imported without waiting for a scan; default none: every customer waits for GuardDuty's
verdict). Receipts and notices of files stopped at the malware gate are always on. Exit
status: 0 after ``--once`` or an interrupt, 1 if the queue, the database or the registry cannot
be read at start, 2 usage error.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg
from botocore.exceptions import BotoCoreError, ClientError

from admin.aws import AwsOptions, make_client
from importer import store
from importer.consumer import Importer, Outcome, dead_letter_queue_of
from importer.gate import Notifier, ReceiptIssuer
from phi_core import naming
from stacks.config import Direction, RegistryError, load_registry

PROG = "python -m importer"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Load new inbound CSV files from the ingestion queue into "
        "PostgreSQL, with a custody row per file.")
    parser.add_argument("--queue-url", required=True, help="the ingestion queue's URL")
    parser.add_argument("--dsn", required=True,
                        help="PostgreSQL connection string (libpq syntax or URI); keep the "
                        "password out of it: libpq reads PGPASSWORD or ~/.pgpass")
    parser.add_argument("--dead-letter-queue-url", default=None,
                        help="default: the target of the queue's redrive policy")
    parser.add_argument("--region", default=None, help="AWS region (default: from the "
                        "environment)")
    parser.add_argument("--endpoint-url", default=None,
                        help="endpoint URL for S3 and SQS, e.g. a local emulator")
    parser.add_argument("--once", action="store_true",
                        help="receive once, handle what arrived, and exit")
    parser.add_argument("--wait-seconds", type=int, default=20, choices=range(0, 21),
                        metavar="0-20", help="long-poll wait per receive (default 20)")
    parser.add_argument("--max-messages", type=int, default=1, choices=range(1, 11),
                        metavar="1-10", help="messages per receive (default 1)")
    parser.add_argument("--retry-delay", type=int, default=60, choices=range(0, 43201),
                        metavar="SECONDS", help="delay before a transiently failed message "
                        "comes back (default 60)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="directory for fetched objects (default: system temp)")
    parser.add_argument("--registry", type=Path, default=None,
                        help="the customer registry (customers/): who is opted out of the "
                        "malware gate (default: nobody; a message's own claim never counts)")
    parser.add_argument("--signing-key", default=naming.RECEIPT_SIGNING_KEY_ALIAS,
                        help="the KMS key that signs receipts (default: "
                        f"{naming.RECEIPT_SIGNING_KEY_ALIAS})")
    parser.add_argument("--create-schema", action="store_true",
                        help="apply importer/schema.sql before consuming")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="default INFO: one line per message")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = AwsOptions(region=args.region, endpoint_url=args.endpoint_url)
    sqs = make_client("sqs", options)

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(args.dsn, autocommit=True, connect_timeout=10,
                               application_name="phi-exchange-importer")

    try:
        # The registry first: a broken one stops the importer before it touches anything.
        opted_out = _opted_out(args.registry) if args.registry else {}
        # The partition of the topics the notices go to: the caller's (no permission needed).
        caller = make_client("sts", options).get_caller_identity()["Arn"]
        partition = str(caller).split(":")[1]
        dlq = args.dead_letter_queue_url or dead_letter_queue_of(sqs, args.queue_url)
        with connect() as conn:  # proves the database is there before the first message
            if args.create_schema:
                store.apply_schema(conn)
    except RegistryError as err:
        print(f"{PROG}: cannot start: {err}", file=sys.stderr)
        return 1
    except (ClientError, BotoCoreError, ValueError, psycopg.Error) as err:
        print(f"{PROG}: cannot start: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    s3 = make_client("s3", options)
    importer = Importer(s3=s3, sqs=sqs, queue_url=args.queue_url,
                        dead_letter_queue_url=dlq, connect=connect,
                        work_dir=args.work_dir, retry_delay=args.retry_delay,
                        receipts=ReceiptIssuer(s3=s3, kms=make_client("kms", options),
                                               signing_key=args.signing_key),
                        opted_out=opted_out,
                        notifier=Notifier(sns=make_client("sns", options),
                                          partition=partition))
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.once:
            outcomes = importer.poll(wait_seconds=args.wait_seconds,
                                     max_messages=args.max_messages)
            counts = {o.value: outcomes.count(o) for o in Outcome if o in outcomes}
            print(", ".join(f"{n} {name}" for name, n in counts.items()) or "no message")
        else:
            importer.run(wait_seconds=args.wait_seconds, max_messages=args.max_messages)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
    finally:
        importer.close()
    return 0


def _opted_out(registry: Path) -> dict[str, str]:
    """The customers the registry opts out of the malware gate, with its reasons."""
    return {slug: customer.malware_scan.reason
            for slug, customer in load_registry(registry).items()
            if customer.allows(Direction.INBOUND) and not customer.malware_scan.enabled}


def _interrupt(signum: int, frame: Any) -> None:
    # SIGTERM (a service manager stopping us) ends the run like Ctrl-C: the message in hand
    # is rolled back and left on the queue.
    raise KeyboardInterrupt
