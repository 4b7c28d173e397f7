"""The accounts file's rules, the quota count and the proposal (plain Python, no synth)."""

from __future__ import annotations

from pathlib import Path

import pytest

from phi_core import placement
from phi_core.vocabulary import AccessMode

GOOD = {
    "log_archive": {"label": "log-archive", "account_id": "999999999999", "region": "eu-west-2"},
    "exchange": [
        {"label": "ex-1", "account_id": "111111111111", "region": "eu-west-2"},
        {"label": "ex-2", "account_id": "222222222222", "region": "eu-west-2",
         "quotas": {"iam_groups": 500}},
    ],
}
IAM_USER = placement.customer_footprint(access=AccessMode.IAM_USER, sends_inbound=True,
                                        scanned=True, offboarded=False)


def _with(**changes: object) -> dict[str, object]:
    data = {**GOOD, "exchange": [dict(e) for e in GOOD["exchange"]]}  # type: ignore[union-attr]
    data.update(changes)
    return data


def _problems(data: dict[str, object]) -> list[str]:
    with pytest.raises(placement.PlacementError) as err:
        placement.parse_accounts(data, source="accounts.toml")
    return err.value.problems


def test_a_good_accounts_file_parses() -> None:
    accounts = placement.parse_accounts(GOOD, source="accounts.toml")
    assert accounts.labels == ("ex-1", "ex-2")
    assert accounts.get("ex-2").limit(placement.QUOTA_BY_KEY["iam_groups"]) == 500  # type: ignore[union-attr]
    assert accounts.get("ex-1").limit(placement.QUOTA_BY_KEY["iam_groups"]) == 300  # type: ignore[union-attr]
    lam = placement.QUOTA_BY_KEY["lambda_concurrency"]
    assert accounts.get("ex-1").limit(lam) == 900  # type: ignore[union-attr]  # 100 kept free


@pytest.mark.parametrize(("change", "expected"), [
    ({"exchange": []}, "accounts.toml: exchange: required: one or more [[exchange]] tables"),
    ({"exchange": [{"label": "Ex 1", "account_id": "111111111111", "region": "eu-west-2"}]},
     "accounts.toml: exchange[0].label: required: 2-32 lowercase letters"),
    ({"exchange": [{"label": "ex-1", "account_id": 111111111111, "region": "eu-west-2"}]},
     "accounts.toml: exchange[0].account_id: required: the 12-digit account id, as a string"),
    ({"exchange": [{"label": "ex-1", "account_id": "111111111111", "region": "europe"}]},
     "accounts.toml: exchange[0].region: required: an AWS region name"),
    ({"exchange": [{"label": "ex-1", "account_id": "111111111111", "region": "eu-west-2",
                    "colour": "red"}]},
     "accounts.toml: exchange[0].colour: unknown field"),
    ({"exchange": [{"label": "ex-1", "account_id": "111111111111", "region": "eu-west-2"},
                   {"label": "ex-1", "account_id": "222222222222", "region": "eu-west-2"}]},
     "accounts.toml: exchange[1].label: 'ex-1' is already used by exchange[0]"),
    ({"exchange": [{"label": "ex-1", "account_id": "111111111111", "region": "eu-west-2"},
                   {"label": "ex-2", "account_id": "111111111111", "region": "eu-west-2"}]},
     "accounts.toml: exchange[1]: account 111111111111 in eu-west-2 is listed twice"),
    ({"exchange": [{"label": "ex-1", "account_id": "111111111111", "region": "eu-west-2",
                    "quotas": {"iam_users": 6000}}]},
     "accounts.toml: exchange[0].quotas.iam_users: IAM users per account is a hard quota"),
    ({"exchange": [{"label": "ex-1", "account_id": "111111111111", "region": "eu-west-2",
                    "quotas": {"iam_groups": 600}}]},
     "accounts.toml: exchange[0].quotas.iam_groups: at most 500"),
    ({"exchange": [{"label": "ex-1", "account_id": "111111111111", "region": "eu-west-2",
                    "quotas": {"iam_groups": 200}}]},
     "accounts.toml: exchange[0].quotas.iam_groups: must be a whole number at least the "
     "default 300"),
    ({"exchange": [{"label": "ex-1", "account_id": "111111111111", "region": "eu-west-2",
                    "quotas": {"groups": 400}}]},
     "accounts.toml: exchange[0].quotas.groups: unknown quota"),
    ({"exchange": [{"label": "ex-1", "account_id": "111111111111", "region": "eu-west-2",
                    "quotas": {"iam_roles": 2000}},
                   {"label": "ex-1b", "account_id": "111111111111", "region": "us-east-1"}]},
     "accounts.toml: exchange.quotas.iam_roles: account 111111111111 is listed in several "
     "regions with different values"),
    ({"log_archive": {"label": "logs", "account_id": "111111111111", "region": "eu-west-2"}},
     "accounts.toml: log_archive.account_id: must not be an exchange account"),
    ({"extra": {}}, "accounts.toml: 'extra': unknown table"),
])
def test_a_bad_accounts_file_gets_one_line_per_problem(change: dict[str, object],
                                                       expected: str) -> None:
    problems = _problems(_with(**change))
    assert any(p.startswith(expected) for p in problems), problems
    assert all("\n" not in p for p in problems)


