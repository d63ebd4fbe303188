"""The local stack's moto server under concurrent callers: a conditional write has one winner.

The lease, the record links and powertools' idempotency records rely on DynamoDB's
conditional writes being atomic, and the sync function runs several invocations at
once; the SQS event source runs several pollers on one queue. Each test races many
callers on one key (or one message), round after round, through moto's HTTP server
as ``local.aws.MotoServer`` starts it. The interpreter switches threads far more
often than by default so that a race inside moto shows within a few rounds.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from local.aws import MotoServer

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_sqs.client import SQSClient

RACERS = 16
ROUNDS = 12
TABLE = "race"
# Conditions on attributes no item has: always true, and slow for moto to parse, which
# widens the window between its condition check and its write.
SLOW_TRUE = " AND ".join(f"attribute_not_exists(unused{k})" for k in range(30))

# A 500 from moto (a race that broke its state) must fail the test, not be retried.
NO_RETRIES = Config(retries={"total_max_attempts": 1})

# One racer's attempt in round n: True if it won.
Attempt = Callable[[int, int], bool]


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def session() -> boto3.Session:
    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
    )


@pytest.fixture(scope="module")
def dynamodbs(moto: MotoServer, session: boto3.Session) -> list[DynamoDBClient]:
    """One client per racer; the first also made the table."""
    clients = [
        session.client("dynamodb", endpoint_url=moto.url, config=NO_RETRIES) for _ in range(RACERS)
    ]
    clients[0].create_table(
        TableName=TABLE,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
    )
    return clients


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


def race(attempt: Attempt, *, before_round: Callable[[int], None] = lambda n: None) -> list[int]:
    """Winners per round when ``RACERS`` threads call ``attempt`` at once, ``ROUNDS`` times;
    ``before_round(n)`` runs alone before round ``n`` starts."""
    winners = [0] * ROUNDS
    lock = threading.Lock()
    rounds = iter(range(ROUNDS))
    start = threading.Barrier(RACERS, action=lambda: before_round(next(rounds)))
    end = threading.Barrier(RACERS)  # nobody starts round n + 1 before round n is over
    errors: list[BaseException] = []

    def racer(i: int) -> None:
        try:
            for n in range(ROUNDS):
                start.wait()
                if attempt(i, n):
                    with lock:
                        winners[n] += 1
                end.wait()
        except BaseException as exc:
            errors.append(exc)
            start.abort()
            end.abort()

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [e for e in errors if not isinstance(e, threading.BrokenBarrierError)] == []
    return winners


def lost_condition(call: Callable[[], object]) -> bool:
    """True if ``call`` succeeded, False if DynamoDB refused it on its condition."""
    try:
        call()
    except ClientError as error:
        if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    return True


def rounds_not_won_once(winners: list[int]) -> dict[int, int]:
    return {n: count for n, count in enumerate(winners) if count != 1}


@pytest.mark.usefixtures("frequent_thread_switches")
def test_given_racers_when_putting_the_same_new_key_then_exactly_one_wins_each_round(
    dynamodbs: list[DynamoDBClient],
) -> None:
    def put(i: int, n: int) -> bool:
        return lost_condition(
            lambda: dynamodbs[i].put_item(
                TableName=TABLE,
                Item={"pk": {"S": f"put-{n}"}, "owner": {"N": str(i)}},
                ConditionExpression=f"attribute_not_exists(pk) AND {SLOW_TRUE}",
            )
        )

    assert rounds_not_won_once(race(put)) == {}


@pytest.mark.usefixtures("frequent_thread_switches")
def test_given_racers_when_taking_a_free_lease_by_update_then_exactly_one_wins_each_round(
    dynamodbs: list[DynamoDBClient],
) -> None:
    def take(i: int, n: int) -> bool:
        return lost_condition(
            lambda: dynamodbs[i].update_item(
                TableName=TABLE,
                Key={"pk": {"S": f"lease-{n}"}},
                UpdateExpression="SET holder = :me",
                ConditionExpression=f"attribute_not_exists(holder) AND {SLOW_TRUE}",
                ExpressionAttributeValues={":me": {"N": str(i)}},
            )
        )

    assert rounds_not_won_once(race(take)) == {}


@pytest.mark.usefixtures("frequent_thread_switches")
def test_given_racers_when_deleting_an_existing_item_then_exactly_one_wins_each_round(
    dynamodbs: list[DynamoDBClient],
) -> None:
    def create(n: int) -> None:
        dynamodbs[0].put_item(TableName=TABLE, Item={"pk": {"S": f"delete-{n}"}})

    def delete(i: int, n: int) -> bool:
        return lost_condition(
            lambda: dynamodbs[i].delete_item(
                TableName=TABLE,
                Key={"pk": {"S": f"delete-{n}"}},
                ConditionExpression=f"attribute_exists(pk) AND {SLOW_TRUE}",
            )
        )

    assert rounds_not_won_once(race(delete, before_round=create)) == {}


@pytest.mark.usefixtures("frequent_thread_switches")
def test_given_racers_when_receiving_from_a_fifo_queue_then_no_message_goes_to_two_of_them(
    moto: MotoServer, session: boto3.Session
) -> None:
    sqss: list[SQSClient] = [
        session.client("sqs", endpoint_url=moto.url, config=NO_RETRIES) for _ in range(RACERS)
    ]
    url = sqss[0].create_queue(
        QueueName="race.fifo", Attributes={"FifoQueue": "true", "VisibilityTimeout": "60"}
    )["QueueUrl"]
    received: list[str] = []
    receipts: list[str] = []

    def send(n: int) -> None:
        # Last round's messages go (moto's SQS is slow on long queues); then one message
        # per racer, each in its own group.
        for receipt in receipts:
            sqss[0].delete_message(QueueUrl=url, ReceiptHandle=receipt)
        receipts.clear()
        for first in range(0, RACERS, 10):
            sqss[0].send_message_batch(
                QueueUrl=url,
                Entries=[
                    {
                        "Id": str(k),
                        "MessageBody": f"{n}-{k}",
                        "MessageGroupId": f"{n}-{k}",
                        "MessageDeduplicationId": f"{n}-{k}",
                    }
                    for k in range(first, min(first + 10, RACERS))
                ],
            )

    def receive(i: int, n: int) -> bool:
        messages = sqss[i].receive_message(QueueUrl=url, WaitTimeSeconds=0).get("Messages", [])
        received.extend(message["Body"] for message in messages)
        receipts.extend(message["ReceiptHandle"] for message in messages)
        return messages != []

    race(receive, before_round=send)

    assert sorted(received) == sorted(f"{n}-{k}" for n in range(ROUNDS) for k in range(RACERS))
