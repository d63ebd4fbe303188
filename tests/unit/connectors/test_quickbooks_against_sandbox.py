"""The production QuickBooks connector against the local QuickBooks sandbox, over real HTTP.

One sandbox company and one secret for the module, like one connection: the
sandbox rotates refresh tokens and forgets a superseded one at once (grace 0),
so every test also proves the connector keeps using the newest refresh token.
Each test stays under 10 API calls, the sandbox's per-second limit.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask, Response

from local.sandboxes.base import SandboxServer, received_webhook
from shared.batch import BatchWrite
from shared.connectors.quickbooks.connector import QuickBooksAccounting, quickbooks_webhooks
from shared.errors import AlreadyExists, Permanent
from shared.models import ChangeKind, Invoice, InvoiceLine, ObjectType, Party, PartyKind
from shared.ports import InboundWebhook, TargetRef
from tests.unit.connectors.sandbox_envs import QUICKBOOKS_SECRET_ID as SECRET_ID
from tests.unit.connectors.sandbox_envs import QUICKBOOKS_TOKEN_PATH as TOKEN_PATH
from tests.unit.connectors.sandbox_envs import QuickBooksEnv as Env


@pytest.fixture
def env(quickbooks_once: Env) -> Env:
    quickbooks_once.sandbox.reset()
    quickbooks_once.sandbox.webhook_url = None
    return quickbooks_once


@pytest.fixture(scope="module")
def qbo(quickbooks_once: Env) -> QuickBooksAccounting:
    """One connector for the module, as one warm Lambda holds one (building one costs ~0.3 s)."""
    return quickbooks_once.connector()


def stored(env: Env, entity: str, target_id: str) -> dict[str, Any]:
    return next(row for row in env.sandbox.entities(entity) if row["Id"] == target_id)


# --- customers -----------------------------------------------------------------------


def test_given_the_seeded_company_when_matching_then_email_and_quoted_names_are_found(
    qbo: QuickBooksAccounting,
) -> None:
    by_email = qbo.find_customer(email="Birds@Intuit.com", display_name="not this")
    by_name = qbo.find_customer(email="nobody@example.com", display_name="Amy's Bird Sanctuary")

    assert by_email is not None and by_email.id == "1"
    assert by_name == by_email
    assert qbo.find_customer(email=None, display_name="Nobody's Business") is None


def test_given_a_new_party_when_created_then_updated_then_one_customer_keeps_unsent_fields(
    env: Env, qbo: QuickBooksAccounting
) -> None:
    party = Party(
        kind=PartyKind.PERSON,
        display_name="Zoë O'Hara",
        given_name="Zoë",
        family_name="O'Hara",
        email="zoe@example.com",
        payment_terms="Net 15",
    )

    created = qbo.upsert_customer(party, existing=None, idempotency_key="hs:contact:1:v1")
    found = qbo.find_customer(email="zoe@example.com", display_name="-")
    updated = qbo.upsert_customer(
        Party(kind=PartyKind.PERSON, display_name="Zoë O'Hara", phone="+1 555 0199"),
        existing=found,
        idempotency_key="hs:contact:1:v2",
    )

    assert found == created and created.version == "0"
    assert (updated.id, updated.version) == (created.id, "1")
    customer = stored(env, "Customer", created.id)
    assert customer["GivenName"] == "Zoë" and customer["FamilyName"] == "O'Hara"
    assert customer["PrimaryPhone"] == {"FreeFormNumber": "+1 555 0199"}
    assert customer["SalesTermRef"]["value"] == "2"  # Net 15
    assert env.sandbox.create_count("Customer") == 1


def test_given_someone_edited_the_customer_when_updating_with_the_old_token_then_it_recovers(
    env: Env, qbo: QuickBooksAccounting
) -> None:
    seeded = qbo.current(ObjectType.CUSTOMER, "4")
    assert seeded is not None
    qbo.upsert_customer(
        Party(kind=PartyKind.PERSON, display_name="Diego Rodriguez", phone="555-1"),
        existing=seeded,
        idempotency_key="someone-else",
    )

    ref = qbo.upsert_customer(
        Party(kind=PartyKind.PERSON, display_name="Diego Rodriguez", company_name="Rodriguez Co"),
        existing=seeded,  # SyncToken "0", now stale: 5010
        idempotency_key="hs:contact:4:v9",
    )

    assert (ref.id, ref.version) == ("4", str(int(seeded.version) + 2))
    assert stored(env, "Customer", "4")["CompanyName"] == "Rodriguez Co"


def test_given_a_taken_display_name_or_number_when_creating_then_the_holder_is_named(
    env: Env, qbo: QuickBooksAccounting
) -> None:
    party = Party(kind=PartyKind.COMPANY, display_name="Cool Cars", email="other@cool.test")
    seeded_invoice = won_deal_invoice(qbo, "1").model_copy(update={"doc_number": "1001"})

    with pytest.raises(AlreadyExists) as name_taken:
        qbo.upsert_customer(party, existing=None, idempotency_key="hs:company:3:v1")
    with pytest.raises(AlreadyExists) as number_taken:
        qbo.upsert_invoice(seeded_invoice, existing=None, idempotency_key="hs:deal:3:v1")

    assert (name_taken.value.holder.id, name_taken.value.holder.version) == ("3", "0")
    assert (number_taken.value.holder.id, number_taken.value.holder.version) == ("1", "0")
    assert env.sandbox.create_count("Customer") == env.sandbox.create_count("Invoice") == 0
    assert stored(env, "Customer", "3")["SyncToken"] == "0", "nothing written"


def test_given_a_batch_with_a_taken_name_when_upserted_then_per_item_results(
    env: Env, qbo: QuickBooksAccounting
) -> None:
    writes = [
        BatchWrite.customer(
            Party(kind=PartyKind.COMPANY, display_name=name), idempotency_key=f"hs:company:{i}"
        )
        for i, name in enumerate(["Batch One", "Cool Cars", "Batch Two"])
    ]

    first, taken, second = qbo.batch_upsert(writes)

    assert isinstance(first, TargetRef) and isinstance(second, TargetRef)
    assert isinstance(taken, Permanent) and taken.code == "6240"
    assert env.sandbox.create_count("Customer") == 2


# --- invoices ---------------------------------------------------------------------------


def won_deal_invoice(qbo: QuickBooksAccounting, quantity: str) -> Invoice:
    design = qbo.find_item(name="Design", sku=None)
    assert design is not None
    return Invoice(
        customer_ref="1",
        currency="USD",
        lines=[
            InvoiceLine(
                name="Design",
                item_ref=design,
                quantity=Decimal(quantity),
                unit_price=Decimal("75.00"),
                discount_amount=Decimal("10.50"),
                tax_code="NON",
            ),
        ],
        txn_date=date(2026, 1, 5),
        payment_terms="Net 30",
        memo="hubspot deal 77",
    )


def test_given_customers_and_invoices_when_batched_twice_then_written_once_each(
    env: Env, qbo: QuickBooksAccounting
) -> None:
    invoice = won_deal_invoice(qbo, "2")
    existing = qbo.upsert_invoice(invoice, existing=None, idempotency_key="hs:deal:90:v1")
    orphan = invoice.model_copy(update={"customer_ref": "999"})
    writes = [
        BatchWrite.customer(
            Party(kind=PartyKind.COMPANY, display_name="Batch Co"), idempotency_key="hs:co:1"
        ),
        BatchWrite.customer(
            Party(kind=PartyKind.COMPANY, display_name="Amy's Bird Sanctuary", phone="555"),
            existing=TargetRef(id="1", version="0"),
            idempotency_key="hs:co:2",
        ),
        BatchWrite.invoice(invoice, idempotency_key="hs:deal:91:v1"),
        BatchWrite.invoice(
            won_deal_invoice(qbo, "4"), existing=existing, idempotency_key="hs:deal:90:v2"
        ),
        BatchWrite.invoice(orphan, idempotency_key="hs:deal:92:v1"),
    ]

    results = qbo.batch_upsert(writes)
    again = qbo.batch_upsert(writes)  # a retry: the requestid replays the answer

    assert again[:4] == results[:4]
    assert str(again[4]) == str(results[4])
    created, updated, new_invoice, changed, refused = results
    assert isinstance(created, TargetRef) and isinstance(new_invoice, TargetRef)
    assert isinstance(updated, TargetRef) and updated.version == "1"
    assert stored(env, "Customer", "1")["PrimaryPhone"] == {"FreeFormNumber": "555"}
    assert isinstance(changed, TargetRef) and changed.version == "1"
    assert stored(env, "Invoice", changed.id)["Line"][0]["SalesItemLineDetail"]["Qty"] == 4
    assert isinstance(refused, Permanent) and refused.code == "2500"
    assert env.sandbox.create_count("Customer") == 1
    assert env.sandbox.create_count("Invoice") == 2  # the single create and one batched


def test_given_a_won_deal_when_invoiced_then_updated_then_one_invoice_with_the_new_lines(
    env: Env, qbo: QuickBooksAccounting
) -> None:
    created = qbo.upsert_invoice(
        won_deal_invoice(qbo, "2.5"), existing=None, idempotency_key="hs:deal:77:v1"
    )
    updated = qbo.upsert_invoice(
        won_deal_invoice(qbo, "3"), existing=created, idempotency_key="hs:deal:77:v2"
    )

    assert (updated.id, updated.version) == (created.id, "1")
    assert env.sandbox.create_count("Invoice") == 1
    invoice = stored(env, "Invoice", created.id)
    assert Decimal(str(invoice["TotalAmt"])) == Decimal("214.50")  # 3 × 75 − 10.50
    assert invoice["DueDate"] == "2026-02-04"  # Net 30 from the TxnDate
    assert invoice["PrivateNote"] == "hubspot deal 77"
    kinds = [line["DetailType"] for line in invoice["Line"]]
    assert kinds.count("SalesItemLineDetail") == 1 and kinds.count("DiscountLineDetail") == 1


def test_given_the_response_is_lost_when_invoicing_then_the_retry_replays_and_one_exists(
    env: Env, qbo: QuickBooksAccounting
) -> None:
    invoice = won_deal_invoice(qbo, "1")
    before = len(env.sandbox.entities("Invoice"))
    env.fault(kind="drop_response", path_prefix="/v3/company", method="POST")

    ref = qbo.upsert_invoice(invoice, existing=None, idempotency_key="hs:deal:78:v1")

    assert env.sandbox.create_count("Invoice") == 1
    assert len(env.sandbox.entities("Invoice")) == before + 1
    assert stored(env, "Invoice", ref.id)["SyncToken"] == ref.version


def test_given_a_quantity_times_price_past_cents_when_invoiced_then_the_sandbox_accepts_it(
    env: Env, qbo: QuickBooksAccounting
) -> None:
    deal = won_deal_invoice(qbo, "1.5")
    odd_line = deal.lines[0].model_copy(
        update={"unit_price": Decimal("33.33"), "discount_amount": Decimal("0.125")}
    )
    invoice = deal.model_copy(update={"lines": [odd_line]})

    ref = qbo.upsert_invoice(invoice, existing=None, idempotency_key="hs:deal:80:v1")

    stored_invoice = stored(env, "Invoice", ref.id)
    sales = stored_invoice["Line"][0]
    assert Decimal(str(sales["Amount"])) == Decimal("50.00")  # 49.995, half up
    assert Decimal(str(sales["SalesItemLineDetail"]["UnitPrice"])) == Decimal("33.33")
    assert Decimal(str(stored_invoice["TotalAmt"])) == Decimal("49.87")  # 50.00 − 0.13


@pytest.fixture(scope="module")
def companies() -> Iterator[dict[str, Env]]:
    """Companies whose home currency has 3 and 0 decimals (multicurrency is off in the
    sandbox, so an invoice is in the home currency of its company)."""
    envs = {currency: Env(home_currency=currency) for currency in ("KWD", "JPY")}
    yield envs
    for env in envs.values():
        env.close()


def invoice_in(currency: str, lines: list[tuple[str, str]], discount: str) -> Invoice:
    return Invoice(
        customer_ref="1",
        currency=currency,
        lines=[
            InvoiceLine(
                name="Design", item_ref="3", quantity=Decimal(qty), unit_price=Decimal(price)
            )
            for qty, price in lines[:-1]
        ]
        + [
            InvoiceLine(
                name="Design",
                item_ref="3",
                quantity=Decimal(lines[-1][0]),
                unit_price=Decimal(lines[-1][1]),
                discount_amount=Decimal(discount),
            )
        ],
    )


@pytest.mark.parametrize(
    ("currency", "lines", "discount", "line_amounts", "total"),
    [
        # Kuwaiti dinar, 3 decimals: 3.7035 → 3.704, not 3.70.
        ("KWD", [("3", "1.2345"), ("1000", "0.125")], "0.0015", ["3.704", "125"], "128.702"),
        # Yen, no decimals: 1000.5 → 1001 and 148.5 → 149, with UnitPrice as HubSpot had it.
        ("JPY", [("3", "333.5"), ("1.5", "99")], "10.5", ["1001", "149"], "1139"),
    ],
)
def test_given_a_currency_without_two_decimals_when_invoiced_then_quickbooks_totals_agree(
    companies: dict[str, Env],
    currency: str,
    lines: list[tuple[str, str]],
    discount: str,
    line_amounts: list[str],
    total: str,
) -> None:
    env = companies[currency]
    env.sandbox.reset()

    ref = env.connector().upsert_invoice(
        invoice_in(currency, lines, discount), existing=None, idempotency_key=f"hs:{currency}:1"
    )

    written = stored(env, "Invoice", ref.id)
    sales = [line for line in written["Line"] if line["DetailType"] == "SalesItemLineDetail"]
    assert [Decimal(str(line["Amount"])) for line in sales] == [Decimal(a) for a in line_amounts]
    assert [Decimal(str(line["SalesItemLineDetail"]["UnitPrice"])) for line in sales] == [
        Decimal(price) for _, price in lines
    ]
    assert written["CurrencyRef"]["value"] == currency
    assert Decimal(str(written["TotalAmt"])) == Decimal(total)
    assert Decimal(str(written["Balance"])) == Decimal(total)


def test_given_fractional_quantities_when_invoiced_then_each_line_is_rounded_then_summed(
    env: Env, qbo: QuickBooksAccounting
) -> None:
    lines = [("1.5", "99.61"), ("1.5", "99.61"), ("0.25", "0.1")]  # 149.415 twice, 0.025

    ref = qbo.upsert_invoice(
        invoice_in("USD", lines, "0"), existing=None, idempotency_key="hs:deal:81:v1"
    )

    # Per line, half up: 149.42 + 149.42 + 0.03, not the rounded sum 298.86.
    assert Decimal(str(stored(env, "Invoice", ref.id)["TotalAmt"])) == Decimal("298.87")


def test_given_a_lost_create_and_a_newer_deal_when_retried_then_the_doc_number_finds_it(
    env: Env, qbo: QuickBooksAccounting
) -> None:
    first = won_deal_invoice(qbo, "1").model_copy(update={"doc_number": "HS-79"})
    qbo.upsert_invoice(first, existing=None, idempotency_key="hs:deal:79:v1")  # answer "lost"
    newer = won_deal_invoice(qbo, "4").model_copy(update={"doc_number": "HS-79"})

    found = qbo.find_invoice("HS-79")
    ref = qbo.upsert_invoice(newer, existing=found, idempotency_key="hs:deal:79:v2")

    assert found is not None and (ref.id, ref.version) == (found.id, "1")
    assert env.sandbox.create_count("Invoice") == 1
    assert Decimal(str(stored(env, "Invoice", ref.id)["TotalAmt"])) == Decimal("289.50")
    seeded = qbo.find_invoice("1001")
    assert seeded is not None and (seeded.id, seeded.version) == ("1", "0")
    assert qbo.find_invoice("HS-80") is None


# --- OAuth ---------------------------------------------------------------------------------


def test_given_an_expired_access_token_when_calling_then_the_refresh_token_rotates(
    env: Env, qbo: QuickBooksAccounting
) -> None:
    qbo.current(ObjectType.CUSTOMER, "1")  # holds a valid access token from here
    before = env.secret()
    env.patch_secret(access_expires_at="0")

    assert qbo.current(ObjectType.CUSTOMER, "1") is not None

    after = env.secret()
    assert after["refresh_token"] != before["refresh_token"]
    assert after["access_token"] != before["access_token"]
    superseded = env.admin.post(
        TOKEN_PATH,
        auth=(env.config.client_id, env.config.client_secret),
        data={"grant_type": "refresh_token", "refresh_token": before["refresh_token"]},
    )
    assert (superseded.status_code, superseded.json()["error"]) == (400, "invalid_grant")


def test_given_a_revoked_access_token_when_calling_then_401_refreshes_and_retries(
    env: Env, qbo: QuickBooksAccounting
) -> None:
    qbo.current(ObjectType.CUSTOMER, "1")
    before = env.secret()
    env.patch_secret(access_token="revoked-by-intuit")  # still "valid" by its expiry

    assert qbo.current(ObjectType.CUSTOMER, "1") is not None

    after = env.secret()
    assert after["access_token"] not in ("revoked-by-intuit", before["access_token"])
    assert after["refresh_token"] != before["refresh_token"]


# --- webhooks --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inbox() -> Iterator[tuple[str, list[InboundWebhook]]]:
    """A receiver the sandbox posts its signed webhooks to."""
    received: list[InboundWebhook] = []
    app = Flask("qbo-webhook-inbox")

    @app.post("/hooks/quickbooks")
    def hook() -> Response:
        received.append(received_webhook())
        return Response(status=200)

    server = SandboxServer(app, 0).start()
    yield f"{server.url}/hooks/quickbooks", received
    server.stop()


def test_given_the_sandboxs_signed_webhook_when_received_then_it_verifies_and_normalizes(
    env: Env, qbo: QuickBooksAccounting, inbox: tuple[str, list[InboundWebhook]]
) -> None:
    url, received = inbox
    received.clear()
    env.sandbox.webhook_url = url
    ref = qbo.upsert_customer(
        Party(kind=PartyKind.COMPANY, display_name="Hooked Ltd"),
        existing=None,
        idempotency_key="hs:company:hook",
    )
    assert env.sandbox.wait_for_webhooks_idle()
    receiver = quickbooks_webhooks(env.secrets, SECRET_ID)

    (delivery,) = received
    receiver.verify(delivery)
    events = receiver.normalize(delivery, "conn-1")

    assert [(e.object_type, e.record_id, e.kind) for e in events] == [
        (ObjectType.CUSTOMER, ref.id, ChangeKind.CREATED)
    ]
    assert events[0].event_id == json.loads(delivery.body)[0]["id"]


def test_given_the_seeded_company_when_listing_customers_then_each_with_email_and_name(
    env: Env, qbo: QuickBooksAccounting
) -> None:
    known = {c.ref.id: c for c in qbo.known_customers()}

    active = [row for row in env.sandbox.entities("Customer") if row.get("Active", True)]
    assert set(known) == {row["Id"] for row in active}
    assert known["1"].email == "Birds@Intuit.com"
    assert known["1"].display_name == "Amy's Bird Sanctuary"
