"""template.yaml as a contract: keys, TTLs, streams, redrive, least privilege, events, alarms.

Also the local stack's pure parts: the short-tag loader, intrinsic resolution, routing and the
API Gateway v2 event/response translation. No sockets.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest

from gpuproof import observability
from gpuproof.local.front import Route, Router, build_http_event, translate_response
from gpuproof.local.iam import grants
from gpuproof.local.pollers import schedule_period_s
from gpuproof.local.template import (
    FUNCTION,
    Physical,
    Resources,
    Template,
    TemplateError,
    load_template,
    resolve_parameters,
)
from gpuproof.protocol.limits import DEFAULT_MAX_GPUS_PER_MACHINE, PROTOCOL_MAX_GPUS

ROOT = Path(__file__).resolve().parents[2]
ENV_NAMES = {
    "MACHINES_TABLE": "MachinesTable",
    "CHALLENGES_TABLE": "ChallengesTable",
    "REPORTS_TABLE": "ReportsTable",
    "REQUEST_NONCES_TABLE": "RequestNoncesTable",
    "GPU_UUIDS_TABLE": "GpuUuidsTable",
    "MEMBERS_TABLE": "MembersTable",
    "ROUNDS_TABLE": "RoundsTable",
    "VERDICTS_TABLE": "VerdictsTable",
    "IDEMPOTENCY_TABLE": "IdempotencyTable",
    "VERIFY_QUEUE_URL": "VerifyQueue",
    "PUBLISHER_DLQ_URL": "PublisherDLQ",
    "SERVICE_KEY_ID": "ServiceKey",
    "PUBLISHED_BATCHES_TABLE": "PublishedBatchesTable",
    "ORACLE_KEY_SECRET_ARN": "OracleKeySecret",
    "TRANSCRIPTS_BUCKET": "TranscriptsBucket",
    "HEARTBEATS_TABLE": "HeartbeatsTable",
    "VERIFY_DLQ_URL": "VerifyDLQ",
}
# Told, not granted through these names: the console reads the alarms' states by name.
ALARM_ENV = "ALARM_NAMES"
PARAM_ENV = {
    "CHALLENGE_TTL_S": "ChallengeTtlSeconds",
    "MAX_SKEW_S": "SignatureMaxSkewSeconds",
    "ALLOW_CPU_BACKEND": "AllowCpuBackend",
    "CPU_PROOF_DEADLINE_S": "CpuProofDeadlineSeconds",
    "SHADOW_CHECKS": "ShadowChecks",
    "ENFORCE_CHECKS": "EnforceChecks",
    "CAPACITY_ENFORCEMENT": "CapacityEnforcement",
    "CHALLENGE_COOLDOWN_S": "ChallengeCooldownSeconds",
    "CHALLENGE_COOLDOWN_MAX_S": "ChallengeCooldownMaxSeconds",
    "MAX_GPUS_PER_MACHINE": "MaxGpusPerMachine",
    "COMMITTEE_WINDOW_SCALE": "CommitteeWindowScale",
    "COMMITTEE_MAX_IN_FLIGHT": "CommitteeMaxInFlight",
    "COMMITTEE_OPERATOR_KEY": "CommitteeOperatorKey",
    "BEACON_SEED": "BeaconSeed",
    "BEACON_LENGTH": "BeaconLength",
    "CHAIN_NODE_URL": "ChainNodeUrl",
    "CHAIN_CALL": "ChainCall",
    "TRANSCRIPT_MAX_BYTES_PER_GPU": "TranscriptMaxBytesPerGpu",
    "HEARTBEAT_RETENTION_DAYS": "HeartbeatRetentionDays",
    "OFFLINE_AFTER_S": "OfflineAfterSeconds",
    "REVOKE_OFFLINE_AFTER_S": "RevokeOfflineAfterSeconds",
    "PRESENCE_CHECKS_PER_DAY": "PresenceChecksPerDay",
    "PRESENCE_MAX_MISSES": "PresenceMaxMisses",
    "PRESENCE_ENFORCE": "PresenceEnforce",
    "PRESENCE_MISS_WINDOW": "PresenceMissWindow",
    "PRESENCE_WAVE_FRACTION": "PresenceWaveFraction",
}

EXPECTED_FUNCTIONS = {
    "MachineApiFunction",
    "VerifyWorkerFunction",
    "CommitteeApiFunction",
    "DeadlineSweeperFunction",
    "ChainPublisherFunction",
    "ScoreFeedFunction",
    "ConsoleFunction",
}

EXPECTED_KEYS = {
    "MachinesTable": [("machine_id", "HASH", "S")],
    "ChallengesTable": [("challenge_id", "HASH", "S")],
    "ReportsTable": [("machine_id", "HASH", "S"), ("challenge_id", "RANGE", "S")],
    "RequestNoncesTable": [("nonce_key", "HASH", "S")],
    "GpuUuidsTable": [("gpu_uuid", "HASH", "S")],
    "MembersTable": [("account", "HASH", "S")],
    "RoundsTable": [("machine_id", "HASH", "S"), ("round", "RANGE", "N")],
    "VerdictsTable": [("verdict_id", "HASH", "S")],
    "IdempotencyTable": [("id", "HASH", "S")],
    "PublishedBatchesTable": [("feed", "HASH", "S"), ("position", "RANGE", "N")],
    "HeartbeatsTable": [("machine_id", "HASH", "S"), ("received_at", "RANGE", "N")],
}
EXPECTED_TTL = {
    "ChallengesTable": "expires_ttl",
    "RequestNoncesTable": "expires_ttl",
    "HeartbeatsTable": "expires_ttl",
    "IdempotencyTable": "expiration",
}

EXPECTED_ROUTES = {
    "MachineApiFunction": {
        "POST /machines",
        "GET /machines/{machine_id}",
        "POST /machines/{machine_id}/challenges",
        "POST /machines/{machine_id}/commitments",
        "POST /machines/{machine_id}/capacity",
        "POST /machines/{machine_id}/capacity/commitments",
        "POST /machines/{machine_id}/capacity/answers",
        "POST /machines/{machine_id}/capacity/openings",
        "POST /machines/{machine_id}/reports",
        "POST /machines/{machine_id}/heartbeats",
        "GET /machines/{machine_id}/heartbeats",
        "POST /machines/{machine_id}/exit",
        "POST /machines/{machine_id}/presence/{check_id}",
        "POST /machines/{machine_id}/presence/{check_id}/commitment",
        "POST /machines/{machine_id}/presence/{check_id}/proof",
        "GET /machines/{machine_id}/reports/{challenge_id}",
    },
    "CommitteeApiFunction": {
        "GET /beacon",
        "POST /members",
        "POST /members/{account}/retire",
        "POST /members/{account}/admission",
        "GET /members/{account}/assignments",
        "GET /rounds/{machine_id}/{round}",
        "GET /rounds/{machine_id}/{round}/transcript",
        "GET /rounds/{machine_id}/{round}/capacity",
        "POST /rounds/{machine_id}/{round}/commit",
        "POST /rounds/{machine_id}/{round}/reveal",
        "POST /rounds/{machine_id}/{round}/resolution",
    },
    "ScoreFeedFunction": {"GET /feed"},
}


@pytest.fixture(scope="module")
def template() -> Template:
    return load_template(ROOT / "template.yaml")


def props(template: Template, lid: str) -> dict[str, Any]:
    return template.properties(lid)


def test_short_tags_load_as_long_form(template: Template) -> None:
    env = props(template, "MachineApiFunction")["Environment"]["Variables"]
    assert env["MACHINES_TABLE"] == {"Ref": "MachinesTable"}
    queue = props(template, "VerifyWorkerFunction")["Events"]["VerifyQueueEvent"]["Properties"]["Queue"]
    assert queue == {"Fn::GetAtt": ["VerifyQueue", "Arn"]}


def test_globals(template: Template) -> None:
    g = template.function_globals
    assert g["Runtime"] == "python3.12"
    assert g["Tracing"] == "Active"
    assert g["Layers"] == [{"Ref": "CoreLayer"}]
    env = g["Environment"]["Variables"]
    assert env["POWERTOOLS_SERVICE_NAME"] == "gpuproof"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "gpuproof"
    assert "LOG_LEVEL" in env
    layer = template.resources["CoreLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/core/"
    assert layer["Metadata"]["BuildMethod"] == "python3.12"
    assert (ROOT / "layers/core/requirements.txt").is_file()


@pytest.mark.parametrize("lid", sorted(EXPECTED_KEYS))
def test_table_keys_and_protection(template: Template, lid: str) -> None:
    p = props(template, lid)
    types = {a["AttributeName"]: a["AttributeType"] for a in p["AttributeDefinitions"]}
    keys = [(k["AttributeName"], k["KeyType"], types[k["AttributeName"]]) for k in p["KeySchema"]]
    assert keys == EXPECTED_KEYS[lid]
    index_keys = {
        k["AttributeName"] for index in p.get("GlobalSecondaryIndexes", []) for k in index["KeySchema"]
    }
    assert set(types) == {name for name, _, _ in keys} | index_keys, "only key attributes are declared"
    assert p["BillingMode"] == "PAY_PER_REQUEST"
    assert p["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert p["SSESpecification"]["SSEEnabled"] is True
    ttl = p.get("TimeToLiveSpecification")
    if lid in EXPECTED_TTL:
        assert ttl == {"AttributeName": EXPECTED_TTL[lid], "Enabled": True}
    else:
        assert ttl is None
    stream = p.get("StreamSpecification")
    assert (stream == {"StreamViewType": "NEW_AND_OLD_IMAGES"}) if lid == "VerdictsTable" else stream is None


def test_machines_indexes(template: Template) -> None:
    index, liveness = props(template, "MachinesTable")["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "ByState"
    assert [(k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]] == [
        ("state", "HASH"),
        ("updated_at", "RANGE"),
    ]
    # The liveness watch reads only the machines due (tables.py ByLivenessDueIndex).
    assert liveness["IndexName"] == "ByLivenessDue"
    assert [(k["AttributeName"], k["KeyType"]) for k in liveness["KeySchema"]] == [
        ("liveness", "HASH"),
        ("liveness_due_at", "RANGE"),
    ]
    assert liveness["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_rounds_indexes(template: Template) -> None:
    by_status, by_due = props(template, "RoundsTable")["GlobalSecondaryIndexes"]
    assert by_status["IndexName"] == "ByStatus"
    assert [(k["AttributeName"], k["KeyType"]) for k in by_status["KeySchema"]] == [
        ("status", "HASH"),
        ("booked_at", "RANGE"),
    ]
    # the sweeper's work list: status = open AND due_at <= now (sparse: only rounds with a due_at)
    assert by_due["IndexName"] == "ByDue"
    assert [(k["AttributeName"], k["KeyType"]) for k in by_due["KeySchema"]] == [
        ("status", "HASH"),
        ("due_at", "RANGE"),
    ]
    assert by_due["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_unsettled_verdicts_index(template: Template) -> None:
    (index,) = props(template, "VerdictsTable")["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "Unsettled"
    assert [(k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]] == [
        ("outbox", "HASH"),
        ("outbox_at", "RANGE"),
    ]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}


def test_every_table_is_expected(template: Template) -> None:
    assert set(template.of_type("AWS::DynamoDB::Table")) == set(EXPECTED_KEYS)


def test_queues_redrive_and_visibility(template: Template) -> None:
    queue = props(template, "VerifyQueue")
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["VerifyDLQ", "Arn"]},
        "maxReceiveCount": 5,
    }
    worker_timeout = props(template, "VerifyWorkerFunction").get(
        "Timeout", template.function_globals["Timeout"]
    )
    assert queue["VisibilityTimeout"] >= 6 * worker_timeout
    assert set(template.of_type("AWS::SQS::Queue")) == {"VerifyQueue", "VerifyDLQ", "PublisherDLQ"}


def test_transcripts_bucket_is_private_encrypted_and_expires(template: Template) -> None:
    assert set(template.of_type("AWS::S3::Bucket")) == {"TranscriptsBucket"}
    bucket = props(template, "TranscriptsBucket")
    assert "BucketName" not in bucket, "a generated name: one stack per account and region"
    (sse,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    rules = {r["Id"]: r for r in bucket["LifecycleConfiguration"]["Rules"]}
    assert rules["ExpireTranscripts"]["Prefix"] == "transcripts/"
    assert rules["ExpireTranscripts"]["ExpirationInDays"] == {"Ref": "TranscriptRetentionDays"}
    assert rules["AbortIncompleteUploads"]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 1}
    # The committee's windows (36 h + 48 h at scale 1) end before any transcript expires.
    assert template.parameters["TranscriptRetentionDays"]["MinValue"] * 24 > 36 + 48
    (deny,) = props(template, "TranscriptsBucketPolicy")["PolicyDocument"]["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert props(template, "TranscriptsBucketPolicy")["Bucket"] == {"Ref": "TranscriptsBucket"}


def test_service_key(template: Template) -> None:
    key = props(template, "ServiceKey")
    assert key["KeySpec"] == "ECC_NIST_P256"
    assert key["KeyUsage"] == "SIGN_VERIFY"
    principal = key["KeyPolicy"]["Statement"][0]["Principal"]["AWS"]
    assert principal == {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    assert props(template, "ServiceKeyAlias")["TargetKeyId"] == {"Ref": "ServiceKey"}


def _routes(template: Template, lid: str) -> set[str]:
    return {
        f"{e['Properties']['Method']} {e['Properties']['Path']}"
        for e in props(template, lid).get("Events", {}).values()
        if e["Type"] == "HttpApi"
    }


@pytest.mark.parametrize("lid", sorted(EXPECTED_ROUTES))
def test_http_routes(template: Template, lid: str) -> None:
    assert _routes(template, lid) == EXPECTED_ROUTES[lid]


def test_worker_triggers(template: Template) -> None:
    (sqs,) = props(template, "VerifyWorkerFunction")["Events"].values()
    assert sqs["Type"] == "SQS"
    assert sqs["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    (sched,) = props(template, "DeadlineSweeperFunction")["Events"].values()
    assert sched["Type"] == "Schedule"
    assert sched["Properties"]["Schedule"] == "rate(1 minute)"
    (stream,) = props(template, "ChainPublisherFunction")["Events"].values()
    sp = stream["Properties"]
    assert stream["Type"] == "DynamoDB"
    assert sp["Stream"] == {"Fn::GetAtt": ["VerdictsTable", "StreamArn"]}
    assert sp["StartingPosition"] == "TRIM_HORIZON"
    assert sp["BisectBatchOnFunctionError"] is True
    assert sp["MaximumRetryAttempts"] >= 1
    assert sp["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert sp["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["PublisherDLQ", "Arn"]}


def _granted_resources(template: Template, lid: str) -> set[str]:
    """The logical ids a function's Policies name (what it is granted anything on)."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            if "Ref" in value and value["Ref"] in template.resources:
                found.add(value["Ref"])
            elif "Fn::GetAtt" in value:
                found.add(value["Fn::GetAtt"][0])
            elif "Fn::Sub" in value and isinstance(value["Fn::Sub"], str):
                found.update(r.split(".")[0] for r in re.findall(r"\$\{([^}!]+)\}", value["Fn::Sub"]))
            else:
                for v in value.values():
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(props(template, lid).get("Policies", []))
    return {r for r in found if r in template.resources}


