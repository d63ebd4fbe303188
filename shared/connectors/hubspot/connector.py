"""HubSpot: webhooks in, CRM v3 objects out.

Facts cited as [Hn] are listed with their HubSpot documentation URLs in
docs/vendors/hubspot.md. The connector is
declarations over ``shared.connectors.http``: paths, properties, limits and how
to read HubSpot's answers; ``ApiClient`` does the calling, budgeting and retrying.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TypeVar

import httpx
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.connectors.auth import SecretBearer, secret_value
from shared.connectors.http import (
    ApiClient,
    CallLimit,
    Classified,
    Deadline,
    ResponseAction,
    RetryPolicy,
    paginate,
    retry_after_seconds,
)
from shared.errors import NotFound, Permanent, Retryable, WebhookRejected
from shared.models import ChangeEvent, ChangeKind, ObjectType, SourceRecord
from shared.ports import (
    CallBudget,
    CrmProperty,
    DeletedRecord,
    InboundWebhook,
    SecretStore,
    WebhookAnswer,
    enqueued_answer,
)

VENDOR = "hubspot"

# Burst limit of a private app on Free/Starter: 100 requests per 10 s [H9, usage
# guidelines]. Professional/Enterprise (190) or the API add-on (250) pass their own.
BURST_LIMIT = CallLimit(limit=100, per_s=10)
# CRM search: 5 requests per second per account [H10, H11]. Counted against the burst
# limit as well: the docs exempt search from it only for public OAuth apps [H9].
SEARCH_LIMIT = CallLimit(limit=5, per_s=1)
# Search returns at most 10,000 results per query; paging past that is a 400 [H10].
SEARCH_RESULT_CAP = 10_000
SEARCH_PAGE_SIZE = 100  # HubSpot allows up to 200 per page
LIST_PAGE_SIZE = 100  # the most a list page holds (obs)
BATCH_READ_MAX = 100  # inputs per /batch/read [H5]
# HubSpot retries a delivery for up to 24 h [H1]; an hour's margin for clock skew.
UNSIGNED_TIME_REPLAY_WINDOW_MS = 25 * 3600 * 1000
MAX_EVENTS_PER_DELIVERY = 100  # "Each request can contain up to 100 events" [H1]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LAST_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last a datetime holds

# v3 signatures hash the URI with these escapes decoded [H3, H4].
_V3_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_V3_ESCAPE = re.compile("|".join(_V3_DECODED), re.IGNORECASE)


@dataclass(frozen=True)
class _Kind:
    """How one CRM object type is named and versioned at HubSpot."""

    object_type: ObjectType
    path: str  # the plural in /crm/v3/objects/{path} and in association maps
    modified: str  # the last-modified property: version and search cursor


_KINDS = {
    kind.object_type: kind
    for kind in (
        # Contacts keep their pre-v3 name for it [H10]; other objects hs_lastmodifieddate.
        _Kind(ObjectType.CONTACT, "contacts", "lastmodifieddate"),
        _Kind(ObjectType.COMPANY, "companies", "hs_lastmodifieddate"),
        _Kind(ObjectType.DEAL, "deals", "hs_lastmodifieddate"),
        _Kind(ObjectType.LINE_ITEM, "line_items", "hs_lastmodifieddate"),
    )
}
_BY_PATH = {kind.path: kind for kind in _KINDS.values()}
# What a deal is read with: its parties as ids, its line items as child records.
_DEAL_PARTIES = (ObjectType.CONTACT, ObjectType.COMPANY)
_DEAL_ASSOCIATIONS = ",".join(_KINDS[t].path for t in (*_DEAL_PARTIES, ObjectType.LINE_ITEM))


def _kind(object_type: ObjectType) -> _Kind:
    try:
        return _KINDS[object_type]
    except KeyError:
        raise ValueError(f"HubSpot has no {object_type} objects") from None


# --- webhooks ---------------------------------------------------------------------

# Subscription type prefixes (and association type sides, lower-cased) we sync.
_WEBHOOK_OBJECTS = {
    "contact": ObjectType.CONTACT,
    "company": ObjectType.COMPANY,
    "deal": ObjectType.DEAL,
    "line_item": ObjectType.LINE_ITEM,
}
_WEBHOOK_ACTIONS = {
    "creation": ChangeKind.CREATED,
    "propertyChange": ChangeKind.UPDATED,
    "deletion": ChangeKind.DELETED,
    "privacyDeletion": ChangeKind.DELETED,  # GDPR delete of a contact: gone all the same
    "associationChange": ChangeKind.ASSOCIATION,
    # The surviving record of a merge, and a restored one, are fetched and upserted.
    "merge": ChangeKind.UPDATED,
    "restore": ChangeKind.UPDATED,
}


class _WebhookEvent(BaseModel):
    """One event of a delivery [H1, H3]; fields we do not use are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: int = Field(alias="eventId")
    subscription_id: int = Field(alias="subscriptionId")
    portal_id: int = Field(alias="portalId")
    occurred_at: int = Field(alias="occurredAt", ge=0, le=LAST_EPOCH_MS)
    # H1's table calls it eventType; HubSpot's own signed example subscriptionType.
    subscription_type: str = Field(
        validation_alias=AliasChoices("subscriptionType", "eventType"), min_length=3
    )
    object_id: int | None = Field(default=None, alias="objectId")
    association_type: str | None = Field(default=None, alias="associationType")
    from_object_id: int | None = Field(default=None, alias="fromObjectId")
    to_object_id: int | None = Field(default=None, alias="toObjectId")
    primary_object_id: int | None = Field(default=None, alias="primaryObjectId")
    new_object_id: int | None = Field(default=None, alias="newObjectId")

    @model_validator(mode="after")
    def _names_a_record(self) -> _WebhookEvent:
        if self.action == "associationChange":
            if self.association_type is None or self.from_object_id is None:
                raise ValueError("associationChange needs associationType and fromObjectId")
        elif self.object_id is None:
            raise ValueError("objectId is required")
        return self

    @property
    def action(self) -> str:
        return self.subscription_type.partition(".")[2]

    def target(self) -> tuple[ObjectType, int] | None:
        """The record to re-sync, or None for objects this service does not sync."""
        if self.action == "associationChange":
            # DEAL_TO_CONTACT is reported on the deal: the deal re-syncs with its parties.
            # A line item is invoiced through its deal, so LINE_ITEM_TO_DEAL names the
            # deal too: the event lands in the deal's message group from the start.
            side, _, other = (self.association_type or "").lower().partition("_to_")
            object_type = _WEBHOOK_OBJECTS.get(side)
            record_id = self.from_object_id
            if object_type is ObjectType.LINE_ITEM and _WEBHOOK_OBJECTS.get(other) is (
                ObjectType.DEAL
            ):
                object_type, record_id = ObjectType.DEAL, self.to_object_id
        else:
            object_type = _WEBHOOK_OBJECTS.get(self.subscription_type.partition(".")[0])
            # A merge names the survivor: the new record when one was created.
            record_id = self.new_object_id or self.primary_object_id or self.object_id
        if object_type is None or record_id is None:
            return None
        return object_type, record_id

    def identity(self, record_id: int) -> str:
        """HubSpot's eventId alone is not unique [H1]; with these fields it is."""
        parts = [self.portal_id, self.subscription_id, self.event_id, self.occurred_at, record_id]
        if self.to_object_id is not None:
            parts.append(self.to_object_id)
        return "hubspot:" + ":".join(map(str, parts))


