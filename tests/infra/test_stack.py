"""The synthesized CrmSyncStack holds what infra/resources.py describes, wired least-privilege."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, cast

import pytest
from aws_cdk import CfnElement, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk.assertions import Match
from cdk_nag import AwsSolutionsChecks

from infra.bundling import ARCHITECTURE, RUNTIME, TASK_ROOT
from infra.environment import SERVICE_NAME, settings_env_name
from infra.resources import (
    DESCRIPTION,
    FunctionSpec,
    IndexSpec,
    QueueSpec,
    ScheduleSpec,
    TableSpec,
    secret_name,
)
from shared.settings import Settings
from tests.infra.conftest import ALARM_EMAIL, CONNECTION_ID, MAPPING_FILE, Synthesized

pytestmark = pytest.mark.infra

Resource = Mapping[str, Any]


def _logical_id(stack: Stack, *path: str) -> str:
    """The template's logical id of the L1 resource under construct ``path``."""
    node = stack.node.find_child(path[0])
    for name in path[1:]:
        node = node.node.find_child(name)
    return stack.get_logical_id(cast(CfnElement, node.node.default_child))


def _of_type(synth: Synthesized, resource_type: str) -> Mapping[str, Resource]:
    return synth.template.find_resources(resource_type)


def _refs(value: Any) -> Iterator[str]:
    """Logical ids a template value points at through Ref or Fn::GetAtt."""
    if isinstance(value, dict):
        if "Ref" in value:
            yield value["Ref"]
        elif "Fn::GetAtt" in value:
            yield value["Fn::GetAtt"][0]
        else:
            for item in value.values():
                yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)


