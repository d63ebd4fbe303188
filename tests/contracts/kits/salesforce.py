"""Salesforce for the contract suites: the Salesforce sandbox, people acting through its UI."""

from __future__ import annotations

import secrets as random_tokens
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import httpx

from local.sandboxes.base import Fault, SandboxServer
from local.sandboxes.salesforce import (
    CustomField,
    OutboundMessageDefinition,
    SalesforceSandbox,
    SalesforceSandboxConfig,
)
from local.sandboxes.salesforce_schema import make_id
from shared.bootstrap import CRM_OBJECTS
from shared.mapping import Mapper, load_mapping
from shared.models import ObjectType
from shared.ports import CrmProperty, CrmSource, InboundWebhook
from tests.contracts.kits.base import (
    CONFIG_DIR,
    CrmWriterKit,
    Line,
    SandboxConnection,
    WonDeal,
)

# The org's query batch: Salesforce's smallest honoured batch size, so a few hundred
# records cross pages (the connector asks for 2,000; the org may give fewer).
BATCH_SIZE = 200
_SOBJECTS = {
    ObjectType.CONTACT: "Contact",
    ObjectType.COMPANY: "Account",
    ObjectType.DEAL: "Opportunity",
    ObjectType.LINE_ITEM: "OpportunityLineItem",
}
_KEY_PREFIXES = {
    ObjectType.CONTACT: "003",
    ObjectType.COMPANY: "001",
    ObjectType.DEAL: "006",
    ObjectType.LINE_ITEM: "00k",
}
# How far the org's clock runs behind the connector's. Get Deleted ignores seconds, so
# the connector asks up to the start of its current minute: a deletion is listed once
# its minute has passed. Two minutes behind, the org's deletions are listed at once.
CLOCK_LAG_S = 120.0
# A LastName nobody has: the outbound message's rule while webhooks go nowhere.
_NOBODY = "\u2205 no outbound messages"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_ms(stamp: str) -> int:
    """Salesforce's ``2024-01-15T10:30:00.000+0000``, exactly in ms."""
    return (datetime.fromisoformat(stamp) - _EPOCH) // timedelta(milliseconds=1)


def _as_made_in_setup(prop: CrmProperty) -> CustomField:
    """The Setup field for a ``CrmProperty``: Text(255), Number(16, 2), Date or Picklist."""
    if prop.kind == "string":
        return CustomField(prop.name, prop.label, "Text", length=255)
    if prop.kind == "number":
        return CustomField(prop.name, prop.label, "Number", length=16, decimals=2)
    if prop.kind == "date":
        return CustomField(prop.name, prop.label, "Date")
    return CustomField(prop.name, prop.label, "Picklist", values=prop.options)


