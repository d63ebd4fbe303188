"""AWS for the local stack: moto's server, and the resources the stack declares, made in it.

moto's CloudFormation cannot deploy the CDK template (no HTTP API, FIFO naming), so
the tables, queues, secrets and schedule are created here with boto3, from the same
``infra.resources`` description the CDK constructs read.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import boto3
import httpx
from moto.dynamodb.responses import DynamoHandler
from moto.server import ThreadedMotoServer
from moto.sqs.models import Queue as MotoQueue
from moto.sqs.responses import SQSResponse

from infra.outputs import StackOutputs
from infra.resources import (
    Key,
    QueueSpec,
    ServiceDescription,
    TableSpec,
    local_name,
)
from local.config import LOOPBACK, AwsConfig, ensure_port_free

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import CreateTableInputTypeDef, KeySchemaElementTypeDef
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_secretsmanager.client import SecretsManagerClient
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

# moto's fixed account; ARNs in events and contexts use it.
ACCOUNT_ID = "123456789012"


def _fifo_group_waits_only_for_invisible_messages() -> None:
    """Keep FIFO order when in-flight messages of one group time out.

    moto 5.2.5 counts a group as busy while any of its received messages is still
    in its pending set, even once that message is visible again, and a receive
    works from a snapshot of that set taken before messages time out under it.
    When a batch [a, b] of one group times out, a receive can skip ``a`` and
    deliver ``b``: the group comes back out of order. SQS delivers a group's
    messages strictly in order and holds the group while one is in flight; so
    here a group is busy only while one of its messages is invisible, and a
    receive only ever sees the oldest remaining message of each group (a batch
    then carries one message per group: slower, never out of order).
    """

    def pending_message_groups(queue: MotoQueue) -> set[str]:
        return {
            message.group_id
            for message in queue._pending_messages
            if message.group_id is not None and not message.visible
        }

    original_messages = MotoQueue.messages

    def messages(queue: MotoQueue) -> list[Any]:
        if not queue.fifo_queue:
            return original_messages.fget(queue)  # type: ignore[no-any-return,attr-defined]
        heads, seen = [], set()
        for message in queue._messages:
            group = message.group_id
            if group in seen:
                continue
            seen.add(group)
            if message.visible and not message.delayed:
                heads.append(message)
        return heads

    MotoQueue.pending_message_groups = property(pending_message_groups)  # type: ignore[method-assign,assignment]
    MotoQueue.messages = property(messages)  # type: ignore[method-assign,assignment]


@cache  # once per process: a second stack must not wrap the wrappers
def _one_request_at_a_time() -> None:
    """Make each DynamoDB and SQS request atomic, as AWS does, under concurrent callers.

    moto's server handles every request in its own thread and its backends take no
    locks: a conditional write reads, checks and writes with other requests running in
    between (16 racers on one key: several winners), and two receives can hand one
    FIFO message to both or crash on a set changed under them. Here each of the two
    services handles one request at a time. A long-polling receive waits with the SQS
    lock released and looks again after every other SQS request.
    """
    dynamodb = threading.Lock()
    sqs = threading.Condition()
    dynamodb_action = DynamoHandler.call_action
    sqs_action = SQSResponse.call_action

    def dynamodb_call_action(handler: DynamoHandler) -> Any:
        with dynamodb:
            return dynamodb_action(handler)

    def sqs_call_action(handler: SQSResponse) -> Any:
        with sqs:
            try:
                return sqs_action(handler)
            finally:
                sqs.notify_all()

    def wait_for_messages(queue: MotoQueue, timeout: int) -> None:
        sqs.wait_for(lambda: queue.messages, timeout=timeout)

    DynamoHandler.call_action = dynamodb_call_action  # type: ignore[method-assign]
    SQSResponse.call_action = sqs_call_action  # type: ignore[method-assign,assignment]
    MotoQueue.wait_for_messages = wait_for_messages  # type: ignore[method-assign,assignment]


class MotoServer:
    """moto's server on 127.0.0.1 in a background thread, with a clean state."""

    def __init__(self, port: int = 0) -> None:
        self._requested_port = port
        self._server: ThreadedMotoServer | None = None
        self.url = ""

    def start(self) -> MotoServer:
        # ThreadedMotoServer binds inside its thread and waits forever if the bind fails.
        ensure_port_free(self._requested_port)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        _fifo_group_waits_only_for_invisible_messages()
        _one_request_at_a_time()
        self._server = ThreadedMotoServer(
            ip_address=LOOPBACK, port=self._requested_port, verbose=False
        )
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        # moto keeps its state per process: a second stack must not see the first's messages.
        httpx.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


@dataclass(frozen=True)
class AwsClients:
    dynamodb: DynamoDBClient
    sqs: SQSClient
    secretsmanager: SecretsManagerClient
    events: EventBridgeClient
    cloudformation: Any

    @classmethod
    def connect(cls, endpoint_url: str, aws: AwsConfig) -> AwsClients:
        session = boto3.session.Session(
            aws_access_key_id=aws.access_key_id,
            aws_secret_access_key=aws.secret_access_key,
            region_name=aws.region,
        )
        return cls(
            dynamodb=session.client("dynamodb", endpoint_url=endpoint_url),
            sqs=session.client("sqs", endpoint_url=endpoint_url),
            secretsmanager=session.client("secretsmanager", endpoint_url=endpoint_url),
            events=session.client("events", endpoint_url=endpoint_url),
            cloudformation=session.client("cloudformation", endpoint_url=endpoint_url),
        )


