"""Intuit's own Python clients (intuit-oauth, python-quickbooks) against the QBO sandbox.

The SDKs are independent of our connector, so what they send is what real
integrations send: if the sandbox refuses it, the sandbox is wrong, not the SDK.
intuit-oauth is pointed at the sandbox through its discovery document (it accepts
a discovery URL as its ``environment``), python-quickbooks through ``api_url_v3``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from intuitlib.client import AuthClient
from intuitlib.exceptions import AuthClientError
from quickbooks import QuickBooks
from quickbooks.batch import batch_create
from quickbooks.cdc import change_data_capture
from quickbooks.exceptions import (
    AuthorizationException,
    ObjectNotFoundException,
    QuickbooksException,
    ValidationException,
)
from quickbooks.objects import Account, Customer, Invoice, Item, Term
from quickbooks.objects.base import EmailAddress, Ref
from quickbooks.objects.detailline import SalesItemLine, SalesItemLineDetail

from local.sandboxes.base import SandboxServer
from local.sandboxes.quickbooks import QuickBooksSandbox, QuickBooksSandboxConfig
from tests.fakes import OffsetClock


@pytest.fixture(scope="module")
def clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture(scope="module")
def sandbox(clock: OffsetClock) -> Iterator[tuple[QuickBooksSandbox, str]]:
    # A raised per-second limit: the SDK calls in one test come in a burst.
    sandbox = QuickBooksSandbox(QuickBooksSandboxConfig(rate_per_second=100, clock=clock))
    server = SandboxServer(sandbox.app, 0).start()
    # requests-oauthlib refuses plain http unless told this is a local test.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
        yield sandbox, server.url
    server.stop()
    sandbox.close()


def connect(sandbox: QuickBooksSandbox, url: str, refresh_token: str) -> QuickBooks:
    """What an integration does: discover Intuit's endpoints, refresh, open a client."""
    config = sandbox.config
    auth = AuthClient(
        client_id=config.client_id,
        client_secret=config.client_secret,
        redirect_uri="https://app.example.com/callback",
        environment=f"{url}/.well-known/openid_sandbox_configuration/",
    )
    qb = QuickBooks(
        auth_client=auth,
        refresh_token=refresh_token,
        company_id=config.realm_id,
        minorversion=75,
    )
    qb.api_url_v3 = f"{url}/v3"
    return qb


@pytest.fixture(scope="module")
def client(sandbox: tuple[QuickBooksSandbox, str]) -> QuickBooks:
    qbo, url = sandbox
    return connect(qbo, url, qbo.config.initial_refresh_token)


@pytest.fixture
def qb(
    sandbox: tuple[QuickBooksSandbox, str], client: QuickBooks, clock: OffsetClock
) -> QuickBooks:
    """The module's client against the seeded company (a reset keeps OAuth tokens)."""
    clock.offset = 0.0
    sandbox[0].reset()
    return client


def new_customer(qb: QuickBooks, name: str, email: str | None = None) -> Customer:
    customer = Customer()
    customer.DisplayName = name
    if email:
        customer.PrimaryEmailAddr = EmailAddress()
        customer.PrimaryEmailAddr.Address = email
    saved: Customer = customer.save(qb=qb)
    return saved


def ref(value: str) -> Ref:
    reference = Ref()
    reference.value = value
    return reference


def sales_line(item: str, qty: int, price: int) -> SalesItemLine:
    line = SalesItemLine()
    line.Amount = qty * price
    line.SalesItemLineDetail = SalesItemLineDetail()
    line.SalesItemLineDetail.ItemRef = ref(item)
    line.SalesItemLineDetail.Qty = qty
    line.SalesItemLineDetail.UnitPrice = price
    return line


def error_code(raised: pytest.ExceptionInfo[QuickbooksException]) -> int:
    code: int = raised.value.error_code
    return code


# --- OAuth through intuit-oauth --------------------------------------------------


def test_intuit_oauth_discovers_the_token_endpoint_and_rotates(
    sandbox: tuple[QuickBooksSandbox, str],
) -> None:
    qbo, url = sandbox
    qb = connect(qbo, url, qbo.config.initial_refresh_token)
    auth = qb.auth_client
    assert auth.token_endpoint == f"{url}/oauth2/v1/tokens/bearer"
    assert auth.refresh_token != qbo.config.initial_refresh_token  # rotated on refresh
    assert auth.expires_in == 3600
    assert auth.x_refresh_token_expires_in == 8_726_400
    assert len(Customer.all(qb=qb)) >= 5  # the new access token opens the API

    with pytest.raises(AuthClientError) as raised:
        auth.refresh(refresh_token="not-a-token")
    assert raised.value.status_code == 400
    assert raised.value.response.json() == {"error": "invalid_grant"}
    assert raised.value.intuit_tid


