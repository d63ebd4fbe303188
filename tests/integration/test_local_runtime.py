"""The local stack (``local/``): resources from the description, the configured
connections and their secrets, the API Gateway stand-in, the SQS worker, the scheduler,
the vendor sandboxes, the local config's checks, and ``crmsync up``.

Most tests share one running stack with stand-in handlers that record what they get
and answer what the test tells them to; moto's server is real, so queues really
redeliver, and redrive really moves messages to the DLQ.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml

from infra.environment import SERVICE_NAME, resource_settings, settings_environment
from infra.resources import DESCRIPTION, local_name, webhook_path
from local import cli
from local.apigw import create_app
from local.config import NO_VENDOR, FailuresConfig, LocalConfig, LocalConfigError
from local.lambdas import LambdaContext
from local.runtime import LocalStack, PortInUse
from local.sandboxes.hubspot import sign_v3
from local.sandboxes.registry import SANDBOXES, sandbox
from shared.connectors.registry import vendor, vendors
from shared.connectors.spec import secret_id
from shared.models import ChangeEvent, ChangeKind, ObjectType
from shared.settings import Settings
from shared.stores import DynamoConnections

REPO = Path(__file__).resolve().parents[2]
# The stand-ins' stack: the deployed description, but with SQS's redrive backstop
# (1,000 receives when deployed) after 3 receives, so that a test reaches it.
BACKSTOP_AT_3 = DESCRIPTION.model_copy(
    update={
        "queues": tuple(
            q.model_copy(update={"max_receive_count": 3}) if q.id == "Events" else q
            for q in DESCRIPTION.queues
        )
    }
)
EVENTS = BACKSTOP_AT_3.queue("Events")


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


@dataclass
class StandIns:
    """Handlers in place of the real ones: they record their calls and do as they are told."""

    webhook_events: list[dict[str, Any]] = field(default_factory=list)
    webhook_answer: Callable[[dict[str, Any]], Any] = lambda event: {"statusCode": 200}
    sync_batches: list[list[dict[str, Any]]] = field(default_factory=list)
    sync_contexts: list[LambdaContext] = field(default_factory=list)
    sync_answer: Callable[[list[dict[str, Any]]], Any] = lambda records: None
    scheduled: list[dict[str, Any]] = field(default_factory=list)

    def webhook(self, event: dict[str, Any], context: LambdaContext) -> Any:
        self.webhook_events.append(event)
        return self.webhook_answer(event)

    def sync(self, event: dict[str, Any], context: LambdaContext) -> Any:
        self.sync_batches.append(event["Records"])
        self.sync_contexts.append(context)
        return self.sync_answer(event["Records"])

    def reconcile(self, event: dict[str, Any], context: LambdaContext) -> Any:
        self.scheduled.append(event)
        return {"enqueued": 0}

    def handlers(self) -> dict[str, Callable[[dict[str, Any], Any], Any]]:
        return {"Webhook": self.webhook, "Sync": self.sync, "Reconcile": self.reconcile}

    def reset(self) -> None:
        self.webhook_events.clear()
        self.sync_batches.clear()
        self.sync_contexts.clear()
        self.webhook_answer = StandIns.webhook_answer
        self.sync_answer = StandIns.sync_answer

    def bodies(self) -> list[str]:
        return [record["body"] for batch in self.sync_batches for record in batch]


def free_config(**changes: Any) -> LocalConfig:
    """The committed config on free ports, its queue as deployed (no local ``failures``)."""
    return (
        LocalConfig.load()
        .with_free_ports()
        .model_copy(update={"failures": FailuresConfig(), **changes})
    )


@pytest.fixture(scope="class")
def standins() -> StandIns:
    return StandIns()


@pytest.fixture(scope="class")
def stack(standins: StandIns) -> Iterator[LocalStack]:
    config = free_config(reconcile_interval_s=0.2)
    with LocalStack(
        config, handlers=standins.handlers(), sandboxes=False, description=BACKSTOP_AT_3
    ) as running:
        yield running


@pytest.fixture
def fakes(stack: LocalStack, standins: StandIns) -> Iterator[StandIns]:
    standins.reset()
    yield standins
    assert stack.wait_until_drained(10), "a test left messages on the events queue"


def send(stack: LocalStack, body: str, group: str, **extra: Any) -> str:
    return stack.clients.sqs.send_message(
        QueueUrl=stack.resources.queues["Events"].url,
        MessageBody=body,
        MessageGroupId=group,
        MessageDeduplicationId=f"{group}-{body}-{time.monotonic_ns()}",
        **extra,
    )["MessageId"]


def send_together(stack: LocalStack, group: str, *bodies: str) -> None:
    """One SendMessageBatch, so the worker's next receive sees all of them."""
    stack.clients.sqs.send_message_batch(
        QueueUrl=stack.resources.queues["Events"].url,
        Entries=[
            {
                "Id": str(i),
                "MessageBody": body,
                "MessageGroupId": group,
                "MessageDeduplicationId": f"{group}-{body}-{time.monotonic_ns()}",
            }
            for i, body in enumerate(bodies)
        ],
    )


