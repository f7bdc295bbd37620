"""Read template.yaml and turn its resources into local ones: the single source of what exists.

Owns the CloudFormation short-tag loader, intrinsic resolution (Ref, GetAtt, Sub, Join, Select, If)
and provisioning of tables, queues, buckets and the KMS key on a moto endpoint. Nothing here is hand-listed.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml

LOCAL_REGION = "us-east-1"
LOCAL_ACCOUNT = "123456789012"
DEFAULT_STACK_NAME = "gpuproof-local"

TABLE = "AWS::DynamoDB::Table"
QUEUE = "AWS::SQS::Queue"
KMS_KEY = "AWS::KMS::Key"
KMS_ALIAS = "AWS::KMS::Alias"
SECRET = "AWS::SecretsManager::Secret"  # noqa: S105 - a resource type, not a secret
FUNCTION = "AWS::Serverless::Function"
BUCKET = "AWS::S3::Bucket"
BUCKET_POLICY = "AWS::S3::BucketPolicy"
PROVISIONED = (TABLE, QUEUE, KMS_KEY, KMS_ALIAS, SECRET, BUCKET, BUCKET_POLICY)


class TemplateError(Exception):
    """The template asks for something the local stack cannot resolve."""


# ---------------------------------------------------------------- loading


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that reads CloudFormation short tags (!Ref x) as their long form ({"Ref": x})."""


def _construct_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if tag_suffix == "Ref" else f"Fn::{tag_suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag_suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnLoader.add_multi_constructor("!", _construct_tag)


def find_template(start: Path | None = None) -> Path:
    """The repository's template.yaml: $GPUPROOF_TEMPLATE, else the nearest one above this package or cwd."""
    explicit = os.environ.get("GPUPROOF_TEMPLATE")
    if explicit:
        return Path(explicit).resolve()
    for base in [start or Path.cwd(), Path(__file__).resolve()]:
        for directory in [base, *base.parents]:
            candidate = directory / "template.yaml"
            if candidate.is_file():
                return candidate
    raise TemplateError("template.yaml not found; set GPUPROOF_TEMPLATE")


def load_template(path: Path | None = None) -> Template:
    path = path or find_template()
    with path.open(encoding="utf-8") as fh:
        doc = yaml.load(fh, Loader=CfnLoader)  # noqa: S506 - CfnLoader derives from SafeLoader
    if not isinstance(doc, dict):
        raise TemplateError(f"{path}: not a mapping")
    return Template(path=path, doc=doc)


# ---------------------------------------------------------------- model


@dataclass(frozen=True)
class EventSource:
    """One entry of a function's Events."""

    name: str
    type: str
    properties: dict[str, Any]


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_uri: Path
    handler: str
    timeout_s: int
    memory_mb: int
    environment: dict[str, Any]
    events: list[EventSource]

    @property
    def module_file(self) -> Path:
        module = self.handler.rsplit(".", 1)[0]
        return self.code_uri / (module.replace(".", "/") + ".py")

    @property
    def handler_name(self) -> str:
        return self.handler.rsplit(".", 1)[1]


@dataclass
class Template:
    path: Path
    doc: dict[str, Any]

    @property
    def root(self) -> Path:
        return self.path.parent

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        resources: dict[str, dict[str, Any]] = self.doc.get("Resources", {})
        return resources

    @property
    def parameters(self) -> dict[str, dict[str, Any]]:
        params: dict[str, dict[str, Any]] = self.doc.get("Parameters", {})
        return params

    @property
    def function_globals(self) -> dict[str, Any]:
        globals_: dict[str, Any] = self.doc.get("Globals", {}).get("Function", {})
        return globals_

    def of_type(self, type_name: str) -> dict[str, dict[str, Any]]:
        return {lid: res for lid, res in self.resources.items() if res.get("Type") == type_name}

    def properties(self, logical_id: str) -> dict[str, Any]:
        props: dict[str, Any] = self.resources[logical_id].get("Properties", {})
        return props

    def functions(self) -> list[FunctionSpec]:
        g = self.function_globals
        specs = []
        for lid, res in self.of_type(FUNCTION).items():
            props = res.get("Properties", {})
            env = dict(g.get("Environment", {}).get("Variables", {}))
            env.update(props.get("Environment", {}).get("Variables", {}))
            events = [
                EventSource(name=name, type=ev["Type"], properties=ev.get("Properties", {}))
                for name, ev in props.get("Events", {}).items()
            ]
            specs.append(
                FunctionSpec(
                    logical_id=lid,
                    code_uri=(self.root / props["CodeUri"]).resolve(),
                    handler=props.get("Handler", g.get("Handler", "app.lambda_handler")),
                    timeout_s=int(props.get("Timeout", g.get("Timeout", 3))),
                    memory_mb=int(props.get("MemorySize", g.get("MemorySize", 128))),
                    environment=env,
                    events=events,
                )
            )
        return specs


