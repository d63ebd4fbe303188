"""QuickBooks ``POST /batch`` for customers and invoices (``BatchingTarget``).

What Intuit documents, cited as in connector.py (keys in docs/vendors/quickbooks.md):

* at most 30 items a request [Q6, Q8]; each item has a ``bId`` and an ``operation``
  with one entity object; the answer is one ``BatchItemResponse`` per item, keyed by
  ``bId``, a failed item carrying its own ``Fault`` in an overall 200 [Q8];
* items run one after another but do not see what earlier items of the same
  request created [Q14]: writes of one batch must not depend on each other;
* a batch request counts against the 500 requests/min per company ("including
  batch requests", [Q17]) and is throttled at 40 batch requests/min per company and
  app [Q6]; nothing Intuit publishes says each item counts as a request, so a batch
  draws one call from the 500/min and 10/s budgets and one from the 40/min one
  (``BATCH_CALL_LIMIT`` on the batch client, ``build_quickbooks``);
* a ``requestid`` on a batch is at most 36 characters and then each ``bId`` at
  most 10 [Q7]: bIds here are the item's index in its request ("0".."29").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError

from shared.batch import BatchResult, BatchWrite
from shared.connectors.quickbooks.connector import (
    BATCH_MAX_ITEMS,
    BATCH_REQUEST_ID_MAX,
    _entity,
    _error_for,
    _Fault,
    _fault_verdict,
    _Written,
    request_id,
)
from shared.errors import Permanent, RecordInvalid, Retryable

# The entity body of one write (``_customer_body`` / ``_invoice_body``); raises
# ``RecordInvalid`` for a record QuickBooks cannot take.
BodyFor = Callable[[BatchWrite], dict[str, Any]]
# Posts ``{"BatchItemRequest": items}`` with that requestid; returns the answer's JSON
# object, or raises the ``ConnectorError`` of a failed call.
SendBatch = Callable[[list[dict[str, Any]], str], dict[str, Any]]


def batch_upsert(
    writes: Sequence[BatchWrite], *, body_for: BodyFor, send: SendBatch
) -> list[BatchResult]:
    """Each write's result in input order, ``BATCH_MAX_ITEMS`` writes a request.

    A write whose record QuickBooks cannot take is its ``RecordInvalid`` and is not
    sent. A failed whole request raises; the requests before it stay written, and a
    retry with the same keys gets their answers again (same requestids).
    """
    results: list[BatchResult] = []
    for start in range(0, len(writes), BATCH_MAX_ITEMS):
        results.extend(_chunk(writes[start : start + BATCH_MAX_ITEMS], body_for, send))
    return results


def item(write: BatchWrite, body: dict[str, Any], bid: str) -> dict[str, Any]:
    """One ``BatchItemRequest``: a create, or a sparse update over ``existing`` [Q8]."""
    entity = _entity(write.object_type)
    if write.existing is None:
        return {"bId": bid, "operation": "create", entity: body}
    sparse = {**body, "Id": write.existing.id, "SyncToken": write.existing.version, "sparse": True}
    return {"bId": bid, "operation": "update", entity: sparse}


def batch_request_id(keys: Sequence[str]) -> str:
    """The requestid of one request, from its items' keys in order (≤36 chars [Q7]):
    the same writes give the same id, so a retried request is answered, not re-run."""
    return request_id("|".join(keys), BATCH_REQUEST_ID_MAX)


def _chunk(chunk: Sequence[BatchWrite], body_for: BodyFor, send: SendBatch) -> list[BatchResult]:
    results: dict[int, BatchResult] = {}
    items: list[dict[str, Any]] = []
    keys: list[str] = []
    for index, write in enumerate(chunk):
        try:
            body = body_for(write)
        except RecordInvalid as exc:
            results[index] = exc
            continue
        items.append(item(write, body, str(index)))
        keys.append(write.idempotency_key)
    if items:
        answer = send(items, batch_request_id(keys))
        answers = {
            str(entry.get("bId")): entry
            for entry in answer.get("BatchItemResponse") or []
            if isinstance(entry, dict)
        }
        for sent in items:
            index = int(sent["bId"])
            results[index] = _result(chunk[index], answers.get(sent["bId"]), index)
    return [results[index] for index in range(len(chunk))]


def _result(write: BatchWrite, answer: dict[str, Any] | None, index: int) -> BatchResult:
    """One item's answer: the written ref, or the error its Fault maps to.

    The Fault goes through ``_fault_verdict``/``_error_for``, so an item is refused
    with the class and code a single call would raise: ``Permanent`` with 6240
    (name taken) or 5010 (stale SyncToken) is for the caller to resolve through the
    single write (``upsert_customer``/``upsert_invoice``), which handles both.
    """
    entity = _entity(write.object_type)
    context = f"batch item {index} ({entity})"
    if answer is None:
        return Retryable(f"quickbooks {context}: no answer in the batch response")
    if answer.get("Fault") is not None:
        try:
            fault = _Fault.model_validate(answer["Fault"])
        except ValidationError:
            return Permanent(f"quickbooks {context}: unreadable Fault {answer['Fault']!r}")
        return _error_for(_fault_verdict(fault), context)
    try:
        return _Written.model_validate(answer[entity]).ref()
    except (KeyError, TypeError, ValidationError):
        return Permanent(f"quickbooks {context}: answered without a {entity} Id/SyncToken")