def test_expired_access_token_is_an_authorization_exception(
    qb: QuickBooks, clock: OffsetClock
) -> None:
    clock.offset = 3601.0
    with pytest.raises(AuthorizationException) as raised:
        Customer.get("1", qb=qb)
    assert raised.value.error_code == 401
    assert "AuthenticationFailed" in raised.value.detail  # the lower-case 401 body
    clock.offset = 0.0
    qb.auth_client.refresh()
    qb.session.access_token = qb.auth_client.access_token
    assert Customer.get("1", qb=qb).DisplayName == "Amy's Bird Sanctuary"


# --- customers --------------------------------------------------------------------


def test_customer_create_get_sparse_update_and_queries(qb: QuickBooks) -> None:
    created = new_customer(qb, "Northwind Traders", "buyer@northwind.example")
    assert created.Id and created.SyncToken == "0"

    fetched = Customer.get(created.Id, qb=qb)
    assert fetched.DisplayName == "Northwind Traders"
    assert fetched.PrimaryEmailAddr.Address == "buyer@northwind.example"

    fetched.sparse = True
    fetched.CompanyName = "Northwind Traders Ltd"
    updated = fetched.save(qb=qb)
    assert updated.SyncToken == "1"
    assert updated.CompanyName == "Northwind Traders Ltd"
    assert updated.PrimaryEmailAddr.Address == "buyer@northwind.example"

    assert [c.Id for c in Customer.filter(DisplayName="Northwind Traders", qb=qb)] == [created.Id]
    quoted = Customer.filter(DisplayName="Amy's Bird Sanctuary", qb=qb)  # SDK escapes the quote
    assert [c.Id for c in quoted] == ["1"]
    assert [c.DisplayName for c in Customer.choose(["1", "3"], qb=qb)] == [
        "Amy's Bird Sanctuary",
        "Cool Cars",
    ]
    assert Customer.count(qb=qb) == 6
    assert Customer.count("DisplayName LIKE 'North%'", qb=qb) == 1
    page = Customer.where("Active = true", order_by="DisplayName DESC", max_results=2, qb=qb)
    assert [c.DisplayName for c in page] == ["Northwind Traders", "Dukes Basketball Camp"]


def test_duplicate_name_and_stale_sync_token_as_the_sdk_reports_them(qb: QuickBooks) -> None:
    with pytest.raises(QuickbooksException) as duplicate:
        new_customer(qb, "Cool Cars")
    assert error_code(duplicate) == 6240
    assert duplicate.value.message == "Duplicate Name Exists Error"

    stale = Customer.get("2", qb=qb)
    fresh = Customer.get("2", qb=qb)
    fresh.sparse = True
    fresh.Notes = "first writer"
    fresh.save(qb=qb)
    stale.sparse = True
    stale.Notes = "second writer"
    with pytest.raises(QuickbooksException) as conflict:
        stale.save(qb=qb)
    assert error_code(conflict) == 5010
    assert Customer.get("2", qb=qb).Notes == "first writer"

    with pytest.raises(ObjectNotFoundException) as missing:
        Customer.get("999", qb=qb)
    assert missing.value.error_code == 610


# --- items: Item.all() sends "SELECT *, Sku FROM Item" ------------------------------


def test_item_all_returns_every_item_with_its_sku(qb: QuickBooks) -> None:
    item = Item()
    item.Name = "Garden audit"
    item.Type = "Service"
    item.Sku = "GA-100"
    item.UnitPrice = 120
    item.IncomeAccountRef = ref("1")
    created = item.save(qb=qb)

    items = {i.Name: i for i in Item.all(qb=qb)}
    assert items["Garden audit"].Sku == "GA-100"
    assert items["Garden audit"].Id == created.Id
    assert {"Services", "Design", "Sprinklers"} <= set(items)

    # Named fields only: each object cut down to them and marked sparse.
    (projected,) = Item.query("SELECT Name, Sku FROM Item WHERE Sku = 'GA-100'", qb=qb)
    assert (projected.Name, projected.Sku, projected.sparse) == ("Garden audit", "GA-100", True)
    assert projected.UnitPrice == 0  # the SDK's default: the field was not sent


# --- terms ------------------------------------------------------------------------


