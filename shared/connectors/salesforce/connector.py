"""Salesforce: outbound messages in, the REST API (SOQL) out.

Declarations over ``shared.connectors.http``: objects, fields, limits and how to read
Salesforce's answers; ``ApiClient`` does the calling, budgeting and retrying, and
``RotatingOAuth2`` the refresh token flow. Salesforce documentation cited as [Sn]:

* [S1] OAuth 2.0 refresh token flow: https://help.salesforce.com/apex/HTViewHelpDoc?id=remoteaccess_oauth_refresh_token_flow.htm
  and https://developer.salesforce.com/docs/atlas.en-us.222.0.api_rest.meta/api/intro_understanding_refresh_token_oauth.htm
* [S2] REST status codes and error responses: https://developer.salesforce.com/docs/platform/api-rest/guide/errorcodes.html
* [S3] API request limits and allocations: https://developer.salesforce.com/docs/platform/salesforce-app-limits-cheatsheet/guide/salesforce-app-limits-platform-api.html
* [S4] Sforce-Limit-Info header: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_api_usage.htm
* [S5] Query and query more results: https://developer.salesforce.com/docs/platform/api-rest/guide/resources-query.html
  and https://developer.salesforce.com/docs/platform/api-rest/guide/resources-query-more-results.html
* [S6] Sforce-Query-Options header: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/headers_queryoptions.htm
* [S7] System fields (SystemModstamp): https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/system_fields.htm
* [S8] SOQL date formats: https://developer.salesforce.com/docs/atlas.en-us.soql_sosl.meta/api/sforce_api_calls_soql_select_dateformats.htm
* [S9] SOQL ORDER BY: https://developer.salesforce.com/docs/atlas.en-us.258.0.soql_sosl.meta/soql_sosl/sforce_api_calls_soql_select_orderby.htm
* [S10] OpportunityLineItem: https://developer.salesforce.com/docs/platform/object-reference/references/standard-objects/object-opportunitylineitem.html
  and TotalPrice: https://help.salesforce.com/s/articleView?id=000384983&type=1
* [S11] Outbound messaging WSDL: https://developer.salesforce.com/docs/platform/api/guide/sforce-api-om-outboundmessaging-wsdl.html
* [S12] Outbound notifications: https://developer.salesforce.com/docs/atlas.en-us.246.0.api.meta/api/sforce_api_om_outboundmessaging_notifications.htm
* [S13] Outbound messaging security: https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_security.htm
* [S14] sObject Describe: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_sobject_describe.htm
* [S15] Update a record (PATCH, no body returned): https://developer.salesforce.com/docs/platform/api-rest/guide/dome-update-fields.html
* [S16] Custom fields are made in Setup: https://help.salesforce.com/s/articleView?id=platform.adding_fields.htm
* [S17] sObject Get Deleted: https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/resources_getdeleted.htm,
  its rules (getDeleted()): https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_getdeleted.htm
  and its answer: https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_calls_getdeleted_getdeletedresult.htm
"""

from __future__ import annotations

import hmac
import json
import re
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.etree import ElementTree
from xml.parsers import expat

import httpx
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared.connectors.auth import RotatingOAuth2, required
from shared.connectors.http import (
    ApiClient,
    CallLimit,
    Classified,
    Deadline,
    ResponseAction,
    RetryPolicy,
)
from shared.connectors.times import epoch_ms
from shared.errors import AuthFailed, NotFound, Permanent, Retryable, WebhookRejected
from shared.models import ChangeEvent, ChangeKind, ObjectType, SourceRecord
from shared.ports import (
    CallBudget,
    CrmProperty,
    DeletedRecord,
    InboundWebhook,
    Lock,
    SecretStore,
    WebhookAnswer,
)

VENDOR = "salesforce"
API_VERSION = "62.0"  # Winter '25
# Records per query batch: Salesforce's maximum, "no guarantee" it is the actual one [S6].
QUERY_BATCH_SIZE = 2000
# The refresh answer states no lifetime: a token lasts the org's session timeout, an
# idle time set per org (2 hours by default) [S1]. Assumed that long; an earlier end
# is a 401 INVALID_SESSION_ID, on which ``RotatingOAuth2`` refreshes and retries once.
ASSUMED_SESSION_S = 2 * 3600
# The daily allocation is a rolling 24 hours [S3] and no answer says when calls free
# up again: come back in an hour (the message goes back to the queue), and again after
# that if the allocation is still spent.
DAILY_LIMIT_WAIT_S = 3600.0
MAX_NOTIFICATIONS = 100  # a SOAP message holds up to 100 notifications [S11, S12]
# Get Deleted lists the deletions of the last 15 days only [S17], and a start further
# back than 30 days is refused with INVALID_REPLICATION_DATE (obs): a window starts no
# earlier than 15 days ago.
DELETED_REACH_MS = 15 * 24 * 3600 * 1000
MINUTE_MS = 60_000
LAST_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last a datetime holds
# Where the README tells an admin which fields to make, and how.
FIELDS_HELP = 'README.md, "Salesforce: custom fields for two-way"'

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOBJECT_NS = "urn:sobject.enterprise.soap.sforce.com"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
# The listener's answer the outbound messaging WSDL defines: notificationsResponse with
# Ack true; anything else is a failed delivery, retried for 24 hours [S11, S12].
ACK_ENVELOPE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    f'<soapenv:Envelope xmlns:soapenv="{SOAP_ENV}"><soapenv:Body>'
    f'<notificationsResponse xmlns="{OUTBOUND_NS}"><Ack>true</Ack></notificationsResponse>'
    "</soapenv:Body></soapenv:Envelope>"
)

