"""The importer's signed receipts, read the way the partner reads them.

A receipt is fetched from ``receipts/`` of the customer's bucket *as the partner* (its own
credentials, through its source address, emulator permission checks on: the partner's
``ReadReceipts`` grant must let it) and verified with the client's own code
(``partner_transfer.receipts.parse_and_verify``) against the public key of the receipt key,
which the operator reads from KMS (``GetPublicKey`` of ``alias/phi-exchange/receipts``), as
the onboarding kit carries it.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from localrun.context import LocalRun
from partner_transfer import receipts
from phi_core import malware_gate, naming


class ReceiptFailed(RuntimeError):
    pass


def public_key(run: LocalRun) -> ec.EllipticCurvePublicKey:
    """The receipt key's public key, from KMS (the operator, checks off)."""
    answer = run.client("kms").get_public_key(KeyId=naming.RECEIPT_SIGNING_KEY_ALIAS)
    return receipts.load_public_key(receipts.public_key_pem(bytes(answer["PublicKey"])))


def read_as_partner(run: LocalRun, key: str, version_id: str,
                    verify_with: ec.EllipticCurvePublicKey) -> receipts.Receipt:
    """The receipt of ``key`` at ``version_id``, read by the partner and verified; raises
    :class:`ReceiptFailed` with the reason."""
    partner: Any = run.partner
    if partner is None:
        raise ReceiptFailed("the partner round trip did not set up the partner")
    object_key = malware_gate.receipt_object_key(key, version_id)
    s3 = run.client("s3", partner.credentials, source_address=partner.source_address)
    try:
        with run.permission_checks():
            data = s3.get_object(Bucket=run.outputs["BucketName"], Key=object_key)["Body"].read()
    except Exception as error:
        raise ReceiptFailed(f"the partner could not read {object_key}: "
                            f"{' '.join(str(error).split())}") from None
    try:
        return receipts.parse_and_verify(data, verify_with, object_key=object_key)
    except receipts.ReceiptError as error:
        raise ReceiptFailed(f"{object_key}: {error}") from None


def expect(receipt: receipts.Receipt, **fields: Any) -> None:
    """Each of ``fields`` (``outcome="imported"``, ``version_id=...``) as the receipt says."""
    wrong = [f"{name} is {receipt.body.get(name)!r}, not {value!r}"
             for name, value in fields.items() if receipt.body.get(name) != value]
    if wrong:
        raise ReceiptFailed(f"{receipt.object_key}: {'; '.join(wrong)}")
