"""Secrets Manager through powertools' cached provider, on moto."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from shared.errors import AuthFailed, Retryable
from shared.ports import SecretStore
from shared.secrets.secrets_manager import SecretsManagerStore

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient

SECRET = "crmsync/acme/quickbooks"


@pytest.fixture
def secret(secretsmanager: SecretsManagerClient) -> str:
    secretsmanager.create_secret(
        Name=SECRET, SecretString=json.dumps({"refresh_token": "rt-1", "realm_id": "9"})
    )
    return SECRET


def test_given_a_secret_when_read_then_its_json_object(
    secretsmanager: SecretsManagerClient, secret: str
) -> None:
    assert SecretsManagerStore(secretsmanager).read(secret) == {
        "refresh_token": "rt-1",
        "realm_id": "9",
    }


def test_given_another_process_rotated_it_when_read_then_cached_until_fresh(
    secretsmanager: SecretsManagerClient, secret: str
) -> None:
    store: SecretStore = SecretsManagerStore(secretsmanager)
    store.read(secret)

    secretsmanager.put_secret_value(SecretId=secret, SecretString='{"refresh_token": "rt-2"}')

    assert store.read(secret)["refresh_token"] == "rt-1"
    assert store.read(secret, fresh=True)["refresh_token"] == "rt-2"


def test_given_a_cached_secret_when_written_then_the_next_read_sees_the_write(
    secretsmanager: SecretsManagerClient, secret: str
) -> None:
    store = SecretsManagerStore(secretsmanager)
    store.read(secret)

    store.write(secret, {"refresh_token": "rt-3", "realm_id": "9"})

    assert store.read(secret) == {"refresh_token": "rt-3", "realm_id": "9"}
    assert SecretsManagerStore(secretsmanager).read(secret)["refresh_token"] == "rt-3"


@pytest.mark.parametrize("value", ["sk-not-json", '["sk-a-list"]', '{"token": {"sk": 1}}'])
def test_given_a_malformed_secret_when_read_then_auth_failed_without_the_value(
    secretsmanager: SecretsManagerClient, value: str
) -> None:
    secretsmanager.create_secret(Name=SECRET, SecretString=value)

    with pytest.raises(AuthFailed) as raised:
        SecretsManagerStore(secretsmanager).read(SECRET)

    assert SECRET in str(raised.value)
    assert "sk" not in str(raised.value).replace(SECRET, "")
    assert raised.value.__cause__ is None


def test_given_no_such_secret_when_read_or_written_then_retryable(
    secretsmanager: SecretsManagerClient,
) -> None:
    store = SecretsManagerStore(secretsmanager)

    with pytest.raises(Retryable, match="could not be read"):
        store.read(SECRET)
    with pytest.raises(Retryable, match="could not be written"):
        store.write(SECRET, {"refresh_token": "rt"})
