"""Synthesized CloudFormation templates made concrete: every token resolved to a literal.

A template names its own resources through intrinsic functions (``Ref``, ``Fn::GetAtt``,
``Fn::Join``, ``Fn::Sub``, ``Fn::Select``, ``Fn::Split``) and pseudo parameters. An IAM
evaluator needs literal ARNs, so this module plays CloudFormation's part for one fixed
environment (account ``123456789012``, region ``us-east-1``, partition ``aws``): it derives
each resource's physical name and ARN the way the service would (from its name property, or a
deterministic stand-in where the service generates one, such as a KMS key id), and replaces
every token. Anything it cannot resolve raises :class:`UnresolvableToken` rather than guessing.

It then gathers the policies an evaluation needs: bucket and key policies, role trust
policies, and each IAM user's and role's identity policies (its own and its groups', managed
and inline).
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"

PSEUDO_PARAMETERS: dict[str, Any] = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": PARTITION,
    "AWS::URLSuffix": URL_SUFFIX,
    "AWS::NoValue": None,  # dropped from the enclosing object or list by _Resolver.value
    "AWS::NotificationARNs": [],
}


class UnresolvableToken(Exception):
    """A token this resolver does not model (an import, a condition, an unknown attribute)."""


def _digest(*parts: str, length: int = 12) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def _uuid(*parts: str) -> str:
    return str(uuid.UUID(hashlib.sha256("/".join(parts).encode()).hexdigest()[:32]))


@dataclass
class ResolvedTemplate:
    """One stack's template with every token in ``Resources`` replaced by a literal."""

    stack_name: str
    resources: dict[str, dict[str, Any]]
    attributes: dict[str, dict[str, Any]]  # logical id -> {"Ref": ..., "Arn": ..., ...}

    def of_type(self, resource_type: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(logical id, resolved properties) of every resource of ``resource_type``."""
        for logical_id, resource in self.resources.items():
            if resource.get("Type") == resource_type:
                yield logical_id, resource.get("Properties", {})


def resolve_template(template: Mapping[str, Any], stack_name: str) -> ResolvedTemplate:
    """Resolve every token in ``template["Resources"]`` for the fixed environment."""
    resolver = _Resolver(template, stack_name)
    resources = {
        logical_id: {
            "Type": resource["Type"],
            "Properties": resolver.value(resource.get("Properties", {})),
        }
        for logical_id, resource in template.get("Resources", {}).items()
    }
    attributes = {logical_id: resolver.attributes(logical_id) for logical_id in resources}
    return ResolvedTemplate(stack_name=stack_name, resources=resources, attributes=attributes)


def _is_no_value(node: Any) -> bool:
    return isinstance(node, dict) and node == {"Ref": "AWS::NoValue"}


class _Resolver:
    def __init__(self, template: Mapping[str, Any], stack_name: str) -> None:
        self._resources: Mapping[str, Any] = template.get("Resources", {})
        self._parameters: Mapping[str, Any] = template.get("Parameters", {})
        self._stack = stack_name
        self._attributes: dict[str, dict[str, Any]] = {}
        self._in_progress: set[str] = set()

    # --- values ---------------------------------------------------------------------------

    def value(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.value(item) for item in node if not _is_no_value(item)]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            ((name, argument),) = node.items()
            if name == "Ref":
                return self._ref(argument)
            if name.startswith("Fn::"):
                return self._function(name, argument)
        return {key: self.value(item) for key, item in node.items() if not _is_no_value(item)}

    def _ref(self, name: str) -> Any:
        if name in PSEUDO_PARAMETERS:
            return PSEUDO_PARAMETERS[name]
        if name in self._resources:
            return self.attributes(name)["Ref"]
        if name in self._parameters and "Default" in self._parameters[name]:
            return self._parameters[name]["Default"]
        raise UnresolvableToken(f"{self._stack}: Ref to unknown name {name!r}")

    def _function(self, name: str, argument: Any) -> Any:
        if name == "Fn::GetAtt":
            logical_id, attribute = (
                argument.split(".", 1) if isinstance(argument, str) else argument
            )
            attributes = self.attributes(logical_id)
            if attribute not in attributes:
                raise UnresolvableToken(
                    f"{self._stack}: Fn::GetAtt {logical_id}.{attribute}: attribute not modelled "
                    f"for {self._resources[logical_id]['Type']}"
                )
            return attributes[attribute]
        if name == "Fn::Join":
            separator, items = argument
            return separator.join(str(self.value(item)) for item in self.value(items))
        if name == "Fn::Sub":
            return self._sub(argument)
        if name == "Fn::Select":
            index, items = argument
            return self.value(items)[int(self.value(index))]
        if name == "Fn::Split":
            separator, text = argument
            return str(self.value(text)).split(separator)
        raise UnresolvableToken(f"{self._stack}: {name} is not modelled")

    def _sub(self, argument: Any) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        values = {key: self.value(item) for key, item in variables.items()}

        def replace(match: re.Match[str]) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"
            if expression in values:
                return str(values[expression])
            if "." in expression and expression.split(".", 1)[0] in self._resources:
                return str(self._function("Fn::GetAtt", expression))
            return str(self._ref(expression))

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    # --- physical names and attributes ----------------------------------------------------

    def attributes(self, logical_id: str) -> dict[str, Any]:
        if logical_id in self._attributes:
            return self._attributes[logical_id]
        if logical_id not in self._resources:
            raise UnresolvableToken(f"{self._stack}: no resource {logical_id!r}")
        if logical_id in self._in_progress:
            raise UnresolvableToken(f"{self._stack}: {logical_id} refers to itself")
        self._in_progress.add(logical_id)
        try:
            resource = self._resources[logical_id]
            properties = resource.get("Properties", {})
            self._attributes[logical_id] = self._physical(logical_id, resource["Type"],
                                                          properties)
        finally:
            self._in_progress.discard(logical_id)
        return self._attributes[logical_id]

    def _name(self, properties: Mapping[str, Any], key: str, logical_id: str,
              *, lower: bool = False, max_len: int = 64) -> str:
        """The name property if set, else CloudFormation's ``<stack>-<logical id>-<suffix>``."""
        if key in properties:
            return str(self.value(properties[key]))
        generated = f"{self._stack}-{logical_id}"[: max_len - 13] + "-" + _digest(
            self._stack, logical_id).upper()
        return generated.lower() if lower else generated

    def _physical(self, logical_id: str, resource_type: str,
                  properties: Mapping[str, Any]) -> dict[str, Any]:
        arn = f"arn:{PARTITION}"
        where = f"{REGION}:{ACCOUNT}"
        if resource_type == "AWS::S3::Bucket":
            name = self._name(properties, "BucketName", logical_id, lower=True, max_len=63)
            return {"Ref": name, "Arn": f"{arn}:s3:::{name}",
                    "DomainName": f"{name}.s3.{URL_SUFFIX}",
                    "RegionalDomainName": f"{name}.s3.{REGION}.{URL_SUFFIX}"}
        if resource_type == "AWS::KMS::Key":
            key_id = _uuid(self._stack, logical_id)
            return {"Ref": key_id, "KeyId": key_id, "Arn": f"{arn}:kms:{where}:key/{key_id}"}
        if resource_type == "AWS::KMS::Alias":
            name = str(self.value(properties["AliasName"]))
            return {"Ref": name, "Arn": f"{arn}:kms:{where}:{name}"}
        if resource_type in ("AWS::IAM::Role", "AWS::IAM::User", "AWS::IAM::Group"):
            kind = resource_type.rsplit("::", 1)[1].lower()
            name = self._name(properties, f"{kind.capitalize()}Name", logical_id)
            path = str(self.value(properties.get("Path", "/")))
            attributes = {"Ref": name, "Arn": f"{arn}:iam::{ACCOUNT}:{kind}{path}{name}"}
            if kind == "role":
                attributes["RoleId"] = "AROA" + _digest(self._stack, logical_id, length=17).upper()
            return attributes
        if resource_type == "AWS::IAM::ManagedPolicy":
            name = self._name(properties, "ManagedPolicyName", logical_id)
            path = str(self.value(properties.get("Path", "/")))
            policy_arn = f"{arn}:iam::{ACCOUNT}:policy{path}{name}"
            return {"Ref": policy_arn, "PolicyArn": policy_arn}
        if resource_type == "AWS::IAM::Policy":
            return {"Ref": self._name(properties, "PolicyName", logical_id)}
        if resource_type == "AWS::IAM::AccessKey":
            return {"Ref": "AKIA" + _digest(self._stack, logical_id, length=16).upper(),
                    "SecretAccessKey": "(secret access key)"}
        if resource_type == "AWS::SecretsManager::Secret":
            name = self._name(properties, "Name", logical_id)
            secret_arn = (f"{arn}:secretsmanager:{where}:secret:{name}-"
                          + _digest(self._stack, logical_id, length=6))
            return {"Ref": secret_arn, "Id": secret_arn}
        if resource_type == "AWS::SNS::Topic":
            name = self._name(properties, "TopicName", logical_id)
            topic_arn = f"{arn}:sns:{where}:{name}"
            return {"Ref": topic_arn, "TopicArn": topic_arn, "TopicName": name}
        if resource_type == "AWS::SQS::Queue":
            name = self._name(properties, "QueueName", logical_id, max_len=80)
            return {"Ref": f"https://sqs.{REGION}.{URL_SUFFIX}/{ACCOUNT}/{name}",
                    "Arn": f"{arn}:sqs:{where}:{name}", "QueueName": name}
        if resource_type == "AWS::Lambda::Function":
            name = self._name(properties, "FunctionName", logical_id)
            return {"Ref": name, "Arn": f"{arn}:lambda:{where}:function:{name}"}
        if resource_type == "AWS::Logs::LogGroup":
            name = self._name(properties, "LogGroupName", logical_id, max_len=512)
            return {"Ref": name, "Arn": f"{arn}:logs:{where}:log-group:{name}:*"}
        if resource_type == "AWS::Events::Rule":
            name = self._name(properties, "Name", logical_id)
            return {"Ref": name, "Arn": f"{arn}:events:{where}:rule/{name}"}
        if resource_type == "AWS::CloudTrail::Trail":
            name = self._name(properties, "TrailName", logical_id)
            return {"Ref": name, "Arn": f"{arn}:cloudtrail:{where}:trail/{name}"}
        if resource_type == "AWS::CloudWatch::Alarm":
            name = self._name(properties, "AlarmName", logical_id)
            return {"Ref": name, "Arn": f"{arn}:cloudwatch:{where}:alarm:{name}"}
        if resource_type in ("AWS::RolesAnywhere::TrustAnchor", "AWS::RolesAnywhere::Profile"):
            kind = resource_type.rsplit("::", 1)[1]  # TrustAnchor, Profile
            resource_id = _uuid(self._stack, logical_id)
            path = "trust-anchor" if kind == "TrustAnchor" else "profile"
            # Ref is the id, as CloudFormation returns it; names are not unique, ids are.
            return {"Ref": resource_id, f"{kind}Id": resource_id,
                    f"{kind}Arn": f"{arn}:rolesanywhere:{where}:{path}/{resource_id}",
                    "Name": str(self.value(properties.get("Name", logical_id)))}
        if resource_type == "AWS::CodeBuild::Project":  # the pipeline's (stacks/pipeline_stack)
            name = self._name(properties, "Name", logical_id, max_len=150)
            return {"Ref": name, "Arn": f"{arn}:codebuild:{where}:project/{name}"}
        if resource_type == "AWS::CodePipeline::Pipeline":
            name = self._name(properties, "Name", logical_id, max_len=100)
            return {"Ref": name}
        # Resources nobody names in a policy (bucket policies, subscriptions, permissions...):
        # an opaque physical id is enough, and any attribute asked of them fails loudly.
        return {"Ref": f"{logical_id}-{_digest(self._stack, logical_id, length=8)}"}


# --- policies -------------------------------------------------------------------------------


@dataclass(frozen=True)
class NamedPolicy:
    """A policy document and where it comes from (for reports)."""

    name: str
    document: dict[str, Any]


@dataclass
class StackPolicies:
    """The policies of one resolved template, indexed the way an evaluation looks them up."""

    stack_name: str
    bucket_policies: dict[str, NamedPolicy] = field(default_factory=dict)  # bucket name ->
    key_policies: dict[str, NamedPolicy] = field(default_factory=dict)  # key ARN ->
    key_aliases: dict[str, str] = field(default_factory=dict)  # alias name -> key ARN
    trust_policies: dict[str, NamedPolicy] = field(default_factory=dict)  # role ARN ->
    identity_policies: dict[str, list[NamedPolicy]] = field(default_factory=dict)  # user/role ARN
    role_names: dict[str, str] = field(default_factory=dict)  # role name -> role ARN
    user_names: dict[str, str] = field(default_factory=dict)  # user name -> user ARN
    secrets: dict[str, str] = field(default_factory=dict)  # secret name -> secret ARN
    secret_policies: dict[str, NamedPolicy] = field(default_factory=dict)  # secret ARN ->
    function_roles: dict[str, str] = field(default_factory=dict)  # function name -> role ARN
    functions: dict[str, str] = field(default_factory=dict)  # function name -> function ARN
    # function ARN -> its resource policy, assembled from AWS::Lambda::Permission resources
    function_policies: dict[str, NamedPolicy] = field(default_factory=dict)
    queues: dict[str, str] = field(default_factory=dict)  # queue name -> queue ARN
    queue_policies: dict[str, NamedPolicy] = field(default_factory=dict)  # queue ARN ->
    topics: dict[str, str] = field(default_factory=dict)  # topic name -> topic ARN
    topic_policies: dict[str, NamedPolicy] = field(default_factory=dict)  # topic ARN ->
    log_groups: dict[str, str] = field(default_factory=dict)  # log group name -> ARN (no :*)
    trails: dict[str, str] = field(default_factory=dict)  # trail name -> trail ARN
    alarms: dict[str, str] = field(default_factory=dict)  # alarm name -> alarm ARN
    rules: dict[str, str] = field(default_factory=dict)  # event rule name -> rule ARN
    trust_anchors: dict[str, str] = field(default_factory=dict)  # name -> trust anchor ARN
    buckets: dict[str, str] = field(default_factory=dict)  # bucket name -> bucket ARN

    def documents(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """(kind, name, document) of every policy document in the stack, each once."""
        for policy in self.bucket_policies.values():
            yield "resource", policy.name, policy.document
        for policy in self.key_policies.values():
            yield "resource", policy.name, policy.document
        for policy in self.trust_policies.values():
            yield "trust", policy.name, policy.document
        for by_resource in (self.secret_policies, self.queue_policies, self.topic_policies,
                            self.function_policies):
            for policy in by_resource.values():
                yield "resource", policy.name, policy.document
        seen: set[str] = set()
        for policies in self.identity_policies.values():
            for policy in policies:
                if policy.name not in seen:
                    seen.add(policy.name)
                    yield "identity", policy.name, policy.document


# AWS managed policies our templates attach, written out (the evaluator cannot fetch them).
AWS_MANAGED_POLICIES: dict[str, dict[str, Any]] = {
    f"arn:{PARTITION}:iam::aws:policy/AdministratorAccess": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]},
}


