"""The production Salesforce connector against the local Salesforce sandbox, over real HTTP.

Records are made as a person in Salesforce's UI would (the sandbox's ``ui_*``
helpers), read back through the connector with the Salesforce preset's fields and
mapped; outbound messages the sandbox sends are verified, normalized and answered
by the connector's receiver, and the sandbox judges the answer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from flask import Flask, Response

from local.memory import MemoryCallBudget, MemoryLock, MemorySecretStore
from local.sandboxes.base import Fault, SandboxServer, received_webhook
from local.sandboxes.salesforce import (
    OutboundMessageDefinition,
    SalesforceSandbox,
    SalesforceSandboxConfig,
)
from local.sandboxes.salesforce_fields import CustomField
from shared.bootstrap import CRM_OBJECTS
from shared.connectors.http import RetryPolicy
from shared.connectors.salesforce.connector import (
    ACK_ENVELOPE,
    DAILY_LIMIT_WAIT_S,
    SalesforceCrm,
    SalesforceOutboundMessages,
    build_salesforce,
    salesforce_webhooks,
)
from shared.errors import AuthFailed, RateLimited, WebhookRejected
from shared.mapping import Mapper, load_mapping
from shared.models import ChangeKind, Deal, DealStatus, ObjectType, Party, PartyKind
from shared.ports import InboundWebhook
from tests.fakes import OffsetClock

SECRET_ID = "crmsync/sandbox/salesforce"
PRESET = Path(__file__).resolve().parents[3] / "config" / "salesforce" / "services.yaml"
BATCH = 200  # the org's query batch: a few hundred records cross pages
OUTBOUND_TOKEN = "endpoint-token-0123456789"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_ms(stamp: str) -> int:
    return (datetime.fromisoformat(stamp) - _EPOCH) // timedelta(milliseconds=1)


class Recorder(httpx.HTTPTransport):
    """The real transport, noting each request's method and path.

    With ``latest_date_covered`` set, a Get Deleted answer says it covers no further,
    as Salesforce's does while deletions begun before the end are still under way
    (https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_getdeleted_getdeletedresult.htm);
    the sandbox, where nothing is ever half deleted, never answers so.
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self.latest_date_covered: str | None = None

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.method, request.url.path))
        response = super().handle_request(request)
        if self.latest_date_covered is None or not request.url.path.endswith("/deleted/"):
            return response
        body = json.loads(response.read())
        body["latestDateCovered"] = self.latest_date_covered
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return httpx.Response(response.status_code, headers=headers, json=body)

    def paths(self, fragment: str) -> list[str]:
        return [path for _, path in self.calls if fragment in path]


@dataclass
class Listener:
    """Our outbound message endpoint: keeps each request and answers as the receiver says."""

    receiver: SalesforceOutboundMessages
    received: list[InboundWebhook] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def app(self) -> Flask:
        app = Flask("salesforce-listener")

        @app.post("/hooks/salesforce")
        def hook() -> Response:
            delivery = received_webhook()
            with self.lock:
                self.received.append(delivery)
            answer = self.receiver.answer(delivery, 1)
            return Response(answer.body, status=answer.status, content_type=answer.content_type)

        return app


