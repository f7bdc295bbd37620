"""Each function's IAM grants as template.yaml states them, and their comparison with measured calls.

The SAM policy templates the template uses expand as SAM expands them (the definitions below are
samtranslator's policy_templates.json, for the templates this stack uses); inline `Statement`
policies are taken as written. Resources resolve with logical ids as physical names (a table
`MachinesTable` is `arn:aws:dynamodb:us-east-1:123456789012:table/MachinesTable`), the form the
recorder (gpuproof.local.aws_calls) writes its calls in. Only what the function's code calls is
compared: event-source permissions SAM adds for its triggers (SQS receive, stream reads, X-Ray)
are not in `Policies` and are used by Lambda's pollers, not by the code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from gpuproof.local.aws_calls import Call
from gpuproof.local.template import (
    BUCKET,
    KMS_KEY,
    LOCAL_ACCOUNT,
    LOCAL_REGION,
    QUEUE,
    SECRET,
    TABLE,
    Physical,
    Resources,
    Template,
    resolve_parameters,
)

_TABLE_ARN = "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${tableName}"
_DDB_READ = (
    "dynamodb:GetItem",
    "dynamodb:Scan",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    "dynamodb:DescribeTable",
)
_DDB_CRUD = (
    "dynamodb:GetItem",
    "dynamodb:DeleteItem",
    "dynamodb:PutItem",
    "dynamodb:Scan",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:BatchGetItem",
    "dynamodb:DescribeTable",
    "dynamodb:ConditionCheckItem",
)


def _table_resources(param: str) -> list[Any]:
    return [
        {"Fn::Sub": [_TABLE_ARN, {"tableName": {"Ref": param}}]},
        {"Fn::Sub": [_TABLE_ARN + "/index/*", {"tableName": {"Ref": param}}]},
    ]


# name -> (its parameter, actions, resources with the parameter as a Ref); samtranslator's definitions.
SAM_POLICY_TEMPLATES: dict[str, tuple[str, tuple[str, ...], list[Any]]] = {
    "DynamoDBCrudPolicy": ("TableName", _DDB_CRUD, _table_resources("TableName")),
    "DynamoDBReadPolicy": ("TableName", _DDB_READ, _table_resources("TableName")),
    "SQSSendMessagePolicy": (
        "QueueName",
        ("sqs:SendMessage*",),
        [
            {
                "Fn::Sub": [
                    "arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${queueName}",
                    {"queueName": {"Ref": "QueueName"}},
                ]
            }
        ],
    ),
    "AWSSecretsManagerGetSecretValuePolicy": (
        "SecretArn",
        ("secretsmanager:GetSecretValue",),
        [{"Fn::Sub": ["${secretArn}", {"secretArn": {"Ref": "SecretArn"}}]}],
    ),
}
# A narrower template that would do, when every call a grant allows is one of its actions.
NARROWER = {"DynamoDBCrudPolicy": "DynamoDBReadPolicy"}


@dataclass(frozen=True)
class Grant:
    """One (actions x resources) permission of a function; `source` names where the template says it."""

    function: str
    source: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    policy_template: str | None = None

    def allows(self, action: str, resource: str) -> bool:
        return any(fnmatchcase(action, a) for a in self.actions) and any(
            fnmatchcase(resource, r) for r in self.resources
        )


def logical_resources(template: Template) -> Resources:
    """The template resolved with logical ids as physical names, in the recorder's ARN forms."""
    physical: dict[str, Physical] = {}
    for lid, res in template.resources.items():
        kind = res.get("Type")
        if kind == TABLE:
            arn = f"arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT}:table/{lid}"
            physical[lid] = Physical(lid, {"Arn": arn, "StreamArn": f"{arn}/stream/local"})
        elif kind == QUEUE:
            arn = f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{lid}"
            physical[lid] = Physical(lid, {"Arn": arn, "QueueName": lid, "QueueUrl": lid})
        elif kind == KMS_KEY:
            physical[lid] = Physical(lid, {"Arn": f"arn:aws:kms:{LOCAL_REGION}:{LOCAL_ACCOUNT}:key/{lid}"})
        elif kind == SECRET:
            physical[lid] = Physical(f"arn:aws:secretsmanager:{LOCAL_REGION}:{LOCAL_ACCOUNT}:secret:{lid}")
        elif kind == BUCKET:
            physical[lid] = Physical(lid, {"Arn": f"arn:aws:s3:::{lid}"})
        else:
            physical[lid] = Physical(lid, {"Arn": lid})
    return Resources(template, "logical", "http://unused", resolve_parameters(template), physical)