class UnknownPolicy(Exception):
    """An identity attaches a policy the template does not contain (e.g. an AWS managed
    policy): its content, and so the identity's permissions, cannot be evaluated offline."""


def collect_policies(resolved: ResolvedTemplate) -> StackPolicies:
    """Index every policy of a resolved template."""
    stack = resolved.stack_name
    result = StackPolicies(stack_name=stack)
    attrs = resolved.attributes

    managed: dict[str, NamedPolicy] = {}  # policy ARN ->
    attached: dict[tuple[str, str], list[NamedPolicy]] = {}  # (kind, name) -> policies
    for logical_id, props in resolved.of_type("AWS::IAM::ManagedPolicy"):
        policy = NamedPolicy(f"{stack}/{logical_id}", props["PolicyDocument"])
        managed[attrs[logical_id]["Ref"]] = policy
        for kind, key in (("group", "Groups"), ("role", "Roles"), ("user", "Users")):
            for name in props.get(key, []):
                attached.setdefault((kind, name), []).append(policy)
    for logical_id, props in resolved.of_type("AWS::IAM::Policy"):
        policy = NamedPolicy(f"{stack}/{logical_id}", props["PolicyDocument"])
        for kind, key in (("group", "Groups"), ("role", "Roles"), ("user", "Users")):
            for name in props.get(key, []):
                attached.setdefault((kind, name), []).append(policy)

    def own_policies(logical_id: str, kind: str, props: Mapping[str, Any]) -> list[NamedPolicy]:
        name = attrs[logical_id]["Ref"]
        policies = list(attached.get((kind, name), []))
        for policy_arn in props.get("ManagedPolicyArns", []):
            if policy_arn in AWS_MANAGED_POLICIES:
                policies.append(NamedPolicy(policy_arn, AWS_MANAGED_POLICIES[policy_arn]))
                continue
            if policy_arn not in managed:
                raise UnknownPolicy(f"{stack}: {kind} {name} attaches {policy_arn}, which is "
                                    "not in the template")
            policies.append(managed[policy_arn])
        for inline in props.get("Policies", []):
            policies.append(NamedPolicy(f"{stack}/{logical_id}/{inline['PolicyName']}",
                                        inline["PolicyDocument"]))
        return policies

    groups = {attrs[lid]["Ref"]: own_policies(lid, "group", props)
              for lid, props in resolved.of_type("AWS::IAM::Group")}
    memberships: dict[str, list[str]] = {}
    for _, props in resolved.of_type("AWS::IAM::UserToGroupAddition"):
        for user in props.get("Users", []):
            memberships.setdefault(user, []).append(props["GroupName"])
    for logical_id, props in resolved.of_type("AWS::IAM::User"):
        name = attrs[logical_id]["Ref"]
        policies = own_policies(logical_id, "user", props)
        for group in [*props.get("Groups", []), *memberships.get(name, [])]:
            if group not in groups:
                raise UnknownPolicy(f"{stack}: user {name} is in group {group}, which is not "
                                    "in the template")
            policies.extend(groups[group])
        result.identity_policies[attrs[logical_id]["Arn"]] = policies
        result.user_names[name] = attrs[logical_id]["Arn"]
    for logical_id, props in resolved.of_type("AWS::IAM::Role"):
        role_arn = attrs[logical_id]["Arn"]
        result.identity_policies[role_arn] = own_policies(logical_id, "role", props)
        result.trust_policies[role_arn] = NamedPolicy(f"{stack}/{logical_id}/trust",
                                                      props["AssumeRolePolicyDocument"])
        result.role_names[attrs[logical_id]["Ref"]] = role_arn

    for logical_id, props in resolved.of_type("AWS::S3::BucketPolicy"):
        result.bucket_policies[props["Bucket"]] = NamedPolicy(f"{stack}/{logical_id}",
                                                              props["PolicyDocument"])
    for logical_id, props in resolved.of_type("AWS::KMS::Key"):
        result.key_policies[attrs[logical_id]["Arn"]] = NamedPolicy(f"{stack}/{logical_id}",
                                                                    props["KeyPolicy"])
    for _, props in resolved.of_type("AWS::KMS::Alias"):
        result.key_aliases[props["AliasName"]] = props["TargetKeyId"]
    for logical_id, props in resolved.of_type("AWS::SecretsManager::Secret"):
        result.secrets[str(props.get("Name", logical_id))] = attrs[logical_id]["Ref"]
    for logical_id, props in resolved.of_type("AWS::SecretsManager::ResourcePolicy"):
        result.secret_policies[props["SecretId"]] = NamedPolicy(f"{stack}/{logical_id}",
                                                                props["ResourcePolicy"])
    for logical_id, props in resolved.of_type("AWS::Lambda::Function"):
        result.function_roles[attrs[logical_id]["Ref"]] = props["Role"]
        result.functions[attrs[logical_id]["Ref"]] = attrs[logical_id]["Arn"]
    _function_policies(resolved, result)
    queue_urls = {}
    for logical_id, _ in resolved.of_type("AWS::SQS::Queue"):
        result.queues[attrs[logical_id]["QueueName"]] = attrs[logical_id]["Arn"]
        queue_urls[attrs[logical_id]["Ref"]] = attrs[logical_id]["Arn"]
    for logical_id, props in resolved.of_type("AWS::SQS::QueuePolicy"):
        for url in props["Queues"]:
            result.queue_policies[queue_urls[url]] = NamedPolicy(f"{stack}/{logical_id}",
                                                                 props["PolicyDocument"])
    for logical_id, _ in resolved.of_type("AWS::SNS::Topic"):
        result.topics[attrs[logical_id]["TopicName"]] = attrs[logical_id]["TopicArn"]
    for logical_id, props in resolved.of_type("AWS::SNS::TopicPolicy"):
        for topic_arn in props["Topics"]:
            result.topic_policies[topic_arn] = NamedPolicy(f"{stack}/{logical_id}",
                                                           props["PolicyDocument"])
    for logical_id, _ in resolved.of_type("AWS::Logs::LogGroup"):
        result.log_groups[attrs[logical_id]["Ref"]] = attrs[logical_id]["Arn"].removesuffix(":*")
    for resource_type, index in (("AWS::CloudTrail::Trail", result.trails),
                                 ("AWS::CloudWatch::Alarm", result.alarms),
                                 ("AWS::Events::Rule", result.rules),
                                 ("AWS::S3::Bucket", result.buckets)):
        for logical_id, _ in resolved.of_type(resource_type):
            index[attrs[logical_id]["Ref"]] = attrs[logical_id]["Arn"]
    for logical_id, _ in resolved.of_type("AWS::RolesAnywhere::TrustAnchor"):
        result.trust_anchors[attrs[logical_id]["Name"]] = attrs[logical_id]["TrustAnchorArn"]
    return result


