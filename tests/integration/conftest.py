"""AWS in-process (moto ``mock_aws``), with resources built from ``infra.resources``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import boto3
import pytest
from moto import mock_aws

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