def retry_soon(stack: LocalStack, records: list[dict[str, Any]], seconds: int = 1) -> None:
    """What a handler does to get a failed record back sooner than the queue's timeout."""
    for record in records:
        stack.clients.sqs.change_message_visibility(
            QueueUrl=stack.resources.queues["Events"].url,
            ReceiptHandle=record["receiptHandle"],
            VisibilityTimeout=seconds,
        )


class TestRunningStack:
    # --- resources ------------------------------------------------------------------

    def test_given_stack_then_every_table_has_the_described_keys_indexes_and_ttl(
        self, stack: LocalStack
    ) -> None:
        dynamodb = stack.clients.dynamodb
        for spec in DESCRIPTION.tables:
            name = local_name(stack.config.stack, spec.id)
            table = dynamodb.describe_table(TableName=name)["Table"]
            keys = {k["AttributeName"]: k["KeyType"] for k in table["KeySchema"]}
            expected = {spec.partition_key.name: "HASH"}
            if spec.sort_key:
                expected[spec.sort_key.name] = "RANGE"
            assert keys == expected
            indexes = {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])}
            assert indexes == {i.name for i in spec.indexes}
            ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            if spec.ttl_attribute:
                assert ttl["TimeToLiveStatus"] == "ENABLED"
                assert ttl["AttributeName"] == spec.ttl_attribute
            else:
                assert ttl["TimeToLiveStatus"] == "DISABLED"
            assert stack.resources.tables[spec.id] == name

    def test_given_stack_then_events_queue_is_fifo_and_redrives_to_a_fifo_dlq(
        self, stack: LocalStack
    ) -> None:
        sqs = stack.clients.sqs
        queue = stack.resources.queues["Events"]
        assert queue.url.endswith(local_name(stack.config.stack, "Events", fifo=True))
        attributes = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["All"])[
            "Attributes"
        ]
        assert attributes["FifoQueue"] == "true"
        assert attributes["DeduplicationScope"] == EVENTS.deduplication_scope
        assert attributes["FifoThroughputLimit"] == EVENTS.fifo_throughput_limit
        assert attributes["VisibilityTimeout"] == str(EVENTS.visibility_timeout_s)
        assert attributes["MessageRetentionPeriod"] == str(EVENTS.retention_days * 86_400)
        redrive = json.loads(attributes["RedrivePolicy"])
        assert int(redrive["maxReceiveCount"]) == EVENTS.max_receive_count
        assert redrive["deadLetterTargetArn"] == queue.dead_letter_arn
        assert queue.dead_letter_url is not None
        dlq = sqs.get_queue_attributes(QueueUrl=queue.dead_letter_url, AttributeNames=["All"])
        assert dlq["Attributes"]["FifoQueue"] == "true"
        assert dlq["Attributes"]["DeduplicationScope"] == EVENTS.deduplication_scope
        assert dlq["Attributes"]["FifoThroughputLimit"] == EVENTS.fifo_throughput_limit
        assert dlq["Attributes"]["QueueArn"] == queue.dead_letter_arn

    def test_given_stack_then_each_connection_keeps_exactly_its_vendors_keys_from_the_sandboxes(
        self, stack: LocalStack
    ) -> None:
        secrets = stack.clients.secretsmanager
        expected = set()
        for connection in stack.config.connections:
            for name in (connection.crm, connection.accounting):
                expected.add(secret_id(connection.id, name))
                value = json.loads(
                    secrets.get_secret_value(SecretId=secret_id(connection.id, name))[
                        "SecretString"
                    ]
                )
                assert sorted(value) == sorted(vendor(name).secret_keys)
                # Without sandboxes running, the values are still the dummy account's.
                account = sandbox(name).start(None)
                try:
                    assert value == sandbox(name).secret(account)
                finally:
                    account.close()
        # One secret per connection and vendor, and nothing else.
        listed = {entry["Name"] for entry in secrets.list_secrets()["SecretList"]}
        assert listed == expected
        hubspot = json.loads(
            secrets.get_secret_value(
                SecretId=secret_id(stack.config.connection_of("hubspot").id, "hubspot")
            )["SecretString"]
        )
        assert hubspot["access_token"] == "pat-na1-sandbox-token"  # HubSpotSandboxConfig's

    def test_given_stack_then_the_connections_table_holds_each_configured_connection(
        self, stack: LocalStack
    ) -> None:
        # Read as a function reads it: the table its settings name, through the
        # environment's AWS endpoint.
        connections = DynamoConnections(
            boto3.client("dynamodb"), boto3.resource("dynamodb"), Settings().connections_table
        )

        stored = connections.all()

        assert stored == [c.connection() for c in stack.config.connections]
        (demo,) = stored
        assert (demo.crm, demo.accounting) == ("hubspot", "quickbooks")
        assert demo.mapping == stack.config.connections[0].mapping_file.read_text()

    def test_given_stack_then_the_schedule_rule_carries_the_described_rate(
        self, stack: LocalStack
    ) -> None:
        for spec in DESCRIPTION.schedules:
            rule = stack.clients.events.describe_rule(Name=local_name(stack.config.stack, spec.id))
            assert rule["ScheduleExpression"] == f"rate({spec.rate_minutes} minutes)"
            assert rule["Arn"] == stack.resources.schedules[spec.id]

    def test_given_stack_then_settings_read_from_the_environment_name_its_resources(
        self, stack: LocalStack
    ) -> None:
        settings = Settings()
        assert settings.connections_table == stack.resources.tables["Connections"]
        assert settings.links_table == stack.resources.tables["Links"]
        assert settings.idempotency_table == stack.resources.tables["Idempotency"]
        assert settings.audit_table == stack.resources.tables["Audit"]
        assert settings.cursors_table == stack.resources.tables["Cursors"]
        assert settings.events_queue_url == stack.resources.queues["Events"].url
        assert settings.public_base_url == stack.urls.api
        assert os.environ["AWS_ENDPOINT_URL"] == stack.urls.moto
        assert os.environ["AWS_ACCESS_KEY_ID"] == stack.config.aws.access_key_id
        assert os.environ["POWERTOOLS_SERVICE_NAME"] == SERVICE_NAME

    def test_given_no_sandboxes_then_vendor_settings_point_at_a_closed_local_port(
        self, stack: LocalStack
    ) -> None:
        assert NO_VENDOR.startswith("http://127.0.0.1:")
        assert stack.urls.sandboxes == {}
        for name in stack.config.vendors():
            settings = vendor(name).read_settings()
            assert settings.model_dump() == sandbox(name).settings(NO_VENDOR)
        # Spelled out, so the test fails if a URL field were left at the real vendor.
        assert vendor("hubspot").read_settings().api_url == NO_VENDOR
        quickbooks = vendor("quickbooks").read_settings()
        assert quickbooks.api_url == NO_VENDOR
        assert quickbooks.token_url.startswith(f"{NO_VENDOR}/")

    # --- API Gateway stand-in -------------------------------------------------------

    def test_given_a_json_post_when_served_then_the_handler_gets_a_faithful_v2_event(
        self, stack: LocalStack, fakes: StandIns
    ) -> None:
        response = httpx.post(
            f"{stack.urls.webhooks['hubspot']}?b=2&a=1&a=3",
            content=b'{"objectId": 1}',
            headers=[
                ("Content-Type", "application/json"),
                ("X-HubSpot-Signature-V3", "abc="),
                ("X-Twice", "one"),
                ("X-Twice", "two"),
                ("Cookie", "c1=v1; c2=v2"),
                ("User-Agent", "HubSpot Connect 2.0"),
            ],
        )

        assert response.status_code == 200
        connection = stack.config.connection_of("hubspot").id
        path = f"/webhooks/hubspot/{connection}"
        assert stack.urls.webhooks["hubspot"] == f"{stack.urls.api}{path}"
        (event,) = fakes.webhook_events
        assert event["version"] == "2.0"
        assert event["routeKey"] == "POST /webhooks/hubspot/{connection}"
        assert event["rawPath"] == path
        assert event["pathParameters"] == {"connection": connection}
        assert event["rawQueryString"] == "b=2&a=1&a=3"
        assert event["queryStringParameters"] == {"a": "1,3", "b": "2"}
        assert event["headers"]["x-hubspot-signature-v3"] == "abc="
        assert event["headers"]["x-twice"] == "one,two"
        assert event["headers"]["content-type"] == "application/json"
        assert "cookie" not in event["headers"]
        assert event["cookies"] == ["c1=v1", "c2=v2"]
        assert event["body"] == '{"objectId": 1}'
        assert event["isBase64Encoded"] is False
        context = event["requestContext"]
        assert context["http"] == {
            "method": "POST",
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": "127.0.0.1",
            "userAgent": "HubSpot Connect 2.0",
        }
        assert context["stage"] == "$default"
        assert context["routeKey"] == "POST /webhooks/hubspot/{connection}"
        assert context["domainName"] == stack.urls.api.removeprefix("http://")
        assert context["requestId"] == response.headers["apigw-requestid"]
        assert isinstance(context["timeEpoch"], int)

    def test_given_binary_or_undecodable_bodies_when_served_then_they_arrive_base64(
        self, stack: LocalStack, fakes: StandIns
    ) -> None:
        url = stack.urls.webhooks["quickbooks"]
        httpx.post(url, content=b"\x00\xffzip", headers={"content-type": "application/zip"})
        httpx.post(url, content=b"caf\xe9", headers={"content-type": "text/plain"})
        httpx.post(url, content=b"[]", headers={"content-type": "application/cloudevents+json"})

        binary, latin1, text = fakes.webhook_events
        assert binary["isBase64Encoded"] is True
        assert base64.b64decode(binary["body"]) == b"\x00\xffzip"
        assert latin1["isBase64Encoded"] is True
        assert base64.b64decode(latin1["body"]) == b"caf\xe9"
        assert text["isBase64Encoded"] is False
        assert text["body"] == "[]"

    def test_given_an_empty_body_when_served_then_the_event_has_no_body(
        self, stack: LocalStack, fakes: StandIns
    ) -> None:
        httpx.post(stack.urls.webhooks["hubspot"])

        (event,) = fakes.webhook_events
        assert "body" not in event
        assert event["isBase64Encoded"] is False
        assert "queryStringParameters" not in event

    def test_given_a_full_proxy_result_when_returned_then_it_is_the_http_response(
        self, stack: LocalStack, fakes: StandIns
    ) -> None:
        fakes.webhook_answer = lambda event: {
            "statusCode": 201,
            "headers": {"Content-Type": "application/octet-stream", "X-Seen": "yes"},
            "cookies": ["a=1; Path=/", "b=2"],
            "body": base64.b64encode(b"\x01\x02").decode(),
            "isBase64Encoded": True,
        }

        response = httpx.post(stack.urls.webhooks["hubspot"], content=b"{}")

        assert response.status_code == 201
        assert response.content == b"\x01\x02"
        assert response.headers["content-type"] == "application/octet-stream"
        assert response.headers["x-seen"] == "yes"
        assert response.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2"]

    def test_given_a_result_without_status_code_when_returned_then_api_gateway_infers_200_json(
        self, stack: LocalStack, fakes: StandIns
    ) -> None:
        fakes.webhook_answer = lambda event: {"enqueued": 3}

        response = httpx.post(stack.urls.webhooks["hubspot"], content=b"{}")

        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {"enqueued": 3}

    @pytest.mark.parametrize(
        "answer",
        [
            pytest.param(lambda event: 1 / 0, id="handler raises"),
            pytest.param(lambda event: {"statusCode": "two hundred"}, id="malformed result"),
        ],
    )
    def test_given_a_failing_function_when_served_then_500_like_api_gateway(
        self, stack: LocalStack, fakes: StandIns, answer: Callable[[dict[str, Any]], Any]
    ) -> None:
        fakes.webhook_answer = answer

        response = httpx.post(stack.urls.webhooks["hubspot"], content=b"{}")

        assert response.status_code == 500
        assert response.json() == {"message": "Internal Server Error"}

    def test_given_any_registered_vendor_when_posted_then_its_route_takes_any_connection(
        self, stack: LocalStack, fakes: StandIns
    ) -> None:
        names = [spec.name for spec in vendors()]
        # Routes for every registered vendor, not only those a local connection uses.
        assert {"salesforce", "xero"} <= set(names) - set(stack.config.vendors())

        for name in names:
            response = httpx.post(f"{stack.urls.api}{webhook_path(name, 'acme-1')}", content=b"{}")
            assert response.status_code == 200, name

        assert [
            (e["routeKey"], e["rawPath"], e["pathParameters"]) for e in fakes.webhook_events
        ] == [
            (
                f"POST /webhooks/{name}/{{connection}}",
                f"/webhooks/{name}/acme-1",
                {"connection": "acme-1"},
            )
            for name in names
        ]

    @pytest.mark.parametrize(
        ("method", "path"),
        [
            pytest.param("GET", "/webhooks/hubspot/demo", id="GET on a webhook route"),
            pytest.param("POST", "/webhooks/nope/demo", id="unregistered vendor"),
            pytest.param("POST", "/webhooks/hubspot", id="no connection"),
            pytest.param("POST", "/webhooks/hubspot/demo/extra", id="path too long"),
        ],
    )
    def test_given_no_matching_route_when_requested_then_404_and_no_invocation(
        self, stack: LocalStack, fakes: StandIns, method: str, path: str
    ) -> None:
        response = httpx.request(method, f"{stack.urls.api}{path}")

        assert response.status_code == 404
        assert response.json() == {"message": "Not Found"}
        assert fakes.webhook_events == []

    def test_given_a_payload_over_10_mb_when_posted_then_413_and_no_invocation(
        self, stack: LocalStack, fakes: StandIns
    ) -> None:
        response = httpx.post(stack.urls.webhooks["hubspot"], content=b"x" * (10 * 1024 * 1024 + 1))

        assert response.status_code == 413
        assert fakes.webhook_events == []

    def test_given_a_parameterised_route_and_a_default_then_route_keys_and_parameters_follow(
        self,
    ) -> None:
        events: list[dict[str, Any]] = []
        app = create_app(
            lambda event: events.append(event), ["POST /webhooks/{vendor}", "$default"]
        )

        app.test_client().post("/webhooks/pipedrive", data=b"{}")
        app.test_client().get("/health")

        routed, default = events
        assert routed["routeKey"] == "POST /webhooks/{vendor}"
        assert routed["pathParameters"] == {"vendor": "pipedrive"}
        assert default["routeKey"] == "$default"
        assert "pathParameters" not in default

    # --- SQS worker -----------------------------------------------------------------

    def test_given_messages_when_polled_then_records_look_like_lambdas_sqs_event(
        self, stack: LocalStack, fakes: StandIns
    ) -> None:
        group = ChangeEvent(
            connection_id=stack.config.connections[0].id,
            source="hubspot",
            object_type=ObjectType.CONTACT,
            record_id="1",
            event_id="e1",
            kind=ChangeKind.UPDATED,
            occurred_at=datetime.now(UTC),
            version=1,
        ).message_group
        assert group == "demo:hubspot:contact:1"
        message_id = send(
            stack,
            '{"n": 1}',
            group,
            MessageAttributes={
                "origin": {"DataType": "String", "StringValue": "hubspot"},
                "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
            },
        )

        assert wait_for(lambda: fakes.sync_batches != [])
        (record,) = fakes.sync_batches[0]
        assert record["messageId"] == message_id
        assert record["body"] == '{"n": 1}'
        assert record["md5OfBody"] == hashlib.md5(b'{"n": 1}').hexdigest()  # noqa: S324
        assert record["eventSource"] == "aws:sqs"
        assert record["eventSourceARN"] == stack.resources.queues["Events"].arn
        assert record["awsRegion"] == stack.config.aws.region
        attributes = record["attributes"]
        assert attributes["ApproximateReceiveCount"] == "1"
        assert attributes["MessageGroupId"] == group
        for name in (
            "SentTimestamp",
            "ApproximateFirstReceiveTimestamp",
            "SequenceNumber",
            "MessageDeduplicationId",
        ):
            assert attributes[name]
        assert record["messageAttributes"]["origin"] == {
            "stringValue": "hubspot",
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": "String",
        }
        assert record["messageAttributes"]["blob"]["binaryValue"] == "AAE="

    def test_given_a_batch_when_invoked_then_the_context_describes_the_sync_function(
        self, stack: LocalStack, fakes: StandIns
    ) -> None:
        send(stack, "ctx", "contact-ctx")

        assert wait_for(lambda: fakes.sync_contexts != [])
        context = fakes.sync_contexts[0]
        sync = DESCRIPTION.function("Sync")
        assert context.function_name == local_name(stack.config.stack, "Sync")
        assert context.memory_limit_in_mb == sync.memory_mb
        assert context.invoked_function_arn.endswith(f":function:{context.function_name}")
        assert 0 < context.get_remaining_time_in_millis() <= sync.timeout_s * 1000

    def test_given_a_partial_failure_then_successes_are_deleted_and_the_failure_returns(
        self, stack: LocalStack, fakes: StandIns
    ) -> None:
        before = stack.workers["Events"].status()

        def fail_bad_once(records: list[dict[str, Any]]) -> Any:
            bad = [
                r
                for r in records
                if r["body"] == "bad" and r["attributes"]["ApproximateReceiveCount"] == "1"
            ]
            retry_soon(stack, bad)
            return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in bad]}

        fakes.sync_answer = fail_bad_once
        for body, group in (("good-1", "g1"), ("bad", "g2"), ("good-2", "g3")):
            send(stack, body, group)

        assert stack.wait_until_drained(10)
        assert sorted(fakes.bodies()) == ["bad", "bad", "good-1", "good-2"]
        receives = [
            r["attributes"]["ApproximateReceiveCount"]
            for batch in fakes.sync_batches
            for r in batch
            if r["body"] == "bad"
        ]
        assert receives == ["1", "2"]
        after = stack.workers["Events"].status()
        assert after.processed - before.processed == 3
        assert after.failed - before.failed == 1

    def test_given_the_handler_raises_then_the_whole_batch_is_redelivered(
        self, stack: LocalStack, fakes: StandIns
    ) -> None:
        def raise_first(records: list[dict[str, Any]]) -> Any:
            if len(fakes.sync_batches) == 1:
                retry_soon(stack, records)
                raise RuntimeError("cold start blew up")
            return {"batchItemFailures": []}

        fakes.sync_answer = raise_first
        send_together(stack, "same-group", "a", "b")

        assert stack.wait_until_drained(10)
        raised = [record["body"] for record in fakes.sync_batches[0]]
        assert raised
        assert sorted(fakes.bodies()) == sorted(["a", "b", *raised])

    def test_given_an_answer_naming_an_unknown_message_then_the_whole_batch_is_retried(
        self, stack: LocalStack, fakes: StandIns
    ) -> None:
        def nonsense_once(records: list[dict[str, Any]]) -> Any:
            if records[0]["attributes"]["ApproximateReceiveCount"] == "1":
                retry_soon(stack, records)
                return {"batchItemFailures": [{"itemIdentifier": "not-in-this-batch"}]}
            return {"batchItemFailures": []}

        fakes.sync_answer = nonsense_once
        send(stack, "only", "g-unknown")

        assert stack.wait_until_drained(10)
        assert fakes.bodies() == ["only", "only"]

    def test_given_a_poison_message_then_it_moves_to_the_dlq_after_max_receive_count(
        self, stack: LocalStack, fakes: StandIns
    ) -> None:
        queue = stack.resources.queues["Events"]
        assert queue.dead_letter_url is not None

        def always_fail(records: list[dict[str, Any]]) -> Any:
            retry_soon(stack, records, seconds=0)
            return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in records]}

        fakes.sync_answer = always_fail
        message_id = send(stack, "poison", "g-poison")

        assert stack.wait_until_drained(15)
        assert fakes.bodies() == ["poison"] * (EVENTS.max_receive_count or 0)
        dead = stack.clients.sqs.receive_message(
            QueueUrl=queue.dead_letter_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )["Messages"]
        assert [(m["MessageId"], m["Body"]) for m in dead] == [(message_id, "poison")]
        assert stack.status().queues["Events"].dead_letters == 1
        stack.clients.sqs.delete_message(
            QueueUrl=queue.dead_letter_url, ReceiptHandle=dead[0]["ReceiptHandle"]
        )

    def test_given_a_failed_group_when_it_comes_back_then_its_messages_keep_their_order(
        self, stack: LocalStack, fakes: StandIns
    ) -> None:
        def fail_first_round(records: list[dict[str, Any]]) -> Any:
            first_round = [r for r in records if r["attributes"]["ApproximateReceiveCount"] == "1"]
            retry_soon(stack, first_round)
            return {"batchItemFailures": [{"itemIdentifier": r["messageId"]} for r in first_round]}

        fakes.sync_answer = fail_first_round
        send_together(stack, "deal-7", "first", "second", "third")

        assert stack.wait_until_drained(10)
        records = [record for batch in fakes.sync_batches for record in batch]

        def attempt(n: str) -> list[str]:
            return [r["body"] for r in records if r["attributes"]["ApproximateReceiveCount"] == n]

        assert attempt("1") == ["first", "second", "third"]
        assert attempt("2") == ["first", "second", "third"]

    # --- scheduler ------------------------------------------------------------------

    def test_given_a_short_interval_then_the_schedule_fires_with_an_eventbridge_event(
        self, stack: LocalStack, standins: StandIns
    ) -> None:
        assert wait_for(lambda: len(standins.scheduled) >= 2)
        event = standins.scheduled[-1]
        assert event["source"] == "aws.events"
        assert event["detail-type"] == "Scheduled Event"
        assert event["detail"] == {}
        assert event["resources"] == [stack.resources.schedules["ReconcileSchedule"]]
        assert event["region"] == stack.config.aws.region

    def test_given_fire_now_then_the_function_runs_at_once_and_its_result_comes_back(
        self, stack: LocalStack, standins: StandIns
    ) -> None:
        fired = stack.schedulers["ReconcileSchedule"].status().fired

        assert stack.fire_schedule() == {"enqueued": 0}
        assert stack.schedulers["ReconcileSchedule"].status().fired > fired