@dataclass
class Org:
    sandbox: SalesforceSandbox
    server: SandboxServer
    clock: OffsetClock
    secrets: MemorySecretStore
    transport: Recorder
    crm: SalesforceCrm
    mapper: Mapper

    def contact(self, first: str, last: str, account_id: str | None = None) -> str:
        fields = {"FirstName": first, "LastName": last, "Email": f"{first.lower()}@example.com"}
        if account_id:
            fields["AccountId"] = account_id
        return self.sandbox.ui_create("Contact", fields)

    def won_deal(
        self,
        account_id: str,
        lines: list[tuple[str, str, str, str | None]],
        contacts: Sequence[tuple[str, bool]] = (),
    ) -> tuple[str, list[str]]:
        """An opportunity in Closed Won; ``lines`` as (product, quantity, price, discount %)."""
        ui = self.sandbox
        deal_id = ui.ui_create(
            "Opportunity",
            {
                "Name": "Website rebuild",
                "StageName": "Closed Won",
                "CloseDate": "2024-05-31",
                "AccountId": account_id,
                "CurrencyIsoCode": "EUR",
            },
        )
        for contact_id, primary in contacts:
            ui.ui_create(
                "OpportunityContactRole",
                {"OpportunityId": deal_id, "ContactId": contact_id, "IsPrimary": primary},
            )
        book = next(b["Id"] for b in ui.records("Pricebook2") if b["IsStandard"])
        line_ids = []
        for name, quantity, price, discount in lines:
            product = ui.ui_create(
                "Product2", {"Name": name, "ProductCode": name.upper(), "IsActive": True}
            )
            entry = ui.ui_create(
                "PricebookEntry",
                {
                    "Pricebook2Id": book,
                    "Product2Id": product,
                    "UnitPrice": price,
                    "IsActive": True,
                    "CurrencyIsoCode": "EUR",
                },
            )
            item = {
                "OpportunityId": deal_id,
                "PricebookEntryId": entry,
                "Quantity": quantity,
                "UnitPrice": price,
            }
            if discount is not None:
                item["Discount"] = discount
            line_ids.append(ui.ui_create("OpportunityLineItem", item))
        return deal_id, line_ids

    def account(self, name: str = "Ek & Sons") -> str:
        return self.sandbox.ui_create(
            "Account", {"Name": name, "BillingCity": "Malmö", "BillingCountry": "Sweden"}
        )


def _secret(sandbox: SalesforceSandbox, **extra: str) -> dict[str, str]:
    return {
        "client_id": sandbox.config.client_id,
        "client_secret": sandbox.config.client_secret,
        "refresh_token": sandbox.config.initial_refresh_token,
        "organization_id": sandbox.org_id,
        "outbound_token": OUTBOUND_TOKEN,
        **extra,
    }


@pytest.fixture
def org() -> Iterator[Org]:
    clock = OffsetClock()
    sandbox = SalesforceSandbox(
        SalesforceSandboxConfig(
            currencies=("USD", "EUR"),
            query_batch_size=BATCH,
            daily_api_limit=60,  # small, so spending it is quick
            clock=clock,
            outbound_time_scale=1e-4,
        )
    )
    server = SandboxServer(sandbox.app, 0).start()
    secrets = MemorySecretStore({SECRET_ID: _secret(sandbox)})
    mapper = Mapper(load_mapping(PRESET))
    transport = Recorder()
    crm = build_salesforce(
        token_url=f"{server.url}/services/oauth2/token",
        api_version="62.0",
        secrets=secrets,
        secret_id=SECRET_ID,
        lock=MemoryLock(),
        budget=MemoryCallBudget(),
        connection_id="sandbox",
        properties={t: mapper.source_properties(t) for t in CRM_OBJECTS},
        transport=transport,
        retry=RetryPolicy(base_delay_s=0.01, max_delay_s=0.05),
    )
    yield Org(sandbox, server, clock, secrets, transport, crm, mapper)
    sandbox.close()
    server.stop()


# --- reads ------------------------------------------------------------------------------


