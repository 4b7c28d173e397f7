"""The reference importer: loads partners' inbound CSV files into PostgreSQL with custody.

One message of the ingestion queue (``phi-exchange-ingestion``) names one new object version
under ``inbound/`` (see ``stacks/components/ingestion_handoff.py``). For each, the importer

1. parses the message (:func:`importer.message.parse_message`, pure);
2. skips it if that bucket, key and version is already in the custody table (redelivery);
3. fetches exactly that version into a private temporary file and verifies its full-object
   checksum with the transfer client's helpers (:func:`importer.fetch.fetch_verified`);
4. loads it in one transaction: every data row and one custody row, or nothing
   (:func:`importer.store.load_csv`); a client batch manifest (commit marker) is recorded
   instead (:func:`importer.store.load_batch_manifest`);
5. deletes the message. A permanent failure (bad message, missing object, checksum mismatch,
   malformed file) sends the message with its reason to the dead-letter queue first; any other
   failure leaves the message for redelivery (:mod:`importer.consumer`).

Run it with ``python -m importer --queue-url URL --dsn DSN [--once]``. The custody model is
described in docs/custody.md.
"""
