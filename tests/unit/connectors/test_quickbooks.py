"""The QuickBooks Online connector against scripted Intuit answers (respx, no network)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

from local.memory import MemoryLock, MemorySecretStore
from local.sandboxes import quickbooks_query
from shared.batch import BatchingTarget, BatchWrite
from shared.connectors.auth import SecretBearer
from shared.connectors.http import ApiClient, ResponseAction
from shared.connectors.quickbooks.connector import (
    BATCH_CALL_LIMIT,
    BATCH_REQUEST_ID_MAX,
    CALL_LIMITS,
    REQUEST_ID_MAX,
    QuickBooksAccounting,
    QuickBooksWebhooks,
    build_quickbooks,
    classify,
    money,
    quickbooks_webhooks,
    quote,
    request_id,
    select,
)
from shared.errors import (
    AlreadyExists,
    AuthFailed,
    NotFound,
    Permanent,
    RateLimited,
    RecordInvalid,
    Retryable,
    WebhookRejected,
)
from shared.models import (
    Address,
    ChangeKind,
    Invoice,
    InvoiceLine,
    ObjectType,
    Party,
    PartyKind,
)
from shared.money import json_number
from shared.ports import InboundWebhook, TargetRef

REALM = "9130350000000001"
BASE = f"https://qbo.test/v3/company/{REALM}"
TOKEN_URL = "https://oauth.test/oauth2/v1/tokens/bearer"
SECRET_ID = "crmsync/test/quickbooks"
STAMP = "2026-01-05T10:00:00.000-08:00"


class RecordingBudget:
    """Grants every call and remembers which budget keys were charged."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def acquire(self, key: str, *, limit: int, per_s: float, max_wait_s: float) -> float:
        self.keys.append(f"{key}:{limit}/{per_s:g}s")  # a budget is a key at a rate
        return 0.0


@pytest.fixture
def router() -> respx.MockRouter:
    return respx.MockRouter(assert_all_called=False, base_url=BASE)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def api(router: respx.MockRouter, sleeps: list[float]) -> ApiClient:
    secrets = MemorySecretStore({SECRET_ID: {"access_token": "live-token"}})
    return ApiClient(
        vendor="quickbooks",
        base_url=BASE,
        auth=SecretBearer(secrets, SECRET_ID),
        classify=classify,
        limits=CALL_LIMITS,
        budget=RecordingBudget(),
        budget_key=f"quickbooks:{REALM}",
        sleep=sleeps.append,
        transport=httpx.MockTransport(router.handler),
    )


@pytest.fixture
def qbo(api: ApiClient) -> QuickBooksAccounting:
    return QuickBooksAccounting(api, realm_id=REALM)


# --- scripted answers ---------------------------------------------------------------


def rows(entity: str, *objects: dict[str, Any]) -> httpx.Response:
    found = {entity: list(objects), "startPosition": 1, "maxResults": len(objects)}
    return httpx.Response(200, json={"QueryResponse": found if objects else {}, "time": STAMP})


def answer(entity: str, **fields: Any) -> httpx.Response:
    return httpx.Response(200, json={entity: fields, "time": STAMP})


def fault(status: int, code: str, message: str = "", detail: str = "") -> httpx.Response:
    error = {"Message": message, "Detail": detail, "code": code, "element": ""}
    body = {"Fault": {"Error": [error], "type": "ValidationFault"}, "time": STAMP}
    return httpx.Response(status, json=body)


def body_of(call: Any) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(call.request.content)
    return result


def queries(route: respx.Route) -> list[str]:
    return [call.request.url.params["query"] for call in route.calls]


# --- query language --------------------------------------------------------------------


def test_given_a_name_with_quote_and_backslash_when_quoted_then_both_are_escaped() -> None:
    assert quote("Amy's \\ Shop") == "'Amy\\'s \\\\ Shop'"


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_given_any_text_when_selected_by_then_the_query_language_reads_it_back(text: str) -> None:
    query = quickbooks_query.parse(select("Customer", {"Active": True, "DisplayName": text}))

    assert [(c.field, c.values) for c in query.where] == [
        ("Active", (True,)),
        ("DisplayName", (text,)),
    ]