def test_given_a_won_opportunity_when_fetched_then_lines_in_order_and_parties_primary_first(
    org: Org,
) -> None:
    account_id = org.account()
    other = org.contact("Ola", "Ek", account_id)
    primary = org.contact("Bo", "Ek", account_id)
    deal_id, line_ids = org.won_deal(
        account_id,
        [("Design", "1.5", "99.61", None), ("Build", "3", "33.33", "10")],
        contacts=[(other, False), (primary, True), (other, False)],
    )

    record = org.crm.fetch(ObjectType.DEAL, deal_id)

    assert record is not None
    assert record.associations == {
        ObjectType.COMPANY: [account_id],
        ObjectType.CONTACT: [primary, other],
    }
    lines = record.children[ObjectType.LINE_ITEM]
    assert [line.id for line in lines] == line_ids
    assert record.properties["IsWon"] == "true"
    assert record.properties["CurrencyIsoCode"] == "EUR"
    assert [line.properties["PricebookEntry.Product2.Name"] for line in lines] == [
        "Design",
        "Build",
    ]
    # 3 x 33.33 = 99.99, less 10% = 89.991, which Salesforce rounds to 89.99.
    assert lines[1].properties["Quantity"] == "3.0"
    assert lines[1].properties["_DiscountAmount"] == "10.00"
    assert lines[0].properties["_DiscountAmount"] == "0.00"
    stored = {r["Id"]: r for r in org.sandbox.records("Opportunity")}[deal_id]
    assert record.version == _epoch_ms(stored["SystemModstamp"])
    # One SOQL call, line items and contact roles as child relationships.
    assert len(org.transport.paths("/services/data/v62.0/query")) == 1


def test_given_a_won_opportunity_when_mapped_with_the_preset_then_an_invoice_ready_deal(
    org: Org,
) -> None:
    account_id = org.account()
    deal_id, _ = org.won_deal(
        account_id, [("Design", "1.5", "99.61", None), ("Build", "3", "33.33", "10")]
    )

    record = org.crm.fetch(ObjectType.DEAL, deal_id)
    assert record is not None
    deal = org.mapper.map(record)

    assert isinstance(deal, Deal)
    assert (deal.name, deal.status, deal.currency) == ("Website rebuild", DealStatus.WON, "EUR")
    assert deal.close_date == date(2024, 5, 31)
    assert deal.doc_number == f"SF-{deal_id}"
    assert [
        (line.name, line.sku, line.quantity, line.unit_price, line.discount_amount)
        for line in deal.line_items
    ] == [
        ("Design", "DESIGN", Decimal("1.5"), Decimal("99.61"), Decimal("0")),
        ("Build", "BUILD", Decimal("3"), Decimal("33.33"), Decimal("10")),
    ]
    # What the invoice will total is what Salesforce says the opportunity is worth.
    invoiced = sum(
        (
            (line.quantity * line.unit_price).quantize(Decimal("0.01")) - line.discount_amount
            for line in deal.line_items
        ),
        Decimal(0),
    )
    stored = {r["Id"]: r for r in org.sandbox.records("Opportunity")}[deal_id]
    assert invoiced == Decimal(str(stored["Amount"]))


def test_given_a_contact_of_an_account_when_mapped_then_its_company_is_the_accounts_name(
    org: Org,
) -> None:
    contact_id = org.contact("Ann", "Lee", org.account("Acme Rockets Ltd"))

    record = org.crm.fetch(ObjectType.CONTACT, contact_id)
    assert record is not None
    party = org.mapper.map(record)

    assert isinstance(party, Party)
    assert (party.kind, party.display_name, party.company_name) == (
        PartyKind.PERSON,
        "Ann Lee",
        "Acme Rockets Ltd",
    )


def test_given_a_line_item_when_fetched_then_it_names_its_opportunity(org: Org) -> None:
    deal_id, line_ids = org.won_deal(org.account(), [("Design", "1", "10", None)])

    record = org.crm.fetch(ObjectType.LINE_ITEM, line_ids[0])

    assert record is not None
    assert record.associations == {ObjectType.DEAL: [deal_id]}


def test_given_a_deleted_opportunity_when_it_or_its_line_is_fetched_then_none(org: Org) -> None:
    deal_id, line_ids = org.won_deal(org.account(), [("Design", "1", "10", None)])
    assert org.crm.fetch(ObjectType.DEAL, deal_id) is not None

    org.sandbox.ui_delete("Opportunity", deal_id)

    assert org.crm.fetch(ObjectType.DEAL, deal_id) is None
    assert org.crm.fetch(ObjectType.LINE_ITEM, line_ids[0]) is None


def test_given_text_that_is_no_salesforce_id_when_fetched_then_none_without_a_call(
    org: Org,
) -> None:
    assert org.crm.fetch(ObjectType.CONTACT, "003' OR Name != '") is None
    assert org.transport.calls == []


