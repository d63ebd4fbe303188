"""Credentials in AWS Secrets Manager, read through powertools' cached provider.

Values never reach a log or an exception message: errors name the secret only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import BotoCoreError, ClientError

from shared.errors import AuthFailed, Retryable

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager.client import SecretsManagerClient


def _decode(secret_id: str, raw: object) -> dict[str, str]:
    """The secret as a flat JSON object of strings, or ``AuthFailed`` naming only its id."""
    try:
        value = json.loads(raw) if isinstance(raw, str | bytes) else None
    except ValueError:
        value = None  # the decoder's error would quote the secret
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise AuthFailed(f"secret {secret_id!r} is not a JSON object of string values")
    return value


def put_secret(client: SecretsManagerClient, name: str, value: Mapping[str, str]) -> None:
    """Create the secret, or give it a new value when it exists: what an operator does
    adding a connection (a function only ever rewrites one, ``SecretsManagerStore.write``)."""
    string = json.dumps(dict(value))
    try:
        client.create_secret(Name=name, SecretString=string)
    except client.exceptions.ResourceExistsException:
        client.put_secret_value(SecretId=name, SecretString=string)


class SecretsManagerStore:
    """``SecretStore`` over Secrets Manager; reads are cached for ``max_age_s`` per process."""

    def __init__(self, client: SecretsManagerClient, *, max_age_s: int = 300) -> None:
        self._client = client
        self._provider = SecretsProvider(boto3_client=client)
        self._max_age_s = max_age_s

    def read(self, secret_id: str, *, fresh: bool = False) -> dict[str, str]:
        try:
            raw = self._provider.get(secret_id, max_age=self._max_age_s, force_fetch=fresh)
        except GetParameterError as exc:
            raise Retryable(f"secret {secret_id!r} could not be read: {exc}") from exc
        return _decode(secret_id, raw)

    def write(self, secret_id: str, value: Mapping[str, str]) -> None:
        try:
            self._client.put_secret_value(SecretId=secret_id, SecretString=json.dumps(dict(value)))
        except (ClientError, BotoCoreError) as exc:
            raise Retryable(f"secret {secret_id!r} could not be written: {exc}") from exc
        # The cache now holds the value we replaced; the next read must see ours.
        self._provider.clear_cache()  # type: ignore[no-untyped-call]  # powertools lacks a hint