# ---------------------------------------------------------------- physical resources


@dataclass
class Physical:
    """What a logical resource became locally: its Ref value and its GetAtt attributes."""

    ref: str
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass
class Resources:
    """Every provisioned resource plus the resolver that turns template values into local ones."""

    template: Template
    stack_name: str
    endpoint_url: str
    parameters: dict[str, str]
    physical: dict[str, Physical]

    def resolve(self, value: Any) -> Any:
        return _Resolver(self).resolve(value)

    def table_name(self, logical_id: str) -> str:
        return self.physical[logical_id].ref

    def queue_url(self, logical_id: str) -> str:
        return self.physical[logical_id].ref

    def bucket_name(self, logical_id: str) -> str:
        return self.physical[logical_id].ref

    def function_environment(self, spec: FunctionSpec) -> dict[str, str]:
        """The function's Environment (Globals merged), resolved; a parameter-fed name can be
        overridden by the same name in the process environment (e.g. CHALLENGE_TTL_S=5)."""
        env: dict[str, str] = {}
        for name, raw in spec.environment.items():
            if _is_parameter_ref(raw, self.template) and name in os.environ:
                env[name] = os.environ[name]
            else:
                env[name] = str(self.resolve(raw))
        return env

    def merged_environment(self) -> dict[str, str]:
        """All functions' environments in one mapping (they share one process locally)."""
        merged: dict[str, str] = {}
        owners: dict[str, str] = {}
        for spec in self.template.functions():
            for name, value in self.function_environment(spec).items():
                if name in merged and merged[name] != value:
                    raise TemplateError(
                        f"{name} is {merged[name]!r} for {owners[name]} but {value!r} for "
                        f"{spec.logical_id}; one process cannot hold both"
                    )
                merged[name] = value
                owners.setdefault(name, spec.logical_id)
        return merged


def _is_parameter_ref(raw: Any, template: Template) -> bool:
    return isinstance(raw, dict) and set(raw) == {"Ref"} and raw["Ref"] in template.parameters


class _Resolver:
    def __init__(self, resources: Resources) -> None:
        self.r = resources
        self.pseudo = {
            "AWS::Region": LOCAL_REGION,
            "AWS::AccountId": LOCAL_ACCOUNT,
            "AWS::StackName": resources.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NoValue": "",
        }

    def ref(self, name: str) -> str:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.r.parameters:
            return self.r.parameters[name]
        if name in self.r.physical:
            return self.r.physical[name].ref
        raise TemplateError(f"cannot resolve Ref {name}")

    def get_att(self, name: str, attr: str) -> str:
        phys = self.r.physical.get(name)
        if phys is None or attr not in phys.attrs:
            raise TemplateError(f"cannot resolve GetAtt {name}.{attr}")
        return phys.attrs[attr]

    def condition(self, name: str) -> bool:
        cond = self.r.template.doc.get("Conditions", {}).get(name)
        if cond is None:
            raise TemplateError(f"unknown condition {name}")
        return bool(self.resolve(cond))

    def sub(self, arg: Any) -> str:
        if isinstance(arg, list):
            text, variables = arg[0], {k: self.resolve(v) for k, v in arg[1].items()}
        else:
            text, variables = arg, {}

        def repl(m: re.Match[str]) -> str:
            key = m.group(1)
            if key.startswith("!"):
                return "${" + key[1:] + "}"
            if key in variables:
                return str(variables[key])
            if "." in key:
                res, attr = key.split(".", 1)
                return self.get_att(res, attr)
            return self.ref(key)

        return re.sub(r"\$\{([^}]+)\}", repl, str(text))

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                parts = arg if isinstance(arg, list) else str(arg).split(".", 1)
                return self.get_att(parts[0], parts[1])
            if key == "Fn::Sub":
                return self.sub(arg)
            if key == "Fn::Join":
                return str(arg[0]).join(str(self.resolve(v)) for v in self.resolve(arg[1]))
            if key == "Fn::Select":
                return self.resolve(arg[1])[int(self.resolve(arg[0]))]
            if key == "Fn::Equals":
                return self.resolve(arg[0]) == self.resolve(arg[1])
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(v) for v in arg)
            if key == "Fn::Or":
                return any(self.resolve(v) for v in arg)
            if key == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Condition":
                return self.condition(arg)
            if key.startswith("Fn::"):
                raise TemplateError(f"intrinsic {key} is not supported locally")
        return {k: self.resolve(v) for k, v in value.items()}