def test_given_a_property_that_is_no_field_name_when_built_then_refused(org: Org) -> None:
    with pytest.raises(ValueError, match="not a Salesforce field name"):
        SalesforceCrm(org.crm._api, {ObjectType.CONTACT: ["Email FROM User --"]})


def test_given_written_back_fields_then_those_the_org_has_are_read_and_a_missing_one_is_no_error(
    org: Org,
) -> None:
    """A field the way back fills is read with its record for the drift check to compare;
    one the admin has not made yet must not stop the reads the forward sync needs."""
    org.sandbox.add_custom_field(
        "Account",
        CustomField(
            name="Crmsync_Open_Balance__c",
            label="Open balance",
            type="Number",
            length=16,
            decimals=2,
        ),
    )
    account = org.account()
    org.sandbox.ui_update("Account", account, {"Crmsync_Open_Balance__c": 250})
    crm = SalesforceCrm(
        org.crm._api,
        {t: org.mapper.source_properties(t) for t in CRM_OBJECTS},
        written_back={
            ObjectType.COMPANY: ["Crmsync_Open_Balance__c", "Crmsync_Last_Refund_Date__c"]
        },
    )

    first = crm.fetch(ObjectType.COMPANY, account)
    again = crm.fetch(ObjectType.COMPANY, account)

    assert first is not None and again is not None
    assert first.properties["Crmsync_Open_Balance__c"] == "250.0"
    assert "Crmsync_Last_Refund_Date__c" not in first.properties
    assert first.properties["Name"] == "Ek & Sons"  # the mapping's own, read all the same
    assert len(org.transport.paths("/sobjects/Account/describe")) == 1  # once per process


def test_given_more_changes_than_a_batch_when_listed_then_next_records_urls_are_followed(
    org: Org,
) -> None:
    made = [org.contact(f"P{n}", "Page") for n in range(2 * BATCH + 50)]

    listed = list(org.crm.changed_since(ObjectType.CONTACT, 0))

    ids = [record.id for record in listed]
    assert set(made) <= set(ids)
    assert len(ids) == len(set(ids))
    assert [r.version for r in listed] == sorted(r.version for r in listed)
    assert len(org.transport.paths("/services/data/v62.0/query/")) == 2  # two more batches


def test_given_won_deals_changed_when_listed_then_each_comes_complete(org: Org) -> None:
    account_id = org.account()
    first, first_lines = org.won_deal(account_id, [("Design", "1", "10", None)])
    second, second_lines = org.won_deal(
        account_id, [("Build", "2", "20", None), ("Run", "1", "5", None)]
    )

    listed = {r.id: r for r in org.crm.changed_since(ObjectType.DEAL, 0)}

    assert [c.id for c in listed[first].children[ObjectType.LINE_ITEM]] == first_lines
    assert [c.id for c in listed[second].children[ObjectType.LINE_ITEM]] == second_lines
    assert len(org.transport.paths("/services/data/v62.0/query")) == 1


def test_given_a_deletion_after_latest_date_covered_when_listed_then_left_for_the_next_call(
    org: Org,
) -> None:
    # Deleted minutes ago: Get Deleted ignores seconds and ends at the current minute.
    org.clock.advance(-300)
    first = org.contact("Ada", "First")
    org.sandbox.ui_delete("Contact", first)
    org.clock.advance(120)
    second = org.contact("Bea", "Second")
    org.sandbox.ui_delete("Contact", second)
    org.clock.offset = 0.0
    stamps = {r["Id"]: r["SystemModstamp"] for r in org.sandbox.records("Contact", True)}
    org.transport.latest_date_covered = stamps[first]

    listed = list(org.crm.deleted_since(ObjectType.CONTACT, 0))

    assert [(d.id, d.deleted_at_ms) for d in listed] == [(first, _epoch_ms(stamps[first]))]
    org.transport.latest_date_covered = None
    watermark = max(d.deleted_at_ms for d in listed)
    again = {d.id: d.deleted_at_ms for d in org.crm.deleted_since(ObjectType.CONTACT, watermark)}
    assert again == {first: watermark, second: _epoch_ms(stamps[second])}


