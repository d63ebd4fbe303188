"""API Gateway HTTP API stand-in: an HTTP request becomes a payload v2.0 event for a handler.

The event and the response mapping follow AWS's "Working with AWS Lambda proxy
integrations for HTTP APIs" (payload format 2.0):

* headers lower-cased, repeated ones comma-joined; cookies moved to ``cookies``;
  repeated query parameters comma-joined in ``queryStringParameters``;
* ``rawPath``/``rawQueryString`` as the client sent them; ``body`` absent when empty,
  base64 with ``isBase64Encoded`` unless the content type is text-like and the bytes
  are UTF-8 (HTTP APIs infer the encoding from the content type);
* a result with ``statusCode`` is the response (``cookies`` become ``set-cookie``);
  any other JSON result is a 200 ``application/json`` body;
* no matching route → 404 ``{"message":"Not Found"}``; more than 10 MB of payload →
  413; a handler exception or a malformed result → 500
  ``{"message":"Internal Server Error"}``.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from flask import Flask, Request, Response, request
from werkzeug.exceptions import MethodNotAllowed, NotFound, RequestEntityTooLarge
from werkzeug.routing import Map, Rule

from local.aws import ACCOUNT_ID

log = logging.getLogger(__name__)

# API Gateway's documented HTTP API payload quota.
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024
API_ID = "local"
_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_TEXT_TYPES = re.compile(
    r"^(text/.*|application/(json|xml|javascript|x-www-form-urlencoded|graphql)"
    r"|application/[^;]*\+(json|xml))$"
)

Invoke = Callable[[dict[str, Any]], Any]


class RouteTable:
    """HTTP API route keys: ``"POST /webhooks/crm"``, ``"POST /webhooks/{vendor}"``
    (a path parameter) and ``"$default"`` (whatever no other route matches)."""

    def __init__(self, route_keys: Sequence[str]) -> None:
        self.default = "$default" in route_keys
        rules = []
        for key in route_keys:
            if key == "$default":
                continue
            method, _, path = key.partition(" ")
            path = re.sub(r"\{(\w+)\}", r"<\1>", path)
            rules.append(Rule(path, methods=[method], endpoint=key))
        self._map = Map(rules)

    def match(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        try:
            key, params = self._map.bind("local").match(path, method=method)
        except (NotFound, MethodNotAllowed):
            return ("$default", {}) if self.default else None
        return str(key), {name: str(value) for name, value in params.items()}


def _is_text(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";")[0].strip().lower()
    return bool(_TEXT_TYPES.match(media_type))


def _body(raw: bytes, content_type: str | None) -> tuple[str, bool] | None:
    if not raw:
        return None
    if _is_text(content_type):
        try:
            return raw.decode("utf-8"), False
        except UnicodeDecodeError:
            pass
    return base64.b64encode(raw).decode("ascii"), True


def build_event(
    req: Request,
    route_key: str,
    path_parameters: Mapping[str, str],
    *,
    request_id: str,
    body: bytes,
) -> dict[str, Any]:
    """The payload v2.0 event API Gateway would send for ``req`` on ``route_key``."""
    raw_path = req.environ.get("RAW_URI", req.path).split("?", 1)[0]
    raw_query = req.environ.get("QUERY_STRING", "")
    headers: dict[str, str] = {}
    for name, value in req.headers.items():
        name = name.lower()
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    cookie_header = headers.pop("cookie", "")
    cookies = [c.strip() for c in re.split(r"[;,]", cookie_header) if c.strip()]
    host = headers.get("host", "")
    source_ip = req.remote_addr or ""
    headers.setdefault("x-forwarded-for", source_ip)
    headers.setdefault("x-forwarded-proto", req.scheme)
    headers.setdefault("x-forwarded-port", str(req.environ.get("SERVER_PORT", "")))
    headers.setdefault("x-amzn-trace-id", f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}")
    now = datetime.now(UTC)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": ACCOUNT_ID,
            "apiId": API_ID,
            "domainName": host,
            "domainPrefix": host.split(".", 1)[0],
            "http": {
                "method": req.method,
                "path": raw_path,
                "protocol": req.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
                "sourceIp": source_ip,
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if raw_query:
        query: dict[str, str] = {}
        for name, value in parse_qsl(raw_query, keep_blank_values=True):
            query[name] = f"{query[name]},{value}" if name in query else value
        event["queryStringParameters"] = query
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    encoded = _body(body, req.content_type)
    if encoded is not None:
        event["body"], event["isBase64Encoded"] = encoded
    return event


def _message(status: int, message: str) -> Response:
    return Response(json.dumps({"message": message}), status, mimetype="application/json")


def build_response(result: Any) -> Response:
    """A handler's result as API Gateway turns it into an HTTP response (format 2.0)."""
    if not isinstance(result, dict) or "statusCode" not in result:
        body = result if isinstance(result, str) else json.dumps(result)
        return Response(body, 200, mimetype="application/json")
    status = result["statusCode"]
    headers = result.get("headers") or {}
    cookies = result.get("cookies") or []
    body = result.get("body") or ""
    if (
        not isinstance(status, int)
        or not 100 <= status <= 599
        or not isinstance(headers, dict)
        or not isinstance(cookies, list)
        or not isinstance(body, str)
    ):
        raise ValueError(f"malformed Lambda proxy response: {result!r}")
    payload = base64.b64decode(body, validate=True) if result.get("isBase64Encoded") else body
    response = Response(payload, status)
    response.headers.remove("Content-Type")
    for name, value in headers.items():
        response.headers[name] = str(value)
    for cookie in cookies:
        response.headers.add("Set-Cookie", str(cookie))
    return response


def create_app(invoke: Invoke, route_keys: Sequence[str]) -> Flask:
    """A WSGI app that serves ``route_keys`` by calling ``invoke(event)``."""
    routes = RouteTable(route_keys)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = MAX_PAYLOAD_BYTES

    def gateway(path: str = "") -> Response:
        request_id = base64.b64encode(uuid.uuid4().bytes[:10]).decode()
        response = _serve(invoke, routes, request_id)
        response.headers["apigw-requestid"] = request_id
        return response

    app.add_url_rule("/", "gateway", gateway, methods=_METHODS, provide_automatic_options=False)
    app.add_url_rule(
        "/<path:path>", "gateway", gateway, methods=_METHODS, provide_automatic_options=False
    )
    return app


def _serve(invoke: Invoke, routes: RouteTable, request_id: str) -> Response:
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        return _message(413, "Request Entity Too Large")
    route = routes.match(request.method, request.path)
    if route is None:
        return _message(404, "Not Found")
    event = build_event(request, *route, request_id=request_id, body=body)
    try:
        result = invoke(event)
    except Exception:
        log.exception("%s: the function raised", route[0])
        return _message(500, "Internal Server Error")
    try:
        return build_response(result)
    except ValueError:
        log.exception("%s: the function's result is not a valid proxy response", route[0])
        return _message(500, "Internal Server Error")
