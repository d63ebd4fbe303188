"""The one local configuration: the connections and the ports.

Each connection's vendors run as sandboxes (``local.sandboxes.registry``), whose dummy
accounts also fill the connection's secrets in moto, so the real handlers
authenticate against them without any real account. Nothing here is secret;
``local/local.yaml`` is committed.
"""

from __future__ import annotations

import errno
import socket
from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infra.resources import ServiceDescription
from local.sandboxes.registry import SANDBOXES, sandbox
from shared.bootstrap import mapper_of
from shared.connectors.registry import vendor
from shared.errors import MappingConfigError
from shared.models import Connection, ConnectionId

DEFAULT_CONFIG = Path(__file__).resolve().with_name("local.yaml")
PRESETS = Path(__file__).resolve().parents[1] / "config"
# Everything binds to loopback only: dummy credentials must never face a network.
LOOPBACK = "127.0.0.1"


# Where a vendor without a sandbox points locally: the discard port, so a connector
# configured for nothing fails at once instead of reaching the real vendor.
NO_VENDOR = f"http://{LOOPBACK}:9"


def ensure_port_free(port: int) -> None:
    """Raise ``OSError(EADDRINUSE)`` if ``port`` cannot be bound on loopback (0 always can).

    Checked before starting a server: werkzeug exits the process on a taken port and
    moto's threaded server waits forever for a bind that failed in its thread.
    """
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug binds
        try:
            probe.bind((LOOPBACK, port))
        except OSError as exc:
            raise OSError(errno.EADDRINUSE, f"{LOOPBACK}:{port} is already in use") from exc