# --- limits and sessions -----------------------------------------------------------------


def test_given_the_daily_allocation_spent_when_fetching_then_rate_limited_for_an_hour(
    org: Org,
) -> None:
    contact_id = org.contact("Rae", "Te")
    org.crm.fetch(ObjectType.CONTACT, contact_id)
    used, limit = org.sandbox.api_usage()
    for _ in range(limit - used):  # another integration spends the rest
        org.crm.fetch(ObjectType.CONTACT, contact_id)
    calls = len(org.transport.calls)

    with pytest.raises(RateLimited) as limited:
        org.crm.fetch(ObjectType.CONTACT, contact_id)

    assert limited.value.retry_after_s == DAILY_LIMIT_WAIT_S
    assert "TotalRequests" in str(limited.value)
    assert len(org.transport.calls) == calls + 1  # not retried inside the invocation


def test_given_concurrent_request_limits_when_fetching_then_backed_off_and_read(org: Org) -> None:
    contact_id = org.contact("Rae", "Te")
    org.sandbox.faults.add(
        Fault(kind="rate_limit", count=2, path_prefix="/services/data/", method="GET")
    )

    record = org.crm.fetch(ObjectType.CONTACT, contact_id)

    assert record is not None and record.id == contact_id
    assert org.sandbox.faults.pending() == []


def test_given_no_access_token_when_reading_then_refreshed_and_the_instance_url_kept(
    org: Org,
) -> None:
    contact_id = org.contact("Rae", "Te")

    assert org.crm.fetch(ObjectType.CONTACT, contact_id) is not None

    secret = org.secrets.read(SECRET_ID)
    assert secret["instance_url"] == org.server.url
    assert secret["access_token"]
    # Salesforce keeps the refresh token unless the app rotates them.
    assert secret["refresh_token"] == org.sandbox.config.initial_refresh_token
    assert org.transport.paths("/services/oauth2/token") == ["/services/oauth2/token"]


def test_given_an_expired_session_when_reading_then_refreshed_once_and_read(org: Org) -> None:
    contact_id = org.contact("Rae", "Te")
    org.crm.fetch(ObjectType.CONTACT, contact_id)
    stale = org.secrets.read(SECRET_ID)["access_token"]
    org.clock.advance(org.sandbox.config.session_timeout_s + 1)  # idle past the timeout

    record = org.crm.fetch(ObjectType.CONTACT, contact_id)

    assert record is not None
    assert org.secrets.read(SECRET_ID)["access_token"] != stale
    assert len(org.transport.paths("/services/oauth2/token")) == 2
    queries = [path for _, path in org.transport.calls if path.endswith("/query")]
    assert len(queries) == 3  # the first read, the refused one, its retry


def test_given_a_revoked_refresh_token_when_reading_then_auth_failed(org: Org) -> None:
    org.secrets.write(SECRET_ID, _secret(org.sandbox, refresh_token="5Aep861revoked"))

    with pytest.raises(AuthFailed, match="invalid_grant"):
        org.crm.fetch(ObjectType.CONTACT, org.contact("Rae", "Te"))


# --- outbound messages ---------------------------------------------------------------------


@pytest.fixture
def listener(org: Org) -> Iterator[tuple[Listener, str]]:
    listener = Listener(salesforce_webhooks(org.secrets, SECRET_ID))
    server = SandboxServer(listener.app(), 0).start()
    yield listener, f"{server.url}/hooks/salesforce"
    server.stop()


