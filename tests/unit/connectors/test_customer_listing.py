"""``CustomerListing`` against both accounting sandboxes, over real HTTP: every active
customer with its email and name, what changed since a time (both vendors' times are
to the second), and every page of a long listing (pages shrunk to 2 rows).

The sandboxes run on a clock the tests push forward, so "later" is a second boundary
away without waiting for one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest

from local.sandboxes.quickbooks import QuickBooksBooks
from shared.connectors.quickbooks import connector as quickbooks
from shared.connectors.xero import ledger as xero
from shared.models import Party, PartyKind
from shared.ports import AccountingTarget, CustomerListing, KnownCustomer, TargetRef
from tests.fakes import OffsetClock
from tests.unit.connectors.sandbox_envs import QuickBooksEnv, SandboxEnv, XeroEnv


@dataclass
class Vendor:
    """One vendor's sandbox, its connector, and what a person does there."""

    env: SandboxEnv
    connector: AccountingTarget
    clock: OffsetClock
    retire: Callable[[TargetRef], None]  # made inactive (QuickBooks) or archived (Xero)
    shrink_pages: Callable[[pytest.MonkeyPatch], None]
    close: Callable[[], None]

    @property
    def listing(self) -> CustomerListing:
        assert isinstance(self.connector, CustomerListing)
        return self.connector

    def customer(self, name: str, email: str | None = None) -> TargetRef:
        """A customer made through the vendor's API, as the sync makes one."""
        party = Party(kind=PartyKind.COMPANY, display_name=name, email=email)
        return self.connector.upsert_customer(party, existing=None, idempotency_key=name)

    def listed(self, changed_since: datetime | None = None) -> dict[str, KnownCustomer]:
        found = list(self.listing.known_customers(changed_since=changed_since))
        by_id = {c.ref.id: c for c in found}
        assert len(by_id) == len(found), "a customer listed twice"
        return by_id


def _quickbooks() -> Vendor:
    clock = OffsetClock()
    # A person's edit goes through the API under this app's client id; the per-second
    # window is widened so that it and the shrunk pages stay within it.
    env = QuickBooksEnv(clock=clock, rate_per_second=100, rate_per_minute=10_000)
    books = QuickBooksBooks(env.sandbox, env.server.url)

    def retire(ref: TargetRef) -> None:
        body = {"Id": ref.id, "SyncToken": ref.version, "sparse": True, "Active": False}
        books.api().post("/customer", json=body).raise_for_status()

    def shrink_pages(monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(quickbooks, "QUERY_MAX_RESULTS", 2)

    def close() -> None:
        books.api().close()
        env.close()

    return Vendor(env, env.connector(), clock, retire, shrink_pages, close)


def _xero() -> Vendor:
    clock = OffsetClock()
    env = XeroEnv(clock=clock, rate_per_minute=10_000)

    def retire(ref: TargetRef) -> None:
        env.sandbox.ui_update("Contacts", ref.id, {"ContactStatus": "ARCHIVED"})

    def shrink_pages(monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(xero, "PAGE_SIZE", 2)

    return Vendor(env, env.connector(), clock, retire, shrink_pages, env.close)


@pytest.fixture(scope="module", params=[_quickbooks, _xero], ids=["quickbooks", "xero"])
def running(request: pytest.FixtureRequest) -> Iterator[Vendor]:
    vendor: Vendor = request.param()
    yield vendor
    vendor.close()


@pytest.fixture
def vendor(running: Vendor) -> Vendor:
    running.env.sandbox.reset()
    return running


def at_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def test_a_customer_made_through_the_api_is_listed_with_its_email_and_name(
    vendor: Vendor,
) -> None:
    with_email = vendor.customer("Listed Ltd", "listed@example.com")
    without = vendor.customer("No Mail Ltd")

    listed = vendor.listed()

    assert listed[with_email.id].email == "listed@example.com"
    assert listed[with_email.id].display_name == "Listed Ltd"
    assert listed[with_email.id].ref.id == with_email.id
    assert (listed[without.id].email, listed[without.id].display_name) == (None, "No Mail Ltd")


def test_a_retired_customer_is_still_listed(vendor: Vendor) -> None:
    kept = vendor.customer("Kept Ltd", "kept@example.com")
    retired = vendor.customer("Retired Ltd", "retired@example.com")
    vendor.clock.advance(2)
    vendor.retire(retired)

    listed = vendor.listed()
    changed = vendor.listed(changed_since=at_ms(kept.changed_at_ms or 0))

    assert {kept.id, retired.id} <= set(listed)
    assert listed[retired.id].email == "retired@example.com"
    assert {kept.id, retired.id} <= set(changed)


def test_a_customer_retired_while_the_pages_are_read_hides_no_other(
    vendor: Vendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    vendor.shrink_pages(monkeypatch)
    for n in range(5):
        vendor.customer(f"Shifted {n} Ltd", f"shifted{n}@example.com")
    everyone = set(vendor.listed())
    vendor.clock.advance(2)
    reading = vendor.listing.known_customers()
    first_page = [next(reading), next(reading)]

    vendor.retire(first_page[0].ref)  # read already: it leaves what is still to read
    rest = list(reading)

    assert {c.ref.id for c in [*first_page, *rest]} == everyone


def test_changed_since_lists_only_what_changed_at_or_after_it(vendor: Vendor) -> None:
    before = vendor.customer("Before Ltd", "before@example.com")
    vendor.clock.advance(2)
    since = datetime.fromtimestamp(vendor.clock(), UTC)
    vendor.clock.advance(2)
    after = vendor.customer("After Ltd", "after@example.com")
    assert after.changed_at_ms is not None
    # Later within the second the change was made in: the vendor's time is to the
    # second, so the change counts as at that time.
    same_second = at_ms(after.changed_at_ms // 1000 * 1000 + 999)
    vendor.clock.advance(2)
    edited = vendor.connector.upsert_customer(
        Party(kind=PartyKind.COMPANY, display_name="Before Ltd", phone="+1 555 0100"),
        existing=before,
        idempotency_key="Before Ltd edited",
    )

    assert set(vendor.listed(changed_since=since)) == {after.id, edited.id}
    assert set(vendor.listed(changed_since=same_second)) == {after.id, edited.id}
    later = at_ms((edited.changed_at_ms or 0) // 1000 * 1000 + 1000)
    assert vendor.listed(changed_since=later) == {}


def test_a_listing_longer_than_a_page_is_read_to_its_end(
    vendor: Vendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    vendor.shrink_pages(monkeypatch)
    vendor.clock.advance(2)
    since = datetime.fromtimestamp(vendor.clock(), UTC)
    made = {vendor.customer(f"Paged {n} Ltd", f"paged{n}@example.com").id for n in range(5)}

    everyone = vendor.listed()
    changed = vendor.listed(changed_since=since)

    assert made <= set(everyone)
    assert set(changed) == made
