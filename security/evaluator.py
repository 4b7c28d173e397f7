"""The Python side of the IAM evaluator: one Node process evaluates a whole batch of requests.

The evaluator is the npm package ``@cloud-copilot/iam-simulate``, pinned exactly in
``security/package.json`` (and ``package-lock.json``) and installed with
``npm ci --prefix security``. It is a test-time tool: it reads policies and prints decisions,
and is never shipped with, linked into or deployed by the project (see docs/security.md for why
its AGPL-3.0 licence is acceptable here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SECURITY_DIR = Path(__file__).resolve().parent
REPO = SECURITY_DIR.parent
SCRIPT = SECURITY_DIR / "evaluate.mjs"
PACKAGE_DIR = SECURITY_DIR / "node_modules" / "@cloud-copilot" / "iam-simulate"
EVALUATION_TIMEOUT_SECONDS = 600

ALLOWED = "Allowed"


class EvaluatorUnavailable(Exception):
    """Node or the pinned evaluator package is missing; the message says how to install it."""


class EvaluatorFailed(Exception):
    """The evaluator process failed or answered something unreadable."""


@dataclass(frozen=True)
class Request:
    """One authorization request. ``principal`` is an ARN, or None for an anonymous caller;
    policies are ids into the batch's policy table."""

    principal: str | None
    action: str
    resource: str
    resource_account: str
    context: Mapping[str, str | list[str]]
    identity_policies: tuple[str, ...] = ()
    resource_policy: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "principal": self.principal,
            "action": self.action,
            "resource": self.resource,
            "resourceAccount": self.resource_account,
            "context": dict(self.context),
            "identityPolicies": list(self.identity_policies),
            "resourcePolicy": self.resource_policy,
        }


@dataclass(frozen=True)
class Decision:
    """The evaluator's answer: ``decision`` is Allowed, ExplicitlyDenied, ImplicitlyDenied or
    Error; ``allow``/``deny`` name the statements that matched (``resource:<sid>`` or
    ``identity:<policy>:<sid>``)."""

    decision: str
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    ignored_context_keys: tuple[str, ...] = ()
    error: str | None = None
    fallback: str | None = None  # set when decided by the encryption-context fallback

    @property
    def allowed(self) -> bool:
        return self.decision == ALLOWED


@dataclass
class Batch:
    """Requests plus the policy documents they refer to, each document stored once."""

    policies: dict[str, Any] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)

    def add_policy(self, policy_id: str, document: Any) -> str:
        existing = self.policies.setdefault(policy_id, document)
        if existing is not document and existing != document:
            raise ValueError(f"policy id {policy_id!r} used for two different documents")
        return policy_id


def node_binary() -> str:
    """The pinned Node (repo ``node_modules/.bin/node``), else ``node`` on PATH."""
    pinned = REPO / "node_modules" / ".bin" / "node"
    if pinned.exists():
        return str(pinned)
    found = shutil.which("node")
    if found is None:
        raise EvaluatorUnavailable("node not found: run `make setup` (installs the pinned Node)")
    return found


def evaluator_version() -> str:
    """The installed ``@cloud-copilot/iam-simulate`` version."""
    manifest = PACKAGE_DIR / "package.json"
    if not manifest.exists():
        raise EvaluatorUnavailable(
            f"{PACKAGE_DIR} is missing: run `npm ci --prefix security` (or `make setup`)")
    return str(json.loads(manifest.read_text())["version"])


def batch_json(batch: Batch, *, workers: int | None = None) -> str:
    """The JSON that :func:`evaluate` sends to ``evaluate.mjs`` for ``batch`` (what
    ``bench/evaluator_bench.py`` writes to a file, to profile or compare the evaluator)."""
    return json.dumps({
        "policies": batch.policies,
        "requests": [request.as_json() for request in batch.requests],
        "workers": workers or os.cpu_count() or 1,
    })


def run_batch_json(payload: str, *, memoize: bool = True, script: Path = SCRIPT
                   ) -> dict[str, Any]:
    """Run ``evaluate.mjs`` (or another ``script`` beside it) on a batch's JSON; its parsed
    answer (``results`` in request order). ``memoize`` False sets IAM_SIMULATE_NO_MEMO=1:
    every lookup and match is computed afresh, as iam-simulate does on its own."""
    evaluator_version()  # fails early, with the install command, if the package is missing
    try:
        completed = subprocess.run(  # noqa: S603 - fixed argv: our Node and our script
            [node_binary(), str(script)],
            input=payload,
            capture_output=True,
            text=True,
            timeout=EVALUATION_TIMEOUT_SECONDS,
            check=False,
            cwd=SECURITY_DIR,
            env={**os.environ, "IAM_SIMULATE_NO_MEMO": "0" if memoize else "1"},
        )
    except subprocess.TimeoutExpired as err:
        raise EvaluatorFailed(f"evaluator timed out after {err.timeout} s") from None
    if completed.returncode != 0:
        raise EvaluatorFailed(f"evaluator exited {completed.returncode}: "
                              f"{completed.stderr.strip()[-2000:]}")
    try:
        answer = json.loads(completed.stdout)
    except ValueError as err:
        raise EvaluatorFailed(f"unreadable evaluator output ({err})") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
        raise EvaluatorFailed("unreadable evaluator output (no results)")
    return answer


def decision_of(result: Mapping[str, Any]) -> Decision:
    """One result of ``evaluate.mjs`` as a :class:`Decision`."""
    return Decision(
        decision=result["decision"],
        allow=tuple(result.get("allow", ())),
        deny=tuple(result.get("deny", ())),
        ignored_context_keys=tuple(result.get("ignoredContextKeys", ())),
        error=result.get("error"),
        fallback=result.get("fallback"),
    )


def evaluate(batch: Batch, *, workers: int | None = None, memoize: bool = True
             ) -> list[Decision]:
    """Evaluate every request of ``batch`` in one Node process (``workers`` threads, default
    one per core); decisions come back in request order. ``memoize`` (default on) caches the
    evaluator's pure lookups and statement matches (see evaluate.mjs); off only to prove it
    changes no decision."""
    evaluator_version()  # fails early, with the install command, if the package is missing
    if not batch.requests:
        return []
    results = run_batch_json(batch_json(batch, workers=workers), memoize=memoize)["results"]
    if len(results) != len(batch.requests):
        raise EvaluatorFailed(f"{len(results)} decisions for {len(batch.requests)} requests")
    return [decision_of(result) for result in results]


def evaluate_one(request: Request, policies: Mapping[str, Any]) -> Decision:
    """Convenience for probes and tests: a batch of one."""
    batch = Batch(policies=dict(policies), requests=[request])
    return evaluate(batch, workers=1)[0]
