"""Webhook handler, in process: requests/s and p50/p99 per request.

Method: the real ``functions.webhook.handler.handler`` (powertools HTTP API
resolver, HubSpot v3 signature check, pydantic normalization, Logger/Metrics/
Tracer decorators) fed faithful API Gateway v2 events built by the local API
adapter. Enqueueing goes to the in-memory FIFO queue: moto's SQS costs O(queue
length) per call and would measure moto, not us, so the
figure excludes the SQS round trip (~10–30 ms in AWS). Metrics output is
captured, not printed, and the log level is ERROR so rejections are not logged
during the timed loop.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import time
from typing import Any

from werkzeug.test import EnvironBuilder

from bench.bench_mapping import DEFAULT_MAPPING
from bench.common import report, time_calls
from local.apigw import build_event
from local.memory import MemoryConnections, MemoryQueue
from local.sandboxes.hubspot import sign_v3
from shared.connectors.hubspot.connector import HubSpotWebhooks
from shared.models import Connection
from shared.sync.ingest import WebhookIngest

SECRET = "bench-hubspot-app-secret"
BASE = "https://abc123.execute-api.us-east-1.amazonaws.com"
N = 3_000


def hubspot_body(events: int, start_id: int) -> str:
    return json.dumps(
        [
            {
                "eventId": start_id + i,
                "subscriptionId": 7,
                "portalId": 62515,
                "appId": 1160452,
                "occurredAt": 1_795_000_000_000 + i,
                "subscriptionType": "contact.propertyChange",
                "attemptNumber": 0,
                "objectId": 1000 + i,
                "propertyName": "email",
                "propertyValue": "a@example.com",
                "changeSource": "CRM_UI",
            }
            for i in range(events)
        ]
    )


def api_event(body: str, *, signature: str | None = None) -> dict[str, Any]:
    timestamp = int(time.time() * 1000)
    url = f"{BASE}/webhooks/hubspot/bench"
    headers = {
        "Content-Type": "application/json",
        "X-HubSpot-Request-Timestamp": str(timestamp),
        "X-HubSpot-Signature-v3": signature or sign_v3(SECRET, "POST", url, body, timestamp),
        "Host": "abc123.execute-api.us-east-1.amazonaws.com",
    }
    request = EnvironBuilder(
        path="/webhooks/hubspot/bench", method="POST", data=body, headers=headers
    ).get_request()
    return build_event(
        request,
        "POST /webhooks/hubspot/{connection}",
        {"connection": "bench"},
        request_id="bench",
        body=body.encode(),
    )


class Context:
    function_name = "crmsync-webhook"
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:crmsync-webhook"
    memory_limit_in_mb = 512
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def main() -> None:
    os.environ.update(
        {
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "CRMSYNC_PUBLIC_BASE_URL": BASE,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_LOG_LEVEL": "ERROR",
        }
    )
    module = importlib.import_module("functions.webhook.handler")
    queue = MemoryQueue()
    bench = Connection(
        id="bench",
        crm="hubspot",
        accounting="quickbooks",
        mapping_name=DEFAULT_MAPPING.name,
        mapping=DEFAULT_MAPPING.read_text(),
    )
    module.ingest = WebhookIngest(  # the in-memory queue instead of SQS (see docstring)
        connections=MemoryConnections([bench]),
        receiver_for=lambda vendor, connection_id: HubSpotWebhooks(lambda: SECRET),
        queue=queue,
        max_body_bytes=1_048_576,
    )
    context = Context()
    print("webhook handler in process (HubSpot v3-signed deliveries)")
    cases = [
        ("1 event per delivery → 200", [api_event(hubspot_body(1, i * 1000)) for i in range(64)]),
        (
            "100 events per delivery → 200",
            [api_event(hubspot_body(100, i * 1000)) for i in range(64)],
        ),
        ("bad signature → 401", [api_event(hubspot_body(1, 0), signature="AAAA")]),
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        results = []
        for name, events in cases:
            cursor = iter(range(10**9))

            def call(events: list[dict[str, Any]] = events, cursor: Any = cursor) -> None:
                module.handler(events[next(cursor) % len(events)], context)

            results.append((name, time_calls(call, n=N if "100" not in name else N // 10)))
    for name, samples in results:
        report(name, samples)
    print(f"events on the in-memory queue after the run: {len(queue)}")


if __name__ == "__main__":
    main()
