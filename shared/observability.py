"""Logger, metrics and tracer, defined once for every function (powertools).

Besides powertools' ``metrics`` (one set of dimensions per invocation), ``metric_sets``
holds the metrics whose dimensions vary within an invocation: each connection's and
object type's outcomes and freshness (``EmfSyncMetrics``), each vendor's calls. Both
are written as CloudWatch embedded metric format (EMF) log lines when a handler
decorated with ``log_metrics`` returns.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar, cast

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.functions import is_metrics_disabled
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import (
    AmazonCloudWatchEMFProvider,
)
from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

if TYPE_CHECKING:
    from shared.models import ChangeEvent
    from shared.ports import Tally

SERVICE = "crmsync"
NAMESPACE = "crmsync"
# The dimensions and names of the metrics the dashboard reads (infra/constructs/dashboard.py).
CONNECTION = "Connection"
OBJECT_TYPE = "ObjectType"
VENDOR = "Vendor"
FRESHNESS = "Freshness"
VENDOR_CALLS = "VendorCalls"
RATE_LIMITED = "RateLimited"
DRIFT_KIND = "DriftKind"
DRIFT = "Drift"
# Also published per function alone (its ``service`` dimension): what the alarm watches.
DRIFT_PERSISTENT = "DriftPersistent"
F = TypeVar("F", bound=Callable[..., Any])

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
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = _tracer()


class MetricSets:
    """Metrics whose dimension values vary within one invocation: one EMF metric set
    per combination of values, all written at the invocation's end.

    Only kept while a handler's invocation collects them (``log_metrics``), and only
    when powertools' metrics are on: the operator's commands run the same connectors
    and must print nothing but their own output.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sets: dict[Any, AmazonCloudWatchEMFProvider] | None = None

    def add(
        self,
        name: str,
        unit: MetricUnit,
        value: float,
        dimensions: Mapping[str, str],
        *,
        rollup: Sequence[str] = (),
    ) -> None:
        """``rollup``: dimensions the metric is also aggregated by alone (a connection
        over all its object types), as a second dimension set of the same values."""
        key = (tuple(dimensions.items()), tuple(rollup))
        with self._lock:
            if self._sets is None:
                return
            metric_set = self._sets.get(key)
            if metric_set is None:
                metric_set = AmazonCloudWatchEMFProvider(
                    namespace=NAMESPACE, service=SERVICE, dimension_set=dict(dimensions)
                )
                if rollup:
                    metric_set.add_dimensions(service=SERVICE, **{d: dimensions[d] for d in rollup})
                self._sets[key] = metric_set
            metric_set.add_metric(name=name, unit=unit, value=value)

    @contextmanager
    def collected(self) -> Iterator[None]:
        """Keep what is added inside; write it on the way out, even after an error."""
        with self._lock:
            self._sets = None if is_metrics_disabled() else {}
        try:
            yield
        finally:
            with self._lock:
                sets, self._sets = self._sets or {}, None
            for metric_set in sets.values():
                metric_set.flush_metrics()


metric_sets = MetricSets()


def log_metrics(handler: F) -> F:
    """powertools' ``metrics.log_metrics``, with ``metric_sets`` collected during the
    invocation and written at its end."""
    logged = metrics.log_metrics(handler)

    @functools.wraps(handler)
    def measured(*args: Any, **kwargs: Any) -> Any:
        with metric_sets.collected():
            return logged(*args, **kwargs)

    return cast(F, measured)


class EmfSyncMetrics:
    """``shared.ports.SyncMetrics`` as CloudWatch metrics by connection and object type,
    and by connection alone."""

    def count(self, event: ChangeEvent, tally: Tally) -> None:
        self._add(event, tally.value, MetricUnit.Count, 1)

    def freshness(self, event: ChangeEvent, ms: float) -> None:
        self._add(event, FRESHNESS, MetricUnit.Milliseconds, ms)

    @staticmethod
    def _add(event: ChangeEvent, name: str, unit: MetricUnit, value: float) -> None:
        dimensions = {CONNECTION: event.connection_id, OBJECT_TYPE: event.object_type.value}
        metric_sets.add(name, unit, value, dimensions, rollup=(CONNECTION,))


class EmfDriftMetrics:
    """``shared.ports.DriftMetrics`` as CloudWatch metrics by connection and kind, and
    by connection alone; the persistent ones also summed over the invocation's
    connections, which one alarm can watch (an alarm takes no SEARCH)."""

    def drift(
        self, connection_id: str, found: Mapping[str, int], persistent: Mapping[str, int]
    ) -> None:
        for name, counts in ((DRIFT, found), (DRIFT_PERSISTENT, persistent)):
            for kind, count in counts.items():
                dimensions = {CONNECTION: connection_id, DRIFT_KIND: kind}
                metric_sets.add(name, MetricUnit.Count, count, dimensions, rollup=(CONNECTION,))
        metrics.add_metric(
            name=DRIFT_PERSISTENT, unit=MetricUnit.Count, value=sum(persistent.values())
        )


@contextmanager
def correlated(**keys: str) -> Iterator[None]:
    """Every log line written inside carries ``keys``, and none written after it: one
    event's ids never reach another's lines. Kept in a context variable, so events
    handled side by side in threads keep theirs apart as well."""
    logger.thread_safe_append_keys(**keys)
    try:
        yield
    finally:
        logger.thread_safe_remove_keys(keys)
