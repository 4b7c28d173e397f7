"""The people of our own account in the local run, and the account roles they assume.

The access stack (``PhiExchange-access``) defines the roles that work with PHI; a principal
of our account may assume one only if it carries the role's principal tag
(``phi-exchange:importer = true``, ...; :func:`phi_core.account_roles.trust_conditions`).
The local run creates one IAM user per role it uses, tagged as whoever manages IAM would tag
the person, with an identity policy that allows ``sts:AssumeRole`` of *any* role (as
PowerUserAccess does: the trust policy's tag condition is what decides), and one untagged
user with the same policy, whom every role's trust must refuse.

Keys are issued with the emulator's permission checks off (IAM administration) and never
written to disk; sessions are obtained with checks on, so the emulator evaluates the trust
policy with ``aws:PrincipalTag`` (localaws.permissions).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from localaws.server import ACCOUNT_ID
from localrun.context import Credentials, LocalRun, denied
from phi_core import account_roles, naming

# Who the run acts as, and the role each one assumes.
DEPLOYER = "localrun-deployer"
IMPORTER = "localrun-importer"
OPERATOR = "localrun-operator"
UNTAGGED = "localrun-untagged"
ROLES = {DEPLOYER: naming.CDK_DEPLOY_ROLE_NAME, IMPORTER: naming.IMPORTER_ROLE_NAME,
         OPERATOR: naming.OPERATOR_ROLE_NAME}
ASSUME_ANY_ROLE = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}


class IdentityFailed(RuntimeError):
    pass


def role_tag(role_name: str) -> tuple[str, str]:
    """The principal tag (key, value) the role's trust policy asks for."""
    return account_roles.assume_tag(role_name).removeprefix("aws:PrincipalTag/"), "true"


def role_arn(role_name: str) -> str:
    return account_roles.role_arn(role_name, account=ACCOUNT_ID, partition="aws")


def create_people(run: LocalRun) -> list[str]:
    """The tagged users and the untagged one (checks off: IAM administration)."""
    iam = run.client("iam")
    for user in (*ROLES, UNTAGGED):
        tags = [dict(zip(("Key", "Value"), role_tag(ROLES[user]), strict=True))] \
            if user in ROLES else []
        try:
            iam.create_user(UserName=user, Tags=tags)
        except iam.exceptions.EntityAlreadyExistsException:
            continue
        iam.put_user_policy(UserName=user, PolicyName="assume-any-role",
                            PolicyDocument=json.dumps(ASSUME_ANY_ROLE))
    tagged = ", ".join(f"{user} ({role_tag(role)[0]} = true)" for user, role in ROLES.items())
    return [f"users of our account {tagged} and {UNTAGGED} (no tag), each allowed "
            "sts:AssumeRole of any role by its own identity policy (as PowerUserAccess is)"]


def user_key(run: LocalRun, user: str) -> Credentials:
    """A fresh access key of ``user`` (checks off); its earlier keys are deleted."""
    iam = run.client("iam")
    for old in iam.list_access_keys(UserName=user)["AccessKeyMetadata"]:
        iam.delete_access_key(UserName=user, AccessKeyId=old["AccessKeyId"])
    key = iam.create_access_key(UserName=user)["AccessKey"]
    return Credentials(key["AccessKeyId"], key["SecretAccessKey"])


def assume(run: LocalRun, key: Credentials, role_name: str, session_name: str) -> Credentials:
    """A session of our account role (call with checks on)."""
    answer = run.client("sts", key).assume_role(RoleArn=role_arn(role_name),
                                                RoleSessionName=session_name)
    return Credentials.from_sts(answer["Credentials"])


@dataclass(frozen=True)
class Session:
    user: str
    role_name: str
    credentials: Credentials

    @property
    def label(self) -> str:
        return (f"a session of {self.role_name}, assumed by {self.user} "
                f"({role_tag(self.role_name)[0]} = true)")


def session(run: LocalRun, user: str) -> Session:
    """``user``'s session of its role, made once per run (sessions last an hour). Call with
    checks off (a key is issued); the AssumeRole itself runs with checks on."""
    if user not in run.sessions:
        key = user_key(run, user)
        with run.permission_checks():
            credentials = assume(run, key, ROLES[user], user)
        run.sessions[user] = Session(user, ROLES[user], credentials)
    made: Session = run.sessions[user]
    return made


def untagged_refused(run: LocalRun, role_names: tuple[str, ...]) -> str:
    """The untagged user is refused AssumeRole of each role (checks on), for want of the tag."""
    key = user_key(run, UNTAGGED)
    sts = run.client("sts", key)
    with run.permission_checks():
        let_in = [name for name in role_names if not denied(
            lambda name=name: sts.assume_role(  # type: ignore[misc]
                RoleArn=role_arn(name), RoleSessionName=UNTAGGED))]
    if let_in:
        raise IdentityFailed(f"{UNTAGGED}, without the principal tag, could assume "
                             f"{', '.join(let_in)}")
    return (f"{UNTAGGED} (same identity policy, no tag) is refused AssumeRole of "
            f"{', '.join(role_names)}: the trust policies' aws:PrincipalTag condition is not "
            "met (AccessDenied)")