@dataclass(frozen=True)
class QueueRef:
    url: str
    arn: str
    visibility_timeout_s: int
    dead_letter_url: str | None = None
    dead_letter_arn: str | None = None


@dataclass(frozen=True)
class LocalResources:
    """Physical names of what ``create_resources`` made, keyed by spec id."""

    tables: dict[str, str]
    queues: dict[str, QueueRef]
    schedules: dict[str, str]  # schedule id -> EventBridge rule ARN


def _key_schema(partition: Key, sort: Key | None) -> list[KeySchemaElementTypeDef]:
    schema: list[KeySchemaElementTypeDef] = [{"AttributeName": partition.name, "KeyType": "HASH"}]
    if sort is not None:
        schema.append({"AttributeName": sort.name, "KeyType": "RANGE"})
    return schema


def create_table(client: DynamoDBClient, spec: TableSpec, name: str) -> None:
    """The table ``spec`` describes, under ``name``, with its indexes and TTL."""
    keys = [spec.partition_key, spec.sort_key]
    for index in spec.indexes:
        keys += [index.partition_key, index.sort_key]
    attributes = {key.name: key.type for key in keys if key is not None}
    request: CreateTableInputTypeDef = {
        "TableName": name,
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": attr, "AttributeType": kind} for attr, kind in attributes.items()
        ],
        "KeySchema": _key_schema(spec.partition_key, spec.sort_key),
    }
    if spec.indexes:
        request["GlobalSecondaryIndexes"] = [
            {
                "IndexName": index.name,
                "KeySchema": _key_schema(index.partition_key, index.sort_key),
                "Projection": {"ProjectionType": "ALL"},
            }
            for index in spec.indexes
        ]
    client.create_table(**request)
    if spec.ttl_attribute:
        client.update_time_to_live(
            TableName=name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute},
        )


def create_queue(client: SQSClient, spec: QueueSpec, stack: str) -> QueueRef:
    """The queue and, when it asks for one, its dead-letter queue with the redrive policy."""
    base: dict[QueueAttributeNameType, str] = {
        "MessageRetentionPeriod": str(spec.retention_days * 86_400)
    }
    if spec.fifo:
        base |= {
            "FifoQueue": "true",
            "DeduplicationScope": spec.deduplication_scope,
            "FifoThroughputLimit": spec.fifo_throughput_limit,
        }

    def make(resource_id: str, attributes: dict[QueueAttributeNameType, str]) -> tuple[str, str]:
        name = local_name(stack, resource_id, fifo=spec.fifo)
        url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return url, arn["Attributes"]["QueueArn"]

    attributes: dict[QueueAttributeNameType, str] = {
        **base,
        "VisibilityTimeout": str(spec.visibility_timeout_s),
    }
    dead_letter: tuple[str, str] | None = None
    if spec.max_receive_count is not None:
        dead_letter = make(f"{spec.id}-DLQ", base)
        attributes["RedrivePolicy"] = json.dumps(
            {"deadLetterTargetArn": dead_letter[1], "maxReceiveCount": spec.max_receive_count}
        )
    url, arn = make(spec.id, attributes)
    return QueueRef(
        url=url,
        arn=arn,
        visibility_timeout_s=spec.visibility_timeout_s,
        dead_letter_url=dead_letter[0] if dead_letter else None,
        dead_letter_arn=dead_letter[1] if dead_letter else None,
    )


def function_name(stack: str, function_id: str) -> str:
    return local_name(stack, function_id)


def function_arn(region: str, name: str) -> str:
    return f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{name}"


def create_resources(
    clients: AwsClients,
    description: ServiceDescription,
    *,
    stack: str,
    region: str,
) -> LocalResources:
    """Every table, queue and schedule of ``description``, named for the stack."""
    tables = {}
    for table in description.tables:
        tables[table.id] = local_name(stack, table.id)
        create_table(clients.dynamodb, table, tables[table.id])
    queues = {q.id: create_queue(clients.sqs, q, stack) for q in description.queues}
    schedules = {}
    for schedule in description.schedules:
        rule = local_name(stack, schedule.id)
        unit = "minute" if schedule.rate_minutes == 1 else "minutes"
        schedules[schedule.id] = clients.events.put_rule(
            Name=rule, ScheduleExpression=f"rate({schedule.rate_minutes} {unit})"
        )["RuleArn"]
        target = function_name(stack, schedule.function)
        clients.events.put_targets(
            Rule=rule, Targets=[{"Id": schedule.function, "Arn": function_arn(region, target)}]
        )
    return LocalResources(tables=tables, queues=queues, schedules=schedules)


def register_outputs(clients: AwsClients, stack: str, outputs: StackOutputs) -> None:
    """A CloudFormation stack named ``stack`` in moto with the deployed stack's outputs,
    so ``crmsync … --local`` finds the local stack as it finds a deployed one. Its one
    resource is a placeholder: CloudFormation wants one, the resources exist already."""
    template = {
        "Resources": {
            "LocalStack": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {
                    "Name": f"/crmsync/{stack}/local-stack",
                    "Type": "String",
                    "Value": "the resources exist; this stack holds their outputs",
                },
            }
        },
        "Outputs": {key: {"Value": value} for key, value in outputs.as_outputs().items()},
    }
    clients.cloudformation.create_stack(StackName=stack, TemplateBody=json.dumps(template))