class HubSpotWebhooks:
    """Verifies HubSpot's signatures (v3, else v2/v1) and turns deliveries into events."""

    system = "hubspot"

    def __init__(
        self,
        secret: Callable[[], str],
        *,
        tolerance_s: int = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._tolerance_ms = tolerance_s * 1000
        self._clock = clock

    def verify(self, request: InboundWebhook) -> None:
        headers = request.headers
        method = request.method.upper()
        signature_v3 = headers.get("x-hubspot-signature-v3")
        if signature_v3 is not None:
            timestamp = self._fresh_timestamp(headers.get("x-hubspot-request-timestamp"))
            message = f"{method}{_v3_uri(request.url)}{request.body}{timestamp}"
            digest = hmac.new(self._secret().encode(), message.encode(), hashlib.sha256).digest()
            _require_equal(base64.b64encode(digest).decode(), signature_v3)
            return
        signature = headers.get("x-hubspot-signature")
        if signature is None:
            raise WebhookRejected(401, "missing HubSpot signature")
        version = headers.get("x-hubspot-signature-version")
        if version == "v1":
            source = f"{self._secret()}{request.body}"
        elif version == "v2":
            # v2 covers the URI exactly as sent, scheme and query order included [H3].
            source = f"{self._secret()}{method}{request.url}{request.body}"
        else:
            raise WebhookRejected(401, "unsupported x-hubspot-signature-version")
        _require_equal(hashlib.sha256(source.encode()).hexdigest(), signature)
        self._not_replayed(request)

    def _not_replayed(self, request: InboundWebhook) -> None:
        """v1/v2 sign no timestamp, so a captured delivery stays valid forever. HubSpot
        stops retrying after a day [H1]: a delivery whose newest event is older than
        that is a replay. (v3 deliveries are bounded by their signed timestamp.)"""
        try:
            payload = request.payload()
        except WebhookRejected:
            return  # normalize() answers 400 for it
        stamps = (
            [
                e["occurredAt"]
                for e in payload
                if isinstance(e, dict) and isinstance(e.get("occurredAt"), int)
            ]
            if isinstance(payload, list)
            else []
        )
        if stamps and self._now_ms() - max(stamps) > UNSIGNED_TIME_REPLAY_WINDOW_MS:
            raise WebhookRejected(401, "events older than HubSpot's retry window: a replay")

    def answer(self, request: InboundWebhook, enqueued: int) -> WebhookAnswer:
        return enqueued_answer(enqueued)

    def normalize(self, request: InboundWebhook, connection_id: str) -> list[ChangeEvent]:
        """One event per supported record change, oldest first, duplicates collapsed.

        Events about objects this service does not sync (tickets, products, custom
        objects, …) are dropped rather than rejected: HubSpot retries any 4xx for a
        day [H1], and one subscription too many must not block the events of the
        same delivery that matter.
        """
        payload = request.payload()
        if not isinstance(payload, list):
            raise WebhookRejected(400, "body must be a JSON array of events")
        if len(payload) > MAX_EVENTS_PER_DELIVERY:
            raise WebhookRejected(
                400, f"more than {MAX_EVENTS_PER_DELIVERY} events in one delivery"
            )
        events: dict[str, ChangeEvent] = {}
        for position, raw in enumerate(payload):
            try:
                event = _WebhookEvent.model_validate(raw)
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(map(str, first["loc"])) or "event"
                raise WebhookRejected(400, f"event {position}: {where}: {first['msg']}") from None
            kind = _WEBHOOK_ACTIONS.get(event.action)
            target = event.target()
            if kind is None or target is None:
                continue
            object_type, record_id = target
            event_id = event.identity(record_id)
            events.setdefault(
                event_id,
                ChangeEvent(
                    connection_id=connection_id,
                    source="hubspot",
                    object_type=object_type,
                    record_id=str(record_id),
                    event_id=event_id,
                    kind=kind,
                    occurred_at=datetime.fromtimestamp(event.occurred_at / 1000, UTC),
                    version=event.occurred_at,
                ),
            )
        # Deliveries are unordered [H1]; the queue keeps this order within a record.
        return sorted(events.values(), key=lambda e: e.version)

    def _fresh_timestamp(self, header: str | None) -> int:
        try:
            timestamp = int(header or "")
        except ValueError:
            raise WebhookRejected(401, "missing or malformed x-hubspot-request-timestamp") from None
        # Older than the tolerance is HubSpot's rule [H3]. A timestamp far ahead is
        # refused too (HubSpot's SDK lets it pass): a signed request dated ahead
        # would stay replayable for that much longer; the tolerance absorbs clock skew.
        if abs(self._now_ms() - timestamp) > self._tolerance_ms:
            raise WebhookRejected(401, "timestamp outside tolerance")
        return timestamp

    def _now_ms(self) -> int:
        """An int, so comparing it with any int the sender wrote cannot overflow a float."""
        return int(self._clock() * 1000)


def _v3_uri(url: str) -> str:
    return _V3_ESCAPE.sub(lambda match: _V3_DECODED[match.group().upper()], url)


def _require_equal(expected: str, given: str) -> None:
    if not hmac.compare_digest(expected.encode(), given.encode()):
        raise WebhookRejected(401, "signature mismatch")


# --- responses ----------------------------------------------------------------------


class _Body(BaseModel):
    # HubSpot sends ids as strings in v3 and as numbers in places; keep them strings.
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True)


