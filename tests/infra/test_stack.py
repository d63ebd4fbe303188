"""The synthesized CrmSyncStack holds what infra/resources.py describes, wired least-privilege."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterator, Mapping
from typing import Any, cast

import pytest
from aws_cdk import CfnElement, Duration, Stack
from aws_cdk import aws_events as events
from aws_cdk.assertions import Match
from cdk_nag import AwsSolutionsChecks

from infra.bundling import ARCHITECTURE, RUNTIME
from infra.environment import SERVICE_NAME, settings_env_name
from infra.outputs import StackOutputs
from infra.resources import (
    DESCRIPTION,
    FunctionSpec,
    IndexSpec,
    QueueSpec,
    ScheduleSpec,
    TableSpec,
    webhook_path,
    webhook_route,
)
from shared.connectors.registry import vendors
from shared.connectors.spec import secret_id
from shared.settings import Settings
from tests.infra.conftest import ALARM_EMAIL, Synthesized

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
    """Logical ids a template value points at through Ref or Fn::GetAtt (not the
    pseudo parameters such as ``AWS::Region``)."""
    if isinstance(value, dict):
        if "Ref" in value:
            if not value["Ref"].startswith("AWS::"):
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
        if s["Effect"] == "Allow" and action in _actions(s)
        for ref in _refs(s["Resource"])
    }


def _rendered(value: Any) -> str:
    """A template string value with its pseudo parameters as ``<AWS::Region>``, the way
    cdk-nag prints them; anything but Fn::Join and pseudo-parameter Refs raises."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Ref"} and value["Ref"].startswith("AWS::"):
        return f"<{value['Ref']}>"
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return str(separator).join(_rendered(part) for part in parts)
    raise AssertionError(f"not a literal ARN: {value!r}")


def _granted_arns(statements: list[Resource], action: str) -> set[str]:
    """The ARNs (patterns included) the statements allow ``action`` on."""
    arns: set[str] = set()
    for s in statements:
        if s["Effect"] == "Allow" and action in _actions(s):
            resources = s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]]
            arns |= {_rendered(r) for r in resources}
    return arns


def _secret_arn(name_pattern: str) -> str:
    """A secret's ARN pattern: Secrets Manager appends ``-`` and six random characters."""
    arn = "arn:<AWS::Partition>:secretsmanager:<AWS::Region>:<AWS::AccountId>:secret:"
    return f"{arn}{name_pattern}-??????"


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
    """The same for every function: the tables and queues, no connection and no secret
    (a connection and its secrets are data, looked up at run time)."""
    stack = synth.stack
    env: dict[str, Any] = {
        settings_env_name("public_base_url"): {
            "Fn::GetAtt": [_logical_id(stack, "Ingress", "Api"), "ApiEndpoint"]
        },
        "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
        "POWERTOOLS_LOG_LEVEL": "INFO",  # the deploy context's default
    }
    for table in DESCRIPTION.tables:
        env[settings_env_name(table.setting)] = {"Ref": _logical_id(stack, "Tables", table.id)}
    for queue in DESCRIPTION.queues:
        env[settings_env_name(queue.setting)] = {"Ref": _logical_id(stack, "Queues", queue.id)}
        if queue.dead_letter_setting is not None:
            dlq = _logical_id(stack, "Queues", f"{queue.id}DeadLetter")
            env[settings_env_name(queue.dead_letter_setting)] = {"Ref": dlq}
            env[settings_env_name("max_failed_attempts")] = str(queue.max_failed_attempts)
            env[settings_env_name("retry_delay_s")] = str(queue.retry_delay_s)
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
    assert function["Environment"]["Variables"] == _expected_environment(synthesized)


