"""The OAuth 2 authorization code grant (RFC 6749 §4.1) as a command line runs it, for
any vendor that declares an ``OAuthFlow``: the authorize URL with ``state`` and, where
the vendor supports it, a PKCE S256 challenge (RFC 7636); a one-shot HTTP server on
the loopback interface for the redirect back; the code's exchange at the token
endpoint; and the secret keys the vendor says the answers fill.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx

from ops.command import CommandError
from shared.connectors.spec import OAuthFlow, SecretFrom

DEFAULT_PORT = 8765
CALLBACK_PATH = "/callback"
HTTP_TIMEOUT_S = 30.0


def redirect_uri(port: int) -> str:
    """The redirect URI to register in the vendor's developer portal. ``localhost``
    rather than 127.0.0.1: vendors allow plain http for it alone (see docs/vendors/)."""
    return f"http://localhost:{port}{CALLBACK_PATH}"


@dataclass(frozen=True)
class Pkce:
    verifier: str
    challenge: str


def pkce_pair() -> Pkce:
    """A code verifier (RFC 7636 §4.1: 43-128 unreserved characters) and its S256
    challenge, base64url(SHA-256(verifier)) without padding (§4.2)."""
    verifier = secrets.token_urlsafe(64)  # 86 characters of [A-Za-z0-9_-]
    return Pkce(verifier, s256(verifier))


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorize_url(
    endpoint: str,
    *,
    client_id: str,
    redirect: str,
    scopes: Sequence[str],
    state: str,
    challenge: str | None,
) -> str:
    """The URL a person opens to consent (RFC 6749 §4.1.1, RFC 7636 §4.3)."""
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect,
        "scope": " ".join(scopes),
        "state": state,
    }
    if challenge is not None:
        params |= {"code_challenge": challenge, "code_challenge_method": "S256"}
    separator = "&" if "?" in endpoint else "?"
    return f"{endpoint}{separator}{urlencode(params)}"


class _CallbackServer(HTTPServer):
    """Keeps the first redirect that carries this request's ``state``; any other
    request is refused, so a stray or forged one cannot take its place."""

    def __init__(self, port: int, state: str) -> None:
        super().__init__(("127.0.0.1", port), _CallbackHandler)
        self.state = state
        self.params: dict[str, str] | None = None
        self.refused = 0  # redirects to the callback with another state
        self.arrived = threading.Event()


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _CallbackServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != CALLBACK_PATH or self.server.arrived.is_set():
            self.send_error(404)
            return
        params = dict(parse_qsl(url.query))
        # RFC 6749 §10.12: a redirect this command did not ask for (CSRF) is refused.
        if not secrets.compare_digest(params.get("state", "").encode(), self.server.state.encode()):
            self.server.refused += 1
            self._page(400, b"This is not the authorization crmsync is waiting for.")
            return
        self.server.params = params
        self.server.arrived.set()
        self._page(200, b"crmsync has the answer: back to the terminal.")

    def _page(self, status: int, text: bytes) -> None:
        body = b"<html><body><p>" + text + b"</p></body></html>"
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the command says what happened."""


@contextmanager
def callback_server(port: int, state: str) -> Iterator[_CallbackServer]:
    """The loopback server the vendor redirects the browser to, for the ``with``."""
    try:
        server = _CallbackServer(port, state)
    except OSError as exc:
        raise CommandError(
            f"cannot listen on 127.0.0.1:{port} for the redirect ({exc.strerror}); pass "
            "another --port and register its redirect URI"
        ) from None
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