def test_term_create_update_and_use_on_an_invoice(qb: QuickBooks) -> None:
    term = Term()
    term.Name = "Net 45"
    term.DueDays = 45
    term.DiscountPercent = 2
    term.DiscountDays = 10
    created = term.save(qb=qb)
    assert (created.Type, created.DueDays, created.DiscountPercent) == ("STANDARD", 45, 2)

    created.DueDays = 40
    updated = created.save(qb=qb)  # a full update, as the SDK sends it
    assert (updated.SyncToken, updated.DueDays, updated.DiscountDays) == ("1", 40, 10)
    assert Term.get(created.Id, qb=qb).DueDays == 40

    date_driven = Term()
    date_driven.Name = "15th of next month"
    date_driven.DayOfMonthDue = 15
    date_driven.DueNextMonthDays = 5
    saved = date_driven.save(qb=qb)
    assert (saved.Type, saved.DayOfMonthDue, saved.DueDays) == ("DATE_DRIVEN", 15, None)

    assert {t.Name for t in Term.all(qb=qb)} >= {"Net 30", "Net 45", "15th of next month"}

    invoice = Invoice()
    invoice.CustomerRef = ref("4")
    invoice.SalesTermRef = ref(created.Id)
    invoice.TxnDate = "2025-03-01"
    invoice.Line = [sales_line("4", 1, 50)]
    assert invoice.save(qb=qb).DueDate == "2025-04-10"


def test_term_validation(qb: QuickBooks) -> None:
    duplicate = Term()
    duplicate.Name = "net 30"
    duplicate.DueDays = 30
    with pytest.raises(QuickbooksException) as raised:
        duplicate.save(qb=qb)
    assert error_code(raised) == 6240

    no_due = Term()
    no_due.Name = "Whenever"
    with pytest.raises(ValidationException) as required:
        no_due.save(qb=qb)
    assert error_code(required) == 2020

    both = Term()
    both.Name = "Confused"
    both.DueDays = 10
    both.DayOfMonthDue = 5
    with pytest.raises(QuickbooksException) as mixed:
        both.save(qb=qb)
    assert error_code(mixed) == 6000

    too_late = Term()
    too_late.Name = "Day 32"
    too_late.DayOfMonthDue = 32
    with pytest.raises(ValidationException) as out_of_range:
        too_late.save(qb=qb)
    assert error_code(out_of_range) == 2010
    assert {t.Name for t in Term.all(qb=qb)} == {"Due on receipt", "Net 15", "Net 30", "Net 60"}


# --- accounts ---------------------------------------------------------------------


def test_account_create_sub_account_update_and_use_by_an_item(qb: QuickBooks) -> None:
    account = Account()
    account.Name = "Consulting income"
    account.AccountType = "Income"
    account.AcctNum = "4100"
    parent = account.save(qb=qb)
    assert (parent.Classification, parent.AccountSubType) == ("Revenue", "OtherPrimaryIncome")
    assert (parent.FullyQualifiedName, parent.SubAccount, parent.CurrencyRef.value) == (
        "Consulting income",
        False,
        "USD",
    )

    child = Account()
    child.Name = "Workshops"
    child.AccountSubType = "ServiceFeeIncome"  # the type is derived from the detail type
    child.ParentRef = parent.to_ref()
    sub = child.save(qb=qb)
    assert (sub.AccountType, sub.SubAccount) == ("Income", True)
    assert sub.FullyQualifiedName == "Consulting income:Workshops"

    parent.Name = "Advisory income"
    renamed = parent.save(qb=qb)
    assert renamed.SyncToken == "1"
    assert Account.get(sub.Id, qb=qb).FullyQualifiedName == "Advisory income:Workshops"
    found = Account.filter(FullyQualifiedName="Advisory income:Workshops", qb=qb)
    assert [a.Id for a in found] == [sub.Id]

    item = Item()
    item.Name = "Workshop day"
    item.Type = "Service"
    item.IncomeAccountRef = ref(sub.Id)
    assert item.save(qb=qb).IncomeAccountRef.value == sub.Id

    renamed.Active = False
    renamed.save(qb=qb)
    assert "Advisory income" not in {a.Name for a in Account.all(qb=qb)}
    assert [a.Name for a in Account.where("Active = false", qb=qb)] == ["Advisory income"]


