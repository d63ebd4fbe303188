"""The production Xero connector against the local Xero sandbox, over real HTTP.

One sandbox organisation and one secret for the module, like one connection: the
sandbox rotates refresh tokens, so every test also proves the connector keeps using
the newest one. The sandbox is reset before each test, which also reopens Xero's
minute window (60 calls), so each test stays well under it.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import httpx
import pytest

from local.memory import MemoryLock, MemorySecretStore
from shared.connectors.http import Deadline
from shared.connectors.registry import vendor
from shared.connectors.spec import ConnectorContext
from shared.connectors.xero.connector import (
    IDEMPOTENCY_KEY_MAX,
    XeroAccounting,
    build_xero,
    classify,
    idempotency_key,
)
from shared.errors import (
    AlreadyExists,
    AuthFailed,
    Permanent,
    RateLimited,
    RecordInvalid,
    Retryable,
)
from shared.models import Address, Invoice, InvoiceLine, ObjectType, Party, PartyKind
from tests.unit.connectors.sandbox_envs import XERO_SECRET_ID as SECRET_ID
from tests.unit.connectors.sandbox_envs import XERO_TOKEN_PATH as TOKEN_PATH
from tests.unit.connectors.sandbox_envs import Unmetered
from tests.unit.connectors.sandbox_envs import XeroEnv as Env


@pytest.fixture
def env(xero_once: Env) -> Env:
    xero_once.sandbox.faults.clear()
    xero_once.sandbox.reset()
    xero_once.sandbox.webhook_url = None
    return xero_once


@pytest.fixture(scope="module")
def xero(xero_once: Env) -> XeroAccounting:
    """One connector for the module, as one warm Lambda holds one."""
    return xero_once.connector()


def seeded_contact(env: Env, name: str) -> str:
    contact_id: str = next(c for c in env.sandbox.entities("Contacts") if c["Name"] == name)[
        "ContactID"
    ]
    return contact_id


def invoice_of(
    customer_id: str, *lines: InvoiceLine, currency: str = "USD", **fields: Any
) -> Invoice:
    return Invoice(customer_ref=customer_id, currency=currency, lines=list(lines), **fields)


def design(quantity: str = "1", price: str = "75", **fields: Any) -> InvoiceLine:
    return InvoiceLine(
        name="Design",
        item_ref="DESIGN",
        quantity=Decimal(quantity),
        unit_price=Decimal(price),
        **fields,
    )


def money(value: Any) -> Decimal:
    return Decimal(str(value))


ZOE = Party(
    kind=PartyKind.PERSON,
    display_name='Zoë "Z" O\'Hara \\ Co',  # quotes and a backslash: the where filter escapes
    given_name="Zoë",
    family_name="O'Hara",
    email="zoe@example.com",
    phone="+1 555 0100",
    tax_id="12-3456789",
    payment_terms="Net 15",
    billing_address=Address(line1="1 Quay St", city="Auckland", postal_code="1010", country="NZ"),
)


# --- customers -----------------------------------------------------------------------


def test_given_the_seeded_organisation_when_matching_then_by_email_else_by_name(
    env: Env, xero: XeroAccounting
) -> None:
    abc = seeded_contact(env, "ABC Furniture")

    by_email = xero.find_customer(email="info@abcfurniture.example", display_name="not this")
    by_name = xero.find_customer(email="nobody@example.com", display_name="ABC Furniture")

    assert by_email is not None and by_email.id == abc
    assert by_name == by_email
    assert xero.find_customer(email=None, display_name="Nobody's Business") is None


def test_given_a_party_when_created_then_the_contact_holds_its_fields_and_is_found(
    env: Env, xero: XeroAccounting
) -> None:
    created = xero.upsert_customer(ZOE, existing=None, idempotency_key="hs:contact:1:v1")

    row = env.row("Contacts", created.id)
    assert (row["Name"], row["FirstName"], row["LastName"]) == (
        ZOE.display_name,
        "Zoë",
        "O'Hara",
    )
    assert (row["EmailAddress"], row["TaxNumber"]) == ("zoe@example.com", "12-3456789")
    phone = next(p for p in row["Phones"] if p["PhoneType"] == "DEFAULT")
    assert phone["PhoneNumber"] == "+1 555 0100"
    postal = next(a for a in row["Addresses"] if a["AddressType"] == "POBOX")
    assert (postal["AddressLine1"], postal["City"], postal["PostalCode"]) == (
        "1 Quay St",
        "Auckland",
        "1010",
    )
    assert row["PaymentTerms"] == {"Sales": {"Day": 15, "Type": "DAYSAFTERBILLDATE"}}
    assert xero.find_customer(email=None, display_name=ZOE.display_name) == created
    assert xero.find_customer(email="ZOE@example.com", display_name="-") == created


def test_given_a_contact_when_updated_with_one_field_then_the_others_are_kept(
    env: Env, xero: XeroAccounting
) -> None:
    created = xero.upsert_customer(ZOE, existing=None, idempotency_key="hs:contact:1:v1")
    sparse = Party(kind=PartyKind.PERSON, display_name=ZOE.display_name, phone="+1 555 0199")

    updated = xero.upsert_customer(sparse, existing=created, idempotency_key="hs:contact:1:v2")

    assert updated.id == created.id and int(updated.version) > int(created.version)
    row = env.row("Contacts", created.id)
    assert next(p for p in row["Phones"] if p["PhoneType"] == "DEFAULT")["PhoneNumber"] == (
        "+1 555 0199"
    )
    assert (row["EmailAddress"], row["FirstName"], row["TaxNumber"]) == (
        "zoe@example.com",
        "Zoë",
        "12-3456789",
    )
    assert xero.current(ObjectType.CUSTOMER, created.id) == updated


def test_given_a_taken_name_when_creating_then_its_holder_is_named_not_written(
    env: Env, xero: XeroAccounting
) -> None:
    bayside = seeded_contact(env, "Bayside Club")
    party = Party(kind=PartyKind.COMPANY, display_name="Bayside Club", email="new@bayside.example")

    with pytest.raises(AlreadyExists) as taken:
        xero.upsert_customer(party, existing=None, idempotency_key="hs:company:9:v1")

    assert (taken.value.holder.id, taken.value.rule) == (bayside, "display_name")
    assert env.row("Contacts", bayside)["EmailAddress"] != "new@bayside.example"
    assert env.sandbox.create_count("Contacts") == 0


def test_given_unknown_payment_terms_when_upserting_a_customer_then_refused_naming_the_field(
    env: Env, xero: XeroAccounting
) -> None:
    party = Party(kind=PartyKind.PERSON, display_name="Termless", payment_terms="2/10 Net 30")

    with pytest.raises(RecordInvalid) as refused:
        xero.upsert_customer(party, existing=None, idempotency_key="hs:contact:2:v1")

    assert [v.field for v in refused.value.violations] == ["payment_terms"]
    assert env.sandbox.create_count("Contacts") == 0


# --- items -------------------------------------------------------------------------------


def test_given_seeded_items_when_found_then_by_code_else_by_name_and_the_code_is_the_ref(
    xero: XeroAccounting,
) -> None:
    assert xero.find_item(name="not this", sku="install") == "INSTALL"
    assert xero.find_item(name="Pest Control", sku="NO-SUCH-SKU") == "PEST"
    assert xero.find_item(name="Pest Control", sku=None) == "PEST"
    assert xero.find_item(name="No Such Item", sku=None) is None


# --- invoices ----------------------------------------------------------------------------


def test_given_a_deal_when_invoiced_then_an_accrec_draft_with_exclusive_lines_and_due_date(
    env: Env, xero: XeroAccounting
) -> None:
    customer = seeded_contact(env, "Boom FM")
    invoice = invoice_of(
        customer,
        # The neutral codes become the organisation's tax types; others pass as they are.
        design("2", "75.1234", discount_amount=Decimal("10"), tax_code="taxable"),
        InvoiceLine(
            name="Consulting", quantity=Decimal("1.5"), unit_price=Decimal("100"), tax_code="NONE"
        ),
        doc_number="HS-1001",
        txn_date=date(2026, 3, 2),
        payment_terms="Net 30",
        memo="internal: call before sending",
    )

    ref = xero.upsert_invoice(invoice, existing=None, idempotency_key="hs:deal:1:v1")

    row = env.row("Invoices", ref.id)
    assert (row["Type"], row["Status"], row["LineAmountTypes"]) == ("ACCREC", "DRAFT", "Exclusive")
    assert (row["InvoiceNumber"], row["CurrencyCode"]) == ("HS-1001", "USD")
    assert (row["DateString"], row["DueDateString"]) == (
        "2026-03-02T00:00:00",
        "2026-04-01T00:00:00",
    )
    assert "Reference" not in row  # the memo is internal: Reference prints on the invoice
    first, second = row["LineItems"]
    assert (first["ItemCode"], money(first["UnitAmount"]), money(first["DiscountAmount"])) == (
        "DESIGN",
        Decimal("75.1234"),
        Decimal("10"),
    )
    assert (money(first["LineAmount"]), first["TaxType"]) == (Decimal("140.25"), "OUTPUT")
    assert (second["Description"], second["AccountCode"], second["TaxType"]) == (
        "Consulting",
        "200",
        "NONE",
    )
    assert money(second["LineAmount"]) == Decimal("150")
    # Exclusive: Xero adds the 10 % sales tax of the OUTPUT line on top, per line.
    assert (money(row["SubTotal"]), money(row["TotalTax"]), money(row["Total"])) == (
        Decimal("290.25"),
        Decimal("14.03"),
        Decimal("304.28"),
    )
    assert xero.find_invoice("HS-1001") == ref
    assert xero.current(ObjectType.INVOICE, ref.id) == ref


def test_given_an_invoice_when_updated_then_its_lines_are_replaced_and_its_status_kept(
    env: Env, xero: XeroAccounting
) -> None:
    customer = seeded_contact(env, "Boom FM")
    created = xero.upsert_invoice(
        invoice_of(customer, design("1"), design("2"), doc_number="HS-1002"),
        existing=None,
        idempotency_key="hs:deal:2:v1",
    )
    env.sandbox.ui_update("Invoices", created.id, {"Status": "AUTHORISED"})  # approved in Xero

    updated = xero.upsert_invoice(
        invoice_of(customer, design("4", "12.5"), doc_number="HS-1002"),
        existing=xero.current(ObjectType.INVOICE, created.id),
        idempotency_key="hs:deal:2:v2",
    )

    row = env.row("Invoices", created.id)
    assert updated.id == created.id and env.sandbox.create_count("Invoices") == 1
    assert row["Status"] == "AUTHORISED"
    assert [(money(li["Quantity"]), money(li["LineAmount"])) for li in row["LineItems"]] == [
        (Decimal("4"), Decimal("50"))
    ]


def test_given_due_on_receipt_and_no_date_when_invoiced_then_due_the_day_it_is_dated(
    env: Env, xero: XeroAccounting
) -> None:
    invoice = invoice_of(seeded_contact(env, "Boom FM"), design(), payment_terms="due on receipt")

    ref = xero.upsert_invoice(invoice, existing=None, idempotency_key="hs:deal:3:v1")

    row = env.row("Invoices", ref.id)
    assert row["DueDateString"] == row["DateString"]


def test_given_what_xero_cannot_take_when_invoiced_then_every_field_is_named_and_nothing_sent(
    env: Env, xero: XeroAccounting
) -> None:
    invoice = invoice_of(
        seeded_contact(env, "Boom FM"),
        design(),
        payment_terms="Net 30 EOM",
        doc_number="X" * 256,
    )

    with pytest.raises(RecordInvalid) as refused:
        xero.upsert_invoice(invoice, existing=None, idempotency_key="hs:deal:4:v1")

    assert {v.field for v in refused.value.violations} == {"payment_terms", "doc_number"}
    assert env.sandbox.create_count("Invoices") == 0


def test_given_an_unknown_contact_when_invoiced_then_permanent_with_xeros_message(
    env: Env, xero: XeroAccounting
) -> None:
    missing = "5f0c0c6e-0b1a-4c2d-8e3f-00000000dead"

    with pytest.raises(Permanent) as refused:
        xero.upsert_invoice(
            invoice_of(missing, design()), existing=None, idempotency_key="hs:deal:5:v1"
        )

    assert not isinstance(refused.value, Retryable)
    assert (refused.value.status, refused.value.code) == (400, "10")
    assert f"Contact with ContactID {missing} does not exist." in str(refused.value)
    assert env.sandbox.create_count("Invoices") == 0


def test_given_records_gone_or_deleted_when_asked_for_current_then_none(
    env: Env, xero: XeroAccounting
) -> None:
    ref = xero.upsert_invoice(
        invoice_of(seeded_contact(env, "Boom FM"), design(), doc_number="HS-1006"),
        existing=None,
        idempotency_key="hs:deal:6:v1",
    )
    env.sandbox.ui_update("Invoices", ref.id, {"Status": "DELETED"})

    assert xero.current(ObjectType.INVOICE, ref.id) is None
    assert xero.find_invoice("HS-1006") is None
    unknown = "5f0c0c6e-0b1a-4c2d-8e3f-00000000dead"
    assert xero.current(ObjectType.CUSTOMER, unknown) is None
    with pytest.raises(ValueError):
        xero.current(ObjectType.PAYMENT, ref.id)


# --- idempotency ---------------------------------------------------------------------------


def test_given_one_key_sent_twice_when_invoicing_then_one_invoice(
    env: Env, xero: XeroAccounting
) -> None:
    invoice = invoice_of(seeded_contact(env, "Boom FM"), design())  # no number: nothing unique

    first = xero.upsert_invoice(invoice, existing=None, idempotency_key="hs:deal:7:v1")
    second = xero.upsert_invoice(invoice, existing=None, idempotency_key="hs:deal:7:v1")

    assert second == first
    assert env.sandbox.create_count("Invoices") == 1


def test_given_the_answer_is_lost_when_invoicing_then_the_retry_replays_and_one_exists(
    env: Env, xero: XeroAccounting
) -> None:
    invoice = invoice_of(seeded_contact(env, "Boom FM"), design())
    env.fault(kind="drop_response", path_prefix="/api.xro/2.0/Invoices", method="PUT")

    ref = xero.upsert_invoice(invoice, existing=None, idempotency_key="hs:deal:8:v1")

    assert env.pending_faults() == []  # the first answer was lost; ApiClient retried
    assert env.sandbox.create_count("Invoices") == 1
    assert env.row("Invoices", ref.id)["InvoiceID"] == ref.id


@pytest.mark.parametrize("key", ["k" * 200, "hs:deal:Zoë:v1"], ids=["longer than 128", "not ascii"])
def test_given_a_key_xero_would_not_take_as_is_when_retried_then_still_one_invoice(
    env: Env, xero: XeroAccounting, key: str
) -> None:
    invoice = invoice_of(seeded_contact(env, "Boom FM"), design())

    first = xero.upsert_invoice(invoice, existing=None, idempotency_key=key)
    second = xero.upsert_invoice(invoice, existing=None, idempotency_key=key)

    assert second == first and env.sandbox.create_count("Invoices") == 1


def test_given_idempotency_key_helper_then_bounded_ascii_and_deterministic() -> None:
    assert idempotency_key("hs:deal:1:v1") == "hs:deal:1:v1"
    assert idempotency_key("x" * IDEMPOTENCY_KEY_MAX) == "x" * IDEMPOTENCY_KEY_MAX
    long_key = idempotency_key("x" * (IDEMPOTENCY_KEY_MAX + 1))
    assert len(long_key) <= IDEMPOTENCY_KEY_MAX
    assert long_key == idempotency_key("x" * (IDEMPOTENCY_KEY_MAX + 1))
    assert idempotency_key("Zoë").isascii()


# --- limits --------------------------------------------------------------------------------


def test_given_a_429_with_a_short_retry_after_when_calling_then_waited_out_and_answered(
    env: Env, xero: XeroAccounting
) -> None:
    env.fault(kind="rate_limit", retry_after_s=1, path_prefix="/api.xro/2.0/Items")

    assert xero.find_item(name="Design", sku=None) == "DESIGN"
    assert env.pending_faults() == []


def test_given_a_429_with_a_long_retry_after_when_calling_then_rate_limited_for_that_long(
    env: Env, xero: XeroAccounting
) -> None:
    env.fault(kind="rate_limit", retry_after_s=3600, path_prefix="/api.xro/2.0/Items")

    with pytest.raises(RateLimited) as limited:
        env.connector().find_item(name="Design", sku=None)  # a cold one reads the items

    assert limited.value.retry_after_s == 3600


class RecordingBudget:
    def __init__(self) -> None:
        self.asked: list[tuple[str, int, float]] = []

    def acquire(self, key: str, *, limit: int, per_s: float, max_wait_s: float) -> float:
        self.asked.append((key, limit, per_s))
        return 0.0


def test_given_a_call_then_it_takes_a_slot_of_the_tenants_minute_budget(env: Env) -> None:
    budget = RecordingBudget()

    env.connector(budget).find_item(name="Design", sku=None)

    assert budget.asked == [(f"xero:{env.config.tenant_id}", 60, 60.0)]


@pytest.mark.parametrize(
    ("status", "headers", "body", "action", "code", "wait"),
    [
        (
            429,
            {"x-rate-limit-problem": "minute", "retry-after": "7"},
            "",
            "rate_limited",
            "minute",
            7.0,
        ),
        (429, {"x-rate-limit-problem": "concurrent"}, "", "rate_limited", "concurrent", None),
        (503, {}, "", "retry", None, None),
        (401, {}, '{"Title":"Unauthorized","Detail":"TokenExpired"}', "auth_failed", "401", None),
        (
            403,
            {},
            '{"Title":"Forbidden","Detail":"AuthenticationUnsuccessful"}',
            "auth_failed",
            "403",
            None,
        ),
        (403, {}, '{"Title":"Forbidden","Detail":null}', "auth_failed", "403", None),
        (404, {}, "The resource you're looking for cannot be found", "not_found", "404", None),
        (400, {}, '{"ErrorNumber":null,"Elements":"?"}', "fail", "400", None),
        (
            400,
            {},
            '{"ErrorNumber":16,"Type":"QueryParseException","Message":"bad"}',
            "fail",
            "16",
            None,
        ),
        (
            501,
            {},
            '{"ErrorNumber":20,"Type":"ApiMethodNotImplementedException"}',
            "fail",
            "20",
            None,
        ),
        (200, {}, "{}", "success", None, None),
    ],
)
def test_given_xeros_answers_when_classified_then_the_documented_action(
    status: int,
    headers: dict[str, str],
    body: str,
    action: str,
    code: str | None,
    wait: float | None,
) -> None:
    verdict = classify(httpx.Response(status, headers=headers, text=body))

    assert (verdict.action, verdict.code, verdict.retry_after_s) == (action, code, wait)


def test_given_a_validation_exception_when_classified_then_fail_with_every_message() -> None:
    body = {
        "ErrorNumber": 10,
        "Type": "ValidationException",
        "Message": "A validation exception occurred",
        "Elements": [
            {"ValidationErrors": [{"Message": "Invoice # must be unique."}]},
            {"ValidationErrors": [{"Message": "Email address must be valid."}]},
        ],
    }

    verdict = classify(httpx.Response(400, json=body))

    assert (verdict.action, verdict.code) == ("fail", "10")
    assert verdict.message == "Invoice # must be unique.; Email address must be valid."


# --- OAuth and the tenant ------------------------------------------------------------------


def test_given_no_access_token_when_calling_then_refreshed_and_the_refresh_token_rotated(
    env: Env,
) -> None:
    env.secrets.write(SECRET_ID, env.initial_secret())
    before = env.secret()["refresh_token"]

    env.connector().find_item(name="Design", sku=None)

    after = env.secret()
    assert after["access_token"] and after["refresh_token"] != before


def test_given_an_access_token_xero_expired_early_when_calling_then_refreshed_once_and_answered(
    env: Env,
) -> None:
    xero = env.connector()
    xero.find_item(name="Design", sku=None)
    held = env.secret()
    # Xero no longer takes the token though its stated expiry has not come (revoked,
    # or clocks apart): its 401 makes the connector refresh and try again.
    env.patch_secret(access_token=held["access_token"] + "x")
    xero.find_customer(email=None, display_name="Bayside Club")  # a call, not the item list

    assert env.secret()["refresh_token"] != held["refresh_token"]


def test_given_a_dead_refresh_token_when_calling_then_auth_failed(env: Env) -> None:
    env.patch_secret(access_token="", refresh_token="revoked-long-ago")

    with pytest.raises(AuthFailed):
        env.connector().find_item(name="Design", sku=None)

    env.secrets.write(SECRET_ID, env.initial_secret())  # a fresh consent, for the next tests


def test_given_a_tenant_not_connected_when_calling_then_auth_failed_403(env: Env) -> None:
    env.patch_secret(tenant_id="00000000-0000-4000-8000-000000000000")
    try:
        with pytest.raises(AuthFailed) as refused:
            env.connector().find_item(name="Design", sku=None)
    finally:
        env.patch_secret(tenant_id=env.config.tenant_id)

    assert refused.value.code == "403"


def test_given_a_secret_without_a_tenant_when_building_then_auth_failed(env: Env) -> None:
    secrets = MemorySecretStore({SECRET_ID: {"client_id": "c", "client_secret": "s"}})

    with pytest.raises(AuthFailed, match="tenant_id"):
        build_xero(
            api_url=env.server.url,
            token_url=env.server.url + TOKEN_PATH,
            secrets=secrets,
            secret_id=SECRET_ID,
            lock=MemoryLock(),
            budget=Unmetered(),
        )


# --- the vendor spec -------------------------------------------------------------------------


def test_given_the_registered_spec_when_built_from_settings_then_lines_post_to_the_set_account(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CRMSYNC_XERO_API_URL", env.server.url)
    monkeypatch.setenv("CRMSYNC_XERO_TOKEN_URL", env.server.url + TOKEN_PATH)
    monkeypatch.setenv("CRMSYNC_XERO_SALES_ACCOUNT_CODE", "260")
    spec = vendor("xero")
    assert (spec.label, spec.kind, spec.rotates_secret) == ("Xero", "accounting", True)
    assert set(spec.secret_keys) == set(env.initial_secret())
    context = ConnectorContext(
        connection_id="sandbox",
        secrets=env.secrets,
        secret_id=SECRET_ID,
        lock=MemoryLock(),
        budget=Unmetered(),
        properties={},
        deadline=Deadline(),
    )
    target = spec.accounting_target(context)
    line = InvoiceLine(name="Setup fee", quantity=Decimal(1), unit_price=Decimal(250))

    ref = target.upsert_invoice(
        invoice_of(seeded_contact(env, "Boom FM"), line), existing=None, idempotency_key="spec:1"
    )

    assert env.row("Invoices", ref.id)["LineItems"][0]["AccountCode"] == "260"