def _delivered(org: Org, listener: Listener, url: str) -> tuple[InboundWebhook, str]:
    org.sandbox.add_outbound_message(
        OutboundMessageDefinition(
            name="crmsync opportunities",
            object_type="Opportunity",
            fields=["SystemModstamp", "Name"],
            endpoint_url=url,
            criteria={"IsWon": True},
        )
    )
    deal_id, _ = org.won_deal(org.account(), [("Design", "1", "10", None)])
    assert org.sandbox.wait_for_outbound_idle()
    assert listener.received, "the sandbox sent no outbound message"
    return listener.received[0], deal_id


def test_given_an_outbound_message_when_received_then_verified_normalized_and_acknowledged(
    org: Org, listener: tuple[Listener, str]
) -> None:
    receiver, url = listener
    delivery, deal_id = _delivered(org, receiver, f"{url}?token={OUTBOUND_TOKEN}")

    receiver.receiver.verify(delivery)
    events = receiver.receiver.normalize(delivery, "sandbox")

    stored = {r["Id"]: r for r in org.sandbox.records("Opportunity")}[deal_id]
    assert [(e.object_type, e.record_id, e.kind) for e in events] == [
        (ObjectType.DEAL, deal_id, ChangeKind.UPDATED)
    ]
    assert events[0].version == _epoch_ms(stored["SystemModstamp"])
    sent = org.sandbox.outbound_deliveries()
    assert events[0].event_id == (
        f"salesforce:{org.sandbox.org_id[:15]}:{sent[0].notifications[0].id}"
    )
    # Salesforce took the answer for an acknowledgement, and sent the message once.
    assert [d.acknowledged for d in sent] == [True]
    assert len(receiver.received) == 1


def test_given_the_answer_then_it_is_the_documented_soap_ack(org: Org) -> None:
    answer = salesforce_webhooks(org.secrets, SECRET_ID).answer(
        InboundWebhook(method="POST", url="https://x", headers={}, body="", received_at=_EPOCH), 0
    )

    assert (answer.status, answer.content_type, answer.body) == (
        200,
        "text/xml; charset=utf-8",
        ACK_ENVELOPE,
    )
    assert "<Ack>true</Ack>" in answer.body


@pytest.mark.parametrize(
    ("query", "status"),
    [("", 401), ("?token=wrong-token", 401), (f"?token={OUTBOUND_TOKEN}&token=x", 401)],
    ids=["no token", "wrong token", "two tokens"],
)
def test_given_a_message_posted_without_the_endpoint_token_when_verified_then_401(
    org: Org, listener: tuple[Listener, str], query: str, status: int
) -> None:
    receiver, url = listener
    delivery, _ = _delivered(org, receiver, f"{url}?token={OUTBOUND_TOKEN}")
    base = delivery.url.partition("?")[0]

    with pytest.raises(WebhookRejected) as rejected:
        receiver.receiver.verify(delivery.model_copy(update={"url": base + query}))

    assert rejected.value.status == status


def test_given_a_message_from_another_org_when_verified_or_normalized_then_403(
    org: Org, listener: tuple[Listener, str]
) -> None:
    receiver, url = listener
    delivery, _ = _delivered(org, receiver, f"{url}?token={OUTBOUND_TOKEN}")
    mine = org.sandbox.org_id
    theirs = mine[:3] + "9" * 12 + mine[15:]
    foreign = delivery.model_copy(update={"body": delivery.body.replace(mine, theirs)})

    for step in (receiver.receiver.verify, lambda d: receiver.receiver.normalize(d, "c")):
        with pytest.raises(WebhookRejected) as rejected:
            step(foreign)
        assert rejected.value.status == 403


def test_given_the_org_id_in_15_characters_when_verified_then_accepted(
    org: Org, listener: tuple[Listener, str]
) -> None:
    receiver, url = listener
    delivery, _ = _delivered(org, receiver, f"{url}?token={OUTBOUND_TOKEN}")
    org.secrets.write(SECRET_ID, _secret(org.sandbox, organization_id=org.sandbox.org_id[:15]))

    receiver.receiver.verify(delivery)

    assert len(receiver.receiver.normalize(delivery, "c")) == 1


