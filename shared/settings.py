"""Runtime settings, read once from CRMSYNC_* environment variables.

Logic never reads ``os.environ``: the composition root builds a ``Settings`` and
passes what each piece needs. The CDK stack and the local runtime set the same
variables from ``infra.resources.DESCRIPTION``.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CRMSYNC_", frozen=True)

    # Each connection's systems and mapping are in this table (``Connections``); each
    # vendor's own settings are read by its package (CRMSYNC_<VENDOR>_*).
    connections_table: str = "crmsync-connections"
    links_table: str = "crmsync-links"
    idempotency_table: str = "crmsync-idempotency"
    audit_table: str = "crmsync-audit"
    cursors_table: str = "crmsync-cursors"
    events_queue_url: str = ""
    events_dlq_url: str = ""
    # Failed attempts (not deferrals) before the consumer dead-letters a message.
    max_failed_attempts: int = Field(default=5, ge=1)
    # Seconds before a failed message is tried again, doubled on each failure.
    retry_delay_s: float = Field(default=30, ge=0)
    # Vendor calls are paced this much further apart than a limit allows (1.02: 2 %):
    # room for network jitter and for a slot used a little late. 1/margin of each
    # vendor quota is the most the sync can use.
    call_pacing_margin: float = Field(default=1.02, ge=1.001, le=1.5)

    # Public base URL of the webhook API, as vendors see it (signatures cover the URL).
    public_base_url: str = ""

    webhook_tolerance_s: int = 300
    max_webhook_body_bytes: int = 1_048_576
    idempotency_ttl_s: int = 7 * 24 * 3600
    audit_ttl_days: int = 400
    reconcile_overlap_s: int = 300


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