# --- lifecycle, config, sandboxes, CLI -------------------------------------------------


HUBSPOT_SERVICES = REPO / "config" / "hubspot" / "services.yaml"
SALESFORCE_SERVICES = REPO / "config" / "salesforce" / "services.yaml"


def write_config(
    tmp_path: Path,
    *,
    connections: list[dict[str, Any]] | None = None,
    ports: dict[str, Any] | None = None,
) -> Path:
    """The committed config, its connections or ports replaced, as a file in ``tmp_path``;
    the committed connections' mapping files stay where they are."""
    data = yaml.safe_load((REPO / "local" / "local.yaml").read_text())
    for connection in data["connections"]:
        connection["mapping_file"] = str((REPO / "local" / connection["mapping_file"]).resolve())
    if connections is not None:
        data["connections"] = connections
    if ports is not None:
        data["ports"] = ports
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def all_free_ports() -> dict[str, Any]:
    return {"api": 0, "moto": 0, "sandboxes": {"hubspot": 0, "quickbooks": 0}}


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


@pytest.mark.parametrize(
    ("service", "label"),
    [
        ("api", "API"),
        ("moto", "AWS (moto) server"),
        # HubSpot's sandbox starts first: QuickBooks' clash also stops a running sandbox.
        ("hubspot", "HubSpot sandbox"),
        ("quickbooks", "QuickBooks Online sandbox"),
    ],
)
def test_given_a_taken_port_when_starting_then_port_in_use_names_it_and_nothing_is_left(
    taken_port: int, service: str, label: str
) -> None:
    config = free_config()
    if service in ("api", "moto"):
        ports = config.ports.model_copy(update={service: taken_port})
    else:
        ports = config.ports.model_copy(update={"sandboxes": {service: taken_port}})
    config = config.model_copy(update={"ports": ports})
    before = dict(os.environ)

    with pytest.raises(PortInUse) as raised:
        LocalStack(
            config, handlers=StandIns().handlers(), sandboxes=service not in ("api", "moto")
        ).start()

    assert raised.value.port == taken_port
    assert raised.value.service == label
    assert f"port {taken_port} for the {label} is already in use" in str(raised.value)
    assert dict(os.environ) == before
    # What had started before the clash was stopped, so a new stack starts.
    LocalStack(free_config(), handlers=StandIns().handlers(), sandboxes=False).start().stop()