# Which grants each function holds is measured, not restated here: tests/e2e/test_least_privilege.py
# compares the calls every function makes in the integration and e2e tests with its Policies.
@pytest.mark.parametrize("lid", sorted(EXPECTED_FUNCTIONS))
def test_policies_are_scoped_and_stated_once(template: Template, lid: str) -> None:
    """Each table once; S3 only on the transcripts/ prefix; KMS only on the service key; Allow only."""
    tables: list[str] = []
    for policy in props(template, lid).get("Policies", []):
        ((name, arg),) = policy.items()
        if name.startswith("DynamoDB"):
            tables.append(arg["TableName"]["Ref"])
        elif name == "Statement":
            for st in arg:
                assert st["Effect"] == "Allow", st
                if all(a.startswith("s3:") for a in st["Action"]):
                    assert st["Resource"] == {"Fn::Sub": "${TranscriptsBucket.Arn}/transcripts/*"}, st
                elif st["Action"] == ["dynamodb:GetItem"]:  # the presence waves' schedule, read only
                    assert lid == "MachineApiFunction", st
                    assert st["Resource"] == {"Fn::GetAtt": ["RoundsTable", "Arn"]}, st
                elif all(a.startswith("dynamodb:") for a in st["Action"]):  # the heartbeat history
                    assert st["Resource"] == {"Fn::GetAtt": ["HeartbeatsTable", "Arn"]}, st
                elif st["Action"] == ["sqs:GetQueueAttributes"]:  # depths of the stack's queues
                    queues = set(template.of_type("AWS::SQS::Queue"))
                    assert {r["Fn::GetAtt"][0] for r in st["Resource"]} <= queues, st
                elif st["Action"] == ["cloudwatch:DescribeAlarms"]:  # read-only alarm states
                    assert lid == "ConsoleFunction", st
                else:
                    assert all(a.startswith("kms:") for a in st["Action"]), st
                    assert st["Resource"] == {"Fn::GetAtt": ["ServiceKey", "Arn"]}, st
    assert len(tables) == len(set(tables)), f"{lid}: a table granted twice"
    assert grants(template, lid), f"{lid}: no grant at all"


