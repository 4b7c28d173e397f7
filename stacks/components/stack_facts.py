"""A stack's account, partition, region and URL suffix, read from the CDK once per stack.

Why: each of these is a call into the CDK's Node process, and the components of one customer
stack read them about thirty times; every customer synthesized pays for each call (docs/
benchmarks.md, "Synth at scale"). The values are the stack's own tokens, the same strings
every time, so reading them once changes no template.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

from aws_cdk import Duration, Stack
from constructs import IConstruct


@dataclass(frozen=True)
class StackFacts:
    # Weak, so the cache below (keyed weakly by the stack) lets a finished app's stacks go.
    stack_ref: weakref.ReferenceType[Stack]
    account: str
    partition: str
    region: str
    url_suffix: str

    def format_arn(self, **components: Any) -> str:
        stack = self.stack_ref()
        assert stack is not None  # a construct's facts are read while its stack is built
        return stack.format_arn(**components)


_READ: weakref.WeakKeyDictionary[Stack, StackFacts] = weakref.WeakKeyDictionary()
_DAYS: dict[int, Duration] = {}


def facts_of(construct: IConstruct) -> StackFacts:
    """The facts of the stack ``construct`` is in (``construct`` itself, if a stack)."""
    stack = construct if isinstance(construct, Stack) else Stack.of(construct)
    found = _READ.get(stack)
    if found is None:
        found = StackFacts(stack_ref=weakref.ref(stack), account=stack.account,
                           partition=stack.partition, region=stack.region,
                           url_suffix=stack.url_suffix)
        _READ[stack] = found
    return found


def days(count: int) -> Duration:
    """``Duration.days(count)``, created once per count (a Duration is immutable)."""
    if count not in _DAYS:
        _DAYS[count] = Duration.days(count)
    return _DAYS[count]
