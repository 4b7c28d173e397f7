"""``phi-exchange-admin placement``: the report, the proposal, and recording it (offline)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from admin.cli import main
from stacks.config import load_customer_file, load_registry

REPO = Path(__file__).resolve().parents[2]
ACCOUNTS = """
[[exchange]]
label = "exchange-1"
account_id = "111111111111"
region = "eu-west-2"

[[exchange]]
label = "exchange-2"
account_id = "222222222222"
region = "eu-west-2"
"""


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """A copy of the shipped registry with an accounts file next to it; acme is placed."""
    shutil.copytree(REPO / "customers", tmp_path / "customers")
    (tmp_path / "accounts.toml").write_text(ACCOUNTS)
    acme = tmp_path / "customers" / "acme.toml"
    acme.write_text(acme.read_text().replace('slug = "acme"',
                                             'slug = "acme"\naccount = "exchange-1"'))
    return tmp_path / "customers"


def test_without_an_accounts_file_everyone_is_in_the_one_account(capsys) -> None:
    code = main(["placement", "--registry", str(REPO / "customers"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    (account,) = report["accounts"]
    assert account["label"] == "default" and account["customers"] == ["acme", "globex",
                                                                       "hooli", "initech"]
    plans = next(u for u in report["usage"] if u["quota"] == "guardduty_protected_buckets")
    assert (plans["used"], plans["limit"]) == (3, 25)
    anchors = next(u for u in report["usage"] if u["quota"] == "rolesanywhere_trust_anchors")
    assert (anchors["used"], anchors["limit"]) == (1, 50)


def test_the_report_names_every_unplaced_customer_and_fails(registry: Path, capsys) -> None:
    code = main(["placement", "--registry", str(registry)])
    out, err = capsys.readouterr()
    assert code == 1
    assert "exchange-1 (111111111111 eu-west-2): 1 customer" in out
    assert "exchange-2 (222222222222 eu-west-2): 0 customers" in out
    assert f"{registry}/globex.toml: account: required when" in err
    assert "Traceback" not in err


def test_assign_records_the_proposal_in_the_customer_file(registry: Path, capsys) -> None:
    before = (registry / "globex.toml").read_text()
    assert main(["placement", "--registry", str(registry), "--for", "globex"]) == 0
    assert "globex: fits best in exchange-2" in capsys.readouterr().out
    assert (registry / "globex.toml").read_text() == before  # --for only proposes

    assert main(["placement", "--registry", str(registry), "--assign", "globex"]) == 0
    assert "recorded in" in capsys.readouterr().out
    after = (registry / "globex.toml").read_text()
    assert load_customer_file(registry / "globex.toml").account == "exchange-2"
    # Only the one line was added: comments and layout are the operator's.
    assert after.replace('\naccount = "exchange-2"', "", 1) == before

    for slug in ("hooli", "initech"):
        main(["placement", "--registry", str(registry), "--assign", slug])
        assert load_registry(registry)[slug].account in ("exchange-1", "exchange-2")
    assert main(["placement", "--registry", str(registry)]) == 0


def test_a_placed_customer_is_never_moved(registry: Path, capsys) -> None:
    before = (registry / "acme.toml").read_text()
    assert main(["placement", "--registry", str(registry), "--assign", "acme"]) == 1
    assert "acme is placed in exchange-1" in capsys.readouterr().out
    assert (registry / "acme.toml").read_text() == before


def test_a_customer_that_fits_nowhere_is_refused(registry: Path, capsys) -> None:
    (registry.parent / "accounts.toml").write_text(ACCOUNTS.split("\n[[exchange]]\nlabel = "
                                                                  '"exchange-2"')[0])
    for i in range(24):  # with acme and globex... 25 GuardDuty plans in exchange-1
        (registry / f"p{i:02d}.toml").write_text(
            f'slug = "p{i:02d}"\naccount = "exchange-1"\naccess = "cross-account"\n'
            'partner_principals = ["111122223333"]\ncontacts = ["ops@p.example"]\n')
    assert main(["placement", "--registry", str(registry), "--assign", "globex"]) == 1
    err = capsys.readouterr().err
    assert "globex: account: fits in no exchange account of" in err
    assert err.count("\n") == 1


def test_a_broken_accounts_file_is_one_line(registry: Path, capsys) -> None:
    (registry.parent / "accounts.toml").write_text("[[exchange]]\nlabel = 'x'\n")
    assert main(["placement", "--registry", str(registry)]) == 1
    err = capsys.readouterr().err
    assert "accounts.toml: exchange[0].account_id: required" in err
    assert "Traceback" not in err


def test_assign_needs_an_accounts_file(tmp_path: Path, capsys) -> None:
    shutil.copytree(REPO / "customers", tmp_path / "customers")
    before = (tmp_path / "customers" / "acme.toml").read_text()
    assert main(["placement", "--registry", str(tmp_path / "customers"), "--assign",
                 "acme"]) == 1
    assert "acme: account: nothing to record without an accounts file" in capsys.readouterr().err
    assert (tmp_path / "customers" / "acme.toml").read_text() == before