@pytest.mark.parametrize("lid", sorted(EXPECTED_FUNCTIONS))
def test_environment_matches_access(template: Template, lid: str) -> None:
    """A function is told exactly the tables/queues/key/bucket/secret it is granted, each by !Ref."""
    env = props(template, lid)["Environment"]["Variables"]
    told = {name: v["Ref"] for name, v in env.items() if name in ENV_NAMES}
    for name, target in told.items():
        assert target == ENV_NAMES[name], f"{lid}: {name} must !Ref {ENV_NAMES[name]}"
    assert set(told.values()) == _granted_resources(template, lid)
    for name, value in env.items():
        if name in PARAM_ENV:
            assert value == {"Ref": PARAM_ENV[name]}
        elif name == ALARM_ENV:
            separator, refs = value["Fn::Join"]
            alarms = set(template.of_type("AWS::CloudWatch::Alarm"))
            assert separator == "," and {r["Ref"] for r in refs} <= alarms, value
        else:
            assert name in ENV_NAMES, f"{lid}: unexpected variable {name}"


def test_parameters(template: Template) -> None:
    params = template.parameters
    assert params["ChallengeTtlSeconds"]["Default"] == 900
    assert params["SignatureMaxSkewSeconds"]["Default"] == 300
    assert params["AllowCpuBackend"]["Default"] == "false"
    assert params["ChallengeCooldownSeconds"]["Default"] == 600
    assert params["MaxGpusPerMachine"]["Default"] == DEFAULT_MAX_GPUS_PER_MACHINE
    assert params["MaxGpusPerMachine"]["MaxValue"] == PROTOCOL_MAX_GPUS
    assert "StageName" in params