def _function_policies(resolved: ResolvedTemplate, result: StackPolicies) -> None:
    """A function's resource policy as Lambda builds it from each ``AddPermission`` (one
    statement per ``AWS::Lambda::Permission``, conditions from SourceAccount and SourceArn)."""
    by_name = {name: arn for name, arn in result.functions.items()}
    by_arn = set(by_name.values())
    for logical_id, props in resolved.of_type("AWS::Lambda::Permission"):
        function = str(props["FunctionName"])
        function_arn = function if function in by_arn else by_name.get(function)
        if function_arn is None:
            raise UnresolvableToken(f"{resolved.stack_name}: {logical_id} names a function "
                                    f"outside the template ({function})")
        principal = str(props["Principal"])
        condition: dict[str, dict[str, str]] = {}
        if "SourceAccount" in props:
            condition["StringEquals"] = {"AWS:SourceAccount": str(props["SourceAccount"])}
        if "SourceArn" in props:
            condition["ArnLike"] = {"AWS:SourceArn": str(props["SourceArn"])}
        statement: dict[str, Any] = {
            "Sid": logical_id,
            "Effect": "Allow",
            "Principal": ({"Service": principal} if principal.endswith(".amazonaws.com")
                          else {"AWS": principal}),
            "Action": props["Action"],
            "Resource": function_arn,
        }
        if condition:
            statement["Condition"] = condition
        existing = result.function_policies.get(function_arn)
        statements = [*existing.document["Statement"], statement] if existing else [statement]
        result.function_policies[function_arn] = NamedPolicy(
            f"{resolved.stack_name}/{function_arn.rsplit(':', 1)[-1]}/resource-policy",
            {"Version": "2012-10-17", "Statement": statements})


def unresolved_tokens(node: Any) -> list[str]:
    """Every intrinsic function left in ``node`` (empty once resolution succeeded)."""
    found: list[str] = []
    if isinstance(node, dict):
        if len(node) == 1 and next(iter(node)) in ("Ref", "Fn::GetAtt", "Fn::Join", "Fn::Sub",
                                                   "Fn::Select", "Fn::Split", "Fn::ImportValue"):
            found.append(json.dumps(node)[:120])
        for item in node.values():
            found.extend(unresolved_tokens(item))
    elif isinstance(node, list):
        for item in node:
            found.extend(unresolved_tokens(item))
    return found