class _ErrorBody(_Body):
    """HubSpot's error body [H5, H12] and 429 body [H9]; every field may be missing."""

    message: str | None = None
    category: str | None = None
    correlation_id: str | None = Field(default=None, alias="correlationId")
    policy_name: str | None = Field(default=None, alias="policyName")


class _NextPage(_Body):
    after: str


class _Paging(_Body):
    next: _NextPage | None = None


class _Ref(_Body):
    id: str


class _AssociationPage(_Body):
    results: list[_Ref] = Field(default_factory=list)
    paging: _Paging | None = None


class _Object(_Body):
    id: str
    properties: dict[str, str | None] = Field(default_factory=dict)
    updated_at: str | None = Field(default=None, alias="updatedAt")
    archived: bool = False
    archived_at: str | None = Field(default=None, alias="archivedAt")
    associations: dict[str, _AssociationPage] = Field(default_factory=dict)


class _Objects(_Body):
    """A batch read, a search page or a list page."""

    results: list[_Object] = Field(default_factory=list)
    total: int | None = None
    paging: _Paging | None = None


class _PropertyDefinition(_Body):
    name: str
    group_name: str | None = Field(default=None, alias="groupName")


class _PropertyDefinitions(_Body):
    """``GET /crm/v3/properties/{objectType}``: every property, in one answer [H20]."""

    results: list[_PropertyDefinition] = Field(default_factory=list)