# ---------------------------------------------------------------- provisioning


def resolve_parameters(template: Template, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Parameter defaults, overridden by `overrides`, then by env GPUPROOF_PARAM_<Name>."""
    values: dict[str, str] = {}
    for name, spec in template.parameters.items():
        value = os.environ.get(f"GPUPROOF_PARAM_{name}")
        if overrides and name in overrides:
            value = overrides[name]
        if value is None:
            if "Default" not in spec:
                raise TemplateError(f"parameter {name} has no default; pass it as an override")
            value = spec["Default"]
        values[name] = str(value)
    return values


def aws_client(service: str, endpoint_url: str) -> Any:
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint_url,
        region_name=LOCAL_REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
    )


def provision(
    template: Template,
    endpoint_url: str,
    *,
    stack_name: str = DEFAULT_STACK_NAME,
    parameters: Mapping[str, str] | None = None,
) -> Resources:
    """Create the template's tables, queues, buckets and KMS key(s) on `endpoint_url`; idempotent."""
    resources = Resources(
        template=template,
        stack_name=stack_name,
        endpoint_url=endpoint_url,
        parameters=resolve_parameters(template, parameters),
        physical={},
    )
    for lid, res in template.resources.items():
        if res.get("Type") not in PROVISIONED:
            # Functions, APIs and alarms have no local resource; give them a name for Ref/GetAtt.
            name = f"{stack_name}-{lid}"
            resources.physical[lid] = Physical(
                ref=name,
                attrs={"Arn": f"arn:aws:lambda:{LOCAL_REGION}:{LOCAL_ACCOUNT}:function:{name}"},
            )
    for lid in _ordered(template, TABLE):
        _create_table(resources, lid)
    for lid in _ordered(template, QUEUE):
        _create_queue(resources, lid)
    for lid in _ordered(template, KMS_KEY):
        _create_key(resources, lid)
    for lid in _ordered(template, KMS_ALIAS):
        _create_alias(resources, lid)
    for lid in _ordered(template, SECRET):
        _create_secret(resources, lid)
    for lid in _ordered(template, BUCKET):
        _create_bucket(resources, lid)
    for lid in _ordered(template, BUCKET_POLICY):
        _put_bucket_policy(resources, lid)
    return resources


def _ordered(template: Template, type_name: str) -> list[str]:
    """Logical ids of one type, dependencies first (a queue's DLQ before the queue)."""
    ids = list(template.of_type(type_name))
    done: list[str] = []

    def visit(lid: str, stack: tuple[str, ...]) -> None:
        if lid in done:
            return
        if lid in stack:
            raise TemplateError(f"dependency cycle through {lid}")
        for dep in _references(template.properties(lid)):
            if dep in ids:
                visit(dep, (*stack, lid))
        done.append(lid)

    for lid in ids:
        visit(lid, ())
    return done


def _references(value: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(value, list):
        for v in value:
            found |= _references(v)
    elif isinstance(value, dict):
        for k, v in value.items():
            if k == "Ref" and isinstance(v, str):
                found.add(v)
            elif k == "Fn::GetAtt":
                found.add(v[0] if isinstance(v, list) else str(v).split(".", 1)[0])
            elif k == "Fn::Sub":
                text = v[0] if isinstance(v, list) else v
                found |= {m.split(".", 1)[0] for m in re.findall(r"\$\{([^}!]+)\}", str(text))}
                found |= _references(v)
            else:
                found |= _references(v)
    return found


def _create_table(resources: Resources, lid: str) -> None:
    props = resources.resolve(resources.template.properties(lid))
    name = props.get("TableName") or f"{resources.stack_name}-{lid}"
    ddb = aws_client("dynamodb", resources.endpoint_url)
    try:
        desc = ddb.describe_table(TableName=name)["Table"]
    except ddb.exceptions.ResourceNotFoundException:
        kwargs: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": props.get("BillingMode", "PROVISIONED"),
        }
        if "ProvisionedThroughput" in props:
            kwargs["ProvisionedThroughput"] = {k: int(v) for k, v in props["ProvisionedThroughput"].items()}
        for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if key in props:
                kwargs[key] = props[key]
        stream = props.get("StreamSpecification")
        if stream:
            kwargs["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": stream["StreamViewType"],
            }
        sse = props.get("SSESpecification")
        if sse:
            kwargs["SSESpecification"] = {"Enabled": bool(sse.get("SSEEnabled", False))}
        desc = ddb.create_table(**kwargs)["TableDescription"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled", False):
            ddb.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]},
            )
        pitr = props.get("PointInTimeRecoverySpecification")
        if pitr and pitr.get("PointInTimeRecoveryEnabled", False):
            ddb.update_continuous_backups(
                TableName=name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
    attrs = {"Arn": desc["TableArn"]}
    if desc.get("LatestStreamArn"):
        attrs["StreamArn"] = desc["LatestStreamArn"]
    resources.physical[lid] = Physical(ref=name, attrs=attrs)


def _create_queue(resources: Resources, lid: str) -> None:
    props = resources.resolve(resources.template.properties(lid))
    name = props.get("QueueName") or f"{resources.stack_name}-{lid}"
    attributes: dict[str, str] = {}
    for key in (
        "VisibilityTimeout",
        "MessageRetentionPeriod",
        "DelaySeconds",
        "MaximumMessageSize",
        "ReceiveMessageWaitTimeSeconds",
        "FifoQueue",
        "ContentBasedDeduplication",
    ):
        if key in props:
            value = props[key]
            attributes[key] = str(value).lower() if isinstance(value, bool) else str(value)
    if "RedrivePolicy" in props:
        policy = props["RedrivePolicy"]
        attributes["RedrivePolicy"] = json.dumps(
            {
                "deadLetterTargetArn": policy["deadLetterTargetArn"],
                "maxReceiveCount": int(policy["maxReceiveCount"]),
            }
        )
    sqs = aws_client("sqs", resources.endpoint_url)
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    resources.physical[lid] = Physical(ref=url, attrs={"Arn": arn, "QueueName": name, "QueueUrl": url})


def _create_key(resources: Resources, lid: str) -> None:
    props = resources.resolve(resources.template.properties(lid))
    kms = aws_client("kms", resources.endpoint_url)
    tag_value = f"{resources.stack_name}/{lid}"
    key_id = None
    for page in kms.get_paginator("list_keys").paginate():
        for key in page["Keys"]:
            tags = kms.list_resource_tags(KeyId=key["KeyId"]).get("Tags", [])
            meta = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]
            if (
                meta["KeyState"] == "Enabled"
                and {"TagKey": "gpuproof:logical-id", "TagValue": tag_value} in tags
            ):
                key_id = key["KeyId"]
    if key_id is None:
        kwargs: dict[str, Any] = {
            "KeySpec": props.get("KeySpec", "SYMMETRIC_DEFAULT"),
            "KeyUsage": props.get("KeyUsage", "ENCRYPT_DECRYPT"),
            "Description": props.get("Description", lid),
            "Tags": [{"TagKey": "gpuproof:logical-id", "TagValue": tag_value}],
        }
        if "KeyPolicy" in props:
            kwargs["Policy"] = json.dumps(props["KeyPolicy"])
        key_id = kms.create_key(**kwargs)["KeyMetadata"]["KeyId"]
    arn = kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
    resources.physical[lid] = Physical(ref=key_id, attrs={"Arn": arn, "KeyId": key_id})