def _envelope(sobjects: list[tuple[str, str, str]], org_id: str, prolog: str = "") -> str:
    notifications = "".join(
        f"<Notification><Id>04l{n:015d}</Id>"
        f'<sObject xsi:type="sf:{kind}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
        f"<sf:Id>{record_id}</sf:Id><sf:SystemModstamp>{stamp}</sf:SystemModstamp>"
        "</sObject></Notification>"
        for n, (kind, record_id, stamp) in enumerate(sobjects)
    )
    return (
        f'{prolog}<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org_id}</OrganizationId><ActionId>04k000000000001AAA</ActionId>"
        '<SessionId xsi:nil="true"/><EnterpriseUrl>https://x</EnterpriseUrl>'
        f"<PartnerUrl>https://x</PartnerUrl>{notifications}</notifications>"
        "</soapenv:Body></soapenv:Envelope>"
    )


def _posted(body: str) -> InboundWebhook:
    return InboundWebhook(
        method="POST",
        url=f"https://hooks.example/salesforce?token={OUTBOUND_TOKEN}",
        headers={"content-type": "text/xml; charset=utf-8"},
        body=body,
        received_at=datetime.now(UTC),
    )


def test_given_notifications_of_several_objects_then_synced_ones_oldest_first(org: Org) -> None:
    receiver = salesforce_webhooks(org.secrets, SECRET_ID)
    body = _envelope(
        [
            ("Contact", "0035g0000000009AAA", "2024-05-02T10:00:00.000Z"),
            ("Lead", "00Q5g0000000001AAA", "2024-05-01T10:00:00.000Z"),
            ("OpportunityLineItem", "00k5g0000000001AAA", "2024-05-01T09:00:00.000Z"),
        ],
        org.sandbox.org_id,
    )

    events = receiver.normalize(_posted(body), "c")

    assert [(e.object_type, e.record_id) for e in events] == [
        (ObjectType.LINE_ITEM, "00k5g0000000001AAA"),
        (ObjectType.CONTACT, "0035g0000000009AAA"),
    ]


@pytest.mark.parametrize(
    "prolog",
    [
        '<!DOCTYPE lol [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>',
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>',
        '<!DOCTYPE x SYSTEM "http://127.0.0.1:9/evil.dtd">',
    ],
    ids=["entity expansion", "external entity", "external dtd"],
)
def test_given_xml_with_a_dtd_when_verified_and_normalized_then_400(org: Org, prolog: str) -> None:
    receiver = salesforce_webhooks(org.secrets, SECRET_ID)
    delivery = _posted(_envelope([], org.sandbox.org_id, prolog))

    receiver.verify(delivery)  # the token holds; what it carries is refused below
    with pytest.raises(WebhookRejected) as rejected:
        receiver.normalize(delivery, "c")

    assert rejected.value.status == 400
    assert "DTD" in rejected.value.reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{}", "not well-formed"),
        ("<a/>", "not an outbound message"),
        (
            _envelope([("Contact", "not-an-id", "2024-05-01T10:00:00.000Z")], "00D5g0000000001EAA"),
            "record_id",
        ),
        (
            _envelope([("Contact", "0035g0000000009AAA", "")], "00D5g0000000001EAA"),
            "SystemModstamp",
        ),
        (
            _envelope(
                [("Contact", "0035g0000000009AAA", "2024-05-01T10:00:00.000Z")] * 101,
                "00D5g0000000001EAA",
            ),
            "more than 100",
        ),
    ],
    ids=["json", "other xml", "bad id", "no modstamp", "101 notifications"],
)
def test_given_a_body_that_is_no_outbound_message_when_normalized_then_400(
    body: str, reason: str
) -> None:
    secrets = MemorySecretStore(
        {SECRET_ID: {"organization_id": "00D5g0000000001EAA", "outbound_token": OUTBOUND_TOKEN}}
    )

    with pytest.raises(WebhookRejected) as rejected:
        salesforce_webhooks(secrets, SECRET_ID).normalize(_posted(body), "c")

    assert rejected.value.status == 400
    assert reason in rejected.value.reason