@pytest.mark.parametrize(
    ("fields", "exception", "code"),
    [
        ({"Name": "Services", "AccountType": "Income"}, QuickbooksException, 6240),
        ({"Name": "Fees: misc", "AccountType": "Income"}, QuickbooksException, 6000),
        ({"Name": "Cash box"}, ValidationException, 2020),
        ({"Name": "Cash box", "AccountType": "Piggy Bank"}, ValidationException, 2170),
        ({"Name": "Cash box", "AccountSubType": "Piggy"}, ValidationException, 2170),
        (
            {"Name": "Cash box", "AccountType": "Income", "AccountSubType": "Checking"},
            QuickbooksException,
            6000,
        ),
        (
            {"Name": "Under nothing", "AccountType": "Bank", "ParentRef": "99"},
            ValidationException,
            2500,
        ),
    ],
)
def test_account_validation(
    qb: QuickBooks, fields: dict[str, Any], exception: type[QuickbooksException], code: int
) -> None:
    account = Account()
    for key, value in fields.items():
        setattr(account, key, ref(value) if key == "ParentRef" else value)
    with pytest.raises(exception) as raised:
        account.save(qb=qb)
    assert error_code(raised) == code
    assert len(Account.all(qb=qb)) == 7  # nothing was created


def test_account_numbers_are_unique_and_cycles_refused(qb: QuickBooks) -> None:
    first = Account()
    first.Name = "Petty cash"
    first.AccountType = "Bank"
    first.AcctNum = "1010"
    top = first.save(qb=qb)
    assert top.AccountSubType == "CashOnHand"

    second = Account()
    second.Name = "Float"
    second.AccountType = "Bank"
    second.AcctNum = "1010"
    with pytest.raises(QuickbooksException) as taken:
        second.save(qb=qb)
    assert error_code(taken) == 6000

    second.AcctNum = "1011"
    second.ParentRef = top.to_ref()
    below = second.save(qb=qb)
    top.ParentRef = below.to_ref()
    with pytest.raises(QuickbooksException) as cycle:
        top.save(qb=qb)
    assert error_code(cycle) == 6000
    assert Account.get(top.Id, qb=qb).SubAccount is False


# --- invoices, batch, CDC -----------------------------------------------------------


def test_invoice_create_with_lines_and_read_back(qb: QuickBooks) -> None:
    invoice = Invoice()
    invoice.CustomerRef = ref("3")
    invoice.Line = [sales_line("3", 2, 75), sales_line("4", 1, 50)]
    created = invoice.save(qb=qb, request_id="sdk-invoice-1")

    read = Invoice.get(created.Id, qb=qb)
    assert read.TotalAmt == 200
    assert read.Balance == 200
    assert read.DocNumber == "1003"
    assert read.CustomerRef.name == "Cool Cars"
    assert [(line.DetailType, line.Amount) for line in read.Line] == [
        ("SalesItemLineDetail", 150),
        ("SalesItemLineDetail", 50),
        ("SubTotalLineDetail", 200),
    ]
    assert read.Line[0].SalesItemLineDetail.ItemRef.name == "Design"
    # Customer "Cool Cars" pays on Net 15.
    due = datetime.fromisoformat(read.DueDate) - datetime.fromisoformat(read.TxnDate)
    assert due == timedelta(days=15)

    again = invoice.save(qb=qb, request_id="sdk-invoice-1")  # a retry with the same requestid
    assert again.Id == created.Id
    assert Invoice.count(qb=qb) == 3


def test_batch_create_reports_successes_and_faults(qb: QuickBooks) -> None:
    fresh = Customer()
    fresh.DisplayName = "Batch Newco"
    taken = Customer()
    taken.DisplayName = "Diego Rodriguez"
    result = batch_create([fresh, taken], qb=qb)
    assert [c.DisplayName for c in result.successes] == ["Batch Newco"]
    (fault,) = result.faults
    assert fault.original_object is taken
    assert [e.code for e in fault.Error] == ["6240"]
    assert Customer.count(qb=qb) == 6


def test_change_data_capture_lists_what_changed(
    qb: QuickBooks, sandbox: tuple[QuickBooksSandbox, str], clock: OffsetClock
) -> None:
    # python-quickbooks sends the time without an offset: it is read in the company's zone.
    since = datetime.fromtimestamp(clock(), sandbox[0].tz) - timedelta(seconds=1)
    customer = new_customer(qb, "Changed Lately")
    invoice = Invoice()
    invoice.CustomerRef = ref(customer.Id)
    invoice.Line = [sales_line("5", 1, 35)]
    created = invoice.save(qb=qb)

    changes = change_data_capture([Customer, Invoice], since.replace(tzinfo=None), qb=qb)
    assert [c.DisplayName for c in changes.Customer] == ["Changed Lately"]
    assert [i.Id for i in changes.Invoice] == [created.Id]
