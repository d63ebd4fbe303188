"""Authenticators, as httpx ``Auth`` flows, reading credentials from the secret store.

* ``SecretBearer``: a long-lived token kept in a secret (a CRM's private app).
* ``RotatingOAuth2``: OAuth 2 with a refresh token that the vendor rotates on
  every refresh (accounting APIs). The new refresh token must be stored before
  anyone else refreshes, or the stored one goes stale; every Lambda therefore
  refreshes under a shared lease, re-reads the secret inside it (another Lambda
  may have refreshed already) and writes the rotated tokens back before the
  lease is released. The access token is kept in the secret too, so concurrent
  Lambdas share it instead of each refreshing. A vendor that keeps the refresh
  token answers without a new one, and the stored one stays.
* ``secret_value``/``required``: a key a secret must hold, or ``AuthFailed``.
* ``require_body_hmac``: an inbound webhook signed as base64(HMAC-SHA256) of its body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import AuthFailed, Retryable, WebhookRejected
from shared.ports import InboundWebhook, Lock, SecretStore

# Refresh this long before the access token's stated expiry (clock skew, slow calls).
EXPIRY_MARGIN_S = 120


class _Tokens(BaseModel):
    """A token endpoint's 200 answer (RFC 6749 §5.1); inputs never appear in its errors."""

    model_config = ConfigDict(hide_input_in_errors=True)

    access_token: str = Field(min_length=1)
    # Optional in RFC 6749 §5.1; some vendors leave it out (``assumed_lifetime_s``).
    expires_in: int | None = Field(default=None, gt=0)
    refresh_token: str | None = None


def required(secret: Mapping[str, str], secret_id: str, key: str) -> str:
    """``secret[key]`` of the secret stored as ``secret_id``; ``AuthFailed`` when it is
    missing or empty (a person must store it)."""
    value = secret.get(key)
    if not value:
        raise AuthFailed(f"secret {secret_id} has no {key!r}")
    return value


def secret_value(secrets: SecretStore, secret_id: str, key: str) -> Callable[[], str]:
    """A reader of one required key of a secret (see ``required``).

    The secret is read on each call, so a rotated value takes effect without a restart.
    """
    return lambda: required(secrets.read(secret_id), secret_id, key)


class SecretBearer(httpx.Auth):
    def __init__(self, secrets: SecretStore, secret_id: str, key: str = "access_token") -> None:
        self._secrets = secrets
        self._secret_id = secret_id
        self._key = key

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = required(self._secrets.read(self._secret_id), self._secret_id, self._key)
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


