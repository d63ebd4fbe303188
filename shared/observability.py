"""Logger, metrics and tracer, defined once for every function (powertools)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

SERVICE = "crmsync"

# At DEBUG these print whole requests and responses (secret values, OAuth tokens): never
# below INFO, whatever the log level, since no redaction filter knows every (rotating)
# secret; above it they follow the function's level (the runtime sets it before import).
_QUIETEST = max(logging.INFO, logging.getLogger().getEffectiveLevel())
for library in ("boto3", "botocore", "urllib3", "httpx", "httpcore"):
    logging.getLogger(library).setLevel(_QUIETEST)


class Untraced(BaseProvider, BaseSegment):
    """The tracer's provider, and its own segment, when tracing is off: powertools'
    default, the X-Ray SDK, takes ~100 ms to import, even to trace nothing."""

    @contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Iterator[Untraced]:
        yield self

    @asynccontextmanager
    async def in_subsegment_async(
        self, name: str | None = None, **kwargs: Any
    ) -> AsyncIterator[Untraced]:
        yield self

    def put_annotation(self, key: str, value: Any) -> None:
        pass

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        pass

    def patch(self, modules: Sequence[str]) -> None:
        pass

    def patch_all(self) -> None:
        pass

    def close(self, end_time: int | None = None) -> None:
        pass

    def add_subsegment(self, subsegment: Any) -> None:
        pass

    def remove_subsegment(self, subsegment: Any) -> None:
        pass

    def add_exception(self, exception: BaseException, stack: Any, remote: bool = False) -> None:
        pass


def _tracer() -> Tracer:
    """X-Ray's tracer when tracing is on (powertools' own rule: in Lambda, unless
    POWERTOOLS_TRACE_DISABLED), else the same decorators over ``Untraced``."""
    if Tracer._is_tracer_disabled():
        return Tracer(service=SERVICE, disabled=True, provider=Untraced())
    return Tracer(service=SERVICE)


logger = Logger(service=SERVICE)
metrics = Metrics(namespace="crmsync", service=SERVICE)
tracer = _tracer()
