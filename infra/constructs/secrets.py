"""Secrets Manager secrets, one per ``SecretSpec``, with fixed names and no values.

The template never carries a credential: CloudFormation creates each secret with a
random placeholder and the operator puts the real JSON in with
``aws secretsmanager put-secret-value --secret-id <name> --secret-string file://...``.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.resources import SecretSpec, secret_name


class Secrets(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        specs: tuple[SecretSpec, ...],
        connection_id: str,
    ):
        super().__init__(scope, construct_id)
        self.by_id: dict[str, secretsmanager.Secret] = {}
        self.names: dict[str, str] = {}
        for spec in specs:
            name = secret_name(connection_id, spec.vendor)
            self.names[spec.id] = name
            self.by_id[spec.id] = secretsmanager.Secret(
                self,
                spec.id,
                secret_name=name,
                description=f"{spec.description}. JSON keys: {', '.join(spec.keys)}",
            )
        Validations.of(self).acknowledge(
            Acknowledgment(
                id="AwsSolutions-SMG4",
                reason="The credentials are issued by the vendors, so a Secrets Manager rotation "
                "function cannot mint new ones: the QuickBooks refresh token is rotated by the "
                "sync function on every OAuth refresh, the HubSpot private-app token by the "
                "operator in HubSpot.",
            )
        )
