"""AWS in-process (moto ``mock_aws``), with resources built from ``infra.resources``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import pytest
from moto import mock_aws

from infra.resources import DESCRIPTION
from local.aws import create_table
from local.memory import MemoryLinkStore
from shared.ports import LinkStore
from shared.stores import DynamoLinkStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_secretsmanager.client import SecretsManagerClient
    from mypy_boto3_sqs.client import SQSClient

REGION = "us-east-1"


@pytest.fixture(scope="session")
def boto_session() -> boto3.Session:
    """One session for the run: it caches service models, which makes clients cheap."""
    return boto3.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Fake credentials in the environment too, so nothing can reach a real account.
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(var, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


@pytest.fixture
def dynamodb(aws: None, boto_session: boto3.Session) -> DynamoDBClient:
    return boto_session.client("dynamodb")


@pytest.fixture
def sqs(aws: None, boto_session: boto3.Session) -> SQSClient:
    return boto_session.client("sqs")


@pytest.fixture
def secretsmanager(aws: None, boto_session: boto3.Session) -> SecretsManagerClient:
    return boto_session.client("secretsmanager")


@pytest.fixture
def links(kind: str, request: pytest.FixtureRequest) -> LinkStore:
    """The links, on moto's DynamoDB or in memory as the test's ``kind`` parameter says
    ("dynamo" or "memory"), so that one test holds both to the same behaviour."""
    if kind == "memory":
        return MemoryLinkStore()
    dynamodb: DynamoDBClient = request.getfixturevalue("dynamodb")
    create_table(dynamodb, DESCRIPTION.table("Links"), "test-links")
    return DynamoLinkStore(dynamodb, "test-links")
