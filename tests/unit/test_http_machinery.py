"""The shared connector machinery: ApiClient's classified retries and budget, and
RotatingOAuth2's refresh under a shared lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import httpx
import pytest

from local.memory import MemoryCallBudget, MemoryLock, MemorySecretStore
from shared.connectors.auth import RotatingOAuth2
from shared.connectors.http import (
    ApiClient,
    CallLimit,
    Classified,
    Deadline,
    ResponseAction,
    RetryPolicy,
    paginate,
)
from shared.errors import AuthFailed, NotFound, OutOfTime, Permanent, RateLimited, Retryable


def classify(response: httpx.Response) -> Classified:
    status = response.status_code
    if status < 300:
        return Classified(ResponseAction.SUCCESS)
    if status == 404:
        return Classified(ResponseAction.NOT_FOUND, "gone")
    if status == 401:
        return Classified(ResponseAction.AUTH_FAILED, "token refused")
    if status == 429:
        return Classified(ResponseAction.RATE_LIMITED, "slow down")
    if status >= 500:
        return Classified(ResponseAction.RETRY, "server error")
    return Classified(ResponseAction.FAIL, "refused", code=response.json().get("code"))


class Script:
    """A vendor that answers a fixed sequence; records every request it got."""

    def __init__(self, *answers: httpx.Response | type[Exception]) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, type):
            raise answer("scripted", request=request)  # type: ignore[call-arg]
        return answer


def client(
    script: Script,
    sleeps: list[float],
    *,
    limits: tuple[CallLimit, ...] = (),
    budget: MemoryCallBudget | None = None,
) -> ApiClient:
    return ApiClient(
        vendor="vendor",
        base_url="https://api.vendor.test",
        auth=httpx.Auth(),
        classify=classify,
        limits=limits,
        budget=budget or MemoryCallBudget(),
        budget_key="vendor:acme",
        retry=RetryPolicy(max_attempts=3, max_inline_wait_s=5),
        sleep=sleeps.append,
        transport=httpx.MockTransport(script),
    )


class TestApiClient:
    def test_given_transient_failures_then_it_retries_with_backoff_and_succeeds(self) -> None:
        script = Script(httpx.ConnectTimeout, httpx.Response(503), httpx.Response(200, json={}))
        sleeps: list[float] = []

        response = client(script, sleeps).request("GET", "/things/1")

        assert response.status_code == 200
        assert len(script.requests) == 3
        assert len(sleeps) == 2

    def test_given_only_failures_then_retryable_after_the_last_attempt(self) -> None:
        script = Script(*[httpx.Response(502)] * 3)

        with pytest.raises(Retryable, match="502"):
            client(script, []).request("GET", "/things/1")
        assert len(script.requests) == 3

    def test_given_a_short_retry_after_then_it_waits_that_long_and_retries(self) -> None:
        script = Script(httpx.Response(429, headers={"Retry-After": "2"}), httpx.Response(200))
        sleeps: list[float] = []

        client(script, sleeps).request("GET", "/things/1")

        assert sleeps == [2.0]

    def test_given_a_long_retry_after_then_rate_limited_goes_back_to_the_queue(self) -> None:
        script = Script(httpx.Response(429, headers={"Retry-After": "60"}))
        sleeps: list[float] = []

        with pytest.raises(RateLimited) as limited:
            client(script, sleeps).request("GET", "/things/1")

        assert limited.value.retry_after_s == 60
        assert sleeps == []

    @pytest.mark.parametrize(
        ("response", "error"),
        [
            (httpx.Response(404), NotFound),
            (httpx.Response(401), AuthFailed),
            (httpx.Response(400, json={"code": "6240"}), Permanent),
        ],
    )
    def test_given_a_final_answer_then_its_error_without_retry(
        self, response: httpx.Response, error: type[Exception]
    ) -> None:
        script = Script(response)

        with pytest.raises(error):
            client(script, []).request("POST", "/things")
        assert len(script.requests) == 1

    def test_given_a_declared_limit_then_calls_are_paced_and_a_long_wait_is_not_slept(
        self,
    ) -> None:
        now = [1000.0]
        budget = MemoryCallBudget(clock=lambda: now[0])
        sleeps: list[float] = []
        script = Script(*[httpx.Response(200)] * 3)
        api = client(script, sleeps, limits=(CallLimit(1, 4.0),), budget=budget)

        api.request("GET", "/a")
        api.request("GET", "/b")  # the next slot is 4.08 s away: within 5 s, slept
        with pytest.raises(RateLimited):  # the one after is 8.16 s away: back to the queue
            api.request("GET", "/c")

        assert sleeps == [pytest.approx(4.08, abs=1e-3)]  # 4 s plus the 2 % pacing margin
        assert len(script.requests) == 2


def test_paginate_follows_cursors_until_none() -> None:
    pages = {None: ([1, 2], "a"), "a": ([3], "b"), "b": ([], None)}

    assert list(paginate(lambda cursor: pages[cursor])) == [1, 2, 3]


class TokenEndpoint:
    """Rotates the refresh token on every grant, like QuickBooks; counts grants."""

    def __init__(self) -> None:
        self.grants: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        form = dict(httpx.QueryParams(request.content.decode()))
        with self._lock:
            self.grants.append(form["refresh_token"])
            n = len(self.grants)
        time.sleep(0.05)  # slow enough for concurrent callers to pile up on the lock
        return httpx.Response(
            200,
            json={
                "access_token": f"access-{n}",
                "refresh_token": f"refresh-{n}",
                "expires_in": 3600,
            },
        )


def oauth(
    secrets: MemorySecretStore,
    endpoint: TokenEndpoint,
    clock: Callable[[], float],
    lock: MemoryLock | None = None,
) -> RotatingOAuth2:
    return RotatingOAuth2(
        secrets=secrets,
        secret_id="qbo",
        lock=lock or MemoryLock(),
        token_url="https://oauth.test/tokens",
        clock=clock,
        token_http=httpx.Client(transport=httpx.MockTransport(endpoint)),
    )


class TestRotatingOAuth2:
    def test_given_concurrent_callers_with_an_expired_token_then_one_refresh_serves_all(
        self,
    ) -> None:
        secrets = MemorySecretStore(
            {"qbo": {"client_id": "c", "client_secret": "s", "refresh_token": "refresh-0"}}
        )
        endpoint = TokenEndpoint()
        shared_lease = MemoryLock()  # the lease table every Lambda shares
        seen: list[str] = []

        def call() -> None:
            auth = oauth(secrets, endpoint, time.time, shared_lease)  # one per "Lambda"
            request = httpx.Request("GET", "https://api.test/x")
            seen.append(next(auth.auth_flow(request)).headers["Authorization"])

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert endpoint.grants == ["refresh-0"]
        assert set(seen) == {"Bearer access-1"}
        assert secrets.read("qbo")["refresh_token"] == "refresh-1"

    def test_given_a_401_then_it_refreshes_once_and_stores_the_rotated_token(self) -> None:
        secrets = MemorySecretStore(
            {
                "qbo": {
                    "client_id": "c",
                    "client_secret": "s",
                    "refresh_token": "refresh-0",
                    "access_token": "revoked",
                    "access_expires_at": str(int(time.time()) + 3000),
                }
            }
        )
        endpoint = TokenEndpoint()
        flow = oauth(secrets, endpoint, time.time).auth_flow(httpx.Request("GET", "https://a.test"))

        first = next(flow)
        assert first.headers["Authorization"] == "Bearer revoked"
        retried = flow.send(httpx.Response(401))

        assert retried.headers["Authorization"] == "Bearer access-1"
        assert secrets.read("qbo")["refresh_token"] == "refresh-1"

    def test_given_the_refresh_token_is_refused_then_auth_failed_says_to_reauthorize(
        self,
    ) -> None:
        secrets = MemorySecretStore(
            {"qbo": {"client_id": "c", "client_secret": "s", "refresh_token": "dead"}}
        )
        auth = RotatingOAuth2(
            secrets=secrets,
            secret_id="qbo",
            lock=MemoryLock(),
            token_url="https://oauth.test/tokens",
            token_http=httpx.Client(
                transport=httpx.MockTransport(
                    lambda r: httpx.Response(400, json={"error": "invalid_grant"})
                )
            ),
        )

        with pytest.raises(AuthFailed, match="re-authorize"):
            next(auth.auth_flow(httpx.Request("GET", "https://a.test")))

    def test_given_a_non_json_refusal_then_auth_failed_names_the_status_not_the_body(
        self,
    ) -> None:
        auth, _ = answered_by(httpx.Response(403, text="<html>proxy says token=leaky</html>"))

        with pytest.raises(AuthFailed) as raised:
            authorize(auth)

        assert "(403)" in str(raised.value) and "re-authorize" in str(raised.value)
        assert "html" not in str(raised.value) and "leaky" not in str(raised.value)

    @pytest.mark.parametrize(
        "answer",
        [
            httpx.Response(502, text="<html>bad gateway</html>"),
            httpx.Response(200, text="<html>captive portal</html>"),
            httpx.Response(200, json=["not", "an", "object"]),
            httpx.Response(200, json={"access_token": "secret-access", "refresh_token": "r-1"}),
            httpx.Response(200, json={"refresh_token": "secret-refresh", "expires_in": 3600}),
            httpx.Response(200, json={"access_token": "secret-access", "expires_in": "soon"}),
        ],
        ids=["html-5xx", "html-200", "json-list", "no-expiry", "no-access", "bad-expiry"],
    )
    def test_given_an_unusable_token_answer_then_retryable_and_the_secret_is_unchanged(
        self, answer: httpx.Response
    ) -> None:
        auth, secrets = answered_by(answer)
        before = secrets.read("qbo")

        with pytest.raises(Retryable) as raised:
            authorize(auth)

        assert "secret-" not in str(raised.value) and "html" not in str(raised.value)
        assert "secret-" not in str(raised.value.__cause__ or "")  # logged with the traceback
        assert secrets.read("qbo") == before

    def test_given_a_200_without_an_access_token_then_the_message_names_the_field(self) -> None:
        auth, _ = answered_by(httpx.Response(200, json={"refresh_token": "r-1"}))

        with pytest.raises(Retryable, match="without a usable access_token, expires_in"):
            authorize(auth)


def answered_by(answer: httpx.Response) -> tuple[RotatingOAuth2, MemorySecretStore]:
    """An authenticator with no access token yet whose token endpoint gives ``answer``."""
    secrets = MemorySecretStore(
        {"qbo": {"client_id": "c", "client_secret": "s", "refresh_token": "refresh-0"}}
    )
    auth = RotatingOAuth2(
        secrets=secrets,
        secret_id="qbo",
        lock=MemoryLock(),
        token_url="https://oauth.test/tokens",
        token_http=httpx.Client(transport=httpx.MockTransport(lambda r: answer)),
    )
    return auth, secrets


def authorize(auth: RotatingOAuth2) -> httpx.Request:
    return next(auth.auth_flow(httpx.Request("GET", "https://a.test")))


class TestDeadline:
    """Issue item 9: one invocation ran 66 s against a 60 s timeout (four 16 s stalls)."""

    STALL_S = 16.0

    def test_given_vendor_stalls_then_calls_retries_and_waits_end_before_the_timeout(
        self,
    ) -> None:
        now = [0.0]

        def stall(request: httpx.Request) -> httpx.Response:
            # The vendor never answers: the call lasts as long as its read timeout.
            timeout = request.extensions["timeout"]["read"]
            now[0] += min(self.STALL_S, timeout)
            raise httpx.ReadTimeout("stalled", request=request)

        def sleep(seconds: float) -> None:
            now[0] += seconds

        deadline = Deadline(reserve_s=5.0, clock=lambda: now[0])
        deadline.start(60.0)  # the function's timeout
        api = ApiClient(
            vendor="vendor",
            base_url="https://api.vendor.test",
            auth=httpx.Auth(),
            classify=classify,
            limits=(),
            budget=MemoryCallBudget(),
            budget_key="vendor:acme",
            retry=RetryPolicy(max_attempts=5),
            timeout_s=self.STALL_S,
            sleep=sleep,
            transport=httpx.MockTransport(stall),
            deadline=deadline,
        )

        with pytest.raises(Retryable):
            api.request("GET", "/slow")

        assert now[0] <= 60.0 - deadline.reserve_s, "every call and wait ended in time"

    def test_given_too_little_time_left_then_no_call_is_made_and_it_is_out_of_time(
        self,
    ) -> None:
        script = Script(httpx.Response(200, json={}))
        deadline = Deadline(reserve_s=5.0)
        deadline.start(5.5)
        api = ApiClient(
            vendor="vendor",
            base_url="https://api.vendor.test",
            auth=httpx.Auth(),
            classify=classify,
            limits=(),
            budget=MemoryCallBudget(),
            budget_key="vendor:acme",
            transport=httpx.MockTransport(script),
            deadline=deadline,
        )

        with pytest.raises(OutOfTime):
            api.request("GET", "/late")
        assert script.requests == []
