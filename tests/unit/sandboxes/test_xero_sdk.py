"""Xero's own Python SDK (xero-python) against the Xero sandbox.

The SDK is independent of our connector, so what it sends is what real
integrations send: if the sandbox refuses it, the sandbox is wrong, not the SDK.
Its Accounting and Identity clients take a ``base_url``; its token endpoint is a
class attribute of ``TokenApi``, pointed at the sandbox for the module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from xero_python.accounting import (
    Account,
    AccountingApi,
    Allocation,
    Allocations,
    Contact,
    Contacts,
    CreditNote,
    CreditNotes,
    Invoice,
    Invoices,
    LineAmountTypes,
    LineItem,
    Payment,
    Payments,
)
from xero_python.api_client import ApiClient
from xero_python.api_client.configuration import Configuration
from xero_python.api_client.oauth2 import OAuth2Token, TokenApi
from xero_python.exceptions import (
    AccountingBadRequestException,
    HTTPStatusException,
    NotFoundException,
    RateLimitException,
)
from xero_python.identity import IdentityApi

from local.sandboxes.base import Fault, SandboxServer
from local.sandboxes.xero import XeroSandbox, XeroSandboxConfig
from tests.fakes import OffsetClock


class Session:
    """What an integration holds: an SDK ApiClient whose token lives in a dict."""

    def __init__(self, sandbox: XeroSandbox, url: str, refresh_token: str | None = None) -> None:
        config = sandbox.config
        self.token: dict[str, Any] = {}
        oauth = OAuth2Token(client_id=config.client_id, client_secret=config.client_secret)
        self.client = ApiClient(
            Configuration(oauth2_token=oauth),
            pool_threads=1,
            oauth2_token_getter=lambda: self.token,
            oauth2_token_saver=self.token.update,
        )
        # A stored refresh token and no access token yet: the first call refreshes.
        self.client.set_oauth2_token(
            {
                "access_token": "",
                "refresh_token": refresh_token or config.initial_refresh_token,
                "scope": config.initial_scopes.split(),
                "expires_in": 0,
                "expires_at": 0,
                "token_type": "Bearer",
            }
        )
        self.accounting = AccountingApi(self.client, base_url=f"{url}/api.xro/2.0")
        self.identity = IdentityApi(self.client, base_url=url)
        self.tenant = config.tenant_id


@pytest.fixture(scope="module")
def clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture(scope="module")
def token_url() -> Iterator[Callable[[str], None]]:
    with pytest.MonkeyPatch.context() as patch:

        def point_at(url: str) -> None:
            patch.setattr(TokenApi, "refresh_token_url", f"{url}/connect/token")

        yield point_at


def start(clock: OffsetClock, **overrides: Any) -> tuple[XeroSandbox, SandboxServer]:
    sandbox = XeroSandbox(XeroSandboxConfig(clock=clock, **overrides))
    return sandbox, SandboxServer(sandbox.app, 0).start()


@pytest.fixture(scope="module")
def served(
    clock: OffsetClock, token_url: Callable[[str], None]
) -> Iterator[tuple[XeroSandbox, str]]:
    # The minute limit is lifted: one test's SDK calls come in a burst.
    sandbox, server = start(clock, rate_per_minute=10_000)
    token_url(server.url)
    yield sandbox, server.url
    server.stop()
    sandbox.close()


@pytest.fixture(scope="module")
def session(served: tuple[XeroSandbox, str]) -> Session:
    return Session(*served)


@pytest.fixture
def xero(served: tuple[XeroSandbox, str], session: Session, clock: OffsetClock) -> Session:
    clock.offset = 0.0
    served[0].reset()
    return session


def test_sdk_refreshes_tokens_and_finds_the_tenant(
    served: tuple[XeroSandbox, str], clock: OffsetClock
) -> None:
    sandbox, url = served
    # A refresh token of its own, from the code flow, so the module's session keeps its own.
    code = sandbox.mint_authorization_code()
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": sandbox.config.redirect_uris[0],
    }
    auth = (sandbox.config.client_id, sandbox.config.client_secret)
    stored = httpx.post(f"{url}/connect/token", data=form, auth=auth).json()["refresh_token"]
    session = Session(sandbox, url, stored)
    connections = session.identity.get_connections()  # refreshes first: no access token
    assert [(c.tenant_id, c.tenant_type) for c in connections] == [
        (sandbox.tenant_id, "ORGANISATION")
    ]
    first = dict(session.token)
    assert first["refresh_token"] != stored  # rotated
    assert first["expires_in"] == 1800

    # Half an hour later the access token has expired at Xero and in the SDK's eyes.
    clock.offset = 1801.0
    session.token["expires_at"] = time.time()
    organisation = session.accounting.get_organisations(session.tenant).organisations[0]
    assert organisation.name == "Demo Company (Global)"
    assert session.token["refresh_token"] != first["refresh_token"]
    clock.offset = 0.0

    session.token["refresh_token"] = "not-a-token"
    with pytest.raises(HTTPStatusException) as raised:
        session.client.refresh_oauth2_token()
    assert raised.value.status == 400
    assert raised.value.body == b'{"error":"invalid_grant"}'


def test_contact_create_get_update(xero: Session) -> None:
    api, tenant = xero.accounting, xero.tenant
    created = api.create_contacts(
        tenant,
        Contacts(
            contacts=[Contact(name="Northwind Traders", email_address="ap@northwind.example")]
        ),
    ).contacts[0]
    assert created.contact_id and created.contact_status == "ACTIVE"
    assert created.updated_date_utc.tzinfo is not None  # parsed from /Date(ms+0000)/

    fetched = api.get_contact(tenant, created.contact_id).contacts[0]
    assert (fetched.name, fetched.email_address) == ("Northwind Traders", "ap@northwind.example")

    updated = api.update_contact(
        tenant, created.contact_id, Contacts(contacts=[Contact(first_name="Nancy")])
    ).contacts[0]
    assert (updated.name, updated.first_name) == ("Northwind Traders", "Nancy")
    found = api.get_contacts(tenant, where='Name=="Northwind Traders"').contacts
    assert [c.contact_id for c in found] == [created.contact_id]

    with pytest.raises(NotFoundException) as missing:
        api.get_contact(tenant, "00000000-0000-0000-0000-000000000000")
    assert missing.value.status == 404


def test_invoice_with_line_items_reads_back_amounts(xero: Session) -> None:
    api, tenant = xero.accounting, xero.tenant
    contact = api.get_contacts(tenant, where='Name=="Boom FM"').contacts[0]
    invoice = Invoice(
        type="ACCREC",
        contact=Contact(contact_id=contact.contact_id),
        date=date(2026, 1, 15),
        due_date=date(2026, 2, 15),
        line_amount_types=LineAmountTypes.EXCLUSIVE,
        reference="Deal 42",
        line_items=[
            LineItem(
                description="Design",
                quantity=1.5,
                unit_amount=99.61,
                account_code="200",
                discount_rate=10,
            ),
            LineItem(item_code="HOURS", quantity=4, unit_amount=80.0),
        ],
    )
    created = api.create_invoices(tenant, Invoices(invoices=[invoice])).invoices[0]
    assert created.invoice_number == "INV-0003"
    assert (created.date, created.due_date) == (date(2026, 1, 15), date(2026, 2, 15))
    read = api.get_invoice(tenant, created.invoice_id).invoices[0]
    assert [line.line_amount for line in read.line_items] == [Decimal("134.47"), Decimal("320")]
    assert (read.sub_total, read.total_tax, read.total) == (
        Decimal("454.47"),
        Decimal("45.45"),
        Decimal("499.92"),
    )
    assert read.amount_due == read.total
    assert read.status == "DRAFT"
    assert read.line_items[1].item_code == "HOURS"


def test_paging(xero: Session) -> None:
    api, tenant = xero.accounting, xero.tenant
    contact_id = api.get_contacts(tenant, where='Name=="Boom FM"').contacts[0].contact_id
    drafts = [
        Invoice(
            type="ACCREC",
            contact=Contact(contact_id=contact_id),
            line_items=[
                LineItem(description=f"Line {n}", quantity=1, unit_amount=n, account_code="200")
            ],
        )
        for n in range(1, 4)
    ]
    api.create_invoices(tenant, Invoices(invoices=drafts))
    first = api.get_invoices(tenant, page=1, page_size=2)
    assert (first.pagination.page, first.pagination.page_count, first.pagination.item_count) == (
        1,
        3,
        5,
    )
    second = api.get_invoices(tenant, page=2, page_size=2)
    third = api.get_invoices(tenant, page=3, page_size=2)
    numbers = [i.invoice_number for page in (first, second, third) for i in page.invoices]
    assert sorted(numbers) == ["INV-0001", "INV-0002", "INV-0003", "INV-0004", "INV-0005"]
    assert all(i.line_items for i in first.invoices)  # pages carry line items
    since = datetime.now(UTC) - timedelta(minutes=1)
    recent = api.get_invoices(tenant, if_modified_since=since, page=1)
    assert sorted(i.invoice_number for i in recent.invoices) == ["INV-0003", "INV-0004", "INV-0005"]


def test_validation_error_is_the_sdks_bad_request(xero: Session) -> None:
    api, tenant = xero.accounting, xero.tenant
    with pytest.raises(AccountingBadRequestException) as raised:
        api.create_contacts(tenant, Contacts(contacts=[Contact(name="Boom FM")]))
    assert raised.value.status == 400
    assert raised.value.reason == (
        "The contact name Boom FM is already assigned to another contact. "
        "The contact name must be unique across all active contacts."
    )
    assert raised.value.error_data["Type"] == "ValidationException"

    per_element = api.create_contacts(
        tenant,
        Contacts(contacts=[Contact(name="Fresh Co"), Contact(name="Boom FM")]),
        summarize_errors=False,
    ).contacts
    assert [c.status_attribute_string for c in per_element] == ["OK", "ERROR"]
    assert per_element[1].validation_errors[0].message.startswith("The contact name Boom FM")


def test_idempotency_key_replays_the_original(
    xero: Session, served: tuple[XeroSandbox, str]
) -> None:
    api, tenant = xero.accounting, xero.tenant
    contacts = Contacts(contacts=[Contact(name="Exactly Once Ltd")])
    first = api.create_contacts(tenant, contacts, idempotency_key="crm-contact-7-v1")
    again = api.create_contacts(tenant, contacts, idempotency_key="crm-contact-7-v1")
    assert again.contacts[0].contact_id == first.contacts[0].contact_id
    assert served[0].create_count("Contacts") == 1
    with pytest.raises(AccountingBadRequestException) as reused:
        api.create_contacts(
            tenant,
            Contacts(contacts=[Contact(name="Someone Else")]),
            idempotency_key="crm-contact-7-v1",
        )
    assert (
        reused.value.reason == "Idempotency Key: crm-contact-7-v1 is used with a different request."
    )


def test_sdk_waits_out_retry_after_on_a_get(xero: Session, served: tuple[XeroSandbox, str]) -> None:
    # The SDK's urllib3 pool retries a 429 on GET/PUT after Retry-After (its default
    # Retry), so a throttled read succeeds late rather than raising.
    served[0].faults.add(
        Fault(kind="rate_limit", retry_after_s=1, path_prefix="/api.xro/2.0/Items")
    )
    items = xero.accounting.get_items(xero.tenant).items
    assert {"Services", "Hours"} <= {i.name for i in items}
    assert served[0].faults.pending() == []  # the 429 was served, then the retry


def test_rate_limit_is_the_sdks_rate_limit_exception(
    clock: OffsetClock, token_url: Callable[[str], None], served: tuple[XeroSandbox, str]
) -> None:
    sandbox, server = start(clock, rate_per_minute=2)
    token_url(server.url)
    try:
        session = Session(sandbox, server.url)
        api = session.accounting
        api.get_items(session.tenant)
        api.get_items(session.tenant)
        # A POST: urllib3, under the SDK, would wait out Retry-After and retry a GET/PUT.
        with pytest.raises(RateLimitException) as raised:
            api.update_or_create_contacts(session.tenant, Contacts(contacts=[Contact(name="Late")]))
        assert raised.value.status == 429
        assert raised.value.rate_limit == "minute"
        assert int(raised.value.headers["Retry-After"]) >= 1
        assert raised.value.error_message == "You've exceeded the per minute rate limit"
    finally:
        token_url(served[1])
        server.stop()
        sandbox.close()


def ads(contact: Contact, amount: int) -> dict[str, Any]:
    """An approved, untaxed sales document's fields, invoice or credit note alike: one
    line of ads for the contact."""
    return {
        "contact": Contact(contact_id=contact.contact_id),
        "status": "AUTHORISED",
        "line_amount_types": LineAmountTypes.NOTAX,
        "line_items": [
            LineItem(description="Ads", quantity=1, unit_amount=amount, account_code="200")
        ],
    }


def test_sdk_pays_an_invoice_and_reads_the_balances(xero: Session) -> None:
    api, tenant = xero.accounting, xero.tenant
    contact = api.get_contacts(tenant, where='Name=="Boom FM"').contacts[0]
    sale = Invoice(
        type="ACCREC", date=date(2026, 1, 15), due_date=date(2026, 2, 15), **ads(contact, 100)
    )
    invoice = api.create_invoices(tenant, Invoices(invoices=[sale])).invoices[0]

    # create_payment POSTs one Payment; create_payments PUTs a list.
    part = api.create_payment(
        tenant,
        Payment(
            invoice=Invoice(invoice_id=invoice.invoice_id),
            account=Account(code="090"),
            date=date(2026, 2, 1),
            amount=40,
            reference="Deposit",
        ),
    ).payments[0]
    rest = api.create_payments(
        tenant,
        Payments(
            payments=[
                Payment(
                    invoice=Invoice(invoice_id=invoice.invoice_id),
                    account=Account(code="090"),
                    date=date(2026, 2, 10),
                    amount=60,
                )
            ]
        ),
    ).payments[0]
    paid = api.get_invoice(tenant, invoice.invoice_id).invoices[0]
    listed = api.get_payments(tenant, where='PaymentType=="ACCRECPAYMENT"').payments
    balances = api.get_contact(tenant, contact.contact_id).contacts[0].balances
    with pytest.raises(AccountingBadRequestException) as over:
        api.create_payment(
            tenant,
            Payment(
                invoice=Invoice(invoice_id=invoice.invoice_id),
                account=Account(code="090"),
                amount=1,
            ),
        )

    assert (part.payment_type, part.status, part.amount) == ("ACCRECPAYMENT", "AUTHORISED", 40)
    assert part.date == date(2026, 2, 1) and part.account.code == "090"
    assert (paid.status, paid.amount_paid, paid.amount_due) == ("PAID", Decimal(100), Decimal(0))
    assert paid.fully_paid_on_date == date(2026, 2, 10)
    assert [p.payment_id for p in paid.payments] == [part.payment_id, rest.payment_id]
    assert {p.payment_id for p in listed} == {part.payment_id, rest.payment_id}
    assert balances.accounts_receivable.outstanding == 0
    assert over.value.reason == "Payments can only be made against Authorised documents"


def test_sdk_raises_allocates_and_refunds_a_credit_note(xero: Session) -> None:
    api, tenant = xero.accounting, xero.tenant
    contact = api.get_contacts(tenant, where='Name=="Boom FM"').contacts[0]
    invoice = api.create_invoices(
        tenant, Invoices(invoices=[Invoice(type="ACCREC", **ads(contact, 100))])
    ).invoices[0]
    note = api.create_credit_notes(
        tenant, CreditNotes(credit_notes=[CreditNote(type="ACCRECCREDIT", **ads(contact, 50))])
    ).credit_notes[0]

    allocation = api.create_credit_note_allocation(
        tenant,
        note.credit_note_id,
        Allocations(
            allocations=[
                Allocation(
                    invoice=Invoice(invoice_id=invoice.invoice_id),
                    amount=30,
                    date=date(2026, 2, 1),
                )
            ]
        ),
    ).allocations[0]
    refund = api.create_payment(
        tenant,
        Payment(
            credit_note=CreditNote(credit_note_id=note.credit_note_id),
            account=Account(code="090"),
            date=date(2026, 2, 2),
            amount=20,
        ),
    ).payments[0]
    settled = api.get_credit_note(tenant, note.credit_note_id).credit_notes[0]
    credited = api.get_invoice(tenant, invoice.invoice_id).invoices[0]

    assert (note.credit_note_number, note.remaining_credit) == ("CN-0001", Decimal(50))
    assert (allocation.amount, allocation.date) == (Decimal(30), date(2026, 2, 1))
    assert (refund.payment_type, refund.invoice.invoice_id) == (
        "ARCREDITPAYMENT",
        note.credit_note_id,
    )
    assert (settled.status, settled.remaining_credit) == ("PAID", Decimal(0))
    assert [a.amount for a in settled.allocations] == [Decimal(30)]
    assert [p.payment_id for p in settled.payments] == [refund.payment_id]
    assert settled.fully_paid_on_date == date(2026, 2, 2)
    assert (credited.amount_credited, credited.amount_due) == (Decimal(30), Decimal(70))