def _create_alias(resources: Resources, lid: str) -> None:
    props = resources.resolve(resources.template.properties(lid))
    kms = aws_client("kms", resources.endpoint_url)
    name = props["AliasName"]
    existing = {a["AliasName"] for a in kms.list_aliases()["Aliases"]}
    if name in existing:
        kms.update_alias(AliasName=name, TargetKeyId=props["TargetKeyId"])
    else:
        kms.create_alias(AliasName=name, TargetKeyId=props["TargetKeyId"])
    resources.physical[lid] = Physical(ref=name, attrs={})


_PASSWORD_OPTIONS = (
    "PasswordLength",
    "ExcludeCharacters",
    "ExcludeNumbers",
    "ExcludePunctuation",
    "ExcludeUppercase",
    "ExcludeLowercase",
    "IncludeSpace",
    "RequireEachIncludedType",
)


def _create_secret(resources: Resources, lid: str) -> None:
    """A Secrets Manager secret: SecretString as given, or generated as GenerateSecretString asks."""
    props = resources.resolve(resources.template.properties(lid))
    name = props.get("Name") or f"{resources.stack_name}-{lid}"
    sm = aws_client("secretsmanager", resources.endpoint_url)
    try:
        arn = sm.describe_secret(SecretId=name)["ARN"]
    except sm.exceptions.ResourceNotFoundException:
        value = props.get("SecretString")
        if value is None:
            gen = props.get("GenerateSecretString", {})
            options = {k: gen[k] for k in _PASSWORD_OPTIONS if k in gen}
            if "PasswordLength" in options:
                options["PasswordLength"] = int(options["PasswordLength"])
            password = sm.get_random_password(**options)["RandomPassword"]
            if "SecretStringTemplate" in gen:
                doc = json.loads(gen["SecretStringTemplate"])
                doc[gen["GenerateStringKey"]] = password
                value = json.dumps(doc)
            else:
                value = password
        description = props.get("Description", lid)
        arn = sm.create_secret(Name=name, SecretString=value, Description=description)["ARN"]
    resources.physical[lid] = Physical(ref=arn, attrs={"Id": arn})


