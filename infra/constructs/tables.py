"""DynamoDB tables, one per ``TableSpec``: on demand, point-in-time recovery, TTL and GSIs."""

from __future__ import annotations

from typing import cast

from aws_cdk import Acknowledgment, CfnElement, Stack, Validations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.resources import Key, TableSpec

_TYPES = {"S": dynamodb.AttributeType.STRING, "N": dynamodb.AttributeType.NUMBER}


def _attribute(key: Key | None) -> dynamodb.Attribute | None:
    return None if key is None else dynamodb.Attribute(name=key.name, type=_TYPES[key.type])


class Tables(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, specs: tuple[TableSpec, ...]):
        super().__init__(scope, construct_id)
        self.by_id: dict[str, dynamodb.Table] = {}
        self._specs = {spec.id: spec for spec in specs}
        for spec in specs:
            table = dynamodb.Table(
                self,
                spec.id,
                partition_key=_attribute(spec.partition_key),
                sort_key=_attribute(spec.sort_key),
                time_to_live_attribute=spec.ttl_attribute,
                billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
                point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                    point_in_time_recovery_enabled=True
                ),
            )
            for index in spec.indexes:
                table.add_global_secondary_index(
                    index_name=index.name,
                    partition_key=_attribute(index.partition_key),
                    sort_key=_attribute(index.sort_key),
                )
            self.by_id[spec.id] = table

    def grant_read_write_data(self, table_id: str, role: iam.IRole) -> None:
        """Read/write on the table and its indexes: one dataset, one grant."""
        table = self.by_id[table_id]
        table.grant_read_write_data(role)
        if self._specs[table_id].indexes:
            logical_id = Stack.of(table).get_logical_id(cast(CfnElement, table.node.default_child))
            Validations.of(role).acknowledge(
                Acknowledgment(
                    id=f"AwsSolutions-IAM5[Resource::<{logical_id}.Arn>/index/*]",
                    reason=f"The {table_id} table's global secondary indexes hold the same "
                    "records as the table; a role that may read and write the table may query "
                    "its indexes.",
                )
            )

    def grant_read_data(self, table_id: str, role: iam.IRole) -> None:
        """Read only (the Connections table has no index)."""
        if self._specs[table_id].indexes:
            raise ValueError(f"read-only grants on indexed table {table_id!r} are not declared")
        self.by_id[table_id].grant_read_data(role)