def test_functions_have_code_and_events(template: Template) -> None:
    specs = {s.logical_id: s for s in template.functions()}
    assert set(specs) == EXPECTED_FUNCTIONS
    for lid, spec in specs.items():
        assert spec.handler == "app.lambda_handler"
        assert spec.code_uri.parent == ROOT / "functions"
        assert spec.module_file.is_file(), f"{lid}: {spec.module_file} missing"
        folder = spec.code_uri.name
        samples = list((ROOT / "events").glob(f"{folder}_*.json"))
        assert samples, f"{lid}: no sample event events/{folder}_*.json"
        for sample in samples:
            json.loads(sample.read_text())


def test_alarms_cover_every_dlq_and_function(template: Template) -> None:
    alarms = [a["Properties"] for a in template.of_type("AWS::CloudWatch::Alarm").values()]
    dlq_alarms = {
        a["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for a in alarms
        if a["MetricName"] == "ApproximateNumberOfMessagesVisible"
    }
    assert dlq_alarms == {"VerifyDLQ", "PublisherDLQ"}
    error_alarms = {a["Dimensions"][0]["Value"]["Ref"] for a in alarms if a["MetricName"] == "Errors"}
    assert error_alarms == set(template.of_type(FUNCTION))
    for a in alarms:
        assert a["Threshold"] == 0
        assert a["ComparisonOperator"] == "GreaterThanThreshold"


def test_every_alarm_notifies_the_topic_when_it_fires_and_clears(template: Template) -> None:
    alarms = template.of_type("AWS::CloudWatch::Alarm")
    assert alarms
    for lid, alarm in alarms.items():
        p = alarm["Properties"]
        assert p["AlarmActions"] == [{"Ref": "AlarmTopic"}], lid
        assert p["OKActions"] == [{"Ref": "AlarmTopic"}], lid
    assert set(template.of_type("AWS::SNS::Topic")) == {"AlarmTopic"}
    (sub,) = template.of_type("AWS::SNS::Subscription").values()
    assert sub["Condition"] == "HasAlarmEmail"
    assert sub["Properties"] == {
        "TopicArn": {"Ref": "AlarmTopic"},
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }
    assert template.parameters["AlarmEmail"]["Default"] == ""
    r = _fake_resources(template)
    assert r.resolve({"Condition": "HasAlarmEmail"}) is False
    assert (
        _fake_resources(template, AlarmEmail="ops@example.org").resolve({"Condition": "HasAlarmEmail"})
        is True
    )


def test_custom_metric_alarms_watch_what_the_code_emits(template: Template) -> None:
    namespace = template.function_globals["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    service = template.function_globals["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    custom = {
        a["Properties"]["MetricName"]: a["Properties"]
        for a in template.of_type("AWS::CloudWatch::Alarm").values()
        if not a["Properties"]["Namespace"].startswith("AWS/")
    }
    assert set(custom) == {
        observability.PUBLICATION_FAILURES,
        observability.PUBLICATION_RETRIES,
        observability.RECONCILIATION_REPAIRS,
    }
    for p in custom.values():
        assert p["Namespace"] == namespace
        assert p["Dimensions"] == [{"Name": "service", "Value": service}]


def test_the_dashboard_shows_every_alarm_function_queue_and_metric(template: Template) -> None:
    (dashboard,) = template.of_type("AWS::CloudWatch::Dashboard").values()
    body = json.loads(_fake_resources(template).resolve(dashboard["Properties"]["DashboardBody"]))
    text = json.dumps(body)
    (alarm_widget,) = [w for w in body["widgets"] if w["type"] == "alarm"]
    assert set(alarm_widget["properties"]["alarms"]) == {
        f"arn:{lid}" for lid in template.of_type("AWS::CloudWatch::Alarm")
    }
    for lid in template.of_type(FUNCTION):
        assert f'"t-{lid}"' in text, lid
    for lid in template.of_type("AWS::SQS::Queue"):
        assert f'"t-{lid}"' in text, lid
    for name in observability.METRIC_NAMES:
        assert name in text, name
    for w in body["widgets"]:
        assert {"x", "y", "width", "height"} <= set(w) and w["properties"].get("title")


def test_every_alarm_has_a_runbook() -> None:
    runbooks = (ROOT / "docs" / "operations.md").read_text()
    for lid in load_template(ROOT / "template.yaml").of_type("AWS::CloudWatch::Alarm"):
        assert f"### {lid}" in runbooks, f"docs/operations.md has no runbook section for {lid}"


# ---------------------------------------------------------------- resolution (no AWS)


def _fake_resources(template: Template, **params: str) -> Resources:
    physical = {
        lid: Physical(
            ref=f"t-{lid}",
            attrs={"Arn": f"arn:{lid}", "StreamArn": f"arn:{lid}/stream", "QueueName": f"t-{lid}"},
        )
        for lid in template.resources
    }
    return Resources(template, "stk", "http://unused", resolve_parameters(template, params), physical)


def test_resolve_intrinsics(template: Template) -> None:
    r = _fake_resources(template)
    assert r.resolve({"Ref": "MachinesTable"}) == "t-MachinesTable"
    assert r.resolve({"Fn::GetAtt": ["VerdictsTable", "StreamArn"]}) == "arn:VerdictsTable/stream"
    assert r.resolve({"Fn::Sub": "alias/${AWS::StackName}-service"}) == "alias/stk-service"
    assert r.resolve({"Fn::Sub": "${VerifyQueue.Arn}|${!Literal}"}) == "arn:VerifyQueue|${Literal}"
    assert r.resolve({"Fn::Join": ["-", ["a", {"Ref": "AWS::Region"}]]}) == "a-us-east-1"
    assert r.resolve({"Fn::Select": [1, ["x", "y"]]}) == "y"
    with pytest.raises(TemplateError):
        r.resolve({"Ref": "NoSuchThing"})


def test_outputs_resolve_with_conditions(template: Template) -> None:
    url = _fake_resources(template).resolve(template.doc["Outputs"]["ApiUrl"]["Value"])
    assert url == "https://t-HttpApi.execute-api.us-east-1.amazonaws.com/"
    staged = _fake_resources(template, StageName="v1").resolve(template.doc["Outputs"]["ApiUrl"]["Value"])
    assert staged.endswith("/v1/")


def test_function_environment_resolves_and_parameters_override(
    template: Template, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CHALLENGE_TTL_S", raising=False)
    r = _fake_resources(template)
    (spec,) = [s for s in template.functions() if s.logical_id == "MachineApiFunction"]
    env = r.function_environment(spec)
    assert env["MACHINES_TABLE"] == "t-MachinesTable"
    assert env["CHALLENGE_TTL_S"] == "900"
    assert env["POWERTOOLS_SERVICE_NAME"] == "gpuproof"
    monkeypatch.setenv("CHALLENGE_TTL_S", "5")
    assert r.function_environment(spec)["CHALLENGE_TTL_S"] == "5"
    merged = r.merged_environment()
    assert merged["VERDICTS_TABLE"] == "t-VerdictsTable"
    assert set(ENV_NAMES) <= set(merged)


# ---------------------------------------------------------------- front (no sockets)


def _router() -> Router:
    routes = []
    for lid, keys in EXPECTED_ROUTES.items():
        for key in keys:
            method, path = key.split(" ", 1)
            routes.append(Route.build(method, path, lid))  # type: ignore[arg-type]
    return Router(routes)


def test_router_matches_templates_and_params() -> None:
    router = _router()
    m = router.match("GET", "/machines/ab12/reports/ch%2F1")
    assert m is not None
    route, params = m
    assert route.route_key == "GET /machines/{machine_id}/reports/{challenge_id}"
    assert params == {"machine_id": "ab12", "challenge_id": "ch/1"}
    m = router.match("POST", "/rounds/ab12/3/commit")
    assert m is not None and m[1] == {"machine_id": "ab12", "round": "3"}
    assert router.match("DELETE", "/machines/ab12") is None
    assert router.match("GET", "/nope") is None


def test_http_event_shape() -> None:
    route = Route.build("POST", "/machines/{machine_id}/reports", "fn")  # type: ignore[arg-type]
    event = build_http_event(
        route,
        {"machine_id": "ab"},
        "POST",
        "/machines/ab/reports",
        "a=1&a=2&b=",
        [("Content-Type", "application/json"), ("X-Thing", "1"), ("x-thing", "2"), ("Cookie", "s=1; t=2")],
        b'{"k": 1}',
        "127.0.0.1",
    )
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /machines/{machine_id}/reports"
    assert event["rawPath"] == "/machines/ab/reports"
    assert event["rawQueryString"] == "a=1&a=2&b="
    assert event["queryStringParameters"] == {"a": "1,2", "b": ""}
    assert event["headers"] == {"content-type": "application/json", "x-thing": "1,2"}
    assert event["cookies"] == ["s=1", "t=2"]
    assert event["pathParameters"] == {"machine_id": "ab"}
    assert event["body"] == '{"k": 1}' and event["isBase64Encoded"] is False
    http = event["requestContext"]["http"]
    assert http == {
        "method": "POST",
        "path": "/machines/ab/reports",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "",
    }
    binary = build_http_event(
        route, {}, "POST", "/x", "", [("content-type", "application/octet-stream")], b"\xff\x00", "1.2.3.4"
    )
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\xff\x00"


def test_response_translation() -> None:
    status, headers, body = translate_response(
        {"statusCode": 201, "headers": {"Content-Type": "application/json"}, "body": "{}", "cookies": ["a=b"]}
    )
    assert status == 201 and body == b"{}"
    assert ("set-cookie", "a=b") in headers
    status, _, body = translate_response(
        {"statusCode": 200, "body": base64.b64encode(b"\x01").decode(), "isBase64Encoded": True}
    )
    assert body == b"\x01"
    status, headers, body = translate_response({"ok": True})
    assert status == 200 and json.loads(body) == {"ok": True}


def test_schedule_period() -> None:
    assert schedule_period_s("rate(1 minute)") == 60
    assert schedule_period_s("rate(2 hours)") == 7200
