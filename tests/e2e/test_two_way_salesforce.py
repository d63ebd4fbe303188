"""The way back to Salesforce on the local stack: a payment in QuickBooks reaches the
opportunity and its account.

The connection runs from Salesforce to QuickBooks on the two-way preset
(``config/salesforce/services-two-way.yaml``), whose ``back`` fields are custom fields
an admin makes in Setup (https://help.salesforce.com/s/articleView?id=platform.adding_fields.htm):
the admin here makes exactly those the README's "Salesforce: custom fields for two-way"
lists, with the types it gives, so a preset field the README leaves out fails the way
back. A salesperson works through Salesforce's REST API with their own session, a
bookkeeper through QuickBooks' (``QuickBooksBooks``); what the opportunity and account
show is read back through the REST API (https://developer.salesforce.com/docs/
atlas.en-us.api_rest.meta/api_rest/dome_get_field_values.htm).

The stack's org starts with no custom field and fields cannot be taken away again, so
the case of a missing field runs first, while the org still lacks one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from local.config import PRESETS
from local.runtime import LocalStack
from local.sandboxes.quickbooks import QuickBooksBooks
from local.sandboxes.registry import DemoLine
from local.sandboxes.salesforce import CustomField, SalesforcePerson, SalesforceSandbox
from shared.connectors.salesforce.connector import FIELDS_HELP
from shared.models import Outcome
from tests.e2e.conftest import PairHarness, eventually, money, pair_config, unique
from tests.integration.operator_cli import crmsync

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "### Salesforce: custom fields for two-way"
TWO_WAY = PRESETS / "salesforce" / "services-two-way.yaml"
SERVICES = DemoLine("Services", "4", "250")  # an invoice of 1,000.00
# The field the org lacks in the missing-field case: the newest in the README's list.
LATE_FIELD = "Crmsync_Last_Refund_Date__c"
MISSING_CUSTOM_FIELDS = "MISSING_CUSTOM_FIELDS"

# A row of the README's table: | object | Field Label | `API name` | data type |
_ROW = re.compile(r"^\| (\w+) \| ([^|]+?) \| `(\w+)` \| ([^|]+?) \|$", re.MULTILINE)
_TEXT = re.compile(r"Text, length (\d+)")
_NUMBER = re.compile(r"Number, length (\d+), decimal places (\d+)")
_PICKLIST = re.compile(r"Picklist: (.+)")


def readme_fields() -> list[tuple[str, CustomField]]:
    """(object, field) for each row of the README's table, as Setup asks for them."""
    section = README.read_text(encoding="utf-8").split(SECTION, 1)[1].split("\n## ", 1)[0]
    fields = []
    for sobject, label, name, kind in _ROW.findall(section):
        if text := _TEXT.fullmatch(kind):
            field = CustomField(name, label, "Text", length=int(text[1]))
        elif number := _NUMBER.fullmatch(kind):
            field = CustomField(name, label, "Number", int(number[1]), int(number[2]))
        elif picklist := _PICKLIST.fullmatch(kind):
            field = CustomField(name, label, "Picklist", values=tuple(picklist[1].split(", ")))
        else:
            assert kind == "Date", f"README: {name}'s data type {kind!r} is not one Setup has"
            field = CustomField(name, label, "Date")
        fields.append((sobject, field))
    assert fields, f"README: no fields listed under {SECTION!r}"
    return fields


class Salesforce:
    """The org: an admin in Setup, a salesperson through the REST API."""

    def __init__(self, stack: LocalStack) -> None:
        self.org: SalesforceSandbox = stack.sandboxes["salesforce"]
        self.person = SalesforcePerson(self.org, stack.urls.sandboxes["salesforce"])

    def make_fields(self, *, but: str | None = None) -> None:
        """The admin makes the README's fields the org does not have yet (all ``but``)."""
        for sobject, field in readme_fields():
            if field.name != but and self.org.schema[sobject].field(field.name) is None:
                self.org.add_custom_field(sobject, field)

    def has_field(self, sobject: str, name: str) -> bool:
        return self.org.schema[sobject].field(name) is not None

    def won_opportunity(self, account: str) -> str:
        """An opportunity of the account with one product, closed won last."""
        return self.person.create_deal(
            unique("Retainer "), won=True, company=account, contact=None, lines=[SERVICES]
        )


@pytest.fixture(scope="module")
def running() -> Iterator[PairHarness]:
    with LocalStack(pair_config("salesforce", "quickbooks", TWO_WAY)) as stack:
        yield PairHarness(stack)


@pytest.fixture
def e2e(running: PairHarness) -> PairHarness:
    running.settle()
    return running


@pytest.fixture
def salesforce(e2e: PairHarness) -> Salesforce:
    return Salesforce(e2e.stack)