class _Associated(_Body):
    to_object_id: str = Field(alias="toObjectId")


class _AssociatedPage(_Body):
    results: list[_Associated] = Field(default_factory=list)
    paging: _Paging | None = None


def classify(response: httpx.Response, *, clock: Callable[[], float] = time.time) -> Classified:
    """HubSpot's statuses and error bodies, as ``ApiClient`` acts on them."""
    status = response.status_code
    if 200 <= status < 300:  # 207: a batch with some inputs missing; read what came
        return Classified(ResponseAction.SUCCESS)
    error = _error_body(response)
    text = error.message or response.reason_phrase
    if error.correlation_id:
        text = f"{text} (correlationId {error.correlation_id})"
    if status == 404:
        return Classified(ResponseAction.NOT_FOUND, text, error.category)
    if status == 429:
        wait = _rate_limit_wait(response, error, clock())
        return Classified(ResponseAction.RATE_LIMITED, text, error.policy_name, wait)
    if status >= 500:
        return Classified(ResponseAction.RETRY, text, error.category)
    if status in (401, 403):
        return Classified(ResponseAction.AUTH_FAILED, f"token refused: {text}", error.category)
    return Classified(ResponseAction.FAIL, text, error.category)


def _error_body(response: httpx.Response) -> _ErrorBody:
    try:
        return _ErrorBody.model_validate_json(response.content)
    except ValidationError:
        return _ErrorBody()


