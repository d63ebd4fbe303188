"""The environment a function runs with, ``CRMSYNC_*`` and powertools' service name, in
AWS and in the local stack.

``Settings`` reads one variable per field; the CDK stack and ``local/`` both build
that environment here, so a renamed setting or a new table cannot reach one world
and not the other. Plain data: importing this module does not import CDK, and the
values may be CDK tokens.
"""

from __future__ import annotations

from collections.abc import Mapping

from infra.resources import DESCRIPTION, ServiceDescription
from shared.connectors.registry import vendor
from shared.settings import Settings

# Powertools' service name: the logs, metrics and traces of every function carry it.
SERVICE_NAME = "crmsync"


def settings_env_name(setting: str) -> str:
    """The environment variable ``Settings`` reads ``setting`` from."""
    if setting not in Settings.model_fields:
        raise ValueError(f"{setting!r} is not a field of shared.settings.Settings")
    return f"{Settings.model_config.get('env_prefix', '')}{setting.upper()}"


def settings_environment(values: Mapping[str, str]) -> dict[str, str]:
    """``{Settings field: value}`` → ``{CRMSYNC_FIELD: value}``; unknown fields raise."""
    return {settings_env_name(setting): value for setting, value in values.items()}


def vendor_environment(values: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """``{vendor: {field: value}}`` → the ``CRMSYNC_<VENDOR>_<FIELD>`` variables its
    connector's settings read."""
    return {
        f"{vendor(name).env_prefix}{field.upper()}": value
        for name, fields in values.items()
        for field, value in fields.items()
    }


def function_environment(
    values: Mapping[str, str], vendors: Mapping[str, Mapping[str, str]] | None = None
) -> dict[str, str]:
    """What every function runs with: ``settings_environment(values)``, the vendors'
    settings and powertools' service name."""
    return {
        **settings_environment(values),
        **vendor_environment(vendors or {}),
        "POWERTOOLS_SERVICE_NAME": SERVICE_NAME,
    }


def resource_settings(
    *,
    tables: Mapping[str, str],
    queues: Mapping[str, str],
    dead_letters: Mapping[str, str] | None = None,
    description: ServiceDescription = DESCRIPTION,
) -> dict[str, str]:
    """Physical names keyed by spec id (queue URLs for queues and, keyed by the id of
    the queue they belong to, for dead-letter queues) → ``{Settings field: value}``.

    Ids the description does not declare raise, so a typo cannot silently leave a
    function on a default name. Ids left out are left out (a function may need few).
    """
    settings: dict[str, str] = {}
    for queue_id, url in (dead_letters or {}).items():
        spec = description.queue(queue_id)
        if spec.dead_letter_setting is None or spec.max_failed_attempts is None:
            raise ValueError(f"queue {queue_id!r} declares no dead-letter setting")
        settings[spec.dead_letter_setting] = url
        settings["max_failed_attempts"] = str(spec.max_failed_attempts)
        settings["retry_delay_s"] = str(spec.retry_delay_s)
    for kind, given, specs in (
        ("table", tables, {t.id: t.setting for t in description.tables}),
        ("queue", queues, {q.id: q.setting for q in description.queues}),
    ):
        for spec_id, value in given.items():
            if spec_id not in specs:
                raise ValueError(f"no {kind} {spec_id!r} in the resource description")
            settings[specs[spec_id]] = value
    return settings
