"""Access to the connections' vendor secrets, ``crmsync/<connection>/<vendor>``.

The stack creates no secret: connections come and go without a redeploy, and the
operator puts each connection's credentials in (``crmsync connect``, or
``aws secretsmanager create-secret --name crmsync/<connection>/<vendor>``). A template
therefore never carries a credential; the grants cover the name prefix.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, ArnFormat, Stack, Validations
from aws_cdk import aws_iam as iam
from constructs import Construct

# Secrets Manager appends "-" and six random characters to a secret's ARN.
_ARN_SUFFIX = "-??????"


class SecretGrants(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, rotating_vendors: tuple[str, ...]):
        super().__init__(scope, construct_id)
        self._rotating_vendors = rotating_vendors

    def _arn(self, name_pattern: str) -> str:
        stack = Stack.of(self)
        return stack.format_arn(
            service="secretsmanager",
            resource="secret",
            resource_name=f"{name_pattern}{_ARN_SUFFIX}",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )

    def grant_read(self, role: iam.Role) -> None:
        self._grant(role, ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"], ["*"])

    def grant_rotate(self, role: iam.Role) -> None:
        """Writing back the secrets of the vendors that rotate refresh tokens."""
        if self._rotating_vendors:
            self._grant(role, ["secretsmanager:PutSecretValue"], self._rotating_vendors)

    def _grant(
        self, role: iam.Role, actions: list[str], vendors: tuple[str, ...] | list[str]
    ) -> None:
        patterns = [f"crmsync/*/{vendor}" for vendor in vendors]
        role.add_to_policy(
            iam.PolicyStatement(actions=actions, resources=[self._arn(p) for p in patterns])
        )
        for pattern in patterns:
            Validations.of(role).acknowledge(
                Acknowledgment(
                    id="AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:secretsmanager:"
                    f"<AWS::Region>:<AWS::AccountId>:secret:{pattern}{_ARN_SUFFIX}]",
                    reason="Connections are added without a redeploy, each with its own "
                    "secrets named crmsync/<connection>/<vendor>: the grant covers that name "
                    "pattern only.",
                )
            )