def await_redirect(server: _CallbackServer, timeout_s: float) -> dict[str, str]:
    """The redirect's parameters once one carries the server's ``state``."""
    if not server.arrived.wait(timeout_s):
        if server.refused:
            raise CommandError(
                f"{server.refused} redirect(s) came back whose state does not match the one "
                "sent: they answer another authorization request; nothing was stored, run "
                "the command again"
            )
        raise CommandError(
            f"no redirect came back within {timeout_s:g} s; open the URL above, or run "
            "again with a longer --timeout"
        )
    params = server.params or {}
    error = params.get("error")
    if error == "access_denied":
        raise CommandError("access was denied on the consent screen; nothing was stored")
    if error or not params.get("code"):
        detail = params.get("error_description", "")
        raise CommandError(f"the vendor answered {error or 'no code'}: {detail}".rstrip(": "))
    return params


def exchange_code(
    flow: OAuthFlow,
    endpoint: str,
    *,
    client_id: str,
    client_secret: str,
    code: str,
    redirect: str,
    verifier: str | None,
) -> dict[str, Any]:
    """The token endpoint's answer to the code (RFC 6749 §4.1.3, RFC 7636 §4.5)."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}
    if verifier is not None:
        form["code_verifier"] = verifier
    auth: tuple[str, str] | None = (client_id, client_secret)
    if flow.client_auth == "form":
        form |= {"client_id": client_id, "client_secret": client_secret}
        auth = None
    try:
        response = httpx.post(
            endpoint,
            data=form,
            auth=auth,
            headers={"Accept": "application/json"},
            timeout=HTTP_TIMEOUT_S,
        )
    except httpx.HTTPError as exc:
        raise CommandError(f"cannot reach the token endpoint {endpoint}: {exc}") from None
    answer = _json(response)
    if response.status_code != 200 or not isinstance(answer, dict):
        error = answer.get("error", "") if isinstance(answer, dict) else ""
        hint = " (check the client id and secret)" if "client" in str(error) else ""
        raise CommandError(
            f"the token endpoint refused the code: HTTP {response.status_code} "
            f"{error or response.text[:200]}{hint}"
        )
    return answer


def collect(
    fills: Mapping[str, SecretFrom],
    *,
    token: Mapping[str, Any],
    redirect: Mapping[str, str],
    settings: Mapping[str, Any],
    given: Mapping[str, str],
) -> dict[str, str]:
    """The secret keys the flow fills, from where the vendor declares them; a key the
    person gave (``--set``) is kept as given."""
    values: dict[str, str] = {}
    for key, source in fills.items():
        if key in given:
            continue
        if source.where == "token":
            raw = token.get(source.name)
        elif source.where == "redirect":
            raw = redirect.get(source.name)
        else:
            raw = _from_resource(key, source, settings, str(token.get("access_token", "")))
        if not isinstance(raw, str) or not raw:
            raise CommandError(f"the {source.where} answer has no {source.name!r} for {key}")
        values[key] = _matched(key, source, raw)
    return values


def _from_resource(
    key: str, source: SecretFrom, settings: Mapping[str, Any], access_token: str
) -> str:
    url = f"{str(settings[source.setting]).rstrip('/')}{source.path}"
    try:
        response = httpx.get(
            url,
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            timeout=HTTP_TIMEOUT_S,
        )
    except httpx.HTTPError as exc:
        raise CommandError(f"cannot reach {url}: {exc}") from None
    rows = _json(response)
    if response.status_code != 200 or not isinstance(rows, list):
        raise CommandError(f"GET {url} answered HTTP {response.status_code}: {response.text[:200]}")
    found = [
        str(row[source.name]) for row in rows if isinstance(row, dict) and row.get(source.name)
    ]
    if len(found) != 1:
        choices = ", ".join(found) or "none"
        raise CommandError(
            f"GET {url} lists {len(found)} {source.name} values ({choices}): pick one with "
            f"--set {key}=<value>"
        )
    return found[0]


def _matched(key: str, source: SecretFrom, raw: str) -> str:
    if not source.pattern:
        return raw
    match = re.search(source.pattern, raw)
    if match is None:
        raise CommandError(f"{source.name} {raw!r} does not hold {key}")
    return match.group(1)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None
