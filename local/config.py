"""The one local configuration: ports and the dummy credentials.

The same values seed the Secrets Manager secrets in moto and configure the vendor
sandboxes, so the real handlers authenticate against the sandboxes without any
real account. Nothing here is secret; ``local/local.yaml`` is committed.
"""

from __future__ import annotations

import errno
import socket
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infra.resources import DESCRIPTION, SecretSpec

DEFAULT_CONFIG = Path(__file__).resolve().with_name("local.yaml")
# Everything binds to loopback only: dummy credentials must never face a network.
LOOPBACK = "127.0.0.1"


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
    hubspot: int = Field(ge=0, le=65535)
    quickbooks: int = Field(ge=0, le=65535)


class AwsConfig(_Model):
    region: str = "us-east-1"
    access_key_id: str = "testing"
    secret_access_key: str = "testing"


class HubSpotLocal(_Model):
    access_token: str
    client_secret: str
    portal_id: int
    app_id: int


class QuickBooksLocal(_Model):
    client_id: str
    client_secret: str
    refresh_token: str
    realm_id: str
    verifier_token: str


class WorkerConfig(_Model):
    # Short long-polls keep Ctrl-C prompt; Lambda's poller uses 20 s.
    wait_time_s: int = Field(default=1, ge=0, le=20)
    batch_size: int = Field(default=10, ge=1, le=10)


class LocalConfig(_Model):
    connection_id: str = Field(default="demo", min_length=1, max_length=64)
    mapping_file: Path
    ports: Ports
    aws: AwsConfig = AwsConfig()
    worker: WorkerConfig = WorkerConfig()
    # Seconds between reconcile runs; None keeps the schedule's own rate.
    reconcile_interval_s: float | None = Field(default=None, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    hubspot: HubSpotLocal
    quickbooks: QuickBooksLocal

    @model_validator(mode="after")
    def _every_secret_key_has_a_value(self) -> LocalConfig:
        for spec in DESCRIPTION.secrets:
            self.secret_values(spec)
        return self

    def secret_values(self, spec: SecretSpec) -> dict[str, str]:
        """The dummy JSON the secret ``spec`` holds locally, exactly its declared keys."""
        vendors: dict[str, BaseModel] = {"hubspot": self.hubspot, "quickbooks": self.quickbooks}
        if spec.vendor not in vendors:
            raise ValueError(f"no local credentials for vendor {spec.vendor!r}")
        values = vendors[spec.vendor].model_dump()
        missing = [key for key in spec.keys if key not in values]
        if missing:
            raise ValueError(f"{spec.vendor}: no local value for secret key(s) {missing}")
        return {key: str(values[key]) for key in spec.keys}

    def with_free_ports(self) -> LocalConfig:
        """The same config with every port picked by the OS (parallel tests, busy machines)."""
        return self.model_copy(update={"ports": Ports(api=0, moto=0, hubspot=0, quickbooks=0)})

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
        mapping = data.get("mapping_file")
        if isinstance(mapping, str):
            data["mapping_file"] = (path.parent / mapping).resolve()
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "\n".join(
                f"  {'.'.join(str(p) for p in error['loc']) or '(top level)'}: {error['msg']}"
                for error in exc.errors()
            )
            raise LocalConfigError(f"{path}: invalid local config\n{problems}") from None