def _bucket_name(stack_name: str, lid: str) -> str:
    """CloudFormation's pattern for an unnamed bucket: lower case, at most 63 characters."""
    return re.sub(r"[^a-z0-9.-]", "-", f"{stack_name}-{lid}".lower())[:63].strip("-.")


def _create_bucket(resources: Resources, lid: str) -> None:
    """A bucket with the template's encryption, public access block, ownership and lifecycle."""
    props = resources.resolve(resources.template.properties(lid))
    name = props.get("BucketName") or _bucket_name(resources.stack_name, lid)
    s3 = aws_client("s3", resources.endpoint_url)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    if name not in existing:
        s3.create_bucket(Bucket=name)
    if "BucketEncryption" in props:
        # CloudFormation says ServerSideEncryptionByDefault where the S3 API says Apply...
        rules = [
            {"ApplyServerSideEncryptionByDefault": r["ServerSideEncryptionByDefault"]}
            for r in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if "PublicAccessBlockConfiguration" in props:
        s3.put_public_access_block(
            Bucket=name,
            PublicAccessBlockConfiguration={
                k: bool(v) for k, v in props["PublicAccessBlockConfiguration"].items()
            },
        )
    if "OwnershipControls" in props:
        s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=props["OwnershipControls"])
    lifecycle = props.get("LifecycleConfiguration")
    if lifecycle:
        s3.put_bucket_lifecycle_configuration(
            Bucket=name, LifecycleConfiguration={"Rules": [_lifecycle_rule(r) for r in lifecycle["Rules"]]}
        )
    resources.physical[lid] = Physical(
        ref=name,
        attrs={
            "Arn": f"arn:aws:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{LOCAL_REGION}.amazonaws.com",
        },
    )


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's rule shape (ExpirationInDays, Prefix) as the S3 API's."""
    out: dict[str, Any] = {
        "ID": rule["Id"],
        "Status": rule["Status"],
        "Filter": {"Prefix": rule.get("Prefix", "")},
    }
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        days = int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    return out


def _requires_tls(statement: dict[str, Any]) -> bool:
    return "aws:SecureTransport" in statement.get("Condition", {}).get("Bool", {})


def local_bucket_policy(document: dict[str, Any], endpoint_url: str) -> dict[str, Any] | None:
    """The policy as the local endpoint can honour it: moto evaluates bucket policies, and the
    local stack speaks plain HTTP, so a deny-without-TLS statement would deny everything there.
    It is dropped on an http:// endpoint only (the one deviation from the template; AWS gets it)."""
    if not endpoint_url.startswith("http://"):
        return document
    statements = [st for st in document.get("Statement", []) if not _requires_tls(st)]
    return {**document, "Statement": statements} if statements else None


def _put_bucket_policy(resources: Resources, lid: str) -> None:
    props = resources.resolve(resources.template.properties(lid))
    s3 = aws_client("s3", resources.endpoint_url)
    policy = local_bucket_policy(props["PolicyDocument"], resources.endpoint_url)
    if policy is None:
        s3.delete_bucket_policy(Bucket=props["Bucket"])
    else:
        s3.put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(policy))
    resources.physical[lid] = Physical(ref=props["Bucket"], attrs={})
