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
                   {"label": "ex-2", "account_id": "111111111111", "region": "us-east-1"}]},
     "accounts.toml: exchange[1]: account 111111111111 is already listed: an exchange account "
     "is listed once"),
    ({"pipeline": {"label": "tooling", "account_id": "999999999999", "region": "eu-west-2",
                   "repository": "o/r", "connection_arn": "arn:aws:codeconnections:eu-west-2:"
                   "999999999999:connection/0a1b2c3d-0000-4000-8000-00000000abcd"}},
     "accounts.toml: pipeline.account_id: must not be the log-archive account"),
    ({"exchange": [{"label": "ex-1", "account_id": "111111111111", "region": "eu-west-2",
                    "quotas": {"iam_users": 6000}}]},
     "accounts.toml: exchange[0].quotas.iam_users: IAM users per account is a hard quota"),
    ({"exchange": [{"label": "ex-1", "account_id": "111111111111", "region": "eu-west-2",
                    "quotas": {"iam_groups": 600}}]},
     "accounts.toml: exchange[0].quotas.iam_groups: at most 500"),
    ({"exchange": [{"label": "ex-1", "account_id": "111111111111", "region": "eu-west-2",
                    "quotas": {"iam_groups": 0}}]},
     "accounts.toml: exchange[0].quotas.iam_groups: must be a whole number: the value Service "
     "Quotas shows"),
    ({"exchange": [{"label": "ex-1", "account_id": "111111111111", "region": "eu-west-2",
                    "quotas": {"groups": 400}}]},
     "accounts.toml: exchange[0].quotas.groups: unknown quota"),
    ({"exchange": [{"label": "ex-1", "account_id": "111111111111", "region": "eu-west-2",
                    "pipeline": 0}]},
     "accounts.toml: exchange[0].pipeline: must be a whole number from 1 to 5 (default 1)"),
    ({"exchange": [{"label": "ex-1", "account_id": "111111111111", "region": "eu-west-2",
                    "pipeline": "2"}]},
     "accounts.toml: exchange[0].pipeline: must be a whole number from 1 to 5 (default 1)"),
    ({"exchange": [{"label": "ex-1", "account_id": "111111111111", "region": "eu-west-2"},
                   {"label": "ex-2", "account_id": "222222222222", "region": "eu-west-2",
                    "pipeline": 3}]},
     "accounts.toml: exchange: no account has pipeline = 2: pipelines are numbered from 1 "
     "without gaps"),
    ({"log_archive": {"label": "logs", "account_id": "111111111111", "region": "eu-west-2"}},
     "accounts.toml: log_archive.account_id: must not be an exchange account"),
    ({"exchange": [{"label": "ex-1", "account_id": "111111111111", "region": "eu-west-2",
                    "pipeline": 1}]},
     "accounts.toml: exchange[0].pipeline: needs a [pipeline] table"),
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


def test_accounts_name_the_pipeline_that_deploys_them() -> None:
    exchange = [dict(e) for e in GOOD["exchange"]]  # type: ignore[union-attr]
    assert placement.parse_accounts(GOOD, source="a").pipelines == 1
    exchange[1]["pipeline"] = 2
    tooling = {"label": "tooling", "account_id": "555555555555", "region": "eu-west-2",
               "repository": "o/r", "connection_arn": "arn:aws:codeconnections:eu-west-2:"
               "555555555555:connection/0a1b2c3d-0000-4000-8000-00000000abcd"}
    accounts = placement.parse_accounts(_with(exchange=exchange, pipeline=tooling), source="a")
    assert [a.pipeline for a in accounts.exchange] == [1, 2]
    assert accounts.pipelines == 2
    assert placement.Accounts.implicit().pipelines == 1


def test_a_new_accounts_lower_quota_is_counted_against() -> None:
    # A new account can have 10 concurrent Lambda executions: nothing can be reserved, so an
    # iam-user customer (its rotation function reserves 1) does not fit.
    accounts = placement.parse_accounts({"exchange": [
        {"label": "new", "account_id": "111111111111", "region": "eu-west-2",
         "quotas": {"lambda_concurrency": 10}}]}, source="accounts.toml")
    result = placement.evaluate(_customers(1, "new"), accounts)
    assert result.exceeded == (
        "account new (111111111111 eu-west-2): Lambda concurrent executions (reserved by our "
        "functions): 1 needed, limit 0 (recorded as 10, less 100 kept free; 1 customers): "
        "request an increase in Service Quotas and record it under the account's "
        "[exchange.quotas] lambda_concurrency, or place customers elsewhere",)


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
