"""The two vendors of a chaos run: the HubSpot and QuickBooks sandboxes over real HTTP.

Their rate limits are lifted so the run is bound by the work, not by the documented
quotas; every 429 of a run is an injected one. What stays is what makes a vendor
hard to live with: QuickBooks access tokens that expire seconds after they are
issued, so refresh-token rotation runs all the time under concurrent invocations,
and superseded refresh tokens refused at once (Intuit keeps them 24 h: a refresh
with a stale token, which the shared lease must prevent, would go unnoticed there).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from infra.resources import DESCRIPTION
from local.memory import MemorySecretStore
from local.sandboxes.base import SandboxServer
from local.sandboxes.hubspot import SANDBOX as HUBSPOT_SANDBOX
from local.sandboxes.hubspot import HubSpotSandbox, HubSpotSandboxConfig
from local.sandboxes.quickbooks import SANDBOX as QUICKBOOKS_SANDBOX
from local.sandboxes.quickbooks import QuickBooksSandbox, QuickBooksSandboxConfig
from shared.connectors.auth import EXPIRY_MARGIN_S
from shared.connectors.spec import secret_id
from shared.models import Connection
from shared.settings import Settings

MAPPING = Path(__file__).resolve().parents[2] / "config" / "hubspot" / "services.yaml"

CONNECTION = "chaos"
UNLIMITED = 10**9
# HubSpot's rolling window is 10 s; its 429 tells the client to wait that long. One
# second keeps an injected burst's wait as real (the client still sleeps it) but short.
HUBSPOT_WINDOW_S = 1.0
# Search lags behind writes at HubSpot; reconciliation's overlap must absorb it.
HUBSPOT_SEARCH_LAG_S = 1.0
EVENTS = DESCRIPTION.queue("Events")
assert EVENTS.max_failed_attempts is not None, "the Events queue declares its dead-lettering"
MAX_FAILED_ATTEMPTS = EVENTS.max_failed_attempts
# A failed message waits 30 s (EVENTS.retry_delay_s) before its next attempt, doubled
# each time: 0.5 s here, as every wait with nothing happening is compressed in a run
# (local/chaos/workers.py).
RETRY_DELAY_S = 0.5


@dataclass(frozen=True)
class Vendors:
    hubspot: HubSpotSandbox
    quickbooks: QuickBooksSandbox
    hubspot_url: str
    quickbooks_url: str
    connection: Connection
    settings: Settings
    secrets: MemorySecretStore

    def aim_webhooks(self, base_url: str) -> None:
        """Send both vendors' webhooks to ``base_url`` + ``/webhooks/<vendor>/<connection>``."""
        with_path = f"{base_url.rstrip('/')}/webhooks"
        self.hubspot.config.webhook_url = f"{with_path}/hubspot/{CONNECTION}"
        self.quickbooks.webhook_url = f"{with_path}/quickbooks/{CONNECTION}"


def start_vendors(
    exit_stack: ExitStack, *, seed: int, duplicate_events: float, token_life_s: float
) -> Vendors:
    """Both sandboxes served on 127.0.0.1 (stopped by ``exit_stack``), the settings the
    connectors are built from, and the secrets holding the local dummy credentials.

    ``token_life_s``: how long a QuickBooks access token is usable before the client
    refreshes it (the sandbox's lifetime minus the client's safety margin).
    """
    hubspot = HubSpotSandbox(
        HubSpotSandboxConfig(
            rate_limit=UNLIMITED,
            rate_window_s=HUBSPOT_WINDOW_S,
            daily_limit=UNLIMITED,
            search_rate_per_s=UNLIMITED,
            search_visibility_lag_s=HUBSPOT_SEARCH_LAG_S,
            duplicate_event_probability=duplicate_events,
            seed=seed,
        )
    )
    exit_stack.callback(hubspot.close)
    quickbooks = QuickBooksSandbox(
        QuickBooksSandboxConfig(
            access_token_ttl_s=EXPIRY_MARGIN_S + token_life_s,
            superseded_refresh_grace_s=0.0,
            rate_per_minute=UNLIMITED,
            rate_per_second=UNLIMITED,
            batch_per_minute=UNLIMITED,
            # Injected 429s say how long to wait, so some are waited out in the call
            # and some (longer than the client waits inline) defer their message.
            send_retry_after=True,
        )
    )
    exit_stack.callback(quickbooks.close)
    urls = []
    for app in (hubspot.app, quickbooks.app):
        server = SandboxServer(app).start()
        exit_stack.callback(server.stop)
        urls.append(server.url)
    hubspot_url, quickbooks_url = urls
    settings = Settings(max_failed_attempts=MAX_FAILED_ATTEMPTS, retry_delay_s=RETRY_DELAY_S)
    connection = Connection(
        id=CONNECTION,
        crm="hubspot",
        accounting="quickbooks",
        mapping_name=MAPPING.name,
        mapping=MAPPING.read_text(encoding="utf-8"),
    )
    secrets = MemorySecretStore(
        {
            secret_id(CONNECTION, "hubspot"): HUBSPOT_SANDBOX.secret(hubspot),
            secret_id(CONNECTION, "quickbooks"): QUICKBOOKS_SANDBOX.secret(quickbooks),
        }
    )
    return Vendors(
        hubspot=hubspot,
        quickbooks=quickbooks,
        hubspot_url=hubspot_url,
        quickbooks_url=quickbooks_url,
        connection=connection,
        settings=settings,
        secrets=secrets,
    )