def _rate_limit_wait(response: httpx.Response, error: _ErrorBody, now: float) -> float | None:
    """Seconds until HubSpot takes calls again; None lets the client back off."""
    retry_after = retry_after_seconds(response)
    if retry_after is not None:
        return retry_after
    if error.policy_name == "DAILY":
        # The daily count resets at midnight in the account's time zone [H9], which the
        # API does not tell us: wait for the next UTC midnight (the message goes back to
        # the queue); meeting the limit again there just waits another round.
        today = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return (today + timedelta(days=1)).timestamp() - now
    interval = response.headers.get("x-hubspot-ratelimit-interval-milliseconds")
    try:
        # The whole rolling window: by then every call that filled it has left it.
        return int(interval or "") / 1000
    except ValueError:
        return None


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], response: httpx.Response) -> M:
    try:
        return model.model_validate_json(response.content)
    except ValidationError as exc:
        detail = f"{response.request.url.path}: {exc.error_count()} invalid fields"
        raise _unexpected(detail) from exc


def _unexpected(detail: str) -> Retryable:
    """A 2xx HubSpot should not have sent; retried, then dead-lettered if it persists."""
    return Retryable(f"{VENDOR} answered unexpectedly: {detail}", code="UNEXPECTED_RESPONSE")


def _epoch_ms(value: str | None) -> int | None:
    """HubSpot dates come as ISO-8601 or as epoch-ms strings [H16]."""
    if not value:
        return None
    if value.isdigit():
        return int(value)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)  # exact, unlike float seconds


def _deleted(kind: _Kind, found: _Object) -> DeletedRecord:
    """An archived record of the list, by its ``archivedAt`` [H5]."""
    archived_at = _epoch_ms(found.archived_at)
    if not found.archived or archived_at is None:
        raise _unexpected(f"{kind.path} {found.id} listed as archived without an archive time")
    return DeletedRecord(id=found.id, deleted_at_ms=archived_at)


def _unique(ids: Iterable[str]) -> list[str]:
    """In first-seen order: HubSpot lists a record once per association type."""
    return list(dict.fromkeys(ids))


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _next_after(paging: _Paging | None) -> str | None:
    """The cursor of the next page; HubSpot leaves ``paging`` out on the last one [H5]."""
    return paging.next.after if paging is not None and paging.next is not None else None


@dataclass
class _SearchCursor:
    """Where a last-modified search stands, across restarts from a later floor."""

    floor: int
    newest: int = -1
    ids_at_newest: set[str] = field(default_factory=set)

    def is_new(self, record: SourceRecord) -> bool:
        """False for a record already yielded at the same version (a restart's overlap)."""
        if record.version == self.newest and record.id in self.ids_at_newest:
            return False
        if record.version > self.newest:
            self.newest, self.ids_at_newest = record.version, set()
        if record.version == self.newest:
            self.ids_at_newest.add(record.id)
        return True


# --- writing back -------------------------------------------------------------------

# ``CrmProperty.kind`` as HubSpot's property ``type`` and the ``fieldType`` it is shown
# with; each pair is one the type allows [H20].
_PROPERTY_TYPES = {
    "string": ("string", "text"),
    "number": ("number", "number"),
    "date": ("date", "date"),
    "enumeration": ("enumeration", "select"),
}
# A property is created in a group [H20]; HubSpot advises an integration to keep its
# own properties in a group of their own.
PROPERTY_GROUP = {"name": "crmsync", "label": "crmsync", "displayOrder": -1}


def _property_body(prop: CrmProperty) -> dict[str, object]:
    kind, field_type = _PROPERTY_TYPES[prop.kind]
    body: dict[str, object] = {
        "name": prop.name,
        "label": prop.label,
        "type": kind,
        "fieldType": field_type,
        "groupName": PROPERTY_GROUP["name"],
    }
    if prop.kind == "enumeration":
        body["options"] = [
            {"label": value, "value": value, "hidden": False, "displayOrder": position}
            for position, value in enumerate(prop.options)
        ]
    return body


# --- the CRM ------------------------------------------------------------------------


