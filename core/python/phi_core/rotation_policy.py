"""What the rotation function's role may do: exactly the calls its code makes and the runtime
makes for it, on one customer's resources. The stack wraps these statements into the role's
one managed policy; the access matrix proves the template gives the role no more and no less
than the handler's code needs (security/role_calls.py reads the calls from the code).
"""

from __future__ import annotations

from typing import Any

# Services that use the customer key for the function: the secret, the notices topic, the
# dead-letter queue, and Lambda decrypting its environment. Never the key directly.
KEY_SERVICES = ("secretsmanager", "sns", "sqs", "lambda")


def rotation_role_statements(*, user_arn: str, secret_arn: str, key_arn: str, topic_arn: str,
                             dead_letter_queue_arn: str, log_group_arn: str, region: str,
                             url_suffix: str) -> list[dict[str, Any]]:
    """The rotation function's grants: the partner's user's access keys, the partner secret,
    the key through the services above, the notices topic, the dead-letter queue, its logs."""
    return [
        {"Sid": "ManagePartnerAccessKeys", "Effect": "Allow",
         "Action": ["iam:ListAccessKeys", "iam:CreateAccessKey", "iam:UpdateAccessKey",
                    "iam:DeleteAccessKey", "iam:GetAccessKeyLastUsed"],
         "Resource": user_arn},
        {"Sid": "RotatePartnerSecret", "Effect": "Allow",
         "Action": ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue",
                    "secretsmanager:ListSecretVersionIds", "secretsmanager:PutSecretValue",
                    "secretsmanager:UpdateSecretVersionStage"],
         "Resource": secret_arn},
        {"Sid": "UseCustomerKeyForSecretTopicAndQueue", "Effect": "Allow",
         "Action": ["kms:Decrypt", "kms:GenerateDataKey"], "Resource": key_arn,
         "Condition": {"StringEquals": {"kms:ViaService": [
             f"{service}.{region}.{url_suffix}" for service in KEY_SERVICES]}}},
        {"Sid": "PublishNotices", "Effect": "Allow", "Action": "sns:Publish",
         "Resource": topic_arn},
        {"Sid": "SendToDeadLetterQueue", "Effect": "Allow", "Action": "sqs:SendMessage",
         "Resource": dead_letter_queue_arn},
        {"Sid": "WriteOwnLogs", "Effect": "Allow",
         "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": log_group_arn},
    ]