def _as_tuple(value: Any) -> tuple[str, ...]:
    return tuple(str(v) for v in value) if isinstance(value, list) else (str(value),)


def _bind(value: Any, param: str, target: Any) -> Any:
    """The policy template's `{"Ref": param}` replaced by what the function's policy passes."""
    if isinstance(value, list):
        return [_bind(v, param, target) for v in value]
    if isinstance(value, dict):
        if value == {"Ref": param}:
            return target
        return {k: _bind(v, param, target) for k, v in value.items()}
    return value


def _label(target: Any) -> str:
    if isinstance(target, dict) and "Ref" in target:
        return str(target["Ref"])
    if isinstance(target, dict) and "Fn::GetAtt" in target:
        att = target["Fn::GetAtt"]
        return str(att[0] if isinstance(att, list) else str(att).split(".", 1)[0])
    return str(target)


def grants(template: Template, function: str) -> list[Grant]:
    """Every permission `function`'s Policies give, one Grant per policy template or statement."""
    resources = logical_resources(template)
    out: list[Grant] = []
    for policy in template.properties(function).get("Policies", []):
        ((name, arg),) = policy.items()
        if name == "Statement":
            for n, st in enumerate(arg):
                if st.get("Effect") != "Allow":
                    raise ValueError(f"{function}: only Allow statements are compared, got {st}")
                resolved = resources.resolve(st["Resource"])
                out.append(
                    Grant(
                        function,
                        f"Statement {st.get('Sid', n)}",
                        _as_tuple(st["Action"]),
                        _as_tuple(resolved),
                    )
                )
            continue
        if name not in SAM_POLICY_TEMPLATES:
            raise ValueError(f"{function}: policy template {name} is not known to gpuproof.local.iam")
        param, actions, resource_values = SAM_POLICY_TEMPLATES[name]
        target = arg[param]
        bound = resources.resolve(_bind(resource_values, param, target))
        out.append(Grant(function, f"{name} {_label(target)}", actions, _as_tuple(bound), name))
    return out


@dataclass
class Comparison:
    not_granted: list[Call]
    unused: list[Grant]
    broader: list[tuple[Grant, str]]  # a grant whose calls a narrower template would allow

    @property
    def findings(self) -> list[str]:
        lines = [
            f"{c.function}: {c.action} on {c.resource} is called but not granted" for c in self.not_granted
        ]
        lines += [f"{g.function}: {g.source} is granted but never used" for g in self.unused]
        lines += [f"{g.function}: {g.source} is used only as {n} would allow" for g, n in self.broader]
        return lines


def compare(
    template: Template,
    calls: Iterable[Call],
    functions: Iterable[str],
    allowed_unused: Mapping[tuple[str, str], str] | None = None,
) -> Comparison:
    """Measured calls against the template's grants: calls not granted, grants never used,
    and table grants wider than the calls need. `allowed_unused`: (function, grant source) ->
    why a grant only an untested path needs stays."""
    allowed_unused = allowed_unused or {}
    calls = sorted(set(calls))
    result = Comparison([], [], [])
    for function in functions:
        own = [c for c in calls if c.function == function]
        granted = grants(template, function)
        result.not_granted += [c for c in own if not any(g.allows(c.action, c.resource) for g in granted)]
        for g in granted:
            if (function, g.source) in allowed_unused:
                continue
            used = [c for c in own if g.allows(c.action, c.resource)]
            if g.policy_template is None:
                # A hand-written statement: every action it lists, on its resources, is used.
                missing = [a for a in g.actions if not any(fnmatchcase(c.action, a) for c in used)]
                if missing:
                    result.unused.append(
                        Grant(function, f"{g.source} ({', '.join(missing)})", tuple(missing), g.resources)
                    )
                continue
            if not used:
                result.unused.append(g)
                continue
            narrower = NARROWER.get(g.policy_template)
            if narrower is not None and all(c.action in SAM_POLICY_TEMPLATES[narrower][1] for c in used):
                result.broader.append((g, narrower))
    return result
