"""Every deploy-time setting, read from the CDK context: ``cdk.json``'s ``"context"``
(which lists each one with its default) or ``npx cdk deploy -c key=value``.

A key of neither CDK nor this list stops the synth with the list of known keys, so a
typo is never silently ignored. Plain data: importing this module does not import CDK.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from shared.connectors.registry import vendors
from shared.connectors.spec import VendorSpec
from shared.settings import Settings

DEFAULT_STACK = "crmsync"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# The functions' settings an operator may tune per deployment; the rest name resources.
TUNABLE_SETTINGS = (
    "call_pacing_margin",
    "webhook_tolerance_s",
    "max_webhook_body_bytes",
    "idempotency_ttl_s",
    "audit_ttl_days",
    "reconcile_overlap_s",
)
ENVIRONMENT_SUFFIX = "_environment"
PRODUCTION = "production"
_STACK_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,63}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


class ContextError(ValueError):
    """A context value the deploy cannot use; the message says which and why."""


def context_defaults() -> dict[str, Any]:
    """Every key this app reads, with its default: what ``cdk.json`` lists."""
    return {
        "stack": DEFAULT_STACK,
        "alarm_email": "",
        "log_level": "INFO",
        **{name: Settings.model_fields[name].default for name in TUNABLE_SETTINGS},
        **{f"{spec.name}{ENVIRONMENT_SUFFIX}": PRODUCTION for spec in _choosable()},
    }


@dataclass(frozen=True)
class DeployContext:
    stack: str
    alarm_email: str | None
    log_level: str
    settings: dict[str, str]  # Settings field → value, for every function
    vendor_settings: dict[str, dict[str, str]]  # vendor → its settings for the environment

    @classmethod
    def read(cls, context: Mapping[str, Any]) -> DeployContext:
        known = context_defaults()
        unknown = sorted(key for key in context if key not in known and not _cdk_owned(key))
        if unknown:
            raise ContextError(
                f"unknown context {', '.join(unknown)}; crmsync reads {', '.join(known)}"
            )
        values = {**known, **{k: v for k, v in context.items() if k in known}}
        stack = str(values["stack"])
        if not _STACK_NAME.fullmatch(stack):
            raise ContextError(
                f"stack {stack!r} must be 1-64 letters, digits or hyphens, starting with a letter"
            )
        email = str(values["alarm_email"] or "") or None
        if email is not None and not _EMAIL.fullmatch(email):
            raise ContextError(f"alarm_email {email!r} is not an email address")
        level = str(values["log_level"]).upper()
        if level not in LOG_LEVELS:
            raise ContextError(f"log_level {level!r} is not one of {', '.join(LOG_LEVELS)}")
        tuned = {name: str(values[name]) for name in TUNABLE_SETTINGS}
        try:
            Settings.model_validate(tuned)
        except ValidationError as exc:
            problems = "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
            raise ContextError(problems) from None
        return cls(stack, email, level, tuned, _vendor_settings(values))


def _vendor_settings(values: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Each vendor's settings for its chosen environment (production: its defaults)."""
    chosen: dict[str, dict[str, str]] = {}
    for spec in _choosable():
        key = f"{spec.name}{ENVIRONMENT_SUFFIX}"
        try:
            settings = spec.environment_settings(str(values[key]))
        except ValueError as exc:
            raise ContextError(f"{key}: {exc}") from None
        if settings:
            chosen[spec.name] = settings
    return chosen


def _choosable() -> list[VendorSpec[Any]]:
    """The vendors with an environment besides production (e.g. a sandbox company)."""
    return [spec for spec in vendors() if set(spec.environments) - {PRODUCTION}]


def _cdk_owned(key: str) -> bool:
    """CDK's own keys (feature flags, ``aws:cdk:*``, the CLI's lookups and the notices
    it records in ``cdk.context.json``)."""
    return (
        key.startswith("@")
        or ":" in key
        or key.startswith("aws-cdk")
        or key in ("acknowledged-issue-numbers", "notices")
    )
