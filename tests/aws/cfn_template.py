"""A synthesized CloudFormation template with its intrinsic functions resolved to the concrete
values one deployment would give them (fixed account, region and physical names), so that its
IAM policies, Lambda environment and pipeline definition can be read as AWS will see them.

Physical names follow CloudFormation's scheme for unnamed resources (`<stack>-<logical
id>-<suffix>`, lower case for buckets); a resource type whose Ref or attributes are not known
here raises `Unresolvable` rather than yield something made up.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"
PARTITION = "aws"
KMS_KEY_ID = "1a2b3c4d-5e6f-7a8b-9c0d-1e2f3a4b5c6d"


class Unresolvable(ValueError):
    """An intrinsic function or resource attribute this resolver does not know."""


def fn_sub(text: str, variables: Mapping[str, str]) -> str:
    """CloudFormation's Fn::Sub on one string: `${Name}` from `variables`, `${!x}` -> `${x}`."""

    def substitute(match: re.Match) -> str:
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        if name not in variables:
            raise Unresolvable(f"Fn::Sub variable ${{{name}}} has no value")
        return variables[name]

    return re.sub(r"\$\{([^}]+)\}", substitute, text)


class ResolvedTemplate:
    def __init__(
        self,
        template: Mapping[str, Any],
        stack_name: str,
        region: str = REGION,
        account: str = ACCOUNT,
    ) -> None:
        self.template = template
        self.resources: Mapping[str, Any] = template["Resources"]
        self.stack_name = stack_name
        self.region = region
        self.account = account
        self.pseudo = {
            "AWS::Partition": PARTITION,
            "AWS::Region": region,
            "AWS::AccountId": account,
            "AWS::StackName": stack_name,
            "AWS::URLSuffix": "amazonaws.com",
        }

    # --- lookups -----------------------------------------------------------------------------

    def logical_id(self, prefix: str, kind: str | None = None) -> str:
        """The one resource named `prefix` plus CDK's 8-hex-digit hash (of `kind`, if given)."""
        found = [
            name
            for name, resource in self.resources.items()
            if re.fullmatch(re.escape(prefix) + "[0-9A-F]{8}", name)
            and (kind is None or resource["Type"] == kind)
        ]
        if len(found) != 1:
            raise LookupError(f"expected one resource {prefix}<hash>, found {found}")
        return found[0]

    def properties(self, logical_id: str) -> Mapping[str, Any]:
        return self.resources[logical_id].get("Properties", {})

    def role_statements(self, role_logical_id: str) -> list[dict]:
        """Every identity-policy statement of the role, resolved: its inline policies and
        each AWS::IAM::Policy attached to it. Managed policies cannot be read here: a role
        with any raises."""
        role = self.properties(role_logical_id)
        if role.get("ManagedPolicyArns") or role.get("PermissionsBoundary"):
            raise Unresolvable(f"{role_logical_id} has managed policies or a boundary")
        documents = [p["PolicyDocument"] for p in role.get("Policies", [])]
        for resource in self.resources.values():
            if resource["Type"] == "AWS::IAM::Policy":
                props = resource["Properties"]
                if {"Ref": role_logical_id} in props.get("Roles", []):
                    documents.append(props["PolicyDocument"])
        return [
            statement
            for document in self.resolve(documents)
            for statement in _listed(document["Statement"])
        ]

    # --- resolution --------------------------------------------------------------------------

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.resolve(item) for item in node]
        if not isinstance(node, Mapping):
            return node
        if len(node) == 1:
            ((key, arg),) = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.attribute(logical, attribute)
            if key == "Fn::Join":
                separator, values = arg
                return separator.join(str(v) for v in self.resolve(values))
            if key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                return self._sub(text, self.resolve(variables))
            if key == "Fn::Select":
                index, values = arg
                return self.resolve(values)[int(self.resolve(index))]
            if key == "Fn::Split":
                separator, text = arg
                return self.resolve(text).split(separator)
            if key.startswith("Fn::"):
                raise Unresolvable(f"intrinsic {key} is not resolved here")
        return {k: self.resolve(v) for k, v in node.items()}

    def _sub(self, text: str, variables: Mapping[str, str]) -> str:
        names = set(re.findall(r"\$\{([^}!]+)\}", text))
        values = dict(variables)
        for name in names - set(values):
            if name in self.pseudo:
                values[name] = self.pseudo[name]
            elif "." in name:
                values[name] = self.attribute(*name.split(".", 1))
            else:
                values[name] = self.ref(name)
        return fn_sub(text, values)

    def ref(self, name: str) -> str:
        if name in self.pseudo:
            return self.pseudo[name]
        resource = self.resources.get(name)
        if resource is None:
            raise Unresolvable(f"Ref to {name!r}, which is neither a resource nor pseudo")
        kind, props = resource["Type"], resource.get("Properties", {})
        named = {
            "AWS::S3::Bucket": "BucketName",
            "AWS::IAM::Role": "RoleName",
            "AWS::Lambda::Function": "FunctionName",
            "AWS::Logs::LogGroup": "LogGroupName",
            "AWS::CloudWatch::Alarm": "AlarmName",
            "AWS::SageMaker::Pipeline": "PipelineName",
        }
        if kind in named:
            return props.get(named[kind]) or self._generated_name(name, kind)
        if kind == "AWS::KMS::Key":
            return KMS_KEY_ID
        if kind == "AWS::SQS::Queue":
            return f"https://sqs.{self.region}.amazonaws.com/{self.account}/{self._queue(name)}"
        if kind == "AWS::SageMaker::ModelPackageGroup":
            return self.attribute(name, "ModelPackageGroupArn")
        if kind == "AWS::SNS::Topic":
            topic = props.get("TopicName") or self._generated_name(name, kind)
            return f"arn:aws:sns:{self.region}:{self.account}:{topic}"
        if kind == "AWS::IAM::ManagedPolicy":
            policy = props.get("ManagedPolicyName") or self._generated_name(name, kind)
            return f"arn:aws:iam::{self.account}:policy/{policy}"
        raise Unresolvable(f"Ref of a {kind} ({name})")

    def attribute(self, name: str, attribute: str) -> str:
        kind = self.resources[name]["Type"]
        region, account = self.region, self.account
        arns = {
            "AWS::S3::Bucket": lambda: f"arn:aws:s3:::{self.ref(name)}",
            "AWS::IAM::Role": lambda: f"arn:aws:iam::{account}:role/{self.ref(name)}",
            "AWS::KMS::Key": lambda: f"arn:aws:kms:{region}:{account}:key/{KMS_KEY_ID}",
            "AWS::Lambda::Function": lambda: (
                f"arn:aws:lambda:{region}:{account}:function:{self.ref(name)}"
            ),
            "AWS::Logs::LogGroup": lambda: (
                f"arn:aws:logs:{region}:{account}:log-group:{self.ref(name)}:*"
            ),
            "AWS::CloudWatch::Alarm": lambda: (
                f"arn:aws:cloudwatch:{region}:{account}:alarm:{self.ref(name)}"
            ),
            "AWS::SQS::Queue": lambda: f"arn:aws:sqs:{region}:{account}:{self._queue(name)}",
        }
        if attribute == "Arn" and kind in arns:
            return arns[kind]()
        if kind == "AWS::SQS::Queue" and attribute == "QueueName":
            return self._queue(name)
        if kind == "AWS::SageMaker::ModelPackageGroup" and attribute == "ModelPackageGroupArn":
            group = self.properties(name)["ModelPackageGroupName"]
            return f"arn:aws:sagemaker:{region}:{account}:model-package-group/{group}"
        raise Unresolvable(f"Fn::GetAtt {name}.{attribute} of a {kind}")

    def _queue(self, name: str) -> str:
        return self.properties(name).get("QueueName") or self._generated_name(name, "")

    def _generated_name(self, logical_id: str, kind: str) -> str:
        if kind == "AWS::S3::Bucket":
            return f"{self.stack_name}-{logical_id}-1a2b3c4d5e6f".lower()[:63]
        return f"{self.stack_name}-{logical_id[:30]}-AbC1dE2fG3hI"


def _listed(value: Any) -> list:
    return value if isinstance(value, list) else [value]
