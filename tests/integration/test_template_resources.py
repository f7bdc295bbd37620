"""The moto server holds what template.yaml declares: keys, TTLs, streams, redrive, the signing key."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gpuproof.local.template import load_template

pytestmark = pytest.mark.integration


def test_every_table_matches_the_template(moto_server: Any) -> None:
    template = load_template(moto_server.resources.template.path)
    ddb = moto_server.client("dynamodb")
    for lid, res in template.of_type("AWS::DynamoDB::Table").items():
        props = res["Properties"]
        desc = ddb.describe_table(TableName=moto_server.table_name(lid))["Table"]
        assert desc["KeySchema"] == props["KeySchema"], lid
        assert sorted(desc["AttributeDefinitions"], key=str) == sorted(props["AttributeDefinitions"], key=str)
        assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        ttl = ddb.describe_time_to_live(TableName=desc["TableName"])["TimeToLiveDescription"]
        if "TimeToLiveSpecification" in props:
            assert ttl["TimeToLiveStatus"] == "ENABLED", lid
            assert ttl["AttributeName"] == props["TimeToLiveSpecification"]["AttributeName"]
        else:
            assert ttl["TimeToLiveStatus"] == "DISABLED", lid
        pitr = ddb.describe_continuous_backups(TableName=desc["TableName"])["ContinuousBackupsDescription"]
        assert pitr["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
        if "StreamSpecification" in props:
            assert desc["StreamSpecification"] == {
                "StreamEnabled": True,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            }
            assert desc["LatestStreamArn"]
        else:
            assert not desc.get("StreamSpecification", {}).get("StreamEnabled")


def test_env_names_point_at_the_created_resources(moto_server: Any) -> None:
    env = moto_server.env
    assert env["MACHINES_TABLE"] == moto_server.table_name("MachinesTable")
    assert env["VERDICTS_TABLE"] == moto_server.table_name("VerdictsTable")
    assert env["VERIFY_QUEUE_URL"] == moto_server.queue_url("VerifyQueue")
    assert env["CHALLENGE_TTL_S"] == "900"
    moto_server.client("dynamodb").describe_table(TableName=env["IDEMPOTENCY_TABLE"])
    moto_server.client("kms").describe_key(KeyId=env["SERVICE_KEY_ID"])


def test_verify_queue_redrives_to_its_dlq(moto_server: Any) -> None:
    sqs = moto_server.client("sqs")
    attrs = sqs.get_queue_attributes(QueueUrl=moto_server.queue_url("VerifyQueue"), AttributeNames=["All"])[
        "Attributes"
    ]
    dlq_arn = sqs.get_queue_attributes(
        QueueUrl=moto_server.queue_url("VerifyDLQ"), AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert json.loads(attrs["RedrivePolicy"]) == {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5}
    assert int(attrs["VisibilityTimeout"]) >= 6 * 60
    sqs.get_queue_attributes(QueueUrl=moto_server.queue_url("PublisherDLQ"), AttributeNames=["QueueArn"])


def test_service_key_signs_raw_messages(moto_server: Any) -> None:
    kms = moto_server.client("kms")
    key_id = moto_server.env["SERVICE_KEY_ID"]
    meta = kms.describe_key(KeyId=key_id)["KeyMetadata"]
    assert meta["KeySpec"] == "ECC_NIST_P256"
    assert meta["KeyUsage"] == "SIGN_VERIFY"
    aliases = [a["AliasName"] for a in kms.list_aliases(KeyId=key_id)["Aliases"]]
    assert aliases == ["alias/gpuproof-local-service"]
    message = b"verdict bytes"
    sig = kms.sign(KeyId=key_id, Message=message, MessageType="RAW", SigningAlgorithm="ECDSA_SHA_256")[
        "Signature"
    ]
    ok = kms.verify(
        KeyId=key_id, Message=message, MessageType="RAW", Signature=sig, SigningAlgorithm="ECDSA_SHA_256"
    )["SignatureValid"]
    assert ok


def test_provisioning_is_idempotent(moto_server: Any) -> None:
    from gpuproof.local.template import provision

    again = provision(moto_server.resources.template, moto_server.endpoint_url)
    assert again.merged_environment() == moto_server.env