# A 15- or 18-character record id (case-sensitive base 62, then a 3-character suffix).
# Checked before an id goes into SOQL: it comes from webhooks and must stay a literal.
_RECORD_ID = re.compile(r"[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?")
# A field API name or a relationship path to one (``PricebookEntry.Product2.Name``).
_FIELD_PATH = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:\.[A-Za-z][A-Za-z0-9_]*)*")
_LIMIT_INFO = re.compile(r"api-usage=(\d+)/(\d+)")

# A property Salesforce does not store but the canonical line needs: the line's whole
# discount in money. ``Discount`` is a percent; ``Subtotal`` is UnitPrice x Quantity and
# ``TotalPrice`` that less the discount, rounded by Salesforce [S10], so their
# difference is the discount exactly as Salesforce counted it. Field API names start
# with a letter, so the leading underscore cannot name a real field.
DISCOUNT_AMOUNT = "_DiscountAmount"
_DERIVED: Mapping[str, tuple[str, ...]] = {DISCOUNT_AMOUNT: ("Subtotal", "TotalPrice")}


@dataclass(frozen=True)
class _Kind:
    """How one CRM object type is named at Salesforce, and what a read of it needs."""

    object_type: ObjectType
    sobject: str
    needs: tuple[str, ...] = ()  # fields read for associations, beyond the mapping's


_KINDS = {
    kind.object_type: kind
    for kind in (
        _Kind(ObjectType.CONTACT, "Contact"),
        _Kind(ObjectType.COMPANY, "Account"),
        _Kind(ObjectType.DEAL, "Opportunity", ("AccountId",)),
        _Kind(ObjectType.LINE_ITEM, "OpportunityLineItem", ("OpportunityId",)),
    )
}
_BY_SOBJECT = {kind.sobject: kind for kind in _KINDS.values()}
# A deal's lines in the order its products list shows (SortOrder, null when nobody
# sorted them), then as added; its contacts primary first [S9].
_LINE_ORDER = "SortOrder ASC NULLS LAST, CreatedDate ASC, Id ASC"
_ROLE_ORDER = "IsPrimary DESC, CreatedDate ASC, Id ASC"


def _kind(object_type: ObjectType) -> _Kind:
    try:
        return _KINDS[object_type]
    except KeyError:
        raise ValueError(f"Salesforce has no {object_type} objects here") from None


# --- answers ------------------------------------------------------------------------


class _Error(BaseModel):
    """One entry of Salesforce's JSON error array [S2]."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    message: str = ""
    error_code: str = Field(default="", alias="errorCode")
    fields: list[str] = Field(default_factory=list)


_ERRORS = TypeAdapter(list[_Error])


class _QueryPage(BaseModel):
    """A query batch [S5]; also the shape of a child relationship inside a record."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    total_size: int = Field(alias="totalSize", ge=0)
    done: bool
    next_records_url: str | None = Field(default=None, alias="nextRecordsUrl")
    records: list[dict[str, Any]]