class HubSpotCrm:
    """Reads contacts, companies, deals (with parties and line items) and line items,
    and writes properties back into them (``CrmWriter``).

    ``search_api`` is an ``ApiClient`` that also declares ``SEARCH_LIMIT``; the
    factory builds both over one budget key, so search and the other calls share
    the burst window while search alone counts against its 5 per second.
    """

    system = "hubspot"

    def __init__(
        self,
        api: ApiClient,
        properties: Mapping[ObjectType, Sequence[str]],
        *,
        search_api: ApiClient | None = None,
        search_result_cap: int = SEARCH_RESULT_CAP,
    ) -> None:
        self._api = api
        self._search_api = search_api or api
        self._properties = properties
        self._search_result_cap = search_result_cap

    def fetch(self, object_type: ObjectType, record_id: str) -> SourceRecord | None:
        kind = _kind(object_type)
        params = {"properties": ",".join(self._wanted(kind)), "archived": "false"}
        if object_type is ObjectType.DEAL:
            params["associations"] = _DEAL_ASSOCIATIONS
        elif object_type is ObjectType.LINE_ITEM:
            # A line item is synced through its deal; the engine needs to know which.
            params["associations"] = _KINDS[ObjectType.DEAL].path
        try:
            response = self._api.request(
                "GET", f"/crm/v3/objects/{kind.path}/{record_id}", params=params
            )
        except NotFound:
            return None
        found = _parse(_Object, response)
        if found.archived:
            return None
        if object_type is ObjectType.LINE_ITEM:
            deals = self._associations(kind, found).get(ObjectType.DEAL, [])
            return self._record(kind, found, associations={ObjectType.DEAL: deals})
        if object_type is not ObjectType.DEAL:
            return self._record(kind, found)
        linked = self._associations(kind, found)
        line_items = self._line_items(linked.get(ObjectType.LINE_ITEM, []))
        return self._record(
            kind,
            found,
            associations={t: linked.get(t, []) for t in _DEAL_PARTIES},
            children={ObjectType.LINE_ITEM: line_items},
        )

    def changed_since(self, object_type: ObjectType, since_ms: int) -> Iterator[SourceRecord]:
        """Search by last-modified time, ascending, restarting before the result cap.

        HubSpot's documented way past the 10,000-result cap [H10] is a new search
        from the last modified time seen; records at exactly that time come again
        and are skipped. Deals are completed through ``fetch`` (one GET with
        associations and one line-item batch read each): reconciliation finds few
        changed deals per run, and one code path builds every deal, so a reconciled
        deal is the same record a webhook would have fetched. A v4 batch association
        read would do a page of 100 deals in about four calls if backfills through
        reconciliation become the common case.
        """
        kind = _kind(object_type)
        cursor = _SearchCursor(floor=since_ms)
        while (yield from self._search_run(kind, cursor)):
            if cursor.newest <= cursor.floor:
                raise Permanent(
                    f"{VENDOR} search: over {self._search_result_cap} {kind.path} modified at "
                    f"{cursor.floor} ms; search cannot page past them",
                    code="SEARCH_CAP",
                )
            cursor.floor = cursor.newest

    def _search_run(
        self, kind: _Kind, cursor: _SearchCursor
    ) -> Generator[SourceRecord, None, bool]:
        """One search from ``cursor.floor``; returns True when it stopped at the cap
        with more to read."""
        read, after = 0, None
        while True:
            page = self._search(kind, cursor.floor, after)
            read += len(page.results)
            after = _next_after(page.paging)
            for found in page.results:
                record = self._record(kind, found)
                if not cursor.is_new(record):
                    continue
                if kind.object_type is ObjectType.DEAL:
                    complete = self.fetch(kind.object_type, record.id)
                    if complete is not None:  # None: deleted since the search
                        yield complete
                else:
                    yield record
            if read + SEARCH_PAGE_SIZE > self._search_result_cap:
                return after is not None or (page.total or 0) > read
            if after is None:
                return False

    def deleted_since(self, object_type: ObjectType, since_ms: int) -> Iterator[DeletedRecord]:
        """The archived list (``archived=true``), page by page, keeping those archived at
        or after ``since_ms`` [H5].

        The list takes no time filter: every record still in the recycling bin, where
        a deleted record stays restorable for 90 days [H22], is read, 100 a page. A
        record archived while the pages are read may be missed; it is dated after
        every one listed, so the next call from the newest time listed finds it.
        """
        kind = _kind(object_type)

        def page(after: str | None) -> tuple[list[DeletedRecord], str | None]:
            params: dict[str, str | int] = {"archived": "true", "limit": LIST_PAGE_SIZE}
            if after is not None:
                params["after"] = after
            listed = _parse(
                _Objects, self._api.request("GET", f"/crm/v3/objects/{kind.path}", params=params)
            )
            return [_deleted(kind, found) for found in listed.results], _next_after(listed.paging)

        return (d for d in paginate(page) if d.deleted_at_ms >= since_ms)

    def ensure_properties(
        self, object_type: ObjectType, properties: Sequence[CrmProperty]
    ) -> list[str]:
        """One read of the object's properties, then a create for each one missing."""
        path = f"/crm/v3/properties/{_kind(object_type).path}"
        present = _parse(_PropertyDefinitions, self._api.request("GET", path)).results
        missing = [p for p in properties if p.name not in {d.name for d in present}]
        if not missing:
            return []
        # The group holds every property we made: one of them listed says it exists.
        if all(d.group_name != PROPERTY_GROUP["name"] for d in present):
            self._create_unless_present(f"{path}/groups", PROPERTY_GROUP)
        return [p.name for p in missing if self._create_unless_present(path, _property_body(p))]

    def _create_unless_present(self, path: str, body: Mapping[str, object]) -> bool:
        """POST a definition; False when its name is taken already (HubSpot's 409 [H21]):
        another worker created it since our read, or our own earlier attempt did and
        its answer was lost."""
        try:
            self._api.request("POST", path, json=body)
        except Permanent as exc:
            if exc.status != 409:
                raise
            return False
        return True

    def write_properties(
        self,
        object_type: ObjectType,
        record_id: str,
        values: Mapping[str, str | None],
        *,
        idempotency_key: str,
    ) -> int:
        """One PATCH; an empty string clears a property [H5].

        HubSpot takes no idempotency key on this call, and needs none: sending the same
        values again leaves the record as the first PATCH did, so ``idempotency_key``
        goes unsent.
        """
        kind = _kind(object_type)
        body = {"properties": {name: value or "" for name, value in values.items()}}
        response = self._api.request("PATCH", f"/crm/v3/objects/{kind.path}/{record_id}", json=body)
        return self._version(kind, _parse(_Object, response))

    def _wanted(self, kind: _Kind) -> list[str]:
        return _unique([*self._properties.get(kind.object_type, ()), kind.modified])

    def _record(
        self,
        kind: _Kind,
        found: _Object,
        *,
        associations: dict[ObjectType, list[str]] | None = None,
        children: dict[ObjectType, list[SourceRecord]] | None = None,
    ) -> SourceRecord:
        return SourceRecord(
            object_type=kind.object_type,
            id=found.id,
            version=self._version(kind, found),
            properties=found.properties,
            associations=associations or {},
            children=children or {},
        )

    @staticmethod
    def _version(kind: _Kind, found: _Object) -> int:
        """The record's last-modified time in epoch ms: its version, here and in its
        webhooks."""
        version = _epoch_ms(found.properties.get(kind.modified)) or _epoch_ms(found.updated_at)
        if version is None:
            raise _unexpected(f"{kind.path} {found.id} has no last-modified time")
        return version

    def _search(self, kind: _Kind, floor: int, after: str | None) -> _Objects:
        body: dict[str, object] = {
            "filterGroups": [
                {
                    "filters": [
                        {"propertyName": kind.modified, "operator": "GTE", "value": str(floor)}
                    ]
                }
            ],
            "sorts": [{"propertyName": kind.modified, "direction": "ASCENDING"}],
            "properties": self._wanted(kind),
            "limit": SEARCH_PAGE_SIZE,
        }
        if after is not None:
            body["after"] = after
        response = self._search_api.request(
            "POST", f"/crm/v3/objects/{kind.path}/search", json=body
        )
        return _parse(_Objects, response)

    def _associations(self, kind: _Kind, found: _Object) -> dict[ObjectType, list[str]]:
        """Associated ids by type, in HubSpot's order, from a v3 read.

        The map is keyed by the plural object name; line items are also taken
        under ``line items`` (obs: integrations read a deal's line items by that
        key). A long list is paged: then the whole list is read from the v4
        associations API instead.
        """
        linked: dict[ObjectType, list[str]] = {}
        for name, page in found.associations.items():
            other = _BY_PATH.get(name.replace(" ", "_"))
            if other is None:
                continue
            if page.paging and page.paging.next:
                linked[other.object_type] = self._all_associated(kind, found.id, other)
            else:
                linked[other.object_type] = _unique([ref.id for ref in page.results])
        return linked

    def _all_associated(self, kind: _Kind, record_id: str, other: _Kind) -> list[str]:
        path = f"/crm/v4/objects/{kind.path}/{record_id}/associations/{other.path}"

        def page(after: str | None) -> tuple[list[str], str | None]:
            params: dict[str, str | int] = {"limit": 500}  # the v4 maximum [H6]
            if after is not None:
                params["after"] = after
            listed = _parse(_AssociatedPage, self._api.request("GET", path, params=params))
            return [item.to_object_id for item in listed.results], _next_after(listed.paging)

        return _unique(list(paginate(page)))

    def _line_items(self, ids: Sequence[str]) -> list[SourceRecord]:
        """Read with one batch call per 100, returned in the deal's order.

        A line item deleted since the deal was read is missing from the batch (207)
        and left out.
        """
        kind = _KINDS[ObjectType.LINE_ITEM]
        found: dict[str, SourceRecord] = {}
        for chunk in _chunks(ids, BATCH_READ_MAX):
            response = self._api.request(
                "POST",
                f"/crm/v3/objects/{kind.path}/batch/read",
                json={"inputs": [{"id": i} for i in chunk], "properties": self._wanted(kind)},
            )
            for item in _parse(_Objects, response).results:
                if not item.archived:
                    found[item.id] = self._record(kind, item)
        return [found[i] for i in ids if i in found]


