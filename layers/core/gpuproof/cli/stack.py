"""`gpuproof-ops --stack-name NAME`: the deployed stack's outputs (CloudFormation DescribeStacks)
become the environment the operator commands read, so nobody hand-builds it.

A variable already set wins (an operator may point one command elsewhere). The outputs are the
template's `Outputs` (template.yaml); `STACK_ENV` names the variable each one fills.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

STACK_ENV = {
    "ApiUrl": "GPUPROOF_API",
    "VerdictsTableName": "VERDICTS_TABLE",
    "PublishedBatchesTableName": "PUBLISHED_BATCHES_TABLE",
    "MachinesTableName": "MACHINES_TABLE",
    "RoundsTableName": "ROUNDS_TABLE",
    "MembersTableName": "MEMBERS_TABLE",
    "ServiceKeyArn": "SERVICE_KEY_ID",
    "OracleKeySecretArn": "ORACLE_KEY_SECRET_ARN",
    "VerifyQueueUrl": "VERIFY_QUEUE_URL",
    "VerifyDLQUrl": "VERIFY_DLQ_URL",
    "PublisherDLQUrl": "PUBLISHER_DLQ_URL",
}


class StackError(Exception):
    """The stack could not be read (no region, no such stack, no credentials): one line why."""


def region_or_none() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def stack_outputs(stack_name: str, region: str | None, client: Any = None) -> dict[str, str]:
    """The stack's outputs, {OutputKey: OutputValue}, by DescribeStacks."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    where = region or region_or_none()
    if client is None and where is None:
        raise StackError("no AWS region: pass --region or set AWS_REGION")
    try:
        cfn = client or boto3.client("cloudformation", region_name=where)
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise StackError(f"stack {stack_name!r}: {error.get('Code')}: {error.get('Message')}") from exc
    except BotoCoreError as exc:
        raise StackError(f"stack {stack_name!r} not read: {exc}") from exc
    if not stacks:
        raise StackError(f"no stack named {stack_name!r} in {where}")
    return {str(o["OutputKey"]): str(o["OutputValue"]) for o in stacks[0].get("Outputs") or []}


def apply_outputs(
    outputs: dict[str, str], environ: MutableMapping[str, str], region: str | None
) -> list[str]:
    """Fill the unset variables from the outputs; the names it set, in order."""
    filled = []
    if region and not region_or_none():
        environ["AWS_REGION"] = region
        filled.append("AWS_REGION")
    for output, variable in STACK_ENV.items():
        if output in outputs and not environ.get(variable):
            environ[variable] = outputs[output].rstrip("/") if variable == "GPUPROOF_API" else outputs[output]
            filled.append(variable)
    return filled


def require_env(*names: str) -> dict[str, str]:
    """The variables a command needs; StackError naming every missing one."""
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        raise StackError(
            f"{', '.join(missing)} not set: pass --stack-name NAME (the deployed stack's outputs) "
            "or set them as the function's environment (docs/operations.md)"
        )
    return {n: os.environ[n] for n in names}