def _statements(synth: Synthesized, function_id: str) -> list[Resource]:
    """Every IAM statement attached to a function's role."""
    function = synth.template_json["Resources"][_logical_id(synth.stack, "Functions", function_id)]
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    return [
        statement
        for policy in _of_type(synth, "AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _granted(statements: list[Resource], action: str) -> set[str]:
    """Logical ids of the resources the statements allow ``action`` on."""
    return {
        ref
        for s in statements
        if s["Effect"] == "Allow" and action in s["Action"]
        for ref in _refs(s["Resource"])
    }


def _ids(synth: Synthesized, kind: str, spec_ids: tuple[str, ...]) -> set[str]:
    return {_logical_id(synth.stack, kind, spec_id) for spec_id in spec_ids}


# --- queues -----------------------------------------------------------------------------


@pytest.mark.parametrize("spec", DESCRIPTION.queues, ids=lambda q: q.id)
def test_given_a_queue_spec_when_synthesized_then_an_encrypted_queue_redrives_to_its_own_dlq(
    synthesized: Synthesized, spec: QueueSpec
) -> None:
    queues = synthesized.template_json["Resources"]
    queue = queues[_logical_id(synthesized.stack, "Queues", spec.id)]["Properties"]
    dlq_id = _logical_id(synthesized.stack, "Queues", f"{spec.id}DeadLetter")
    dlq = queues[dlq_id]["Properties"]

    assert queue["FifoQueue"] is spec.fifo
    for attributes in (queue, dlq):
        assert attributes["DeduplicationScope"] == spec.deduplication_scope
        assert attributes["FifoThroughputLimit"] == spec.fifo_throughput_limit
    assert queue["VisibilityTimeout"] == spec.visibility_timeout_s
    assert queue["MessageRetentionPeriod"] == Duration.days(spec.retention_days).to_seconds()
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": spec.max_receive_count,
    }
    # A FIFO queue's dead-letter queue must be FIFO too; it never redrives further.
    assert dlq["FifoQueue"] is spec.fifo
    assert "RedrivePolicy" not in dlq
    assert queue["SqsManagedSseEnabled"] is True
    assert dlq["SqsManagedSseEnabled"] is True


def test_given_the_queues_when_synthesized_then_each_denies_requests_without_tls(
    synthesized: Synthesized,
) -> None:
    queue_count = len(_of_type(synthesized, "AWS::SQS::Queue"))
    denying = [
        policy
        for policy in _of_type(synthesized, "AWS::SQS::QueuePolicy").values()
        if any(
            s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for s in policy["Properties"]["PolicyDocument"]["Statement"]
        )
    ]
    assert queue_count == len(DESCRIPTION.queues) + sum(
        q.max_receive_count is not None for q in DESCRIPTION.queues
    )
    assert len(denying) == queue_count


# --- tables -----------------------------------------------------------------------------


def _key_schema(spec: TableSpec | IndexSpec) -> list[dict[str, str]]:
    keys = [{"AttributeName": spec.partition_key.name, "KeyType": "HASH"}]
    if spec.sort_key is not None:
        keys.append({"AttributeName": spec.sort_key.name, "KeyType": "RANGE"})
    return keys


@pytest.mark.parametrize("spec", DESCRIPTION.tables, ids=lambda t: t.id)
def test_given_a_table_spec_when_synthesized_then_the_table_is_on_demand_with_pitr_ttl_and_gsis(
    synthesized: Synthesized, spec: TableSpec
) -> None:
    table_id = _logical_id(synthesized.stack, "Tables", spec.id)
    table = synthesized.template_json["Resources"][table_id]["Properties"]

    assert table["KeySchema"] == _key_schema(spec)
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    if spec.ttl_attribute is None:
        assert "TimeToLiveSpecification" not in table
    else:
        assert table["TimeToLiveSpecification"] == {
            "AttributeName": spec.ttl_attribute,
            "Enabled": True,
        }
    indexes = {i["IndexName"]: i for i in table.get("GlobalSecondaryIndexes", [])}
    assert set(indexes) == {i.name for i in spec.indexes}
    for index in spec.indexes:
        assert indexes[index.name]["KeySchema"] == _key_schema(index)
        assert indexes[index.name]["Projection"] == {"ProjectionType": "ALL"}


def test_given_the_description_when_synthesized_then_there_is_one_table_per_spec(
    synthesized: Synthesized,
) -> None:
    synthesized.template.resource_count_is("AWS::DynamoDB::Table", len(DESCRIPTION.tables))


# --- functions --------------------------------------------------------------------------


def _expected_environment(synth: Synthesized) -> dict[str, Any]:
    stack = synth.stack
    env: dict[str, Any] = {
        settings_env_name("connection_id"): CONNECTION_ID,
        settings_env_name("mapping_file"): str(TASK_ROOT / MAPPING_FILE),
        settings_env_name("public_base_url"): {
            "Fn::GetAtt": [_logical_id(stack, "Ingress", "Api"), "ApiEndpoint"]
        },
        "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
    }
    for table in DESCRIPTION.tables:
        env[settings_env_name(table.setting)] = {"Ref": _logical_id(stack, "Tables", table.id)}
    for queue in DESCRIPTION.queues:
        env[settings_env_name(queue.setting)] = {"Ref": _logical_id(stack, "Queues", queue.id)}
    for secret in DESCRIPTION.secrets:
        env[settings_env_name(secret.setting)] = secret_name(CONNECTION_ID, secret.vendor)
    return env


@pytest.mark.parametrize("spec", DESCRIPTION.functions, ids=lambda f: f.id)
def test_given_a_function_spec_when_synthesized_then_the_lambda_runs_as_described(
    synthesized: Synthesized, spec: FunctionSpec
) -> None:
    function_id = _logical_id(synthesized.stack, "Functions", spec.id)
    function = synthesized.template_json["Resources"][function_id]["Properties"]

    assert function["Handler"] == spec.handler
    assert function["Runtime"] == RUNTIME.name
    assert function["Architectures"] == [ARCHITECTURE.name] == ["arm64"]
    assert function["MemorySize"] == spec.memory_mb
    assert function["Timeout"] == spec.timeout_s
    assert function["TracingConfig"] == {"Mode": "Active"}
    synthesized.template.has_resource_properties(
        "AWS::Lambda::Function",
        {"Handler": spec.handler, "Environment": {"Variables": _expected_environment(synthesized)}},
    )


def test_given_the_functions_when_synthesized_then_every_crmsync_variable_is_a_settings_field(
    synthesized: Synthesized,
) -> None:
    readable = {settings_env_name(field) for field in Settings.model_fields}
    for function in _of_type(synthesized, "AWS::Lambda::Function").values():
        names = set(function["Properties"]["Environment"]["Variables"])
        assert {n for n in names if n.startswith("CRMSYNC_")} <= readable


def test_given_the_functions_when_synthesized_then_each_logs_to_its_own_group_with_retention(
    synthesized: Synthesized,
) -> None:
    log_groups = _of_type(synthesized, "AWS::Logs::LogGroup")
    used = [
        f["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        for f in _of_type(synthesized, "AWS::Lambda::Function").values()
    ]
    assert len(used) == len(set(used)) == len(DESCRIPTION.functions)
    for log_group_id in used:
        assert log_groups[log_group_id]["Properties"]["RetentionInDays"] > 0


@pytest.mark.parametrize(
    "spec", [f for f in DESCRIPTION.functions if f.queues_consume], ids=lambda f: f.id
)
def test_given_a_consumer_when_synthesized_then_its_queue_feeds_it_with_partial_batch_failures(
    synthesized: Synthesized, spec: FunctionSpec
) -> None:
    for queue_id in spec.queues_consume:
        synthesized.template.has_resource_properties(
            "AWS::Lambda::EventSourceMapping",
            {
                "EventSourceArn": {
                    "Fn::GetAtt": [_logical_id(synthesized.stack, "Queues", queue_id), "Arn"]
                },
                "FunctionName": {"Ref": _logical_id(synthesized.stack, "Functions", spec.id)},
                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                "ScalingConfig": {"MaximumConcurrency": spec.max_concurrency},
            },
        )
    synthesized.template.resource_count_is(
        "AWS::Lambda::EventSourceMapping",
        sum(len(f.queues_consume) for f in DESCRIPTION.functions),
    )


# --- least privilege --------------------------------------------------------------------


@pytest.mark.parametrize("spec", DESCRIPTION.functions, ids=lambda f: f.id)
def test_given_a_function_spec_when_synthesized_then_its_role_reaches_exactly_what_it_lists(
    synthesized: Synthesized, spec: FunctionSpec
) -> None:
    statements = _statements(synthesized, spec.id)

    assert _granted(statements, "dynamodb:PutItem") == _ids(synthesized, "Tables", spec.tables_rw)
    assert _granted(statements, "dynamodb:GetItem") == _ids(synthesized, "Tables", spec.tables_rw)
    # A consumer dead-letters what keeps failing itself; a sweeper reads and clears a DLQ.
    dead_letters_sent = tuple(f"{q}DeadLetter" for q in spec.queues_consume)
    dead_letters_read = tuple(f"{q}DeadLetter" for q in spec.dead_letters_sweep)
    assert _granted(statements, "sqs:SendMessage") == _ids(
        synthesized, "Queues", spec.queues_send + dead_letters_sent
    )
    assert _granted(statements, "sqs:ReceiveMessage") == _ids(
        synthesized, "Queues", spec.queues_consume + dead_letters_read
    )
    assert _granted(statements, "sqs:DeleteMessage") == _ids(
        synthesized, "Queues", spec.queues_consume + dead_letters_read
    )
    assert _granted(statements, "secretsmanager:GetSecretValue") == _ids(
        synthesized, "Secrets", spec.secrets_read + spec.secrets_write
    )
    assert _granted(statements, "secretsmanager:PutSecretValue") == _ids(
        synthesized, "Secrets", spec.secrets_write
    )
    services = {a.split(":")[0] for s in statements for a in _actions(s)}
    assert services <= {"logs", "xray", "dynamodb", "sqs", "secretsmanager"}


def _actions(statement: Resource) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_given_the_webhook_role_when_synthesized_then_it_cannot_touch_dynamodb(
    synthesized: Synthesized,
) -> None:
    actions = [a for s in _statements(synthesized, "Webhook") for a in _actions(s)]
    assert actions
    assert not [a for a in actions if a.startswith("dynamodb:")]


def test_given_all_roles_when_synthesized_then_only_sync_can_write_the_quickbooks_secret(
    synthesized: Synthesized,
) -> None:
    quickbooks = _logical_id(synthesized.stack, "Secrets", "QuickBooksCredentials")
    writers = {
        spec.id
        for spec in DESCRIPTION.functions
        if quickbooks
        in _granted(_statements(synthesized, spec.id), "secretsmanager:PutSecretValue")
    }
    assert writers == {"Sync"}


def test_given_all_roles_when_synthesized_then_none_has_managed_policies_or_wildcards_beyond_xray(
    synthesized: Synthesized,
) -> None:
    for role in _of_type(synthesized, "AWS::IAM::Role").values():
        assert "ManagedPolicyArns" not in role["Properties"]
    for policy in _of_type(synthesized, "AWS::IAM::Policy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Resource"] == "*":
                assert all(a.startswith("xray:") for a in _actions(statement)), statement


# --- ingress ----------------------------------------------------------------------------


def test_given_the_webhook_vendors_when_synthesized_then_each_has_a_post_route_to_the_webhook(
    synthesized: Synthesized,
) -> None:
    template = synthesized.template
    api_id = _logical_id(synthesized.stack, "Ingress", "Api")
    webhook_id = _logical_id(synthesized.stack, "Functions", "Webhook")

    assert set(DESCRIPTION.webhook_vendors()) == {"hubspot", "quickbooks"}
    for vendor in DESCRIPTION.webhook_vendors():
        template.has_resource_properties(
            "AWS::ApiGatewayV2::Route",
            {"ApiId": {"Ref": api_id}, "RouteKey": f"POST /webhooks/{vendor}"},
        )
    template.resource_count_is("AWS::ApiGatewayV2::Route", len(DESCRIPTION.webhook_vendors()))
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Integration",
        {
            "IntegrationType": "AWS_PROXY",
            "IntegrationUri": {"Fn::GetAtt": [webhook_id, "Arn"]},
        },
    )


def test_given_the_api_when_synthesized_then_its_stage_is_throttled_and_access_logged(
    synthesized: Synthesized,
) -> None:
    (stage,) = _of_type(synthesized, "AWS::ApiGatewayV2::Stage").values()
    props = stage["Properties"]

    assert props["StageName"] == "$default"
    assert props["DefaultRouteSettings"]["ThrottlingRateLimit"] > 0
    assert props["DefaultRouteSettings"]["ThrottlingBurstLimit"] > 0
    log_group_id = props["AccessLogSettings"]["DestinationArn"]["Fn::GetAtt"][0]
    assert log_group_id in _of_type(synthesized, "AWS::Logs::LogGroup")
    assert "$context.requestId" in json.loads(props["AccessLogSettings"]["Format"]).values()


# --- schedules --------------------------------------------------------------------------


@pytest.mark.parametrize("spec", DESCRIPTION.schedules, ids=lambda s: s.id)
def test_given_a_schedule_spec_when_synthesized_then_a_rule_invokes_its_function_at_the_rate(
    synthesized: Synthesized, spec: ScheduleSpec
) -> None:
    rate = events.Schedule.rate(Duration.minutes(spec.rate_minutes)).expression_string
    synthesized.template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": rate,
            "State": "ENABLED",
            "Targets": [
                Match.object_like(
                    {
                        "Arn": {
                            "Fn::GetAtt": [
                                _logical_id(synthesized.stack, "Functions", spec.function),
                                "Arn",
                            ]
                        }
                    }
                )
            ],
        },
    )