# --- factories ----------------------------------------------------------------------


def build_hubspot(
    *,
    base_url: str,
    secrets: SecretStore,
    secret_id: str,
    budget: CallBudget,
    connection_id: str,
    properties: Mapping[ObjectType, Sequence[str]],
    transport: httpx.BaseTransport | None = None,
    limits: Sequence[CallLimit] = (BURST_LIMIT,),
    search_result_cap: int = SEARCH_RESULT_CAP,
    retry: RetryPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
    deadline: Deadline | None = None,
) -> HubSpotCrm:
    """The HubSpot CRM of one connection, with the private-app token from ``secret_id``.

    ``limits`` and ``search_result_cap`` default to HubSpot's documented values.
    """
    client = partial(
        ApiClient,
        vendor=VENDOR,
        base_url=base_url,
        auth=SecretBearer(secrets, secret_id),
        classify=classify,
        budget=budget,
        budget_key=f"{VENDOR}:{connection_id}",
        retry=retry,
        sleep=sleep,
        transport=transport,
        deadline=deadline,
    )
    return HubSpotCrm(
        client(limits=limits),
        properties,
        search_api=client(limits=(*limits, SEARCH_LIMIT)),
        search_result_cap=search_result_cap,
    )


def hubspot_webhooks(
    secrets: SecretStore, secret_id: str, tolerance_s: int = 300
) -> HubSpotWebhooks:
    """Webhook verification with the app's client secret, read when a request comes in."""
    return HubSpotWebhooks(
        secret_value(secrets, secret_id, "client_secret"), tolerance_s=tolerance_s
    )