class RotatingOAuth2(httpx.Auth):
    """Bearer auth that refreshes (and rotates) tokens when they expire or get a 401.

    The secret holds ``client_id``, ``client_secret`` and ``refresh_token``, and
    after the first refresh also ``access_token`` and ``access_expires_at`` (epoch s).

    ``client_auth`` says where the client credentials go: HTTP Basic (RFC 6749
    §2.3.1's preference) or the form body. ``assumed_lifetime_s`` is the access
    token's lifetime when the answer states none (without it such an answer is
    refused). ``keep`` names further string fields of the answer written to the
    secret beside the tokens, e.g. an ``instance_url`` to call; an answer without
    one of them is refused like one without an access token.
    """

    def __init__(
        self,
        *,
        secrets: SecretStore,
        secret_id: str,
        lock: Lock,
        token_url: str,
        clock: Callable[[], float] = time.time,
        token_http: httpx.Client | None = None,
        client_auth: Literal["basic", "body"] = "basic",
        assumed_lifetime_s: int | None = None,
        keep: Sequence[str] = (),
    ) -> None:
        self._secrets = secrets
        self._secret_id = secret_id
        self._lock = lock
        self._token_url = token_url
        self._clock = clock
        self._token_http = token_http or httpx.Client(timeout=15.0)
        self._client_auth = client_auth
        self._assumed_lifetime_s = assumed_lifetime_s
        self._keep = tuple(keep)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._valid_access_token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            # Revoked or expired early: refresh once and retry; a second 401 is the
            # vendor's answer and is classified by the connector.
            request.headers["Authorization"] = f"Bearer {self._refresh(rejected=token)}"
            yield request

    def _valid_access_token(self) -> str:
        secret = self._secrets.read(self._secret_id)
        if self._usable(secret):
            return secret["access_token"]
        return self._refresh(rejected=secret.get("access_token"))

    def _usable(self, secret: dict[str, str]) -> bool:
        expires_at = float(secret.get("access_expires_at") or 0)
        return bool(secret.get("access_token")) and expires_at - EXPIRY_MARGIN_S > self._clock()

    def _refresh(self, *, rejected: str | None) -> str:
        with self._lock.hold(f"oauth-refresh:{self._secret_id}", lease_s=30, wait_s=25):
            secret = self._secrets.read(self._secret_id, fresh=True)
            if self._usable(secret) and secret["access_token"] != rejected:
                return secret["access_token"]  # another Lambda refreshed while we waited
            tokens, lifetime, kept = self._request_tokens(secret)
            rotated = {
                **secret,
                **kept,
                "access_token": tokens.access_token,
                "access_expires_at": str(int(self._clock() + lifetime)),
                "refresh_token": tokens.refresh_token or secret["refresh_token"],
            }
            self._secrets.write(self._secret_id, rotated)
            return rotated["access_token"]

    def _request_tokens(self, secret: dict[str, str]) -> tuple[_Tokens, int, dict[str, str]]:
        """One refresh grant: the tokens, the access token's lifetime and the kept fields.

        No message says more than the status and the OAuth ``error`` code: the body of
        a token endpoint may hold tokens."""
        for key in ("client_id", "client_secret", "refresh_token"):
            required(secret, self._secret_id, key)
        data = {"grant_type": "refresh_token", "refresh_token": secret["refresh_token"]}
        credentials = (secret["client_id"], secret["client_secret"])
        if self._client_auth == "body":
            data |= {"client_id": credentials[0], "client_secret": credentials[1]}
        try:
            response = self._token_http.post(
                self._token_url,
                auth=credentials if self._client_auth == "basic" else httpx.USE_CLIENT_DEFAULT,
                data=data,
                headers={"Accept": "application/json"},
            )
        except httpx.TransportError as exc:
            raise Retryable(f"token endpoint unreachable: {type(exc).__name__}") from exc
        status = response.status_code
        if status >= 500 or status == 429:
            raise Retryable(f"token endpoint answered {status}")
        try:
            body = response.json() if response.content else {}
        except ValueError:  # a proxy's HTML page, say
            body = None
        if status != 200:
            # invalid_grant: the refresh token is dead; a person must re-authorize.
            error = body.get("error") if isinstance(body, dict) else None
            reason = f"{status} {error}" if isinstance(error, str) and error else str(status)
            raise AuthFailed(
                f"token refresh refused ({reason}); "
                f"re-authorize and store a new refresh_token in {self._secret_id}"
            )
        if not isinstance(body, dict):
            raise Retryable("token endpoint answered 200 with a body that is not a JSON object")
        kept = {key: body.get(key) for key in self._keep}
        unusable = {key for key, value in kept.items() if not isinstance(value, str) or not value}
        tokens: _Tokens | None = None
        try:
            tokens = _Tokens.model_validate(body)
        except ValidationError as exc:
            unusable |= {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
        lifetime = (tokens.expires_in if tokens else None) or self._assumed_lifetime_s
        if lifetime is None:
            unusable.add("expires_in")
        if tokens is None or lifetime is None or unusable:
            raise Retryable(
                f"token endpoint answered 200 without a usable {', '.join(sorted(unusable))}"
            )
        return tokens, lifetime, {key: str(value) for key, value in kept.items()}


def require_body_hmac(request: InboundWebhook, header: str, key: str) -> None:
    """``header`` must be base64(HMAC-SHA256(key, raw body)); ``WebhookRejected`` (401)
    says what is wrong otherwise. Compared in constant time."""
    signature = request.headers.get(header)
    if not signature:
        raise WebhookRejected(401, f"missing {header} header")
    try:
        presented = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise WebhookRejected(401, f"{header} is not base64") from exc
    expected = hmac.new(key.encode(), request.body.encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(presented, expected):
        raise WebhookRejected(401, f"{header} does not match the body")