# --- secrets ----------------------------------------------------------------------------


def test_given_the_secret_specs_when_synthesized_then_secrets_are_named_and_hold_no_value(
    synthesized: Synthesized,
) -> None:
    secrets = _of_type(synthesized, "AWS::SecretsManager::Secret")
    names = {s["Properties"]["Name"] for s in secrets.values()}

    assert names == {secret_name(CONNECTION_ID, s.vendor) for s in DESCRIPTION.secrets}
    assert "SecretString" not in set(_keys(synthesized.template_json))
    for secret in secrets.values():  # CloudFormation fills each with a random placeholder
        assert secret["Properties"]["GenerateSecretString"] == {}


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


# --- monitoring -------------------------------------------------------------------------


def _alarms(synth: Synthesized) -> list[Resource]:
    return [a["Properties"] for a in _of_type(synth, "AWS::CloudWatch::Alarm").values()]


def test_given_the_alarms_when_synthesized_then_every_one_notifies_the_alarm_topic(
    synthesized: Synthesized,
) -> None:
    (topic_id,) = _of_type(synthesized, "AWS::SNS::Topic")
    alarms = _alarms(synthesized)

    assert len(alarms) == (
        sum(q.max_receive_count is not None for q in DESCRIPTION.queues)  # DLQ not empty
        + len(DESCRIPTION.queues)  # oldest message age
        + 2 * len(DESCRIPTION.functions)  # errors, throttles
    )
    for alarm in alarms:
        assert alarm["AlarmActions"] == [{"Ref": topic_id}]


