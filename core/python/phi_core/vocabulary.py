"""The words every part uses for what a customer is: how its partner gets in, which way
files go."""

from __future__ import annotations

import enum

from phi_core import naming


class AccessMode(enum.StrEnum):
    """How the partner reaches its bucket."""

    IAM_USER = "iam-user"  # we create an IAM user; its access key lives in Secrets Manager
    CROSS_ACCOUNT = "cross-account"  # the partner's own principals, granted by resource policies
    ASSUME_ROLE = "assume-role"  # a role in our account, assumable only with the external id
    # A role in our account that IAM Roles Anywhere hands out, for an X.509 certificate issued
    # by the partner's own certificate authority: no long-lived secret anywhere.
    ROLES_ANYWHERE = "roles-anywhere"


class Direction(enum.StrEnum):
    INBOUND = "inbound"  # partner writes under inbound/, we read
    OUTBOUND = "outbound"  # we write under outbound/, partner reads

    @property
    def prefix(self) -> str:
        return naming.INBOUND_PREFIX if self is Direction.INBOUND else naming.OUTBOUND_PREFIX