class SalesforceKit(CrmWriterKit):
    name = "salesforce"
    preset = CONFIG_DIR / "salesforce" / "services.yaml"
    page_size = BATCH_SIZE
    # The REST API makes no field: an admin does, in Setup (the README says which).
    makes_fields = False
    # Outbound messages are not signed: the endpoint URL's token is what vouches.
    signature_headers: ClassVar[tuple[str, ...]] = ()
    signs_body = False

    def unsigned(self, delivery: InboundWebhook) -> InboundWebhook:
        """Without the endpoint's secret token, which is what vouches for a delivery."""
        url = httpx.URL(delivery.url)
        return delivery.model_copy(update={"url": str(url.copy_remove_param("token"))})

    def __init__(self) -> None:
        # Multi-currency on, as the preset reads CurrencyIsoCode. The suites' endpoint
        # answers an empty 200, which Salesforce takes for a failed delivery and retries
        # for 24 hours: scaled to a tenth of a second, a message is given up at once.
        # The endpoint token is the kit's own, kept in the connection's secret.
        self.config = SalesforceSandboxConfig(
            currencies=("USD", "EUR"),
            query_batch_size=BATCH_SIZE,
            outbound_time_scale=1e-6,
            outbound_token=random_tokens.token_urlsafe(24),
            clock=lambda: time.time() - CLOCK_LAG_S,
        )
        self.sandbox = SalesforceSandbox(self.config)
        self.server = SandboxServer(self.sandbox.app, 0).start()
        self.outbound_token = self.config.outbound_token
        mapper = Mapper(load_mapping(self.preset))
        connection = SandboxConnection(
            self.name,
            self.sandbox,
            self.server.url,
            properties={t: mapper.source_properties(t) for t in CRM_OBJECTS},
        )
        self.crm = connection.crm_source()
        self.webhooks = connection.webhook_receiver()
        # An outbound message on contacts, as an admin sets one up with a flow.
        self.outbound = OutboundMessageDefinition(
            name="crmsync contacts",
            object_type="Contact",
            fields=["SystemModstamp", "Email"],
            endpoint_url="http://127.0.0.1:9/unused",
            criteria={"LastName": _NOBODY},
        )
        self.sandbox.add_outbound_message(self.outbound)

    def close(self) -> None:
        self.sandbox.close()
        self.server.stop()

    def reset(self) -> None:
        self.sandbox.wait_for_outbound_idle()
        self.sandbox.faults.clear()
        self.sandbox.reset()

    # --- records -----------------------------------------------------------------------

    def create_contact(self, *, given_name: str, family_name: str, email: str) -> str:
        fields = {"FirstName": given_name, "LastName": family_name, "Email": email}
        return self.sandbox.ui_create("Contact", fields)

    def create_company(self, *, name: str) -> str:
        return self.sandbox.ui_create("Account", {"Name": name})

    def create_won_deal(
        self, *, name: str, contact_id: str, company_id: str, lines: list[Line]
    ) -> WonDeal:
        ui = self.sandbox
        deal_id = ui.ui_create(
            "Opportunity",
            {
                "Name": name,
                "StageName": "Closed Won",
                "CloseDate": datetime.now(UTC).date().isoformat(),
                "AccountId": company_id,
                "CurrencyIsoCode": "USD",
            },
        )
        ui.ui_create(
            "OpportunityContactRole",
            {"OpportunityId": deal_id, "ContactId": contact_id, "IsPrimary": True},
        )
        book = next(b["Id"] for b in ui.records("Pricebook2") if b["IsStandard"])
        line_ids = []
        for line in lines:
            product = ui.ui_create("Product2", {"Name": line.name, "IsActive": True})
            entry = ui.ui_create(
                "PricebookEntry",
                {
                    "Pricebook2Id": book,
                    "Product2Id": product,
                    "UnitPrice": line.unit_price,
                    "IsActive": True,
                    "CurrencyIsoCode": "USD",
                },
            )
            item = {
                "OpportunityId": deal_id,
                "PricebookEntryId": entry,
                "Quantity": line.quantity,
                "UnitPrice": line.unit_price,
            }
            line_ids.append(ui.ui_create("OpportunityLineItem", item))
        return WonDeal(deal_id, line_ids)

    def delete(self, object_type: ObjectType, record_id: str) -> None:
        self.sandbox.ui_delete(_SOBJECTS[object_type], record_id)

    def modified_ms(self, object_type: ObjectType) -> dict[str, int]:
        return {
            record["Id"]: _epoch_ms(record["SystemModstamp"])
            for record in self.sandbox.records(_SOBJECTS[object_type])
        }

    def unknown_id(self, object_type: ObjectType) -> str:
        return make_id(_KEY_PREFIXES[object_type], 62**8)  # ids count up from 1

    def rate_limit_fetches(self, count: int) -> None:
        # Salesforce's REST API has no 429: its throttle is the 403 REQUEST_LIMIT_EXCEEDED
        # of too many concurrent long-running requests, which the sandbox's fault serves.
        self.sandbox.faults.add(
            Fault(kind="rate_limit", count=count, path_prefix="/services/data/", method="GET")
        )

    def pending_faults(self) -> int:
        return sum(fault["count"] for fault in self.sandbox.faults.pending())

    # --- writing back -------------------------------------------------------------------

    def writer(self, reads: Mapping[ObjectType, Sequence[str]]) -> CrmSource:
        return SandboxConnection(
            self.name, self.sandbox, self.server.url, properties=reads
        ).crm_source()

    def field_name(self, name: str) -> str:
        """``crmsync_due_date`` as Setup names its field: ``Crmsync_Due_Date__c``."""
        return "_".join(part.capitalize() for part in name.split("_")) + "__c"

    def make_fields(self, object_type: ObjectType, properties: Sequence[CrmProperty]) -> None:
        """Each field as the README's "Salesforce: custom fields for two-way" asks."""
        for prop in properties:
            self.sandbox.add_custom_field(_SOBJECTS[object_type], _as_made_in_setup(prop))

    def lose_next_field_create_answer(self) -> None:
        raise NotImplementedError("the connector creates no Salesforce fields to lose")

    # --- webhooks ----------------------------------------------------------------------

    def send_webhooks_to(self, url: str | None) -> None:
        """Point the outbound message at ``url`` with the token, as an admin would. The
        sandbox cannot deactivate a rule: while it goes nowhere, no record meets it."""
        if url is None:
            self.outbound.criteria = {"LastName": _NOBODY}
            return
        separator = "&" if "?" in url else "?"
        self.outbound.endpoint_url = f"{url}{separator}token={self.outbound_token}"
        self.outbound.criteria = {}

    def make_change(self) -> tuple[ObjectType, str]:
        fields = {"FirstName": "Webb", "LastName": "Hook", "Email": "webb@example.com"}
        return ObjectType.CONTACT, self.sandbox.ui_create("Contact", fields)

    def wait_for_webhooks(self) -> None:
        assert self.sandbox.wait_for_outbound_idle(), "Salesforce's outbound messages stuck"

    def sign(self, url: str, body: str) -> dict[str, str]:
        """Nothing: Salesforce signs no outbound message (the URL carries the token)."""
        return {}