def test_given_the_functions_when_synthesized_then_each_finds_the_connections_in_their_table(
    synthesized: Synthesized,
) -> None:
    connections = _logical_id(synthesized.stack, "Tables", "Connections")
    for function in _of_type(synthesized, "AWS::Lambda::Function").values():
        variables = function["Properties"]["Environment"]["Variables"]
        assert variables["CRMSYNC_CONNECTIONS_TABLE"] == {"Ref": connections}
        # One deployment, many connections: none is baked into a function.
        assert not {"CRMSYNC_CONNECTION_ID", "CRMSYNC_MAPPING_FILE"} & set(variables)
        assert not [n for n in variables if n.endswith("_SECRET_ID")]


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

    for write in ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"):
        assert _granted(statements, write) == _ids(synthesized, "Tables", spec.tables_rw)
    for read in ("dynamodb:GetItem", "dynamodb:Query"):
        assert _granted(statements, read) == _ids(
            synthesized, "Tables", spec.tables_rw + spec.tables_read
        )
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
    # Secrets by name pattern only: every connection's, written back for rotating vendors.
    readable = {_secret_arn("crmsync/*/*")} if spec.secrets_read else set()
    rotated = {_secret_arn(f"crmsync/*/{v}") for v in DESCRIPTION.rotating_vendors()}
    assert _granted_arns(statements, "secretsmanager:GetSecretValue") == readable
    assert _granted_arns(statements, "secretsmanager:DescribeSecret") == readable
    assert _granted_arns(statements, "secretsmanager:PutSecretValue") == (
        rotated if spec.secrets_rotate else set()
    )
    secret_actions = {a for s in statements for a in _actions(s) if a.startswith("secretsmanager:")}
    assert secret_actions <= {
        "secretsmanager:GetSecretValue",
        "secretsmanager:DescribeSecret",
        "secretsmanager:PutSecretValue",
    }
    services = {a.split(":")[0] for s in statements for a in _actions(s)}
    assert services <= {"logs", "xray", "dynamodb", "sqs", "secretsmanager"}


def _actions(statement: Resource) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


_DYNAMODB_WRITES = (
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
)


def test_given_all_roles_when_synthesized_then_the_connections_table_is_read_only_for_three(
    synthesized: Synthesized,
) -> None:
    connections = _logical_id(synthesized.stack, "Tables", "Connections")
    readers = {
        spec.id
        for spec in DESCRIPTION.functions
        if connections in _granted(_statements(synthesized, spec.id), "dynamodb:GetItem")
    }
    assert readers == {"Webhook", "Sync", "Reconcile"}
    for spec in DESCRIPTION.functions:
        statements = _statements(synthesized, spec.id)
        for write in _DYNAMODB_WRITES:
            assert connections not in _granted(statements, write), (spec.id, write)


def test_given_the_webhook_role_when_synthesized_then_it_only_reads_connections_and_secrets(
    synthesized: Synthesized,
) -> None:
    statements = _statements(synthesized, "Webhook")
    actions = {a for s in statements for a in _actions(s)}
    connections = _logical_id(synthesized.stack, "Tables", "Connections")

    assert not actions & set(_DYNAMODB_WRITES)
    assert "secretsmanager:PutSecretValue" not in actions
    for action in (a for a in actions if a.startswith("dynamodb:")):
        assert _granted(statements, action) == {connections}, action
    assert _granted_arns(statements, "secretsmanager:GetSecretValue") == {
        _secret_arn("crmsync/*/*")
    }


def test_given_the_registered_vendors_when_synthesized_then_only_rotating_ones_can_be_written(
    synthesized: Synthesized,
) -> None:
    rotating = {v.name for v in vendors() if v.rotates_secret}
    assert set(DESCRIPTION.rotating_vendors()) == rotating
    assert rotating and rotating != {v.name for v in vendors()}  # the split is exercised

    writers: dict[str, set[str]] = {}
    for spec in DESCRIPTION.functions:
        arns = _granted_arns(_statements(synthesized, spec.id), "secretsmanager:PutSecretValue")
        if arns:
            writers[spec.id] = arns
    assert set(writers) == {"Sync", "Reconcile"}
    for vendor in vendors():
        # What a connection's secret for the vendor is named, as the pattern would match it.
        name = f"{secret_id('acme', vendor.name)}-AbCdEf"
        for arns in writers.values():
            writable = any(fnmatch.fnmatchcase(name, arn.split(":secret:")[1]) for arn in arns)
            assert writable is vendor.rotates_secret, vendor.name


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

    registered = [v.name for v in vendors()]
    assert list(DESCRIPTION.webhook_vendors()) == registered
    routes = {
        r["Properties"]["RouteKey"]: r["Properties"]
        for r in _of_type(synthesized, "AWS::ApiGatewayV2::Route").values()
    }
    # One route per vendor; the connection is a path parameter, so connections need none.
    assert set(routes) == {f"POST /webhooks/{vendor}/{{connection}}" for vendor in registered}
    for route in routes.values():
        assert route["ApiId"] == {"Ref": api_id}
    (integration_id,) = _of_type(synthesized, "AWS::ApiGatewayV2::Integration")
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Integration",
        {
            "IntegrationType": "AWS_PROXY",
            "IntegrationUri": {"Fn::GetAtt": [webhook_id, "Arn"]},
        },
    )
    for route in routes.values():
        assert route["Target"] == {"Fn::Join": ["", ["integrations/", {"Ref": integration_id}]]}