@pytest.mark.parametrize(("content", "expected"), [
    (b"[[exchange]\n", "not valid TOML"),
    (b"\xff\xfe", "not UTF-8 text"),
])
def test_an_unreadable_accounts_file_is_one_line(tmp_path: Path, content: bytes,
                                                 expected: str) -> None:
    path = tmp_path / "accounts.toml"
    path.write_bytes(content)
    with pytest.raises(placement.PlacementError) as err:
        placement.load_accounts(path)
    (line,) = err.value.problems
    assert line.startswith(f"{path}: (file): {expected}")


def _customers(count: int, account: str | None, footprint=IAM_USER) -> list[placement.Placed]:
    return [placement.Placed(f"c{i}", account, footprint) for i in range(count)]


def test_iam_counts_are_shared_by_an_accounts_regions() -> None:
    accounts = placement.parse_accounts({"exchange": [
        {"label": "west", "account_id": "111111111111", "region": "eu-west-2"},
        {"label": "east", "account_id": "111111111111", "region": "us-east-1"},
    ]}, source="accounts.toml")
    group_and_rule = {"iam_groups": 1, "eventbridge_rules": 1}
    customers = [*_customers(150, "west", group_and_rule),
                 *[placement.Placed(f"e{i}", "east", group_and_rule) for i in range(151)]]
    result = placement.evaluate(customers, accounts)
    assert result.exceeded == (
        "account 111111111111 (west, east): IAM groups per account: 301 needed, limit 300 "
        "(AWS's default 300; 301 customers): request an increase in Service Quotas and record "
        "it under the account's [exchange.quotas] iam_groups, or place customers elsewhere",)
    # Regional quotas are counted per region: 161 rules fit in each (301 would not).
    rules = [u for u in result.usage if u.quota.key == "eventbridge_rules"]
    assert sorted(u.used for u in rules) == [160, 161]


def test_a_hard_quota_says_to_split() -> None:
    accounts = placement.Accounts.implicit()
    many = _customers(5001, None, {"iam_users": 1})
    (line,) = placement.evaluate(many, accounts).exceeded
    assert line.endswith("split the customers across accounts")


def test_the_proposal_is_the_account_with_the_most_room() -> None:
    accounts = placement.parse_accounts(GOOD, source="accounts.toml")
    result = placement.evaluate(_customers(20, "ex-1"), accounts)
    assert placement.propose(accounts, result.usage, IAM_USER) == "ex-2"
    # Nowhere to go when every account is full.
    full = placement.evaluate(
        [*_customers(25, "ex-1"), *[placement.Placed(f"d{i}", "ex-2", IAM_USER)
                                    for i in range(25)]], accounts)
    assert placement.propose(accounts, full.usage, IAM_USER) is None
    # A customer that uses no GuardDuty plan still fits.
    unscanned = placement.customer_footprint(access=AccessMode.CROSS_ACCOUNT,
                                             sends_inbound=True, scanned=False,
                                             offboarded=False)
    assert placement.propose(accounts, full.usage, unscanned) == "ex-1"


def test_ties_go_to_the_first_listed_account() -> None:
    accounts = placement.parse_accounts(GOOD, source="accounts.toml")
    result = placement.evaluate([], accounts)
    assert placement.propose(accounts, result.usage, IAM_USER) == "ex-1"


@pytest.mark.parametrize("doc", ["scale.md", "pipeline.md"])
def test_the_documented_accounts_files_are_valid(doc: str) -> None:
    import re
    import tomllib

    text = (Path(__file__).resolve().parents[2] / "docs" / doc).read_text()
    (example,) = re.findall(r"^```toml\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    accounts = placement.parse_accounts(tomllib.loads(example), source=doc)
    assert accounts.exchange