def test_given_a_sandbox_port_in_the_config_then_that_vendor_listens_there_and_others_pick_one(
    tmp_path: Path,
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = LocalConfig.load(
        write_config(tmp_path, ports={"api": 0, "moto": 0, "sandboxes": {"quickbooks": port}})
    )
    assert (config.ports.sandbox("quickbooks"), config.ports.sandbox("hubspot")) == (port, 0)

    with LocalStack(config, handlers=StandIns().handlers()) as stack:
        assert stack.urls.sandboxes["quickbooks"] == f"http://127.0.0.1:{port}"
        assert stack.urls.sandboxes["hubspot"].startswith("http://127.0.0.1:")
        assert stack.urls.sandboxes["hubspot"] != "http://127.0.0.1:0"


def test_given_names_outside_the_description_or_settings_then_the_environment_refuses_them() -> (
    None
):
    with pytest.raises(ValueError, match="no table 'Linkz'"):
        resource_settings(tables={"Linkz": "t"}, queues={})
    with pytest.raises(ValueError, match="not a field"):
        settings_environment({"links_tabel": "t"})
    assert settings_environment(
        resource_settings(tables={"Links": "t", "Connections": "c"}, queues={})
    ) == {"CRMSYNC_LINKS_TABLE": "t", "CRMSYNC_CONNECTIONS_TABLE": "c"}


def connection(
    connection_id: str = "demo",
    crm: str = "hubspot",
    accounting: str = "quickbooks",
    mapping_file: Path | str = HUBSPOT_SERVICES,
) -> dict[str, Any]:
    return {
        "id": connection_id,
        "crm": crm,
        "accounting": accounting,
        "mapping_file": str(mapping_file),
    }


@pytest.mark.parametrize(
    ("connections", "expected"),
    [
        pytest.param(
            [connection(crm="pipedrive")],
            ["connection 'demo'", "unknown vendor 'pipedrive'", "registered: hubspot, quickbooks"],
            id="unknown vendor",
        ),
        pytest.param(
            [connection(), connection("second")],
            ["connections 'demo' and 'second' both use hubspot", "each vendor sandbox"],
            id="vendor used by two connections",
        ),
        pytest.param(
            [connection(mapping_file=SALESFORCE_SERVICES)],
            [
                "services.yaml",
                "written for source 'salesforce'",
                "connection 'demo' uses 'hubspot'",
            ],
            id="mapping for another source system",
        ),
        pytest.param(
            [connection(mapping_file="missing.yaml")],
            ["connection 'demo'", "No such file", "missing.yaml"],
            id="missing mapping file",
        ),
        pytest.param(
            [connection(crm="quickbooks", accounting="hubspot")],
            ["connection 'demo'", "quickbooks is not a crm"],
            id="vendor in the wrong role",
        ),
        pytest.param(
            [connection(), connection(crm="salesforce", accounting="xero")],
            ["two connections share the id demo"],
            id="duplicate connection id",
        ),
        pytest.param([], ["connections", "at least 1"], id="no connection"),
    ],
)
def test_given_a_wrong_connection_when_loading_then_the_error_names_the_problem(
    tmp_path: Path, connections: list[dict[str, Any]], expected: list[str]
) -> None:
    path = write_config(tmp_path, connections=connections)

    with pytest.raises(LocalConfigError) as raised:
        LocalConfig.load(path)

    message = str(raised.value)
    assert message.startswith(f"{path}: invalid local config")
    for part in expected:
        assert part in message
    assert '"' not in message  # no repr of an exception inside the sentence


def test_given_a_registered_vendor_without_a_sandbox_then_the_error_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(SANDBOXES, "xero")
    sandbox.cache_clear()
    path = write_config(
        tmp_path, connections=[connection(accounting="xero")], ports=all_free_ports()
    )

    with pytest.raises(LocalConfigError) as raised:
        LocalConfig.load(path)
    sandbox.cache_clear()

    assert "connection 'demo': no local sandbox for vendor 'xero'" in str(raised.value)


def test_given_the_committed_config_then_one_connection_between_the_sandboxed_vendors() -> None:
    config = LocalConfig.load()

    (demo,) = config.connections
    assert demo.mapping_file == HUBSPOT_SERVICES
    assert (demo.crm, demo.accounting) == ("hubspot", "quickbooks")
    assert config.vendors() == ["hubspot", "quickbooks"]
    assert config.connection_of("quickbooks") == demo
    # Every fixed sandbox port names a registered vendor: a typo would go unnoticed.
    assert set(config.ports.sandboxes) <= {spec.name for spec in vendors()}


def stored_secret(stack: LocalStack, connection_id: str, name: str) -> dict[str, str]:
    value = stack.clients.secretsmanager.get_secret_value(SecretId=secret_id(connection_id, name))
    return json.loads(value["SecretString"])


def test_given_the_sandboxes_when_started_then_webhooks_reach_the_connection_and_secrets_work() -> (
    None
):
    standins = StandIns()
    before = dict(os.environ)

    with LocalStack(free_config(), handlers=standins.handlers()) as stack:
        assert set(stack.sandboxes) == set(stack.urls.sandboxes) == {"hubspot", "quickbooks"}
        demo = stack.config.connection_of("hubspot").id
        hubspot_secret = stored_secret(stack, demo, "hubspot")
        quickbooks_secret = stored_secret(
            stack, stack.config.connection_of("quickbooks").id, "quickbooks"
        )

        stack.sandboxes["hubspot"].ui_create(
            "contacts", {"email": "ada@example.com", "firstname": "Ada"}
        )
        assert wait_for(lambda: standins.webhook_events != [])
        event = standins.webhook_events[0]
        assert event["rawPath"] == webhook_path("hubspot", demo)
        assert event["pathParameters"] == {"connection": demo}
        # Signed with the client secret the connection keeps, over its own webhook URL.
        headers = event["headers"]
        assert headers["x-hubspot-signature-v3"] == sign_v3(
            hubspot_secret["client_secret"],
            "POST",
            stack.urls.webhooks["hubspot"],
            event["body"],
            int(headers["x-hubspot-request-timestamp"]),
        )

        hubspot = vendor("hubspot").read_settings()
        quickbooks = vendor("quickbooks").read_settings()
        assert hubspot.api_url == stack.urls.sandboxes["hubspot"]
        assert quickbooks.api_url == stack.urls.sandboxes["quickbooks"]
        assert quickbooks.token_url.startswith(f"{stack.urls.sandboxes['quickbooks']}/")
        # The stored secrets authenticate against the sandboxes.
        token = httpx.post(
            quickbooks.token_url,
            auth=(quickbooks_secret["client_id"], quickbooks_secret["client_secret"]),
            data={
                "grant_type": "refresh_token",
                "refresh_token": quickbooks_secret["refresh_token"],
            },
        )
        assert token.status_code == 200, token.text
        contacts = httpx.get(
            f"{hubspot.api_url}/crm/v3/objects/contacts",
            params={"properties": "email"},
            headers={"Authorization": f"Bearer {hubspot_secret['access_token']}"},
        )
        assert contacts.status_code == 200, contacts.text
        emails = [c["properties"]["email"] for c in contacts.json()["results"]]
        assert emails == ["ada@example.com"]

    assert dict(os.environ) == before


def test_given_an_unreadable_config_when_up_then_exit_1_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["up", "--config", str(tmp_path / "missing.yaml")]) == 1
    assert "cannot read the local config" in capsys.readouterr().err