def test_given_a_connection_when_its_webhook_path_is_built_then_it_fills_the_route_parameter() -> (
    None
):
    assert webhook_route("hubspot") == "/webhooks/hubspot/{connection}"
    assert webhook_path("hubspot", "acme") == "/webhooks/hubspot/acme"


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


def test_given_the_stack_when_synthesized_then_it_creates_no_secret_and_carries_no_credential(
    synthesized: Synthesized,
) -> None:
    resources = synthesized.template_json["Resources"].values()
    keys = set(_keys(synthesized.template_json))

    assert not [r["Type"] for r in resources if r["Type"].startswith("AWS::SecretsManager::")]
    assert not keys & {"SecretString", "SecretBinary", "GenerateSecretString"}
    # No vendor's secret key appears anywhere, as a key or as a value.
    secret_keys = {key for vendor in vendors() for key in vendor.secret_keys}
    assert secret_keys
    assert not secret_keys & keys
    assert not [s for s in _strings(synthesized.template_json) if s in secret_keys]


def test_given_the_stack_when_synthesized_then_secret_names_appear_only_as_grant_patterns(
    synthesized: Synthesized,
) -> None:
    """No connection's secret is named in the template: only the any-connection
    patterns of the IAM grants mention the prefix."""
    policies = {
        logical_id: resource
        for logical_id, resource in synthesized.template_json["Resources"].items()
        if resource["Type"] == "AWS::IAM::Policy"
    }
    outside = {
        logical_id: resource
        for logical_id, resource in synthesized.template_json["Resources"].items()
        if logical_id not in policies
    }
    assert not [s for s in _strings(outside) if "crmsync/" in s]
    assert not [s for s in _strings(synthesized.template_json["Outputs"]) if "crmsync/" in s]
    mentions = [s for s in _strings(policies) if "crmsync/" in s]
    assert mentions
    for mention in mentions:
        assert mention.startswith(":secret:crmsync/*/"), mention


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


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
        + 1  # persistent drift
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

    api = _logical_id(synthesized.stack, "Ingress", "Api")
    webhook_outputs = {name: o for name, o in outputs.items() if name.endswith("WebhookUrl")}
    assert len(webhook_outputs) == len(vendors())
    for vendor in vendors():
        # <Vendor>WebhookUrl: the API's endpoint and the vendor's route, {connection} left in.
        (name,) = [n for n in webhook_outputs if n.lower() == f"{vendor.name}webhookurl"]
        assert webhook_outputs[name]["Value"] == {
            "Fn::Join": ["", [{"Fn::GetAtt": [api, "ApiEndpoint"]}, webhook_route(vendor.name)]]
        }
        assert "{connection}" in webhook_outputs[name]["Description"]
    assert outputs["ConnectionsTableName"]["Value"] == {
        "Ref": _logical_id(synthesized.stack, "Tables", "Connections")
    }
    assert not [name for name in outputs if "Secret" in name]
    dlq = _logical_id(synthesized.stack, "Queues", "EventsDeadLetter")
    topic = _logical_id(synthesized.stack, "Monitoring", "AlarmTopic")
    assert {"Ref": dlq} in [o["Value"] for o in outputs.values()]
    assert {"Ref": topic} in [o["Value"] for o in outputs.values()]


def test_given_the_stack_when_synthesized_then_crmsync_finds_everything_in_its_outputs(
    synthesized: Synthesized,
) -> None:
    # `crmsync … --stack NAME` reads these through DescribeStacks: a missing key fails there.
    # Outputs CloudFormation resolves (a Ref, a Join) stand in as strings; plain ones as are.
    outputs = {
        key: value if isinstance(value := output["Value"], str) else f"value of {key}"
        for key, output in synthesized.template_json["Outputs"].items()
    }

    found = StackOutputs.from_outputs(outputs)

    assert set(found.webhook_urls) == {v.name for v in vendors()}
    assert found.as_outputs() == outputs
    assert found.dead_letter_queue_arn == "value of EventsDeadLetterQueueArn"


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
