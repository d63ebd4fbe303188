"""The way back's state beside each link, on moto's DynamoDB and in memory alike."""

from __future__ import annotations

import pytest

from shared.errors import StaleWrite
from shared.models import BackState, ObjectType, RecordLink
from shared.ports import LinkStore

BOTH = pytest.mark.parametrize("kind", ["dynamo", "memory"])
KEY = "hubspot:deal:101"


def state(revision: int, **written: str) -> BackState:
    return BackState(connection_id="acme", source_key=KEY, written=written, revision=revision)


@BOTH
def test_given_back_state_when_saved_in_turn_then_the_last_reads_back(links: LinkStore) -> None:
    assert links.back_state("acme", KEY) is None

    links.save_back_state(state(1, amount_paid="a1"))
    links.save_back_state(state(2, amount_paid="a2", balance="b2"))

    assert links.back_state("acme", KEY) == state(2, amount_paid="a2", balance="b2")


@BOTH
def test_given_a_concurrent_save_when_saving_the_same_revision_then_it_is_stale(
    links: LinkStore,
) -> None:
    links.save_back_state(state(1, amount_paid="a1"))

    with pytest.raises(StaleWrite):
        links.save_back_state(state(1, amount_paid="other"))
    assert links.back_state("acme", KEY) == state(1, amount_paid="a1")


@BOTH
def test_given_back_state_when_the_link_is_saved_then_neither_drops_the_other(
    links: LinkStore,
) -> None:
    link = RecordLink(
        connection_id="acme",
        source="hubspot",
        source_type=ObjectType.DEAL,
        source_id="101",
        target="quickbooks",
        target_type=ObjectType.INVOICE,
        target_id="77",
        source_version=5,
    )
    links.save_back_state(state(1, amount_paid="a1"))

    links.save(link)

    assert links.back_state("acme", KEY) == state(1, amount_paid="a1")
    assert links.get("acme", KEY) == link
    assert links.get_by_target("acme", "quickbooks:invoice:77") == link