class _DeletedRow(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(min_length=15, max_length=18)
    deleted_date: str = Field(alias="deletedDate", min_length=1)


class _Deleted(BaseModel):
    """The answer of sObject Get Deleted [S17]."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    deleted_records: list[_DeletedRow] = Field(alias="deletedRecords")
    latest_date_covered: str | None = Field(default=None, alias="latestDateCovered")


class _Row(BaseModel):
    """The fields of a record every read relies on; the rest are read by name."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = Field(alias="Id", min_length=15, max_length=18)
    system_modstamp: str = Field(alias="SystemModstamp", min_length=1)


class _PicklistValue(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    value: str
    active: bool = True


class _FieldDescribe(BaseModel):
    """One of the ``fields`` of an sObject Describe [S14]: for the running user, so a
    field the user may not see is absent and one it may not edit is not updateable."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    updateable: bool = False
    restricted_picklist: bool = Field(default=False, alias="restrictedPicklist")
    picklist_values: list[_PicklistValue] = Field(default_factory=list, alias="picklistValues")


class _Describe(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    fields: list[_FieldDescribe]


def _versioned(kind: _Kind, row: Any) -> tuple[_Row, int]:
    """A record's id and modstamp, and its version: ``SystemModstamp`` in epoch ms."""
    try:
        essentials = _Row.model_validate(row)
    except ValidationError as exc:
        raise _unexpected(f"{kind.sobject}: {exc.error_count()} invalid fields") from exc
    version = _epoch_ms(essentials.system_modstamp)
    if version is None:
        raise _unexpected(f"{kind.sobject} {essentials.id}: unreadable SystemModstamp")
    return essentials, version


def classify(response: httpx.Response) -> Classified:
    """Salesforce's statuses and error arrays [S2], as ``ApiClient`` acts on them.

    A 401 reaches here only after ``RotatingOAuth2`` refreshed and retried once.
    """
    status = response.status_code
    if 200 <= status < 300:
        return Classified(ResponseAction.SUCCESS)
    error = _first_error(response)
    code = error.error_code or str(status)
    text = error.message.strip() or response.reason_phrase
    if code == "REQUEST_LIMIT_EXCEEDED":
        # The REST API has no 429: a spent allocation, or too many long-running calls
        # at once, is a 403 with this code [S2, S3].
        if _daily_allocation_spent(response, error):
            return Classified(ResponseAction.RATE_LIMITED, text, code, DAILY_LIMIT_WAIT_S)
        # Concurrent long-running requests (20 s or more; 25 per production org) [S3]:
        # they end within the 10-minute call timeout; the client backs off and retries.
        return Classified(ResponseAction.RATE_LIMITED, text, code)
    if status == 401:
        return Classified(ResponseAction.AUTH_FAILED, f"session refused: {text}", code)
    if status == 404:  # NOT_FOUND; ENTITY_IS_DELETED on a write
        return Classified(ResponseAction.NOT_FOUND, text, code)
    if status >= 500:
        return Classified(ResponseAction.RETRY, text, code)
    if status == 403:
        # "The request has been refused": the user's permissions, or the API turned
        # off for the org; a person must change them [S2].
        return Classified(ResponseAction.AUTH_FAILED, f"refused: {text}", code)
    return Classified(ResponseAction.FAIL, text, code)


def _first_error(response: httpx.Response) -> _Error:
    try:
        errors = _ERRORS.validate_json(response.content)
    except ValidationError:
        return _Error()
    return errors[0] if errors else _Error()


def _daily_allocation_spent(response: httpx.Response, error: _Error) -> bool:
    """The 24-hour allocation, not concurrency, is what was met.

    Salesforce words it "TotalRequests Limit exceeded." (obs); ``Sforce-Limit-Info``
    [S4] settles it when sent: usage at or past the allocation.
    """
    if error.message.startswith("TotalRequests"):
        return True
    usage = api_usage(response)
    return usage is not None and usage[0] >= usage[1]


def api_usage(response: httpx.Response) -> tuple[int, int] | None:
    """(calls counted in the last 24 hours, the allocation) from ``Sforce-Limit-Info``."""
    match = _LIMIT_INFO.search(response.headers.get("sforce-limit-info", ""))
    return (int(match.group(1)), int(match.group(2))) if match else None


def _parse_json(response: httpx.Response) -> Any:
    """JSON with numbers as ``Decimal``: Salesforce writes money as JSON numbers, and a
    float would turn 0.1 into 0.1000000000000000055511151231257827."""
    try:
        return json.loads(response.content, parse_float=Decimal)
    except ValueError as exc:
        raise _unexpected(f"{response.request.url.path}: not JSON") from exc


def _page(raw: Any, where: str) -> _QueryPage:
    try:
        return _QueryPage.model_validate(raw)
    except ValidationError as exc:
        raise _unexpected(f"{where}: {exc.error_count()} invalid fields") from exc


def _unexpected(detail: str) -> Retryable:
    """A 2xx Salesforce should not have sent; retried, then dead-lettered if it persists."""
    return Retryable(f"{VENDOR} answered unexpectedly: {detail}", code="UNEXPECTED_RESPONSE")


def _text(value: Any) -> str | None:
    """A field value as a property: booleans "true"/"false", numbers plain decimals."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def _flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, str | None]:
    """A record's fields by API name; parent fields by relationship path (``Account.Name``).

    Child relationships (query pages inside the record) are left out.
    """
    flat: dict[str, str | None] = {}
    for name, value in row.items():
        if name == "attributes":
            continue
        if isinstance(value, dict):
            if "records" not in value:
                flat.update(_flatten(value, f"{prefix}{name}."))
            continue
        flat[f"{prefix}{name}"] = _text(value)
    return flat


def _epoch_ms(value: str | None) -> int | None:
    """Salesforce's ``2024-01-15T10:30:00.000+0000`` as epoch ms, exactly."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return epoch_ms(moment)


def _soql_datetime(moment_ms: int) -> str:
    """A SOQL date-time literal, unquoted [S8], at the whole second at or before it."""
    return datetime.fromtimestamp(moment_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rest_datetime(moment_ms: int) -> str:
    """A REST date-time parameter, ``YYYY-MM-DDThh:mm:ss+hh:mm`` in UTC [S17]."""
    return datetime.fromtimestamp(moment_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _discount_amount(flat: Mapping[str, str | None]) -> str | None:
    subtotal, total = flat.get("Subtotal"), flat.get("TotalPrice")
    if subtotal is None or total is None:
        return None
    try:
        return format(Decimal(subtotal) - Decimal(total), "f")
    except InvalidOperation:
        return None


def _unique(names: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(names))


# --- authentication -----------------------------------------------------------------


class InstanceBearer(httpx.Auth):
    """``RotatingOAuth2``, sending every request to the org's own instance.

    Each token answer names the instance that serves the org (``instance_url``) [S1];
    ``RotatingOAuth2`` keeps it in the secret beside the access token, and every
    request goes there, so the client's base URL only anchors paths.
    """

    def __init__(self, oauth: RotatingOAuth2, secrets: SecretStore, secret_id: str) -> None:
        self._oauth = oauth
        self._secrets = secrets
        self._secret_id = secret_id

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        flow = self._oauth.auth_flow(request)
        outgoing = next(flow)
        while True:
            self._to_instance(outgoing)  # after a refresh, the instance may be another
            response = yield outgoing
            try:
                outgoing = flow.send(response)
            except StopIteration:
                return

    def _to_instance(self, request: httpx.Request) -> None:
        instance = required(self._secrets.read(self._secret_id), self._secret_id, "instance_url")
        base = httpx.URL(instance)
        if base.scheme not in ("https", "http") or not base.host:
            raise AuthFailed(f"secret {self._secret_id} has an unusable 'instance_url'")
        request.url = request.url.copy_with(scheme=base.scheme, host=base.host, port=base.port)
        request.headers["Host"] = base.netloc.decode("ascii")


# --- outbound messages ----------------------------------------------------------------


class _Notification(BaseModel):
    """One ``Notification`` of a ``notifications`` message [S11], as read from the XML."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1, max_length=64)
    sobject: str = Field(min_length=1)
    record_id: str = Field(pattern=_RECORD_ID.pattern)
    modified_ms: int = Field(ge=0, le=LAST_EPOCH_MS)


class _Envelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    organization_id: str = Field(min_length=15, max_length=18)
    notifications: list[_Notification] = Field(max_length=MAX_NOTIFICATIONS)


class _Refused(Exception):
    """The body declares a DTD or entities: never expanded, never fetched."""


def _qname(name: str) -> str:
    """expat's ``uri local`` (``namespace_separator=" "``) as ElementTree's ``{uri}local``."""
    uri, _, local = name.rpartition(" ")
    return f"{{{uri}}}{local}" if uri else local


def parse_xml(body: str) -> ElementTree.Element:
    """The body as an element tree, with every DTD refused.

    Read with expat directly so a document type declaration (and with it any entity
    declaration, internal or external) stops the parse before anything is expanded:
    a notification has no business declaring either. Raises ``WebhookRejected`` (400).
    """
    parser = expat.ParserCreate(encoding="UTF-8", namespace_separator=" ")
    builder = ElementTree.TreeBuilder()

    def refuse(*_: object) -> None:
        raise _Refused

    def refuse_external(*_: object) -> int:
        raise _Refused

    def start(name: str, attributes: dict[str, str]) -> None:
        builder.start(_qname(name), {_qname(k): v for k, v in attributes.items()})

    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.UnparsedEntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse_external
    parser.StartElementHandler = start
    parser.EndElementHandler = lambda name: builder.end(_qname(name))
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(body.encode("utf-8"), True)
        return builder.close()
    except _Refused:
        raise WebhookRejected(400, "XML with a DTD or entity declarations") from None
    except (expat.ExpatError, AssertionError):  # TreeBuilder asserts on an empty document
        raise WebhookRejected(400, "body is not well-formed XML") from None


def _read_envelope(body: str) -> _Envelope:
    """The ``notifications`` message [S11]; ``WebhookRejected`` (400) for anything else."""
    root = parse_xml(body)
    message = root.find(f"./{{{SOAP_ENV}}}Body/{{{OUTBOUND_NS}}}notifications")
    if root.tag != f"{{{SOAP_ENV}}}Envelope" or message is None:
        raise WebhookRejected(400, "not an outbound message (SOAP notifications)")
    items = message.findall(f"{{{OUTBOUND_NS}}}Notification")
    if len(items) > MAX_NOTIFICATIONS:
        raise WebhookRejected(400, f"more than {MAX_NOTIFICATIONS} notifications in one message")
    raw = {
        "organization_id": (message.findtext(f"{{{OUTBOUND_NS}}}OrganizationId") or "").strip(),
        "notifications": [_read_notification(item) for item in items],
    }
    try:
        return _Envelope.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(map(str, first["loc"])) or "notifications"
        raise WebhookRejected(400, f"{where}: {first['msg']}") from None


def _read_notification(item: ElementTree.Element) -> dict[str, object]:
    sobject = item.find(f"{{{OUTBOUND_NS}}}sObject")
    if sobject is None:
        raise WebhookRejected(400, "a Notification without its sObject")
    # xsi:type="sf:Contact": a QName whose local part is the object's API name.
    type_name = sobject.get(f"{{{XSI_NS}}}type", "").rpartition(":")[2]

    def field(name: str) -> str:
        return (sobject.findtext(f"{{{SOBJECT_NS}}}{name}") or "").strip()

    # SystemModstamp is selected in the outbound message for this [S7]; a retried
    # message carries the record's latest data [S12], so it is the latest version.
    modified = _epoch_ms(field("SystemModstamp") or field("LastModifiedDate"))
    if modified is None:
        raise WebhookRejected(400, "a Notification's sObject needs its SystemModstamp")
    return {
        "id": (item.findtext(f"{{{OUTBOUND_NS}}}Id") or "").strip(),
        "sobject": type_name,
        "record_id": field("Id"),
        "modified_ms": modified,
    }


def _same_org(given: str, expected: str) -> bool:
    """Org ids compare on their case-sensitive 15 characters: Setup shows those, the
    message the 18-character form whose suffix only encodes their case."""
    return hmac.compare_digest(given[:15].encode(), expected[:15].encode())


class SalesforceOutboundMessages:
    """Verifies and normalizes outbound messages, and answers them with their Ack.

    An outbound message carries no signature [S13]. It is accepted when the endpoint
    URL it was posted to carries the connection's secret ``token`` (the outbound
    message is configured with that URL, sent only over TLS) and its
    ``OrganizationId`` is the connected org's, which Salesforce tells listeners to
    check [S13]. The token is what proves the sender; nothing proves the body, so
    events name records and the sync engine reads them from Salesforce itself.
    """

    system = "salesforce"

    def __init__(self, secret: Callable[[], Mapping[str, str]]) -> None:
        self._secret = secret

    def verify(self, request: InboundWebhook) -> None:
        secret = self._secret()
        given = parse_qs(urlsplit(request.url).query).get("token", [])
        if len(given) != 1:
            raise WebhookRejected(401, "missing endpoint token")
        if not hmac.compare_digest(given[0].encode(), secret["outbound_token"].encode()):
            raise WebhookRejected(401, "wrong endpoint token")
        try:
            envelope = _read_envelope(request.body)
        except WebhookRejected:
            return  # not a message at all: normalize() answers 400 for it
        self._require_org(envelope, secret)

    def normalize(self, request: InboundWebhook, connection_id: str) -> list[ChangeEvent]:
        """One event per notification of a synced object, oldest first.

        Notifications of other objects are dropped, not refused: a refused message is
        retried for 24 hours [S12] and would hold back nothing but itself. Salesforce
        sends no deletions (a rule fires on create and edit); reconciliation finds them.
        """
        envelope = _read_envelope(request.body)
        self._require_org(envelope, self._secret())
        # One event per record and version: every notification is sent with the record's
        # latest data [S12], so two changes batched into one message read the same.
        events: dict[tuple[ObjectType, str, int], ChangeEvent] = {}
        for notification in envelope.notifications:
            kind = _BY_SOBJECT.get(notification.sobject)
            if kind is None:
                continue
            # The notification Id is kept across retries, for listeners to dedupe [S12].
            event_id = f"{VENDOR}:{envelope.organization_id[:15]}:{notification.id}"
            events.setdefault(
                (kind.object_type, notification.record_id, notification.modified_ms),
                ChangeEvent(
                    connection_id=connection_id,
                    source=VENDOR,
                    object_type=kind.object_type,
                    record_id=notification.record_id,
                    event_id=event_id,
                    kind=ChangeKind.UPDATED,  # a message does not say created or edited
                    occurred_at=datetime.fromtimestamp(notification.modified_ms / 1000, UTC),
                    version=notification.modified_ms,
                ),
            )
        # Retries come in no particular order [S12]; the queue keeps this one per record.
        return sorted(events.values(), key=lambda e: e.version)

    def answer(self, request: InboundWebhook, enqueued: int) -> WebhookAnswer:
        """The acknowledgement, also when every notification was dropped: anything else
        makes Salesforce send the message again for a day [S11, S12]."""
        return WebhookAnswer(status=200, content_type="text/xml; charset=utf-8", body=ACK_ENVELOPE)

    @staticmethod
    def _require_org(envelope: _Envelope, secret: Mapping[str, str]) -> None:
        if not _same_org(envelope.organization_id, secret["organization_id"]):
            raise WebhookRejected(403, "message from another Salesforce org")


# --- the CRM ------------------------------------------------------------------------


class SalesforceCrm:
    """Reads contacts, accounts, opportunities (with contacts and products) and products,
    and writes fields back into them (``CrmWriter``).

    Every read is one SOQL query [S5]: an opportunity comes with its line items and
    contact roles as child relationships, so a deal is one call, and
    ``changed_since`` lists complete deals page by page.
    """

    system = "salesforce"

    def __init__(
        self,
        api: ApiClient,
        properties: Mapping[ObjectType, Sequence[str]],
        *,
        api_version: str = API_VERSION,
        batch_size: int = QUERY_BATCH_SIZE,
        clock: Callable[[], float] = time.time,
        written_back: Mapping[ObjectType, Sequence[str]] | None = None,
    ) -> None:
        """``written_back``: the fields the way back fills, read with their record where
        the org has them (an admin makes them; a missing one must not stop the reads)."""
        written_back = written_back or {}
        for names in [*properties.values(), *written_back.values()]:
            for name in names:
                if name not in _DERIVED and not _FIELD_PATH.fullmatch(name):
                    raise ValueError(f"{name!r} is not a Salesforce field name")
        self._api = api
        self._properties = properties
        self._written_back = written_back
        self._described: dict[str, _Describe] = {}
        self._base = f"/services/data/v{api_version}"
        self._batch_size = batch_size
        self._clock = clock

    def fetch(self, object_type: ObjectType, record_id: str) -> SourceRecord | None:
        kind = _kind(object_type)
        if not _RECORD_ID.fullmatch(record_id):
            return None  # no Salesforce id: names no record
        soql = f"{self._select(kind)} WHERE Id = '{record_id}'"
        try:
            for row in self._rows(soql):
                return self._record(kind, row)
        except NotFound:
            return None
        return None  # deleted (queries leave the recycle bin out) or never there

    def changed_since(self, object_type: ObjectType, since_ms: int) -> Iterator[SourceRecord]:
        """By ``SystemModstamp``, ascending, following ``nextRecordsUrl`` [S5, S7].

        ``SystemModstamp`` rather than ``LastModifiedDate``: it also moves when
        automation changes a record (an opportunity's Amount rolled up from its
        products), which the invoice must follow, and it is indexed [S7]. A query
        locator pages one snapshot of the result, so no restart can repeat or skip.
        The literal is whole seconds [S8]; records of the second before ``since_ms``
        are skipped here.
        """
        kind = _kind(object_type)
        soql = (
            f"{self._select(kind)} WHERE SystemModstamp >= {_soql_datetime(since_ms)} "
            "ORDER BY SystemModstamp ASC, Id ASC"
        )
        for row in self._rows(soql):
            record = self._record(kind, row)
            if record.version >= since_ms:
                yield record

    def deleted_since(self, object_type: ObjectType, since_ms: int) -> Iterator[DeletedRecord]:
        """sObject Get Deleted [S17] from ``since_ms`` (15 days back at most) to now.

        The API ignores the seconds of ``start`` and ``end``, and the start must precede
        the end by more than a minute [S17]: the window runs from the minute of
        ``since_ms``, or two minutes before now's if that is later, to now's minute.
        Salesforce says to start the next call at ``latestDateCovered``, as a deletion
        after it may not be listed yet [S17]: one listed after it is left for that call.
        """
        kind = _kind(object_type)
        now_ms = int(self._clock() * 1000)
        end = now_ms - now_ms % MINUTE_MS
        start = max(since_ms, now_ms - DELETED_REACH_MS)
        start = min(start - start % MINUTE_MS, end - 2 * MINUTE_MS)
        response = self._api.request(
            "GET",
            f"{self._base}/sobjects/{kind.sobject}/deleted/",
            params={"start": _rest_datetime(start), "end": _rest_datetime(end)},
        )
        try:
            listed = _Deleted.model_validate(_parse_json(response))
        except ValidationError as exc:
            detail = f"{kind.sobject} deleted: {exc.error_count()} invalid fields"
            raise _unexpected(detail) from exc
        covered = _epoch_ms(listed.latest_date_covered)
        for row in listed.deleted_records:
            deleted_at = _epoch_ms(row.deleted_date)
            if deleted_at is None:
                raise _unexpected(f"{kind.sobject} {row.id}: unreadable deletedDate")
            if deleted_at >= since_ms and (covered is None or deleted_at <= covered):
                yield DeletedRecord(id=row.id, deleted_at_ms=deleted_at)

    def ensure_properties(
        self, object_type: ObjectType, properties: Sequence[CrmProperty]
    ) -> list[str]:
        """Creates nothing: the REST API cannot make a field, an admin does in Setup
        [S16]. One describe [S14] checks that each field is there for the integration
        user to write, with every option a restricted picklist must take; otherwise
        ``Permanent`` names what is wrong and where the README says how to fix it.
        Field API names are case-insensitive, as in a request body."""
        sobject = _kind(object_type).sobject
        found = {f.name.lower(): f for f in self._describe(sobject).fields}
        problems: list[str] = []
        for wanted in properties:
            field = found.get(wanted.name.lower())
            if field is None:
                problems.append(f"{wanted.name} is missing")
            elif not field.updateable:
                problems.append(f"{wanted.name} is read-only for the integration user")
            elif field.restricted_picklist:
                allowed = {v.value for v in field.picklist_values if v.active}
                lacking = [option for option in wanted.options if option not in allowed]
                if lacking:
                    problems.append(f"{wanted.name} lacks the picklist values {lacking}")
        if problems:
            raise Permanent(
                f"{VENDOR} {sobject}: {'; '.join(problems)}. An admin makes these fields "
                f"in Setup ({FIELDS_HELP})",
                code="MISSING_CUSTOM_FIELDS",
            )
        return []

    def write_properties(
        self,
        object_type: ObjectType,
        record_id: str,
        values: Mapping[str, str | None],
        *,
        idempotency_key: str,
    ) -> int:
        """One PATCH of the record (null clears a field), then its ``SystemModstamp``
        read back: the PATCH answers 204 without a body [S15]. ``SystemModstamp`` is the
        version ``fetch`` and outbound messages report [S7]; when automation or a person
        changed the record after this PATCH, it is theirs, a later one.

        Salesforce's REST API takes no idempotency key on this call, and needs none:
        sending the same values again leaves the record as the first PATCH did.
        """
        kind = _kind(object_type)
        if not _RECORD_ID.fullmatch(record_id):
            raise NotFound(f"{VENDOR}: {record_id!r} is no Salesforce record id")
        path = f"{self._base}/sobjects/{kind.sobject}/{record_id}"
        self._api.request("PATCH", path, json=dict(values))
        read = self._api.request("GET", path, params={"fields": "Id,SystemModstamp"})
        return _versioned(kind, _parse_json(read))[1]

    def _wanted(self, object_type: ObjectType) -> list[str]:
        """The properties a record of this type carries: the mapping's, ours, and the
        written-back fields the org has."""
        return _unique(
            [
                "Id",
                "SystemModstamp",
                *_kind(object_type).needs,
                *self._properties.get(object_type, ()),
                *self._readable_back(object_type),
            ]
        )

    def _readable_back(self, object_type: ObjectType) -> list[str]:
        """The written-back fields the org has, by its describe (one per object type
        and process; ``ensure_properties`` describes afresh)."""
        names = self._written_back.get(object_type, ())
        if not names:
            return []
        sobject = _kind(object_type).sobject
        described = self._described.get(sobject) or self._describe(sobject)
        present = {f.name.lower() for f in described.fields}
        return [name for name in names if name.lower() in present]

    def _describe(self, sobject: str) -> _Describe:
        response = self._api.request("GET", f"{self._base}/sobjects/{sobject}/describe")
        try:
            described = _Describe.model_validate(_parse_json(response))
        except ValidationError as exc:
            raise _unexpected(f"{sobject} describe: {exc.error_count()} invalid fields") from exc
        self._described[sobject] = described
        return described

    def _fields(self, object_type: ObjectType) -> list[str]:
        """The SOQL fields behind ``_wanted``: derived properties by their inputs."""
        fields: list[str] = []
        for name in self._wanted(object_type):
            fields += _DERIVED.get(name, (name,))
        return _unique(fields)

    def _select(self, kind: _Kind) -> str:
        """The SELECT ... FROM of a read. Only names checked against ``_FIELD_PATH`` (in
        ``__init__``) and this module's constants go in: no text from a request."""
        parts = self._fields(kind.object_type)
        if kind.object_type is ObjectType.DEAL:
            lines = ", ".join(self._fields(ObjectType.LINE_ITEM))
            parts += [
                f"(SELECT {lines} FROM OpportunityLineItems ORDER BY {_LINE_ORDER})",  # noqa: S608
                f"(SELECT ContactId FROM OpportunityContactRoles ORDER BY {_ROLE_ORDER})",  # noqa: S608
            ]
        return f"SELECT {', '.join(parts)} FROM {kind.sobject}"  # noqa: S608

    def _rows(self, soql: str) -> Iterator[dict[str, Any]]:
        response = self._api.request(
            "GET",
            f"{self._base}/query",
            params={"q": soql},
            headers={"Sforce-Query-Options": f"batchSize={self._batch_size}"},
        )
        yield from self._pages(_page(_parse_json(response), "query"))

    def _pages(self, page: _QueryPage) -> Iterator[dict[str, Any]]:
        """Every row of a query or child relationship, batch after batch [S5]."""
        while True:
            yield from page.records
            if page.done or page.next_records_url is None:
                return
            response = self._api.request("GET", page.next_records_url)
            page = _page(_parse_json(response), "query more")

    def _record(self, kind: _Kind, row: dict[str, Any]) -> SourceRecord:
        essentials, version = _versioned(kind, row)
        flat = _flatten(row)
        properties = {
            name: _discount_amount(flat) if name == DISCOUNT_AMOUNT else flat.get(name)
            for name in self._wanted(kind.object_type)
        }
        associations: dict[ObjectType, list[str]] = {}
        children: dict[ObjectType, list[SourceRecord]] = {}
        if kind.object_type is ObjectType.DEAL:
            account = flat.get("AccountId")
            associations[ObjectType.COMPANY] = [account] if account else []
            roles = self._children(row, "OpportunityContactRoles")
            associations[ObjectType.CONTACT] = _unique(
                [str(role["ContactId"]) for role in roles if role.get("ContactId")]
            )
            line_kind = _KINDS[ObjectType.LINE_ITEM]
            children[ObjectType.LINE_ITEM] = [
                self._record(line_kind, line)
                for line in self._children(row, "OpportunityLineItems")
            ]
        elif kind.object_type is ObjectType.LINE_ITEM:
            opportunity = flat.get("OpportunityId")
            associations[ObjectType.DEAL] = [opportunity] if opportunity else []
        return SourceRecord(
            object_type=kind.object_type,
            id=essentials.id,
            version=version,
            properties=properties,
            associations=associations,
            children=children,
        )

    def _children(self, row: Mapping[str, Any], relationship: str) -> list[dict[str, Any]]:
        """A child relationship's rows; null when it has none [S5]."""
        raw = row.get(relationship)
        if raw is None:
            return []
        return list(self._pages(_page(raw, relationship)))


# --- factories ----------------------------------------------------------------------


def build_salesforce(
    *,
    token_url: str,
    api_version: str,
    secrets: SecretStore,
    secret_id: str,
    lock: Lock,
    budget: CallBudget,
    connection_id: str,
    properties: Mapping[ObjectType, Sequence[str]],
    transport: httpx.BaseTransport | None = None,
    limits: Sequence[CallLimit] = (),
    batch_size: int = QUERY_BATCH_SIZE,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    deadline: Deadline | None = None,
    clock: Callable[[], float] = time.time,
    written_back: Mapping[ObjectType, Sequence[str]] | None = None,
) -> SalesforceCrm:
    """The Salesforce org of one connection, through the refresh token in ``secret_id``.

    Salesforce documents no request rate for the REST API, only the daily allocation
    and the concurrency of long-running calls [S3], both met as answers; ``limits``
    may add a share of the allocation for this connection.
    """
    oauth = RotatingOAuth2(
        secrets=secrets,
        secret_id=secret_id,
        lock=lock,
        token_url=token_url,
        clock=clock,
        token_http=httpx.Client(transport=transport, timeout=15.0),
        # The refresh request carries client_id and client_secret as form parameters [S1].
        client_auth="body",
        assumed_lifetime_s=ASSUMED_SESSION_S,
        keep=("instance_url",),
    )
    origin = httpx.URL(token_url).copy_with(path="/", query=None, fragment=None)
    client = partial(
        ApiClient,
        vendor=VENDOR,
        base_url=str(origin).rstrip("/"),
        auth=InstanceBearer(oauth, secrets, secret_id),
        classify=classify,
        budget=budget,
        budget_key=f"{VENDOR}:{connection_id}",
        retry=retry,
        sleep=sleep,
        transport=transport,
        deadline=deadline,
    )
    return SalesforceCrm(
        client(limits=limits),
        properties,
        api_version=api_version,
        batch_size=batch_size,
        clock=clock,
        written_back=written_back,
    )


def salesforce_webhooks(secrets: SecretStore, secret_id: str) -> SalesforceOutboundMessages:
    """Outbound message checks with the org id and endpoint token, read per request."""

    def secret() -> Mapping[str, str]:
        value = secrets.read(secret_id)
        for key in ("organization_id", "outbound_token"):
            required(value, secret_id, key)
        return value

    return SalesforceOutboundMessages(secret)
