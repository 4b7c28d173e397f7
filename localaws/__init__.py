"""localaws: a small, documented extension of moto that makes it a local AWS for this project.

It is test and demo tooling, kept apart from the product (stacks/, lambdas/, transfer/): nothing
in the product imports it. It exists because moto 5.2.5, run as a server, cannot deploy our
CDK template faithfully. Each gap and its fix lives in one module:

- :mod:`localaws.cfn_models` - CloudFormation resource types moto skips, breaks on, or only
  half applies (secrets, bucket policies, bucket settings, IAM groups, ...);
- :mod:`localaws.permissions` and :mod:`localaws.policy` - permission checks with request
  context (TLS, encryption headers, source address, caller of any account, role sessions,
  AssumeRole trust), instead of moto's context-free, single-account evaluation;
- :mod:`localaws.secrets` - ``GetSecretValue`` follows AWSCURRENT when a rotation moves it;
- :mod:`localaws.service_access` - what AWS services check when given our resources (a trail's
  bucket, key and logs role) before CloudFormation creates them;
- :mod:`localaws.events` - S3's EventBridge notifications (and any service event) delivered to
  queue targets as AWS does: the owner's account, S3's event, the input transformer, the
  queue and key policies;
- :mod:`localaws.malware_scan` - GuardDuty Malware Protection for S3: plans, and a stand-in
  scanner that reads and tags each new inbound version as the plan's role (EICAR is the only
  threat) and puts GuardDuty's scan-result event on the bus;
- :mod:`localaws.roles_anywhere` - IAM Roles Anywhere, which moto lacks: trust anchors and
  profiles from CloudFormation, and CreateSession (``POST /sessions``) checking the X.509
  signature, the certificate chain to the trust anchor, the profile and the role's trust
  policy with the certificate's attributes as principal tags, then a tagged role session;
  :mod:`localaws.x509_ca` is a throwaway CA to issue the certificates (tests, demo);
- :mod:`localaws.published` - what SNS was asked to publish, readable (nothing is sent);
- :mod:`localaws.cloudtrail` - the S3 data events of the requests served, delivered as the
  deployed trail's log files with signed digest files, and S3-format server access logs;
- :mod:`localaws.tls` - a throwaway CA and ``localhost`` certificate, because our buckets refuse
  plain HTTP;
- :mod:`localaws.server` - moto's server on localhost over TLS with all of the above.

Every fix depends on moto internals, so the extension is pinned to one moto version and refuses
to load with another: upgrading moto means re-reading each module's list of gaps against the new
release (some may be fixed upstream) and running ``tests/localaws``.
"""

from __future__ import annotations

MOTO_VERSION = "5.2.5"


class IncompatibleMotoError(ImportError):
    """The installed moto is not the version this extension was written against."""


def check_moto_version(found: str | None = None) -> None:
    """Raise :class:`IncompatibleMotoError` unless moto is exactly :data:`MOTO_VERSION`."""
    if found is None:
        try:
            import moto  # the package actually imported, not just some installed metadata
        except ImportError:
            found = None
        else:
            found = getattr(moto, "__version__", None)
    if found != MOTO_VERSION:
        raise IncompatibleMotoError(
            f"localaws extends moto {MOTO_VERSION} and patches its internals, but moto "
            f"{found or '(not installed)'} is installed. Install moto[server]=={MOTO_VERSION} "
            "(requirements-dev.txt), or port localaws to the new version: re-check each gap "
            "listed in localaws/cfn_models.py and localaws/permissions.py, then run tests/localaws."
        )


check_moto_version()


def install() -> None:
    """Apply every extension to moto in this process (idempotent). Call before serving."""
    from moto import settings

    from localaws import cfn_models, cloudtrail, events, malware_scan, permissions, secrets

    # AWS-managed policies exist in every real account, and the CDK bootstrap roles attach
    # some (ReadOnlyAccess); moto loads them only when asked. Backends created before this call
    # keep what they had, so call install() before the first request.
    settings.default_user_config.setdefault("iam", {})["load_aws_managed_policies"] = True
    cfn_models.register()
    permissions.install()
    secrets.install()
    events.install()
    malware_scan.install()
    cloudtrail.install()
