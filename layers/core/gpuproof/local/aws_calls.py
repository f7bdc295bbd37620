"""Records the AWS calls each function of the local stack makes, as IAM sees them (action, resource).

`install()` hooks every botocore client created afterwards (boto3's, PynamoDB's, Powertools'):
`before-parameter-build` keeps the call's parameters on the request context and `before-sign`
records it, so presigned URLs and POSTs (signed, never sent by the service) count as the calls
they authorise. The running function comes from `running()` (the local runtime wraps each
invocation in it) or `acting_as()` (a CLI run with a function's role); calls outside both are
the harness's own and are not kept. Physical names become logical ids through the resources a
stack registers (`register_resources`), so records of several stacks and processes compare with
the template's policies directly (gpuproof.local.iam).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import botocore.session

from gpuproof.local.template import LOCAL_ACCOUNT, LOCAL_REGION, Resources

# A folder, set by a parent process (the test session), so each `python -m gpuproof.local` child
# records too and leaves its calls in <folder>/<pid>.json when it stops.
RECORD_DIR_ENV = "GPUPROOF_AWS_CALLS_DIR"

_function: ContextVar[str | None] = ContextVar("gpuproof_local_function", default=None)
_STASH = "gpuproof_aws_call"


@dataclass(frozen=True, order=True)
class Call:
    """One IAM-level use: `function` was authorised for `action` on `resource` (a canonical ARN)."""

    function: str
    action: str
    resource: str


# botocore signing names whose IAM action prefix differs.
IAM_PREFIX = {"monitoring": "cloudwatch"}


class Recorder:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: set[Call] = set()
        self._names: dict[str, str] = {}  # physical name, URL or ARN -> logical id

    # ------------------------------------------------------------ what the stack tells it
    def register_resources(self, resources: Resources) -> None:
        with self._lock:
            for lid, phys in resources.physical.items():
                for value in (phys.ref, *phys.attrs.values()):
                    if value:
                        self._names.setdefault(str(value), lid)

    def logical(self, physical: str) -> str:
        return self._names.get(physical, physical)

    # ------------------------------------------------------------ recording
    def add(self, function: str, action: str, resource: str) -> None:
        with self._lock:
            self._calls.add(Call(function, action, resource))

    def calls(self) -> set[Call]:
        with self._lock:
            return set(self._calls)

    def clear(self) -> None:
        with self._lock:
            self._calls.clear()

    def dump(self, path: Path) -> None:
        rows = [[c.function, c.action, c.resource] for c in sorted(self.calls())]
        path.write_text(json.dumps(rows, indent=0))

    def load(self, path: Path) -> None:
        for function, action, resource in json.loads(path.read_text()):
            self.add(function, action, resource)

    # ------------------------------------------------------------ botocore hooks
    def _stash(self, params: Mapping[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        context[_STASH] = (model.service_model.signing_name, model.name, dict(params))

    def _record(self, request: Any, operation_name: str, **_: Any) -> None:
        function = _function.get()
        stash = getattr(request, "context", {}).get(_STASH)
        if function is None or stash is None:
            return
        prefix, model_name, params = stash
        if prefix == "s3" and model_name == "CreateBucket" and operation_name == "PutObject":
            # A presigned POST: botocore builds it on CreateBucket's model, signs it as PutObject.
            fields = request.context.get("s3-presign-post-fields", {})
            params = {"Bucket": params.get("Bucket", ""), "Key": fields.get("key", "")}
        for action, resource in self.iam_uses(prefix, operation_name, params):
            self.add(function, action, resource)

    def iam_uses(self, prefix: str, operation: str, params: Mapping[str, Any]) -> list[tuple[str, str]]:
        """The IAM (action, resource) pairs that authorise one API call."""
        if prefix == "dynamodb":
            return self._dynamodb(operation, params)
        if prefix == "s3":
            key = str(params.get("Key", ""))
            bucket = self.logical(str(params.get("Bucket", "")))
            resource = f"arn:aws:s3:::{bucket}/{key}" if key else f"arn:aws:s3:::{bucket}"
            # HeadObject has no IAM action of its own: s3:GetObject authorises it.
            action = "GetObject" if operation == "HeadObject" else operation
            return [(f"s3:{action}", resource)]
        if prefix == "sqs":
            url = str(params.get("QueueUrl", ""))
            name = self.logical(url)
            if name == url:
                name = self.logical(unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]))
            return [(f"sqs:{operation}", f"arn:aws:sqs:{LOCAL_REGION}:{LOCAL_ACCOUNT}:{name}")]
        if prefix == "kms":
            key_id = str(params.get("KeyId", ""))
            return [
                (f"kms:{operation}", f"arn:aws:kms:{LOCAL_REGION}:{LOCAL_ACCOUNT}:key/{self.logical(key_id)}")
            ]
        if prefix == "secretsmanager":
            secret = self.logical(str(params.get("SecretId", "")))
            return [
                (
                    f"secretsmanager:{operation}",
                    f"arn:aws:secretsmanager:{LOCAL_REGION}:{LOCAL_ACCOUNT}:secret:{secret}",
                )
            ]
        # CloudWatch signs as "monitoring"; IAM names its actions "cloudwatch:*".
        return [(f"{IAM_PREFIX.get(prefix, prefix)}:{operation}", "*")]

    def _table_arn(self, table: str, index: str | None = None) -> str:
        arn = f"arn:aws:dynamodb:{LOCAL_REGION}:{LOCAL_ACCOUNT}:table/{self.logical(table)}"
        return f"{arn}/index/{index}" if index else arn

    def _dynamodb(self, operation: str, params: Mapping[str, Any]) -> list[tuple[str, str]]:
        # Transactions are authorised item by item by the item's own action (IAM has no
        # TransactWriteItems permission); batches by the batch action on each table.
        if operation == "TransactWriteItems":
            kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}
            kinds["ConditionCheck"] = "ConditionCheckItem"
            return [
                (f"dynamodb:{kinds[kind]}", self._table_arn(body["TableName"]))
                for item in params.get("TransactItems", [])
                for kind, body in item.items()
            ]
        if operation == "TransactGetItems":
            return [
                ("dynamodb:GetItem", self._table_arn(item["Get"]["TableName"]))
                for item in params.get("TransactItems", [])
            ]
        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [(f"dynamodb:{operation}", self._table_arn(t)) for t in params.get("RequestItems", {})]
        table = str(params.get("TableName", ""))
        index = params.get("IndexName")
        return [(f"dynamodb:{operation}", self._table_arn(table, str(index) if index else None))]

    def hook(self, client: Any) -> None:
        events = client.meta.events
        events.register("before-parameter-build", self._stash, unique_id="gpuproof-aws-calls-stash")
        events.register("before-sign", self._record, unique_id="gpuproof-aws-calls-record")


recorder = Recorder()
_installed = False
_install_lock = threading.Lock()


def install() -> Recorder:
    """Hook every botocore client created from now on (idempotent)."""
    global _installed
    with _install_lock:
        if not _installed:
            original = botocore.session.Session.create_client

            def create_client(self: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
                client = original(self, *args, **kwargs)
                recorder.hook(client)
                return client

            botocore.session.Session.create_client = create_client  # type: ignore[method-assign]
            _installed = True
    return recorder


def installed() -> bool:
    return _installed


@contextmanager
def running(function: str) -> Iterator[None]:
    """The calls made inside are `function`'s (the local runtime wraps each invocation)."""
    token = _function.set(function)
    try:
        yield
    finally:
        _function.reset(token)


acting_as = running  # a CLI run with a function's role, e.g. `gpuproof-ops republish` as the publisher


def install_from_environment() -> Path | None:
    """In a child stack process: record when the parent asked for it; returns where to write."""
    target = os.environ.get(RECORD_DIR_ENV)
    if not target:
        return None
    install()
    return Path(target) / f"{os.getpid()}.json"