def test_given_the_alarms_when_synthesized_then_they_watch_dlq_depth_age_errors_and_throttles(
    synthesized: Synthesized,
) -> None:
    stack = synthesized.stack
    watched = {
        (alarm["MetricName"], ref, alarm["Threshold"])
        for alarm in _alarms(synthesized)
        for ref in _refs(alarm["Dimensions"])
    }
    for queue in DESCRIPTION.queues:
        dlq = _logical_id(stack, "Queues", f"{queue.id}DeadLetter")
        assert ("ApproximateNumberOfMessagesVisible", dlq, 0) in watched
        events_queue = _logical_id(stack, "Queues", queue.id)
        assert any(
            m == "ApproximateAgeOfOldestMessage" and r == events_queue for m, r, _ in watched
        )
    for function in DESCRIPTION.functions:
        function_id = _logical_id(stack, "Functions", function.id)
        assert ("Errors", function_id, 0) in watched
        assert ("Throttles", function_id, 0) in watched


def test_given_an_alarm_email_when_synthesized_then_it_is_subscribed_and_only_then(
    synthesized: Synthesized,
) -> None:
    synthesized.template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": ALARM_EMAIL}
    )
    synthesized.quiet_template.resource_count_is("AWS::SNS::Subscription", 0)


# --- outputs ----------------------------------------------------------------------------


