"""Canonical models: money is never a float; keys agree wherever a record is named."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.models import ChangeEvent, ChangeKind, Money, ObjectType, RecordLink
from shared.models.events import record_key


def test_given_a_float_amount_then_money_refuses_it() -> None:
    with pytest.raises(ValidationError, match="float"):
        Money(amount=0.1, currency="USD")  # type: ignore[arg-type]

    assert Money(amount="0.10", currency="USD").amount == Decimal("0.10")  # type: ignore[arg-type]


def test_given_a_lowercase_currency_then_it_is_refused() -> None:
    with pytest.raises(ValidationError):
        Money(amount=Decimal(1), currency="usd")


def event(event_id: str, record_id: str = "7") -> ChangeEvent:
    return ChangeEvent(
        connection_id="acme",
        source="hubspot",
        object_type=ObjectType.DEAL,
        record_id=record_id,
        event_id=event_id,
        kind=ChangeKind.UPDATED,
        occurred_at=datetime.now(UTC),
        version=1,
    )


@given(st.text(min_size=1, max_size=256))
def test_any_vendor_event_id_gives_a_stable_fifo_dedup_id_within_sqs_limits(
    event_id: str,
) -> None:
    dedup = event(event_id).dedup_id

    assert dedup == event(event_id).dedup_id
    assert len(dedup) <= 128  # SQS MessageDeduplicationId
    assert dedup != event(event_id + "x").dedup_id


def test_the_event_its_link_and_the_audit_name_a_record_the_same_way() -> None:
    link = RecordLink(
        connection_id="acme",
        source="hubspot",
        source_type=ObjectType.DEAL,
        source_id="7",
        target="quickbooks",
        target_type=ObjectType.INVOICE,
        target_id="130",
        source_version=1,
    )

    assert event("e").record_key == link.source_key == "hubspot:deal:7"
    assert link.target_key == record_key("quickbooks", ObjectType.INVOICE, "130")