def test_given_an_invalid_mapping_file_when_up_then_exit_1_naming_the_file_and_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = (
        (REPO / "config" / "hubspot" / "services.yaml")
        .read_text()
        .replace("[trim, upper]", "[uper]")
    )
    (tmp_path / "mapping.yaml").write_text(broken)
    # Relative to the config file.
    path = write_config(tmp_path, connections=[connection(mapping_file="mapping.yaml")])

    assert cli.main(["up", "--config", str(path)]) == 1
    error = " ".join(capsys.readouterr().err.split())  # rich wraps long lines
    assert "mapping.yaml" in error
    assert "objects.deal.fields.currency.transforms[0]" in error
    assert "uper" in error


def test_given_a_taken_port_when_up_then_exit_1_naming_the_port(
    taken_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ports = {**all_free_ports(), "sandboxes": {"hubspot": 0, "quickbooks": taken_port}}
    path = write_config(tmp_path, ports=ports)

    assert cli.main(["up", "--config", str(path)]) == 1
    error = " ".join(capsys.readouterr().err.split())
    assert f"port {taken_port} for the QuickBooks Online sandbox is already in use" in error


def test_given_up_when_interrupted_then_it_printed_whole_urls_and_exits_0(tmp_path: Path) -> None:
    path = write_config(tmp_path, ports=all_free_ports())
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "local.cli", "up", "--config", str(path)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "50"},  # a narrow terminal: nothing may fold a URL
        start_new_session=True,  # its own process group, as in a terminal
    )
    lines: list[str] = []

    def read() -> None:
        for line in process.stdout or []:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        assert wait_for(lambda: any("Ctrl-C" in line for line in lines), timeout=60), (
            process.stderr.read() if process.poll() is not None and process.stderr else lines
        )
        # Ctrl-C signals the whole group: the functions' environments too.
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    output = "".join(lines)
    # Each URL whole on one line, as a terminal's selection copies it.
    assert re.search(
        r"^  POST webhook: hubspot +http://127\.0\.0\.1:\d+/webhooks/hubspot/demo$",
        output,
        re.MULTILINE,
    )
    assert re.search(r"http://127\.0\.0\.1:\d+/webhooks/quickbooks/demo$", output, re.MULTILINE)
    assert re.search(
        r"crmsync audit hubspot:contact:<id> --connection demo --local --config \S+$",
        output,
        re.MULTILINE,
    )
    assert "HubSpot sandbox" in output
    assert "QuickBooks Online sandbox" in output
    assert process.stderr is not None
    assert "Traceback" not in process.stderr.read()


def test_given_failures_in_the_local_config_then_the_events_queue_retries_that_way() -> None:
    committed = LocalConfig.load()
    default = committed.model_copy(update={"failures": FailuresConfig()})

    events = committed.failures.apply(DESCRIPTION).queue("Events")
    deployed = default.failures.apply(DESCRIPTION).queue("Events")

    assert (events.retry_delay_s, events.max_failed_attempts) == (1, 3)
    assert events.visibility_timeout_s == DESCRIPTION.function("Sync").timeout_s
    assert deployed == DESCRIPTION.queue("Events"), "left out: as deployed"


def test_given_queue_timeouts_in_the_local_config_then_the_local_queue_is_created_with_them() -> (
    None
):
    config = free_config(failures=FailuresConfig(visibility_timeout_s=5, max_receive_count=4))

    with LocalStack(config, handlers=StandIns().handlers(), sandboxes=False) as running:
        queue = running.resources.queues["Events"]
        attributes = running.clients.sqs.get_queue_attributes(
            QueueUrl=queue.url, AttributeNames=["VisibilityTimeout", "RedrivePolicy"]
        )["Attributes"]

    assert attributes["VisibilityTimeout"] == "5"
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 4