def test_given_the_stack_when_synthesized_then_it_outputs_what_an_operator_needs(
    synthesized: Synthesized,
) -> None:
    outputs = synthesized.template_json["Outputs"]
    values = json.dumps([o["Value"] for o in outputs.values()])

    for vendor in DESCRIPTION.webhook_vendors():
        assert f'"/webhooks/{vendor}"' in values
    # The names the README tells an operator to look for.
    assert {"HubSpotWebhookUrl", "QuickBooksWebhookUrl"} <= set(outputs)
    for secret in DESCRIPTION.secrets:
        assert json.dumps(secret_name(CONNECTION_ID, secret.vendor)) in values
    dlq = _logical_id(synthesized.stack, "Queues", "EventsDeadLetter")
    topic = _logical_id(synthesized.stack, "Monitoring", "AlarmTopic")
    assert {"Ref": dlq} in [o["Value"] for o in outputs.values()]
    assert {"Ref": topic} in [o["Value"] for o in outputs.values()]


# --- cdk-nag ----------------------------------------------------------------------------


def test_given_the_stack_when_checked_by_cdk_nag_then_no_unacknowledged_finding_remains(
    synthesized: Synthesized,
) -> None:
    report = AwsSolutionsChecks(synthesized.app).validate_scope(synthesized.stack)
    findings = [
        f"{v.rule_name}: {v.description} at "
        + ", ".join(str(r.construct_path) for r in v.violating_resources)
        for v in report.violations
    ]
    assert not findings, "\n".join(findings)