class LocalConfigError(Exception):
    """The local config file is missing or wrong; the message says which and where."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Ports(_Model):
    """0 picks a free port (tests); fixed ports make the printed URLs stable."""

    api: int = Field(ge=0, le=65535)
    moto: int = Field(ge=0, le=65535)
    # One per vendor sandbox; a vendor left out gets a free port.
    sandboxes: dict[str, int] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _sandboxes_exist(self) -> Ports:
        unknown = sorted(set(self.sandboxes) - set(SANDBOXES))
        if unknown:
            raise ValueError(
                f"no sandbox named {', '.join(unknown)}; sandboxes: {sorted(SANDBOXES)}"
            )
        return self

    def sandbox(self, vendor: str) -> int:
        return self.sandboxes.get(vendor, 0)


class AwsConfig(_Model):
    region: str = "us-east-1"
    access_key_id: str = "testing"
    secret_access_key: str = "testing"


class WorkerConfig(_Model):
    # Short long-polls keep Ctrl-C prompt; Lambda's poller uses 20 s.
    wait_time_s: int = Field(default=1, ge=0, le=20)
    batch_size: int = Field(default=10, ge=1, le=10)


class FailuresConfig(_Model):
    """How a failed event is retried locally; what is left out is as deployed."""

    # Seconds before a failed event is tried again, doubled on each failure.
    retry_delay_s: int | None = Field(default=None, ge=0)
    # Failed attempts after which it is dead-lettered.
    max_failed_attempts: int | None = Field(default=None, ge=1)
    # Seconds a received message stays hidden: by default, with either setting above,
    # the sync function's timeout, long enough that a message being handled never
    # reaches a second invocation (as in AWS), short enough that one whose invocation
    # died comes back in a minute, not six.
    visibility_timeout_s: int | None = Field(default=None, ge=1, le=43_200)
    # Receives after which SQS itself dead-letters a message (the backstop for a
    # consumer that cannot run at all).
    max_receive_count: int | None = Field(default=None, ge=1, le=1000)

    def apply(self, description: ServiceDescription) -> ServiceDescription:
        """``description`` with these settings on every queue with a dead-letter queue."""
        given = self.model_dump(exclude_none=True)
        if not given:
            return description
        changes = {"visibility_timeout_s": description.function("Sync").timeout_s, **given}
        queues = tuple(
            queue.model_copy(update=changes) if queue.max_failed_attempts else queue
            for queue in description.queues
        )
        return description.model_copy(update={"queues": queues})


class LocalConnection(_Model):
    """A connection of the local stack: its two systems run as sandboxes."""

    id: ConnectionId
    crm: str
    accounting: str
    mapping_file: Path
    # The first reconcile imports CRM records changed since this day only.
    sync_since: date | None = None

    def connection(self) -> Connection:
        """The stored form, the mapping document included."""
        return Connection(
            id=self.id,
            crm=self.crm,
            accounting=self.accounting,
            mapping_name=str(self.mapping_file),
            mapping=self.mapping_file.read_text(encoding="utf-8"),
            sync_since=self.sync_since,
        )


class LocalConfig(_Model):
    # Names the local resources, as a stack name does in AWS.
    stack: str = Field(default="demo", pattern=r"^[a-z][a-z0-9-]{0,30}$")
    connections: tuple[LocalConnection, ...] = Field(min_length=1)
    ports: Ports
    aws: AwsConfig = AwsConfig()
    worker: WorkerConfig = WorkerConfig()
    # Seconds between reconcile runs; None keeps the schedule's own rate.
    reconcile_interval_s: float | None = Field(default=None, gt=0)
    failures: FailuresConfig = FailuresConfig()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"

    @model_validator(mode="after")
    def _connections_run_here(self) -> LocalConfig:
        seen: dict[str, str] = {}
        ids = [c.id for c in self.connections]
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        if repeated:
            raise ValueError(f"two connections share the id {', '.join(repeated)}")
        for connection in self.connections:
            for role, name in (("crm", connection.crm), ("accounting", connection.accounting)):
                try:
                    kind = vendor(name).kind
                    sandbox(name)
                except KeyError as exc:  # names the registered ones
                    # The message itself: str() of a plain KeyError is its repr, in quotes.
                    reason = exc.args[0] if exc.args else exc
                    raise ValueError(f"connection {connection.id!r}: {reason}") from None
                if kind != role:
                    raise ValueError(f"connection {connection.id!r}: {name} is not a {role}")
                # One sandbox per vendor posts its webhooks to one connection's route.
                if name in seen:
                    raise ValueError(
                        f"connections {seen[name]!r} and {connection.id!r} both use {name}; "
                        "locally each vendor sandbox serves one connection"
                    )
                seen[name] = connection.id
            try:  # a broken, unreadable or mismatched mapping stops here
                mapper_of(connection.connection())
            except (OSError, ValueError, MappingConfigError) as exc:
                raise ValueError(f"connection {connection.id!r}: {exc}") from None
        return self

    def vendors(self) -> list[str]:
        """Every vendor a connection uses, in connection order."""
        return [name for c in self.connections for name in (c.crm, c.accounting)]

    def connection_of(self, vendor_name: str) -> LocalConnection:
        return next(c for c in self.connections if vendor_name in (c.crm, c.accounting))

    def with_free_ports(self) -> LocalConfig:
        """The same config with every port picked by the OS (parallel tests, busy machines)."""
        return self.model_copy(update={"ports": Ports(api=0, moto=0)})

    def with_mapping(self, mapping_file: Path) -> LocalConfig:
        """The first connection alone, on this mapping file (a preset's variant)."""
        first = self.connections[0].model_copy(update={"mapping_file": mapping_file})
        return self.model_copy(update={"connections": (first,)})

    def with_pair(self, crm: str, accounting: str) -> LocalConfig:
        """One connection between ``crm`` and ``accounting``, with the CRM's services
        preset (``config/<crm>/services.yaml``): what ``crmsync demo --crm --accounting``
        runs."""
        first = self.connections[0]
        pair = LocalConnection(
            id=first.id,
            crm=crm,
            accounting=accounting,
            mapping_file=PRESETS / crm / "services.yaml",
        )
        return LocalConfig.model_validate({**self.model_dump(), "connections": [pair.model_dump()]})

    def write(self, path: Path) -> None:
        """This config as YAML that ``load`` reads back (mapping files by absolute path)."""
        path.write_text(yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False), "utf-8")

    @classmethod
    def load(cls, path: Path = DEFAULT_CONFIG) -> LocalConfig:
        """Read a YAML config; a relative ``mapping_file`` is relative to the config file."""
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise LocalConfigError(f"{path}: cannot read the local config: {exc}") from None
        except yaml.YAMLError as exc:
            raise LocalConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(data, dict):
            raise LocalConfigError(f"{path}: the top level must be a mapping")
        for connection in data.get("connections") or ():
            mapping = connection.get("mapping_file") if isinstance(connection, dict) else None
            if isinstance(mapping, str):
                connection["mapping_file"] = (path.parent / mapping).resolve()
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "\n".join(
                f"  {'.'.join(str(p) for p in error['loc']) or '(top level)'}: {error['msg']}"
                for error in exc.errors()
            )
            raise LocalConfigError(f"{path}: invalid local config\n{problems}") from None