def test_given_a_window_when_listing_invoices_falling_due_then_one_query_of_due_date_and_balance(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    route = router.get("/query").mock(
        return_value=rows(
            "Invoice", {"Id": "7", "DueDate": "2031-03-05", "CustomerRef": {"value": "58"}}
        )
    )

    changes = list(qbo.falling_due(date(2031, 3, 1), date(2031, 4, 1)))

    assert [(c.object_type, c.target_id, c.customer_id) for c in changes] == [
        (ObjectType.INVOICE, "7", "58")
    ]
    assert queries(route) == [
        "SELECT * FROM Invoice WHERE DueDate >= '2031-03-01' AND DueDate < '2031-04-01'"
        " AND Balance > '0' STARTPOSITION 1 MAXRESULTS 1000"
    ]


# --- finding --------------------------------------------------------------------------


def test_given_an_email_match_when_finding_a_customer_then_the_email_query_alone_answers(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    route = router.get("/query").mock(
        return_value=rows("Customer", {"Id": "58", "SyncToken": "3", "DisplayName": "X"})
    )

    found = qbo.find_customer(email="o'neil@example.com", display_name="O'Neil Ltd")

    assert found == TargetRef(id="58", version="3")
    assert queries(route) == [
        "SELECT * FROM Customer WHERE Active = true AND PrimaryEmailAddr = 'o\\'neil@example.com'"
        " STARTPOSITION 1 MAXRESULTS 1"
    ]
    assert route.calls.last.request.url.params["minorversion"] == "75"


def test_given_no_email_match_when_finding_a_customer_then_the_display_name_is_tried(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    route = router.get("/query").mock(
        side_effect=[rows("Customer"), rows("Customer", {"Id": "7", "SyncToken": "0"})]
    )

    found = qbo.find_customer(email="new@example.com", display_name="O'Neil Ltd")

    assert found == TargetRef(id="7", version="0")
    assert "PrimaryEmailAddr = 'new@example.com'" in queries(route)[0]
    assert "Active = true AND DisplayName = 'O\\'Neil Ltd'" in queries(route)[1]


def test_given_only_an_email_when_finding_a_customer_then_one_query(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    # The engine leaves the name out: a create under a taken name finds its holder.
    route = router.get("/query").mock(return_value=rows("Customer"))

    assert qbo.find_customer(email="nobody@example.com", display_name=None) is None
    assert qbo.find_customer(email=None, display_name=None) is None
    assert len(route.calls) == 1


def test_given_items_when_found_for_many_lines_then_the_item_list_is_read_once(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    route = router.get("/query").mock(
        return_value=rows(
            "Item",
            {"Id": "12", "SyncToken": "1", "Name": "Hours", "Sku": "HR-1"},
            {"Id": "13", "SyncToken": "0", "Name": "Design"},
        )
    )

    assert qbo.find_item(name="Anything", sku="hr-1") == "12"  # SKU first, any case
    assert qbo.find_item(name="design", sku="NO-SUCH") == "13"  # then the name
    assert qbo.find_item(name="Hours", sku=None) == "12"
    assert queries(route) == [
        "SELECT * FROM Item WHERE Active = true STARTPOSITION 1 MAXRESULTS 1000"
    ]


def test_given_an_invoice_refused_when_finding_items_again_then_the_list_is_read_anew(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    items = router.get("/query").mock(
        return_value=rows("Item", {"Id": "12", "SyncToken": "1", "Name": "Hours"})
    )
    router.post("/invoice").mock(return_value=fault(400, "6000", "item is inactive"))
    line = InvoiceLine(
        name="Hours", item_ref=qbo.find_item(name="Hours", sku=None), quantity=1, unit_price=1
    )

    with pytest.raises(Permanent):
        qbo.upsert_invoice(
            Invoice(customer_ref="1", currency="USD", lines=[line]),
            existing=None,
            idempotency_key="k",
        )
    qbo.find_item(name="Hours", sku=None)

    assert len(items.calls) == 2


def test_given_terms_when_found_twice_then_the_term_list_is_read_once(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    route = router.get("/query").mock(
        return_value=rows(
            "Term",
            {"Id": "3", "SyncToken": "0", "Name": "Net 30", "Type": "STANDARD", "DueDays": 30},
            {"Id": "9", "SyncToken": "0", "Name": "10th of month", "Type": "DATE_DRIVEN"},
        )
    )

    net30 = qbo.find_terms("net 30")
    again = qbo.find_terms("Net 30")

    assert net30 is not None and net30 == again
    assert (net30.id, net30.name, net30.due_days) == ("3", "Net 30", 30)
    assert qbo.find_terms("10th of month") is None  # date-driven: no day count
    assert len(route.calls) == 1
    assert "MAXRESULTS 1000" in queries(route)[0]


def test_given_a_doc_number_when_finding_an_invoice_then_its_ref_or_none(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    route = router.get("/query").mock(
        side_effect=[
            rows("Invoice", {"Id": "130", "SyncToken": "4", "DocNumber": "HS-77"}),
            rows("Invoice"),
        ]
    )

    assert qbo.find_invoice("HS-77") == TargetRef(id="130", version="4")
    assert qbo.find_invoice("O'Brien-1") is None
    assert queries(route) == [
        "SELECT * FROM Invoice WHERE DocNumber = 'HS-77' STARTPOSITION 1 MAXRESULTS 1",
        "SELECT * FROM Invoice WHERE DocNumber = 'O\\'Brien-1' STARTPOSITION 1 MAXRESULTS 1",
    ]


def test_given_a_gone_record_when_reading_current_then_none_for_610_and_404(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    router.get("/customer/1").mock(return_value=answer("Customer", Id="1", SyncToken="4"))
    router.get("/customer/2").mock(return_value=fault(400, "610", "Object Not Found"))
    router.get("/invoice/3").mock(return_value=httpx.Response(404))

    assert qbo.current(ObjectType.CUSTOMER, "1") == TargetRef(id="1", version="4")
    assert qbo.current(ObjectType.CUSTOMER, "2") is None
    assert qbo.current(ObjectType.INVOICE, "3") is None
    with pytest.raises(ValueError, match="deal"):
        qbo.current(ObjectType.DEAL, "1")


# --- customers ---------------------------------------------------------------------------


def test_given_a_party_when_created_then_only_its_set_fields_are_sent_with_a_requestid(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    route = router.post("/customer").mock(return_value=answer("Customer", Id="61", SyncToken="0"))
    party = Party(
        kind=PartyKind.COMPANY,
        display_name="Acme Ltd",
        email="ap@acme.test",
        phone="+1 555 0100",
        currency="USD",
        billing_address=Address(line1="1 Main St", city="Springfield", postal_code="01101"),
    )

    ref = qbo.upsert_customer(party, existing=None, idempotency_key="hubspot:company:9:v1")

    assert ref == TargetRef(id="61", version="0")
    assert body_of(route.calls.last) == {
        "DisplayName": "Acme Ltd",
        "PrimaryEmailAddr": {"Address": "ap@acme.test"},
        "PrimaryPhone": {"FreeFormNumber": "+1 555 0100"},
        "CurrencyRef": {"value": "USD"},
        "BillAddr": {"Line1": "1 Main St", "City": "Springfield", "PostalCode": "01101"},
    }
    params = route.calls.last.request.url.params
    assert params["requestid"] == "hubspot:company:9:v1"
    assert params["minorversion"] == "75"
    assert route.calls.last.request.headers["content-type"] == "application/json"


def test_given_an_existing_customer_when_updated_then_a_sparse_update_carries_its_synctoken(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    route = router.post("/customer").mock(return_value=answer("Customer", Id="61", SyncToken="5"))
    party = Party(kind=PartyKind.PERSON, display_name="Ann Lee", given_name="Ann", email=None)

    ref = qbo.upsert_customer(party, existing=TargetRef(id="61", version="4"), idempotency_key="k1")

    assert ref == TargetRef(id="61", version="5")
    # email was set to None: not written (a cleared CRM field leaves QuickBooks as is);
    # family_name etc. were never set: not written either.
    assert body_of(route.calls.last) == {
        "Id": "61",
        "SyncToken": "4",
        "sparse": True,
        "DisplayName": "Ann Lee",
        "GivenName": "Ann",
    }


def test_given_payment_terms_by_name_when_writing_a_customer_then_the_term_id_is_referenced(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    router.get("/query").mock(
        return_value=rows("Term", {"Id": "3", "SyncToken": "0", "Name": "Net 30", "DueDays": 30})
    )
    route = router.post("/customer").mock(return_value=answer("Customer", Id="2", SyncToken="0"))

    qbo.upsert_customer(
        Party(kind=PartyKind.COMPANY, display_name="A", payment_terms="Net 30"),
        existing=None,
        idempotency_key="k",
    )
    with pytest.raises(RecordInvalid) as invalid:
        qbo.upsert_customer(
            Party(kind=PartyKind.COMPANY, display_name="B", payment_terms="Net 45"),
            existing=None,
            idempotency_key="k2",
        )

    assert body_of(route.calls.last)["SalesTermRef"] == {"value": "3"}
    assert invalid.value.violations[0].field == "payment_terms"
    assert len(route.calls) == 1


def test_given_keys_when_deriving_requestids_then_short_ones_pass_and_long_ones_hash_down() -> None:
    long_key = "hubspot:deal:123456789012:line_items:" + "x" * 80

    assert request_id("hubspot:deal:1:v17") == "hubspot:deal:1:v17"
    assert len(request_id(long_key)) == REQUEST_ID_MAX
    assert request_id(long_key) == request_id(long_key)
    assert request_id(long_key) != request_id(long_key + "y")
    assert len(request_id(long_key, BATCH_REQUEST_ID_MAX)) == BATCH_REQUEST_ID_MAX


def test_given_a_long_key_when_writing_then_the_requestid_sent_is_at_most_50_chars(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    route = router.post("/customer").mock(return_value=answer("Customer", Id="1", SyncToken="0"))
    key = "connection-with-a-long-name:hubspot:contact:987654321:1767225600000"

    qbo.upsert_customer(
        Party(kind=PartyKind.PERSON, display_name="A"), existing=None, idempotency_key=key
    )
    qbo.upsert_customer(
        Party(kind=PartyKind.PERSON, display_name="A"), existing=None, idempotency_key=key
    )

    sent = [call.request.url.params["requestid"] for call in route.calls]
    assert len(sent[0]) <= REQUEST_ID_MAX
    assert sent[0] == sent[1]


def test_given_a_stale_synctoken_when_updating_then_it_rereads_and_retries_once(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    write = router.post("/customer").mock(
        side_effect=[
            fault(400, "5010", "Stale Object Error"),
            answer("Customer", Id="61", SyncToken="8"),
        ]
    )
    read = router.get("/customer/61").mock(return_value=answer("Customer", Id="61", SyncToken="7"))

    ref = qbo.upsert_customer(
        Party(kind=PartyKind.PERSON, display_name="Ann"),
        existing=TargetRef(id="61", version="4"),
        idempotency_key="key-1",
    )

    assert ref == TargetRef(id="61", version="8")
    assert read.call_count == 1
    assert [body_of(c)["SyncToken"] for c in write.calls] == ["4", "7"]
    first, second = (c.request.url.params["requestid"] for c in write.calls)
    assert first == "key-1" and second != first  # the first id would replay the 5010


def test_given_stale_twice_when_updating_then_a_retryable_error_sends_it_back_later(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    router.post("/invoice").mock(return_value=fault(400, "5010", "Stale Object Error"))
    router.get("/invoice/5").mock(return_value=answer("Invoice", Id="5", SyncToken="2"))

    with pytest.raises(Retryable) as raised:
        qbo.upsert_invoice(invoice(), existing=TargetRef(id="5", version="1"), idempotency_key="k")

    assert raised.value.code == "5010"


def test_given_a_taken_display_name_when_creating_then_its_holder_is_named_not_written(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    write = router.post("/customer").mock(
        return_value=fault(400, "6240", "Duplicate Name Exists Error")
    )
    route = router.get("/query").mock(return_value=rows("Customer", {"Id": "3", "SyncToken": "2"}))

    with pytest.raises(AlreadyExists) as taken:
        qbo.upsert_customer(
            Party(kind=PartyKind.COMPANY, display_name="Cool Cars", email="ap@cool.test"),
            existing=None,
            idempotency_key="k",
        )

    assert (taken.value.holder, taken.value.rule) == (
        TargetRef(id="3", version="2"),
        "display_name",
    )
    assert "DisplayName = 'Cool Cars'" in queries(route)[0]
    assert len(write.calls) == 1, "the engine decides whether the holder may be taken"


def test_given_a_taken_doc_number_when_creating_an_invoice_then_its_holder_is_named(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    router.post("/invoice").mock(
        return_value=fault(
            400,
            "6140",
            "Duplicate Document Number Error",
            "Duplicate Document Number Error : You must specify a different number. This "
            "number has already been used. DocNumber=HS-9 is assigned to TxnType=Invoice "
            "with TxnId=45",
        )
    )
    router.get("/invoice/45").mock(return_value=answer("Invoice", Id="45", SyncToken="4"))
    line = InvoiceLine(name="Hours", item_ref="1", quantity=1, unit_price=1)

    with pytest.raises(AlreadyExists) as taken:
        qbo.upsert_invoice(
            Invoice(customer_ref="1", currency="USD", lines=[line], doc_number="HS-9"),
            existing=None,
            idempotency_key="k",
        )

    assert (taken.value.holder, taken.value.rule) == (TargetRef(id="45", version="4"), "doc_number")


def test_given_a_name_held_by_no_active_customer_when_creating_then_the_6240_stands(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    router.post("/customer").mock(return_value=fault(400, "6240", "Duplicate Name Exists Error"))
    router.get("/query").mock(return_value=rows("Customer"))

    with pytest.raises(Permanent) as raised:
        qbo.upsert_customer(
            Party(kind=PartyKind.COMPANY, display_name="A Vendor"),
            existing=None,
            idempotency_key="k",
        )

    assert raised.value.code == "6240"


# --- how answers are read -----------------------------------------------------------------


def test_given_a_fault_inside_http_200_when_writing_then_it_is_permanent_with_its_code(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    router.post("/customer").mock(
        return_value=fault(200, "2020", "Required param missing", "Required parameter Name")
    )

    with pytest.raises(Permanent) as raised:
        qbo.upsert_customer(
            Party(kind=PartyKind.PERSON, display_name="A"), existing=None, idempotency_key="k"
        )

    assert raised.value.code == "2020"
    assert "Required parameter Name" in str(raised.value)


def test_given_429_with_retry_after_when_calling_then_it_waits_that_long_and_succeeds(
    router: respx.MockRouter, qbo: QuickBooksAccounting, sleeps: list[float]
) -> None:
    throttled = fault(429, "3001", "message=ThrottleExceeded; errorCode=003001")
    throttled.headers["Retry-After"] = "2"
    router.get("/query").mock(
        side_effect=[throttled, rows("Item", {"Id": "4", "SyncToken": "0", "Name": "Hours"})]
    )

    assert qbo.find_item(name="Hours", sku=None) == "4"
    assert sleeps == [2.0]


def test_given_429_without_retry_after_when_calling_then_the_message_waits_intuits_60s() -> None:
    verdict = classify(fault(429, "3001", "message=ThrottleExceeded"))
    in_200 = classify(fault(200, "3001", "message=ThrottleExceeded"))

    assert verdict.action is ResponseAction.RATE_LIMITED and verdict.retry_after_s == 60.0
    assert in_200.action is ResponseAction.RATE_LIMITED


def test_given_429_without_retry_after_when_writing_then_rate_limited_is_raised_not_slept(
    router: respx.MockRouter, qbo: QuickBooksAccounting, sleeps: list[float]
) -> None:
    router.post("/customer").mock(return_value=httpx.Response(429, text="<html>slow</html>"))

    with pytest.raises(RateLimited) as raised:
        qbo.upsert_customer(
            Party(kind=PartyKind.PERSON, display_name="A"), existing=None, idempotency_key="k"
        )

    assert raised.value.retry_after_s == 60.0
    assert sleeps == []


def test_given_a_503_when_calling_then_it_is_retried_and_succeeds(
    router: respx.MockRouter, qbo: QuickBooksAccounting, sleeps: list[float]
) -> None:
    route = router.get("/customer/1").mock(
        side_effect=[httpx.Response(503), answer("Customer", Id="1", SyncToken="0")]
    )

    assert qbo.current(ObjectType.CUSTOMER, "1") == TargetRef(id="1", version="0")
    assert route.call_count == 2 and len(sleeps) == 1


@pytest.mark.parametrize(
    ("response", "action", "code"),
    [
        (fault(400, "6240"), ResponseAction.FAIL, "6240"),
        (fault(400, "5010"), ResponseAction.FAIL, "5010"),
        (fault(400, "610"), ResponseAction.NOT_FOUND, "610"),
        (fault(500, "10000"), ResponseAction.RETRY, None),
        (httpx.Response(502, text="<html>bad gateway</html>"), ResponseAction.RETRY, None),
        (httpx.Response(403, text="forbidden"), ResponseAction.FAIL, "403"),
        (httpx.Response(200, json={"Customer": {"Id": "1"}}), ResponseAction.SUCCESS, None),
    ],
)
def test_given_an_answer_when_classified_then_the_action_and_code_follow_intuits_codes(
    response: httpx.Response, action: ResponseAction, code: str | None
) -> None:
    verdict = classify(response)

    assert (verdict.action, verdict.code) == (action, code)


def test_given_a_lowercase_401_fault_when_classified_then_auth_fails_with_its_code() -> None:
    body = {
        "fault": {
            "error": [
                {"message": "message=AuthenticationFailed; errorCode=003200", "code": "3200"}
            ],
            "type": "AUTHENTICATION",
        }
    }

    verdict = classify(httpx.Response(401, json=body))

    assert (verdict.action, verdict.code) == (ResponseAction.AUTH_FAILED, "3200")
    assert "AuthenticationFailed" in verdict.message


# --- invoices ------------------------------------------------------------------------------


def invoice(**overrides: Any) -> Invoice:
    fields: dict[str, Any] = {
        "customer_ref": "61",
        "currency": "USD",
        "lines": [
            InvoiceLine(
                name="Design",
                item_ref="3",
                description="Design",
                quantity=Decimal("3"),
                unit_price=Decimal("19.99"),
                tax_code="TAX",
            ),
            InvoiceLine(
                name="Hours", item_ref="2", quantity=Decimal("1.5"), unit_price=Decimal("0.10")
            ),
        ],
        **overrides,
    }
    return Invoice(**fields)


NET_30 = rows(
    "Term", {"Id": "3", "SyncToken": "0", "Name": "Net 30", "Type": "STANDARD", "DueDays": 30}
)


@pytest.mark.parametrize(
    ("tax_code", "written"), [("taxable", "TAX"), ("exempt", "NON"), ("CA-SALES", "CA-SALES")]
)
def test_given_a_neutral_tax_code_when_written_then_it_is_quickbooks_own(
    router: respx.MockRouter, qbo: QuickBooksAccounting, tax_code: str, written: str
) -> None:
    route = router.post("/invoice").mock(return_value=answer("Invoice", Id="131", SyncToken="0"))
    first = invoice().lines[0].model_copy(update={"tax_code": tax_code})

    qbo.upsert_invoice(invoice(lines=[first]), existing=None, idempotency_key="k-tax")

    [line, *_] = body_of(route.calls.last)["Line"]
    assert line["SalesItemLineDetail"]["TaxCodeRef"] == {"value": written}


def test_given_an_invoice_when_created_then_lines_amounts_discount_and_terms_are_exact(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    router.get("/query").mock(return_value=NET_30)
    route = router.post("/invoice").mock(return_value=answer("Invoice", Id="130", SyncToken="0"))

    first, second = invoice().lines
    ref = qbo.upsert_invoice(
        invoice(
            lines=[first, second.model_copy(update={"discount_amount": Decimal("0.05")})],
            txn_date=date(2026, 1, 5),
            payment_terms="Net 30",
            doc_number="D-1001",
            memo="Won in Q1",
        ),
        existing=None,
        idempotency_key="hubspot:deal:77:v1",
    )

    assert ref == TargetRef(id="130", version="0")
    raw = route.calls.last.request.content.decode()
    assert '"Amount":59.97' in raw and '"Amount":0.15' in raw  # Qty × UnitPrice, no float noise
    assert body_of(route.calls.last) == {
        "CustomerRef": {"value": "61"},
        "CurrencyRef": {"value": "USD"},
        "TxnDate": "2026-01-05",
        "DueDate": "2026-02-04",  # Net 30 from the transaction date
        "SalesTermRef": {"value": "3"},
        "DocNumber": "D-1001",
        "PrivateNote": "Won in Q1",
        "Line": [
            {
                "Amount": 59.97,
                "DetailType": "SalesItemLineDetail",
                "Description": "Design",
                "SalesItemLineDetail": {
                    "ItemRef": {"value": "3"},
                    "Qty": 3,
                    "UnitPrice": 19.99,
                    "TaxCodeRef": {"value": "TAX"},
                },
            },
            {
                "Amount": 0.15,
                "DetailType": "SalesItemLineDetail",
                "SalesItemLineDetail": {"ItemRef": {"value": "2"}, "Qty": 1.5, "UnitPrice": 0.1},
            },
            {
                "Amount": 0.05,  # QuickBooks has no line discount: the lines' discounts
                "DetailType": "DiscountLineDetail",
                "DiscountLineDetail": {"PercentBased": False},
            },
        ],
    }
    assert route.calls.last.request.url.params["requestid"] == "hubspot:deal:77:v1"


def test_given_an_existing_invoice_when_updated_then_sparse_with_synctoken_and_every_line(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    route = router.post("/invoice").mock(return_value=answer("Invoice", Id="130", SyncToken="3"))

    qbo.upsert_invoice(invoice(), existing=TargetRef(id="130", version="2"), idempotency_key="k")

    sent = body_of(route.calls.last)
    assert (sent["Id"], sent["SyncToken"], sent["sparse"]) == ("130", "2", True)
    assert len(sent["Line"]) == 2  # no discount: no discount line; lines replace wholesale
    assert "DueDate" not in sent and "PrivateNote" not in sent


def test_given_line_amounts_past_the_currencys_precision_when_invoiced_then_rounded_half_up(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    route = router.post("/invoice").mock(return_value=answer("Invoice", Id="1", SyncToken="0"))
    odd = InvoiceLine(
        name="Design",
        item_ref="3",
        quantity=Decimal("1.5"),
        unit_price=Decimal("33.33"),
        discount_amount=Decimal("0.125"),
    )

    qbo.upsert_invoice(invoice(lines=[odd]), existing=None, idempotency_key="k")

    sales, discount = body_of(route.calls.last)["Line"]
    assert sales["Amount"] == 50  # 49.995
    assert sales["SalesItemLineDetail"]["Qty"] == 1.5
    assert sales["SalesItemLineDetail"]["UnitPrice"] == 33.33
    assert discount["Amount"] == 0.13  # 0.125


@pytest.mark.parametrize(
    ("amount", "currency", "sent"),
    [
        ("49.995", "USD", 50),
        ("49.994", "EUR", 49.99),
        ("-0.005", "GBP", -0.01),
        ("1234.5", "JPY", 1235),
        ("1234.4", "KRW", 1234),
        ("1.2345", "KWD", 1.235),
        ("1.2345", "BHD", 1.235),
        ("1.2345", "XYZ", 1.23),  # not in the table: 2 decimals
    ],
)
def test_given_an_amount_when_sent_then_it_has_the_currencys_minor_unit(
    amount: str, currency: str, sent: float
) -> None:
    assert money(Decimal(amount), currency, "a") == sent


def test_given_an_amount_too_large_for_decimal_when_sent_then_refused_with_the_field() -> None:
    with pytest.raises(RecordInvalid) as refused:
        money(Decimal("1E+40"), "USD", "lines[2].amount")

    assert refused.value.violations[0].field == "lines[2].amount"


@pytest.mark.parametrize(
    "call",
    [
        lambda qbo: qbo.find_item(name="Hours", sku=None),
        lambda qbo: qbo.current(ObjectType.CUSTOMER, "1"),
        lambda qbo: qbo.upsert_customer(
            Party(kind=PartyKind.PERSON, display_name="A"), existing=None, idempotency_key="k"
        ),
        lambda qbo: qbo.upsert_customer(
            Party(kind=PartyKind.PERSON, display_name="A"),
            existing=TargetRef(id="1", version="0"),
            idempotency_key="k",
        ),
        lambda qbo: qbo.batch_upsert(
            [
                BatchWrite.customer(
                    Party(kind=PartyKind.PERSON, display_name="A"), idempotency_key="k"
                )
            ]
        ),
    ],
    ids=["query", "read", "create", "update", "batch"],
)
@pytest.mark.parametrize(
    "page",
    [
        httpx.Response(200, text="<html>proxy login</html>", headers={"content-type": "text/html"}),
        httpx.Response(200, json=["not", "an", "object"]),
    ],
    ids=["html", "json-list"],
)
def test_given_a_200_that_is_not_a_json_object_when_calling_then_retryable(
    router: respx.MockRouter,
    qbo: QuickBooksAccounting,
    call: Callable[[QuickBooksAccounting], object],
    page: httpx.Response,
) -> None:
    router.route().mock(return_value=page)

    with pytest.raises(Retryable, match="not a JSON object"):
        call(qbo)


def test_given_decimals_when_sent_as_json_numbers_then_exact_or_refused() -> None:
    assert json_number(Decimal("59.970"), "a") == 59.97
    assert json_number(Decimal("1E+2"), "a") == 100
    assert json.dumps(json_number(Decimal("0.1") * 3, "a")) == "0.3"
    with pytest.raises(RecordInvalid) as refused:
        json_number(Decimal("1234567.123456789012345"), "lines[0].amount")
    assert refused.value.violations[0].field == "lines[0].amount"


# --- batch -----------------------------------------------------------------------------------


def test_given_65_customers_when_batched_then_3_calls_of_at_most_30_with_per_item_results(
    router: respx.MockRouter, sleeps: list[float]
) -> None:
    budget = RecordingBudget()
    secrets = MemorySecretStore({SECRET_ID: {"access_token": "t"}})

    def api(limits: Any) -> ApiClient:
        return ApiClient(
            vendor="quickbooks",
            base_url=BASE,
            auth=SecretBearer(secrets, SECRET_ID),
            classify=classify,
            limits=limits,
            budget=budget,
            budget_key="qb",
            sleep=sleeps.append,
            transport=httpx.MockTransport(router.handler),
        )

    qbo = QuickBooksAccounting(
        api(CALL_LIMITS), realm_id=REALM, batch_api=api((*CALL_LIMITS, BATCH_CALL_LIMIT))
    )

    def batch_answer(request: httpx.Request) -> httpx.Response:
        items = json.loads(request.content)["BatchItemRequest"]
        out = []
        for item in items:
            name = item["Customer"]["DisplayName"]
            if name == "Dup 31":
                error = {"Message": "Duplicate Name Exists Error", "code": "6240"}
                out.append({"bId": item["bId"], "Fault": {"Error": [error], "type": "Validation"}})
            elif name == "Stale 2":
                error = {"Message": "Stale Object Error", "code": "5010"}
                out.append({"bId": item["bId"], "Fault": {"Error": [error], "type": "Validation"}})
            else:
                customer = {"Id": f"id-{name}", "SyncToken": "0", "DisplayName": name}
                out.append({"bId": item["bId"], "Customer": customer})
        return httpx.Response(200, json={"BatchItemResponse": out, "time": STAMP})

    route = router.post("/batch").mock(side_effect=batch_answer)
    names = [f"Cust {i}" for i in range(65)]
    names[31], names[2] = "Dup 31", "Stale 2"
    writes = [
        BatchWrite.customer(
            Party(kind=PartyKind.COMPANY, display_name=name),
            existing=TargetRef(id="9", version="1") if name == "Stale 2" else None,
            idempotency_key=f"hubspot:company:{i}:v1",
        )
        for i, name in enumerate(names)
    ]

    results = qbo.batch_upsert(writes)

    sent = [json.loads(c.request.content)["BatchItemRequest"] for c in route.calls]
    assert [len(items) for items in sent] == [30, 30, 5]
    assert all(len(item["bId"]) <= 10 for items in sent for item in items)
    request_ids = [c.request.url.params["requestid"] for c in route.calls]
    assert all(len(r) <= BATCH_REQUEST_ID_MAX for r in request_ids) and len(set(request_ids)) == 3
    assert sent[0][2]["operation"] == "update" and sent[0][2]["Customer"]["SyncToken"] == "1"
    assert results[0] == TargetRef(id="id-Cust 0", version="0")
    assert results[64] == TargetRef(id="id-Cust 64", version="0")
    assert isinstance(results[31], Permanent) and results[31].code == "6240"
    assert isinstance(results[2], Permanent) and results[2].code == "5010"
    assert sum(isinstance(r, TargetRef) for r in results) == 63
    assert budget.keys.count("qb:40/60s") == 3  # batch calls draw on their own budget too


def test_given_a_batch_answer_missing_an_item_when_batched_then_that_item_is_retryable(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    router.post("/batch").mock(
        return_value=httpx.Response(
            200,
            json={"BatchItemResponse": [{"bId": "0", "Customer": {"Id": "1", "SyncToken": "0"}}]},
        )
    )
    writes = [
        BatchWrite.customer(Party(kind=PartyKind.PERSON, display_name=n), idempotency_key=n)
        for n in ("a", "b")
    ]

    first, second = qbo.batch_upsert(writes)

    assert first == TargetRef(id="1", version="0")
    assert isinstance(second, Retryable)


def invoice_for(customer: str, *, item: str | None = "4") -> Invoice:
    line = InvoiceLine(name="Hours", item_ref=item, quantity=Decimal(2), unit_price=Decimal(50))
    return Invoice(customer_ref=customer, currency="USD", lines=[line])


def test_given_customers_and_invoices_when_batched_then_bodies_are_the_single_writes(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    def batch_answer(request: httpx.Request) -> httpx.Response:
        out = []
        for item in json.loads(request.content)["BatchItemRequest"]:
            entity = "Customer" if "Customer" in item else "Invoice"
            token = str(int(item[entity].get("SyncToken", "-1")) + 1)
            out.append({"bId": item["bId"], entity: {"Id": f"n{item['bId']}", "SyncToken": token}})
        return httpx.Response(200, json={"BatchItemResponse": out, "time": STAMP})

    route = router.post("/batch").mock(side_effect=batch_answer)
    party = Party(kind=PartyKind.COMPANY, display_name="Acme", email="a@acme.test")
    writes = [
        BatchWrite.customer(party, idempotency_key="c1"),
        BatchWrite.invoice(invoice_for("7"), idempotency_key="i1"),
        BatchWrite.invoice(
            invoice_for("7"), existing=TargetRef(id="55", version="3"), idempotency_key="i2"
        ),
    ]

    results = qbo.batch_upsert(writes)

    (sent,) = [json.loads(c.request.content)["BatchItemRequest"] for c in route.calls]
    assert [(i["bId"], i["operation"]) for i in sent] == [
        ("0", "create"),
        ("1", "create"),
        ("2", "update"),
    ]
    assert sent[0]["Customer"] == qbo._customer_body(party)
    assert sent[1]["Invoice"] == qbo._invoice_body(invoice_for("7"))
    assert sent[2]["Invoice"] == {
        **qbo._invoice_body(invoice_for("7")),
        "Id": "55",
        "SyncToken": "3",
        "sparse": True,
    }
    assert results == [
        TargetRef(id="n0", version="0"),
        TargetRef(id="n1", version="0"),
        TargetRef(id="n2", version="4"),
    ]
    assert route.calls[0].request.url.params["requestid"] == request_id(
        "c1|i1|i2", BATCH_REQUEST_ID_MAX
    )
    assert isinstance(qbo, BatchingTarget) and qbo.batch_max_items == 30


def test_given_an_invoice_without_item_when_batched_then_only_it_is_refused_before_sending(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    route = router.post("/batch").mock(
        return_value=httpx.Response(
            200,
            json={"BatchItemResponse": [{"bId": "1", "Invoice": {"Id": "8", "SyncToken": "0"}}]},
        )
    )
    writes = [
        BatchWrite.invoice(invoice_for("7", item=None), idempotency_key="bad"),
        BatchWrite.invoice(invoice_for("7"), idempotency_key="good"),
    ]

    refused, written = qbo.batch_upsert(writes)

    assert isinstance(refused, RecordInvalid)
    assert written == TargetRef(id="8", version="0")
    (sent,) = [json.loads(c.request.content)["BatchItemRequest"] for c in route.calls]
    assert [i["bId"] for i in sent] == ["1"]
    assert route.calls[0].request.url.params["requestid"] == request_id("good", 36)
    assert qbo.batch_upsert([writes[0]])[0].__class__ is RecordInvalid
    assert len(route.calls) == 1  # nothing to send: no call


@pytest.mark.parametrize(
    ("fault", "expected", "code"),
    [
        (
            {"Error": [{"code": "6240", "Message": "Duplicate Name Exists Error"}]},
            Permanent,
            "6240",
        ),
        ({"Error": [{"code": "5010", "Message": "Stale Object Error"}]}, Permanent, "5010"),
        ({"Error": [{"code": "2020", "Message": "Required param missing"}]}, Permanent, "2020"),
        ({"Error": [{"code": "610", "Message": "Object Not Found"}]}, NotFound, "610"),
        ({"Error": [{"code": "3001", "Message": "ThrottleExceeded"}]}, RateLimited, None),
    ],
    ids=["duplicate", "stale", "validation", "not-found", "throttled-item"],
)
def test_given_an_item_fault_when_batched_then_the_single_write_error_class(
    router: respx.MockRouter,
    qbo: QuickBooksAccounting,
    fault: dict[str, Any],
    expected: type[Exception],
    code: str | None,
) -> None:
    router.post("/batch").mock(
        return_value=httpx.Response(
            200, json={"BatchItemResponse": [{"bId": "0", "Fault": fault}], "time": STAMP}
        )
    )
    write = BatchWrite.invoice(invoice_for("7"), idempotency_key="k")

    (result,) = qbo.batch_upsert([write])

    assert type(result) is expected
    if code is not None:
        assert isinstance(result, Permanent) and result.code == code


def test_given_a_throttled_batch_call_when_batched_then_it_raises(
    router: respx.MockRouter, qbo: QuickBooksAccounting, sleeps: list[float]
) -> None:
    error = {
        "Message": "message=ThrottleExceeded; errorCode=003001; statusCode=429",
        "code": "3001",
    }
    router.post("/batch").mock(
        return_value=httpx.Response(429, json={"Fault": {"Error": [error], "type": "SERVICE"}})
    )

    with pytest.raises(RateLimited):
        qbo.batch_upsert([BatchWrite.invoice(invoice_for("7"), idempotency_key="k")])


def test_given_a_write_whose_record_is_not_its_type_when_built_then_refused() -> None:
    with pytest.raises(ValueError, match="carries a Invoice"):
        BatchWrite(
            object_type=ObjectType.INVOICE,
            record=Party(kind=PartyKind.PERSON, display_name="A"),
            idempotency_key="k",
        )


# --- factory and token rotation ---------------------------------------------------------------


def oauth_secret(**extra: str) -> dict[str, str]:
    return {
        "client_id": "cid",
        "client_secret": "csecret",
        "refresh_token": "refresh-1",
        "realm_id": REALM,
        **extra,
    }


def built(
    router: respx.MockRouter, secrets: MemorySecretStore, budget: RecordingBudget | None = None
) -> QuickBooksAccounting:
    return build_quickbooks(
        api_url="https://qbo.test",
        token_url=TOKEN_URL,
        secrets=secrets,
        secret_id=SECRET_ID,
        lock=MemoryLock(),
        budget=budget or RecordingBudget(),
        transport=httpx.MockTransport(router.handler),
    )


def test_given_a_rejected_access_token_when_calling_then_it_refreshes_rotates_and_retries(
    router: respx.MockRouter,
) -> None:
    far = str(int(datetime.now(UTC).timestamp()) + 3600)
    secrets = MemorySecretStore(
        {SECRET_ID: oauth_secret(access_token="revoked", access_expires_at=far)}
    )
    token = router.post(TOKEN_URL).mock(
        return_value=httpx.Response(
            200,
            json={
                "access_token": "fresh",
                "refresh_token": "refresh-2",
                "expires_in": 3600,
                "x_refresh_token_expires_in": 8726400,
                "token_type": "bearer",
            },
        )
    )
    gateway_401 = {"fault": {"error": [{"message": "AuthenticationFailed", "code": "3200"}]}}

    def customer(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] != "Bearer fresh":
            return httpx.Response(401, json=gateway_401)
        return answer("Customer", Id="1", SyncToken="0")

    route = router.get("/customer/1").mock(side_effect=customer)
    budget = RecordingBudget()

    ref = built(router, secrets, budget).current(ObjectType.CUSTOMER, "1")

    assert ref == TargetRef(id="1", version="0")
    assert token.call_count == 1
    assert dict(token.calls.last.request.url.params) == {}
    assert b"refresh_token=refresh-1" in token.calls.last.request.content
    stored = secrets.read(SECRET_ID)
    assert (stored["refresh_token"], stored["access_token"]) == ("refresh-2", "fresh")
    assert route.calls.last.request.url.path == f"/v3/company/{REALM}/customer/1"
    assert route.calls.last.request.headers["accept"] == "application/json"
    assert set(budget.keys) == {f"quickbooks:{REALM}:500/60s"}  # 10/s: implied by the pace


def test_given_a_refreshed_token_still_refused_when_calling_then_auth_failure_is_permanent(
    router: respx.MockRouter,
) -> None:
    secrets = MemorySecretStore({SECRET_ID: oauth_secret()})
    router.post(TOKEN_URL).mock(
        return_value=httpx.Response(
            200, json={"access_token": "a", "refresh_token": "r2", "expires_in": 3600}
        )
    )
    router.get("/customer/1").mock(
        return_value=httpx.Response(
            401, json={"fault": {"error": [{"message": "denied", "code": "3200"}]}}
        )
    )

    with pytest.raises(Permanent) as raised:
        built(router, secrets).current(ObjectType.CUSTOMER, "1")

    assert raised.value.code == "3200"


def test_given_a_secret_without_realm_when_building_then_it_says_what_is_missing() -> None:
    secrets = MemorySecretStore({SECRET_ID: {"client_id": "c"}})

    with pytest.raises(AuthFailed, match="realm_id"):
        built(respx.MockRouter(), secrets)


# --- webhooks ------------------------------------------------------------------------------------

VERIFIER = "verifier-token-for-tests"


def signed(body: str, key: str = VERIFIER, **headers: str) -> InboundWebhook:
    signature = base64.b64encode(
        hmac.new(key.encode(), body.encode(), hashlib.sha256).digest()
    ).decode()
    return InboundWebhook(
        method="POST",
        url="https://hooks.example/quickbooks",
        headers={"intuit-signature": signature, **headers},
        body=body,
        received_at=datetime(2026, 1, 5, tzinfo=UTC),
    )


@pytest.fixture
def hooks() -> QuickBooksWebhooks:
    return QuickBooksWebhooks(lambda: VERIFIER, lambda: REALM)


def test_given_a_body_signed_with_the_verifier_when_verified_then_it_passes(
    hooks: QuickBooksWebhooks,
) -> None:
    hooks.verify(signed('{"eventNotifications":[]}'))


@pytest.mark.parametrize(
    "mangle",
    [
        lambda r: r.model_copy(update={"headers": {}}),
        lambda r: r.model_copy(update={"body": r.body + " "}),
        lambda r: r.model_copy(update={"headers": {"intuit-signature": "not base64!"}}),
        lambda r: signed(r.body, key="another-verifier"),
    ],
    ids=["missing", "body-changed", "not-base64", "wrong-key"],
)
def test_given_a_bad_signature_when_verified_then_401(
    hooks: QuickBooksWebhooks, mangle: Callable[[InboundWebhook], InboundWebhook]
) -> None:
    with pytest.raises(WebhookRejected) as rejected:
        hooks.verify(mangle(signed('{"eventNotifications":[]}')))

    assert rejected.value.status == 401


def test_given_cloudevents_when_normalized_then_our_entities_become_change_events(
    hooks: QuickBooksWebhooks,
) -> None:
    def event(event_id: str, kind: str, entity_id: str) -> dict[str, Any]:
        return {
            "specversion": "1.0",
            "id": event_id,
            "source": "intuit.abc=",
            "type": kind,
            "datacontenttype": "application/json",
            "time": "2025-09-10T21:31:25.179851517Z",
            "intuitentityid": entity_id,
            "intuitaccountid": REALM,
            "data": {},
        }

    body = json.dumps(
        [
            event("e-1", "qbo.customer.created.v1", "58"),
            event("e-2", "qbo.invoice.updated.v1", "130"),
            event("e-3", "qbo.account.created.v1", "1234"),
            event("e-4", "qbo.payment.deleted.v1", "9"),
            event("e-5", "qbo.item.merged.v1", "4"),
        ]
    )

    events = hooks.normalize(signed(body), "conn-1")

    assert [(e.object_type, e.record_id, e.kind, e.event_id) for e in events] == [
        (ObjectType.CUSTOMER, "58", ChangeKind.CREATED, "e-1"),
        (ObjectType.INVOICE, "130", ChangeKind.UPDATED, "e-2"),
        (ObjectType.PAYMENT, "9", ChangeKind.DELETED, "e-4"),
        (ObjectType.ITEM, "4", ChangeKind.UPDATED, "e-5"),
    ]
    first = events[0]
    assert (first.source, first.connection_id) == ("quickbooks", "conn-1")
    assert first.version == 1757539885179
    assert first.occurred_at == datetime(2025, 9, 10, 21, 31, 25, 179851, tzinfo=UTC)


def test_given_another_companys_events_when_normalized_then_they_are_not_this_connections(
    hooks: QuickBooksWebhooks,
) -> None:
    """One app's webhook carries every connected company's changes."""
    cloud = [
        {
            "specversion": "1.0",
            "id": f"e-{realm}",
            "type": "qbo.customer.created.v1",
            "time": "2025-09-10T21:31:25Z",
            "intuitentityid": "58",
            "intuitaccountid": realm,
        }
        for realm in ("999", REALM)
    ]
    legacy = {
        "eventNotifications": [
            {
                "realmId": realm,
                "dataChangeEvent": {
                    "entities": [
                        {
                            "name": "Customer",
                            "id": realm,
                            "operation": "Create",
                            "lastUpdated": "2015-10-05T14:42:19-0700",
                        }
                    ]
                },
            }
            for realm in ("999", REALM)
        ]
    }

    from_cloud = hooks.normalize(signed(json.dumps(cloud)), "conn-1")
    from_legacy = hooks.normalize(signed(json.dumps(legacy)), "conn-1")

    assert [e.event_id for e in from_cloud] == [f"e-{REALM}"]
    assert [e.record_id for e in from_legacy] == [REALM]


def test_given_the_legacy_payload_when_normalized_then_event_ids_are_deterministic(
    hooks: QuickBooksWebhooks,
) -> None:
    body = json.dumps(
        {
            "eventNotifications": [
                {
                    "realmId": REALM,
                    "dataChangeEvent": {
                        "entities": [
                            {
                                "name": "Customer",
                                "id": "1",
                                "operation": "Create",
                                "lastUpdated": "2015-10-05T14:42:19-0700",
                            },
                            {
                                "name": "Vendor",
                                "id": "1",
                                "operation": "Create",
                                "lastUpdated": "2015-10-05T14:42:19-0700",
                            },
                            {
                                "name": "Invoice",
                                "id": "7",
                                "operation": "Void",
                                "lastUpdated": "2015-10-05T21:42:20.5Z",
                            },
                        ]
                    },
                }
            ]
        }
    )

    events = hooks.normalize(signed(body), "conn-1")
    again = hooks.normalize(signed(body), "conn-1")

    assert [(e.object_type, e.record_id, e.kind) for e in events] == [
        (ObjectType.CUSTOMER, "1", ChangeKind.CREATED),
        (ObjectType.INVOICE, "7", ChangeKind.UPDATED),
    ]
    assert [e.event_id for e in events] == [e.event_id for e in again]
    assert events[0].event_id == f"{REALM}:Customer:1:Create:1444081339000"
    assert events[0].version == 1444081339000
    assert events[1].version == 1444081340500


def test_given_refund_receipt_events_when_normalized_then_they_are_payments_named_apart(
    hooks: QuickBooksWebhooks,
) -> None:
    """A refund receipt moves money for its customer, as a payment does; its Id may be a
    payment's too (Ids are unique per entity), so it is named with its entity."""
    cloud = [
        {
            "specversion": "1.0",
            "id": "e-1",
            "type": "qbo.refundreceipt.voided.v1",
            "time": "2025-09-10T21:31:25Z",
            "intuitentityid": "9",
            "intuitaccountid": REALM,
        }
    ]
    legacy = {
        "eventNotifications": [
            {
                "realmId": REALM,
                "dataChangeEvent": {
                    "entities": [
                        {
                            "name": "RefundReceipt",
                            "id": "9",
                            "operation": "Create",
                            "lastUpdated": "2015-10-05T14:42:19-0700",
                        },
                        {
                            "name": "Payment",
                            "id": "9",
                            "operation": "Create",
                            "lastUpdated": "2015-10-05T14:42:19-0700",
                        },
                    ]
                },
            }
        ]
    }

    from_cloud = hooks.normalize(signed(json.dumps(cloud)), "conn-1")
    from_legacy = hooks.normalize(signed(json.dumps(legacy)), "conn-1")

    assert [(e.object_type, e.record_id, e.kind) for e in from_cloud] == [
        (ObjectType.PAYMENT, "RefundReceipt-9", ChangeKind.UPDATED)
    ]
    assert [(e.object_type, e.record_id, e.kind) for e in from_legacy] == [
        (ObjectType.PAYMENT, "RefundReceipt-9", ChangeKind.CREATED),
        (ObjectType.PAYMENT, "9", ChangeKind.CREATED),
    ]


def test_given_credit_memo_events_when_normalized_then_they_are_payments_named_apart(
    hooks: QuickBooksWebhooks,
) -> None:
    """A credit memo changes its customer's balance, as a payment does; named with its
    entity as a refund receipt is, since a payment may hold the same Id."""
    cloud = [
        {
            "specversion": "1.0",
            "id": f"e-{verb}",
            "type": f"qbo.creditmemo.{verb}.v1",
            "time": "2025-09-10T21:31:25Z",
            "intuitentityid": "4",
            "intuitaccountid": REALM,
        }
        for verb in ("created", "voided")
    ]
    legacy = {
        "eventNotifications": [
            {
                "realmId": REALM,
                "dataChangeEvent": {
                    "entities": [
                        {
                            "name": "CreditMemo",
                            "id": "4",
                            "operation": operation,
                            "lastUpdated": "2015-10-05T14:42:19-0700",
                        }
                        for operation in ("Update", "Delete")
                    ]
                },
            }
        ]
    }

    from_cloud = hooks.normalize(signed(json.dumps(cloud)), "conn-1")
    from_legacy = hooks.normalize(signed(json.dumps(legacy)), "conn-1")

    assert [(e.object_type, e.record_id, e.kind) for e in from_cloud] == [
        (ObjectType.PAYMENT, "CreditMemo-4", ChangeKind.CREATED),
        (ObjectType.PAYMENT, "CreditMemo-4", ChangeKind.UPDATED),
    ]
    assert [(e.object_type, e.record_id, e.kind) for e in from_legacy] == [
        (ObjectType.PAYMENT, "CreditMemo-4", ChangeKind.UPDATED),
        (ObjectType.PAYMENT, "CreditMemo-4", ChangeKind.DELETED),
    ]


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        '[{"specversion": "1.0", "type": "qbo.customer.created.v1"}]',
        '{"eventNotifications": [{"realmId": "1"}]}',
        '{"something": "else"}',
        '"a string"',
        "[" * 50_000 + "]" * 50_000,
    ],
    ids=[
        "not-json",
        "cloudevent-missing-fields",
        "legacy-missing-change",
        "unknown",
        "scalar",
        "nested-past-the-recursion-limit",
    ],
)
def test_given_a_malformed_payload_when_normalized_then_400_with_a_reason(
    hooks: QuickBooksWebhooks, body: str
) -> None:
    with pytest.raises(WebhookRejected) as rejected:
        hooks.normalize(signed(body), "conn-1")

    assert rejected.value.status == 400 and rejected.value.reason


def test_given_a_rotated_verifier_when_verifying_then_the_secret_is_read_at_use() -> None:
    secrets = MemorySecretStore({SECRET_ID: {"verifier_token": "old"}})
    receiver = quickbooks_webhooks(secrets, SECRET_ID)
    secrets.write(SECRET_ID, {"verifier_token": "new"})

    receiver.verify(signed("[]", key="new"))
    with pytest.raises(WebhookRejected):
        receiver.verify(signed("[]", key="old"))


def test_given_no_verifier_in_the_secret_when_verifying_then_configuration_is_named() -> None:
    receiver = quickbooks_webhooks(MemorySecretStore({SECRET_ID: {}}), SECRET_ID)

    with pytest.raises(AuthFailed, match="verifier_token"):
        receiver.verify(signed("[]"))


def test_given_what_quickbooks_cannot_take_when_invoiced_then_every_field_is_named(
    router: respx.MockRouter, qbo: QuickBooksAccounting
) -> None:
    router.get("/query").mock(return_value=rows("Term"))
    route = router.post("/invoice")
    no_item = InvoiceLine(name="Gold plating", quantity=Decimal("1"), unit_price=Decimal("9"))

    with pytest.raises(RecordInvalid) as refused:
        qbo.upsert_invoice(
            invoice(lines=[no_item], payment_terms="Net 45", doc_number="X" * 22),
            existing=None,
            idempotency_key="k",
        )

    assert {(v.field, v.rule) for v in refused.value.violations} == {
        ("line_items[0].name", "item_exists"),
        ("payment_terms", "terms_exist"),
        ("doc_number", "max_length"),
    }
    assert not route.called, "nothing is sent"
