"""A connection: one CRM account, one accounting company and the mapping between them.

One deployment serves many. Each is stored as a document the functions read at run
time (adding one needs no redeploy), and its id keys everything of its own: the FIFO
message groups, links, audit, cursors, idempotency records, secrets and call budgets.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from shared.models.events import System

# Safe in a URL path, a Secrets Manager name and an SQS message group id.
ConnectionId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]


class Connection(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: ConnectionId
    crm: System
    accounting: System
    mapping_name: str = Field(min_length=1)  # where the mapping came from, for messages
    mapping: str = Field(min_length=1)  # the mapping document itself (YAML or JSON)
    # Records last changed before this day (UTC) are not imported unless they change
    # again; None: the first reconcile imports every record the CRM holds.
    sync_since: date | None = None

    @model_validator(mode="after")
    def _two_systems(self) -> Connection:
        if self.crm == self.accounting:
            raise ValueError("a connection joins two different systems")
        return self

    @property
    def start_ms(self) -> int:
        """``sync_since`` as epoch milliseconds (its midnight UTC); 0 without one."""
        if self.sync_since is None:
            return 0
        return int(datetime.combine(self.sync_since, time(), tzinfo=UTC).timestamp() * 1000)
