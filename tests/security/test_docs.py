"""docs/security.md lists every service contract the matrix proves, with its AWS documentation:
a contract added to the rules without its line in the docs, or a stale line, fails here."""

from __future__ import annotations

import re
from pathlib import Path

from security.matrix_rules import CONTRACTS, RULES

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def test_every_service_contract_is_documented_with_its_aws_page():
    text = DOC.read_text()
    for contract in CONTRACTS:
        assert f"| `{contract.name}` |" in text, contract.name
        assert contract.doc in text, contract.doc
    documented = set(re.findall(r"^\| `([a-z0-9-]+)` \|", text, re.MULTILINE))
    assert documented == {c.name for c in CONTRACTS}


def test_every_rule_is_documented_in_its_own_words():
    text = " ".join(DOC.read_text().split())
    for rule in RULES:
        assert f"`{rule.name}`: {rule.says}" in text, rule.name