@pytest.fixture
def books(e2e: PairHarness) -> QuickBooksBooks:
    return QuickBooksBooks(
        e2e.stack.sandboxes["quickbooks"], e2e.stack.urls.sandboxes["quickbooks"]
    )


def invoice_of(books: QuickBooksBooks, opportunity: str) -> str:
    """The Id of the opportunity's QuickBooks invoice, by the preset's invoice number."""
    number = f"SF-{opportunity}"
    [invoice] = eventually(
        lambda: [i.id for i in books.invoices() if i.number == number],
        f"an invoice numbered {number}",
    )
    return invoice


def test_given_a_field_the_admin_has_not_made_then_the_way_back_names_it_until_it_is_made(
    e2e: PairHarness,
    salesforce: Salesforce,
    books: QuickBooksBooks,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert not salesforce.has_field("Account", LATE_FIELD), "this case runs first in its module"
    salesforce.make_fields(but=LATE_FIELD)
    account = salesforce.person.create_company(unique("Initech "), "Austin")
    opportunity = salesforce.won_opportunity(account)
    e2e.settle()

    # What the operator reads: the account's trail, as `crmsync audit` prints it.
    config = tmp_path / "local.yaml"
    e2e.stack.running_config.write(config)
    capsys.readouterr()
    key = f"salesforce:company:{account}"
    assert crmsync(config, "audit", key, "--connection", e2e.connection_id, "--json") == 0
    trail = json.loads(capsys.readouterr().out)
    [refused] = [e for e in trail if e["rule"]]
    why = refused["reason"]
    assert (refused["outcome"], refused["rule"]) == ("rejected", MISSING_CUSTOM_FIELDS), why
    assert f"Account: {LATE_FIELD} is missing" in why
    assert FIELDS_HELP in why
    # Only the way back is refused: the opportunity is invoiced all the same.
    invoice_of(books, opportunity)
    assert salesforce.person.read("Account", account)["Crmsync_Open_Balance__c"] is None

    salesforce.make_fields()
    salesforce.person.update("Account", account, {"Phone": "+1 512 555 0100"})
    e2e.settle()

    shown = salesforce.person.read("Account", account)
    assert money(shown["Crmsync_Open_Balance__c"]) == Decimal(1000)
    assert shown["Crmsync_Currency__c"] == "USD"
    assert e2e.dead_letters() == 0


@pytest.fixture
def fields_made(salesforce: Salesforce) -> Salesforce:
    salesforce.make_fields()
    return salesforce


def test_given_an_invoiced_opportunity_when_paid_in_parts_then_salesforce_shows_where_it_stands(
    e2e: PairHarness, fields_made: Salesforce, books: QuickBooksBooks
) -> None:
    person = fields_made.person
    account = person.create_company(unique("Acme "), "Boston")
    opportunity = fields_made.won_opportunity(account)
    invoice = invoice_of(books, opportunity)
    e2e.settle()
    assert person.read("Opportunity", opportunity)["Crmsync_Invoice_Status__c"] == "Open"
    assert money(person.read("Account", account)["Crmsync_Open_Balance__c"]) == Decimal(1000)

    payment = books.record_payment(invoice, Decimal(400), received_on=date(2026, 11, 20))
    e2e.settle()

    shown = person.read("Opportunity", opportunity)
    assert shown["Crmsync_Invoice_Status__c"] == "Partly paid"
    assert [money(shown[f]) for f in ("Crmsync_Amount_Paid__c", "Crmsync_Balance_Due__c")] == [
        Decimal(400),
        Decimal(600),
    ]
    picture = person.read("Account", account)
    assert [
        money(picture[f])
        for f in (
            "Crmsync_Open_Balance__c",
            "Crmsync_Paid_To_Date__c",
            "Crmsync_Invoiced_To_Date__c",
        )
    ] == [Decimal(600), Decimal(400), Decimal(1000)]
    assert picture["Crmsync_Last_Payment_Date__c"] == "2026-11-20"
    [applied] = e2e.audit(f"quickbooks:payment:{payment}")
    assert applied.outcome is Outcome.FORWARDED

    books.record_payment(invoice, Decimal(600), received_on=date(2026, 11, 27))
    e2e.settle()

    paid = person.read("Opportunity", opportunity)
    assert (paid["Crmsync_Invoice_Status__c"], paid["Crmsync_Paid_Date__c"]) == (
        "Paid",
        "2026-11-27",
    )
    assert money(paid["Crmsync_Balance_Due__c"]) == Decimal(0)
    assert money(person.read("Account", account)["Crmsync_Open_Balance__c"]) == Decimal(0)
    assert e2e.dead_letters() == 0
