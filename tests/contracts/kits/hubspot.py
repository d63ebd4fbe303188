"""HubSpot for the contract suites: the HubSpot sandbox, people acting through its UI."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import ClassVar

from local.memory import MemoryCallBudget
from local.sandboxes.base import Fault, SandboxServer
from local.sandboxes.hubspot import HubSpotSandbox, HubSpotSandboxConfig, sign_v1, sign_v3
from shared.bootstrap import CRM_OBJECTS

# The one place this kit names the connector: its module is about to move.
from shared.connectors.hubspot.connector import SEARCH_PAGE_SIZE, build_hubspot
from shared.mapping import Mapper, load_mapping
from shared.models import ObjectType
from shared.ports import CrmSource
from tests.contracts.kits.base import (
    CONFIG_DIR,
    CONNECTION_ID,
    CrmWriterKit,
    Line,
    SandboxConnection,
    WonDeal,
)

# Small enough that a few hundred records cross it; the sandbox enforces the same cap.
SEARCH_CAP = 250
_PATHS = {
    ObjectType.CONTACT: "contacts",
    ObjectType.COMPANY: "companies",
    ObjectType.DEAL: "deals",
    ObjectType.LINE_ITEM: "line_items",
}
# Contacts keep their pre-v3 last-modified property; other objects have hs_lastmodifieddate.
_MODIFIED = {ObjectType.CONTACT: "lastmodifieddate"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_ms(iso: str) -> int:
    """Exact: a float timestamp times 1000 can land a millisecond short."""
    return (datetime.fromisoformat(iso) - _EPOCH) // timedelta(milliseconds=1)


class HubSpotKit(CrmWriterKit):
    name = "hubspot"
    preset = CONFIG_DIR / "hubspot" / "services.yaml"
    page_size = SEARCH_PAGE_SIZE
    signature_headers: ClassVar[tuple[str, ...]] = (
        "x-hubspot-signature",
        "x-hubspot-signature-v3",
    )

    def __init__(self) -> None:
        # HubSpot's 429 asks for its whole rolling window; a 1 s window at the documented
        # average rate (10 a second) keeps a burst that is waited out short.
        self.config = HubSpotSandboxConfig(
            rate_limit=10, rate_window_s=1.0, search_result_cap=SEARCH_CAP
        )
        self.sandbox = HubSpotSandbox(self.config)
        self.server = SandboxServer(self.sandbox.app, 0).start()
        connection = SandboxConnection(self.name, self.sandbox, self.server.url)
        mapper = Mapper(load_mapping(self.preset))
        # Built by hand, not through the registered spec: the connector must know the
        # sandbox's small search cap, which the spec leaves at HubSpot's own.
        self.crm = build_hubspot(
            base_url=self.server.url,
            secrets=connection.secrets,
            secret_id=connection.secret_id,
            budget=MemoryCallBudget(),
            connection_id=CONNECTION_ID,
            properties={t: mapper.source_properties(t) for t in CRM_OBJECTS},
            search_result_cap=SEARCH_CAP,
        )
        self.webhooks = connection.webhook_receiver()

    def close(self) -> None:
        self.sandbox.close()
        self.server.stop()

    def reset(self) -> None:
        self.sandbox.wait_for_webhooks_idle()
        self.sandbox.faults.clear()
        self.sandbox.reset()

    # --- records -----------------------------------------------------------------------

    def create_contact(self, *, given_name: str, family_name: str, email: str) -> str:
        properties = {"firstname": given_name, "lastname": family_name, "email": email}
        return str(self.sandbox.ui_create("contacts", properties)["id"])

    def create_company(self, *, name: str) -> str:
        return str(self.sandbox.ui_create("companies", {"name": name})["id"])

    def create_won_deal(
        self, *, name: str, contact_id: str, company_id: str, lines: list[Line]
    ) -> WonDeal:
        deal = {"dealname": name, "pipeline": "default", "dealstage": "closedwon"}
        deal_id = str(self.sandbox.ui_create("deals", deal)["id"])
        self.sandbox.ui_associate("deals", deal_id, "contacts", contact_id)
        self.sandbox.ui_associate("deals", deal_id, "companies", company_id)
        line_ids = []
        for line in lines:
            item = {"name": line.name, "quantity": line.quantity, "price": line.unit_price}
            line_id = str(self.sandbox.ui_create("line_items", item)["id"])
            self.sandbox.ui_associate("line_items", line_id, "deals", deal_id)
            line_ids.append(line_id)
        return WonDeal(deal_id, line_ids)

    def delete(self, object_type: ObjectType, record_id: str) -> None:
        self.sandbox.ui_archive(_PATHS[object_type], record_id)

    def modified_ms(self, object_type: ObjectType) -> dict[str, int]:
        name = _MODIFIED.get(object_type, "hs_lastmodifieddate")
        return {
            record["id"]: _epoch_ms(record["properties"][name])
            for record in self.sandbox.records(_PATHS[object_type], include_archived=False)
        }

    def unknown_id(self, object_type: ObjectType) -> str:
        return "999999999"  # ids start at 1001 and grow by one per record

    def rate_limit_fetches(self, count: int) -> None:
        self.sandbox.faults.add(
            Fault(kind="rate_limit", count=count, path_prefix="/crm/v3/objects/", method="GET")
        )

    def pending_faults(self) -> int:
        return sum(fault["count"] for fault in self.sandbox.faults.pending())

    # --- writing back -------------------------------------------------------------------

    def writer(self, reads: Mapping[ObjectType, Sequence[str]]) -> CrmSource:
        return SandboxConnection(
            self.name, self.sandbox, self.server.url, properties=reads
        ).crm_source()

    def field_name(self, name: str) -> str:
        return name  # HubSpot's internal names are lower snake case

    def lose_next_field_create_answer(self) -> None:
        self.sandbox.faults.add(
            Fault(kind="drop_response", path_prefix="/crm/v3/properties/", method="POST")
        )

    # --- webhooks ----------------------------------------------------------------------

    def send_webhooks_to(self, url: str | None) -> None:
        self.config.webhook_url = url

    def make_change(self) -> tuple[ObjectType, str]:
        properties = {"firstname": "Webb", "lastname": "Hook", "email": "webb@example.com"}
        return ObjectType.CONTACT, str(self.sandbox.ui_create("contacts", properties)["id"])

    def wait_for_webhooks(self) -> None:
        assert self.sandbox.wait_for_webhooks_idle(), "HubSpot's webhooks did not go out"

    def sign(self, url: str, body: str) -> dict[str, str]:
        """v1 and v3, as the sandbox signs; the test URL has no %-escapes for v3 to decode."""
        secret = self.config.client_secret
        timestamp = int(time.time() * 1000)
        return {
            "x-hubspot-signature": sign_v1(secret, body),
            "x-hubspot-signature-version": "v1",
            "x-hubspot-signature-v3": sign_v3(secret, "POST", url, body, timestamp),
            "x-hubspot-request-timestamp": str(timestamp),
        }
