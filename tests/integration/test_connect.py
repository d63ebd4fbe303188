"""``crmsync connection add`` and ``crmsync connect <vendor>`` against a running local
stack with its sandboxes, as an operator runs them against AWS with ``--stack``.

``connection add`` stores a connection's row (its mapping checked as at load) and,
given files, its secrets. ``connect`` runs the vendor's authorization code grant: the
test is the person's browser, following the printed authorize URL to the sandbox,
which consents at once and redirects to the command's loopback callback; the secret
in moto then holds tokens the vendor honours.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import httpx
import pytest

from local.cli import main
from local.config import LocalConnection
from local.runtime import LocalStack
from ops.oauth import pkce_pair, redirect_uri
from shared.connectors.registry import vendor
from shared.connectors.spec import secret_id
from shared.stores import DynamoConnections
from tests.integration.test_local_runtime import StandIns, free_config

REPO = Path(__file__).resolve().parents[2]
SALESFORCE_PRESET = REPO / "config" / "salesforce" / "services.yaml"
URL = re.compile(r"^(http://127\.0\.0\.1:\d+/\S*(?:oauth2|authorize)\S*)$", re.MULTILINE)


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    config = free_config()
    second = LocalConnection(
        id="second", crm="salesforce", accounting="xero", mapping_file=SALESFORCE_PRESET
    )
    config = config.model_copy(update={"connections": (*config.connections, second)})
    with LocalStack(config, handlers=StandIns().handlers()) as running:
        yield running


@pytest.fixture(scope="module")
def config_file(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The running stack's config, its sandboxes' ports included (``--local`` finds
    them there)."""
    path = tmp_path_factory.mktemp("connect") / "local.yaml"
    stack.running_config.write(path)
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def stored_secret(stack: LocalStack, connection: str, name: str) -> dict[str, str] | None:
    client = stack.clients.secretsmanager
    try:
        value = client.get_secret_value(SecretId=secret_id(connection, name))
    except client.exceptions.ResourceNotFoundException:
        return None
    found: dict[str, str] = json.loads(value["SecretString"])
    return found


class Connecting:
    """``crmsync connect`` running in a thread, its redirect URI registered with the
    sandbox's app (what the printed instruction asks of the person)."""

    def __init__(
        self,
        stack: LocalStack,
        config_file: Path,
        capsys: pytest.CaptureFixture[str],
        name: str,
        connection: str,
        *extra: str,
    ) -> None:
        self.port = free_port()
        self.redirect = redirect_uri(self.port)
        sandbox_config = stack.sandboxes[name].config
        sandbox_config.redirect_uris = [*sandbox_config.redirect_uris, self.redirect]
        self._capsys = capsys
        self.out = ""
        self.status: int | None = None
        argv = [
            "connect",
            name,
            "--connection",
            connection,
            "--client-id",
            sandbox_config.client_id,
            "--client-secret",
            sandbox_config.client_secret,
            "--port",
            str(self.port),
            "--timeout",
            "30",
            "--no-browser",
            "--local",
            "--config",
            str(config_file),
            *extra,
        ]
        self._thread = threading.Thread(target=self._run, args=(argv,), daemon=True)
        self._thread.start()

    def _run(self, argv: list[str]) -> None:
        self.status = main(argv)

    def authorize_url(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self.out += self._capsys.readouterr().out
            found = URL.search(self.out)
            if found:
                return found.group(1)
            time.sleep(0.02)
        raise AssertionError(f"no authorize URL printed: {self.out!r}")

    def follow(self) -> dict[str, list[str]]:
        """The browser: the sandbox's consent redirect, then the callback; returns the
        redirect's parameters."""
        consent = httpx.get(self.authorize_url(), timeout=10)
        assert consent.status_code == 302, consent.text
        location = consent.headers["location"]
        assert location.startswith(self.redirect)
        assert httpx.get(location, timeout=10).status_code == 200
        return parse_qs(urlsplit(location).query)

    def finish(self) -> int:
        self._thread.join(timeout=60)
        assert not self._thread.is_alive()
        assert self.status is not None
        return self.status


def refreshes(token_url: str, secret: dict[str, str], *, basic: bool) -> bool:
    form = {"grant_type": "refresh_token", "refresh_token": secret["refresh_token"]}
    credentials = (secret["client_id"], secret["client_secret"])
    if basic:
        answer = httpx.post(token_url, data=form, auth=credentials, timeout=10)
    else:
        form |= dict(zip(("client_id", "client_secret"), credentials, strict=True))
        answer = httpx.post(token_url, data=form, timeout=10)
    return answer.status_code == 200 and bool(answer.json().get("access_token"))


def test_given_quickbooks_when_connected_then_the_secret_holds_working_tokens_and_the_realm(
    stack: LocalStack, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = stack.sandboxes["quickbooks"]
    run = Connecting(stack, config_file, capsys, "quickbooks", "acme")

    params = run.follow()

    assert run.finish() == 0
    secret = stored_secret(stack, "acme", "quickbooks")
    assert secret is not None
    assert secret["realm_id"] == sandbox.config.realm_id == params["realmId"][0]
    assert secret["client_id"] == sandbox.config.client_id
    assert secret["refresh_token"] != sandbox.config.initial_refresh_token
    assert refreshes(
        f"{stack.urls.sandboxes['quickbooks']}/oauth2/v1/tokens/bearer", secret, basic=True
    )
    # The webhook verifier token comes from Intuit's portal, not the flow: named as missing.
    assert "verifier_token" not in secret
    out = " ".join((run.out + capsys.readouterr().out).split())
    assert "Still missing: verifier_token" in out
    assert run.redirect in out  # the redirect URI to register is printed


def test_given_a_used_code_when_exchanged_again_then_invalid_grant(
    stack: LocalStack, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = stack.sandboxes["quickbooks"]
    run = Connecting(stack, config_file, capsys, "quickbooks", "reuse")
    code = run.follow()["code"][0]
    assert run.finish() == 0

    again = httpx.post(
        f"{stack.urls.sandboxes['quickbooks']}/oauth2/v1/tokens/bearer",
        auth=(sandbox.config.client_id, sandbox.config.client_secret),
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": run.redirect},
        timeout=10,
    )

    assert (again.status_code, again.json()) == (400, {"error": "invalid_grant"})


def test_given_a_code_for_another_redirect_uri_then_invalid_grant(stack: LocalStack) -> None:
    sandbox = stack.sandboxes["quickbooks"]
    code = sandbox.mint_authorization_code("https://localhost/callback")

    answer = httpx.post(
        f"{stack.urls.sandboxes['quickbooks']}/oauth2/v1/tokens/bearer",
        auth=(sandbox.config.client_id, sandbox.config.client_secret),
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "https://elsewhere.example/callback",
        },
        timeout=10,
    )

    assert (answer.status_code, answer.json()) == (400, {"error": "invalid_grant"})


def test_given_keys_already_stored_when_connected_again_then_they_stay_and_set_ones_join(
    stack: LocalStack, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.clients.secretsmanager.create_secret(
        Name=secret_id("keeper", "quickbooks"),
        SecretString=json.dumps({"verifier_token": "from-the-portal", "refresh_token": "old"}),
    )
    run = Connecting(
        stack, config_file, capsys, "quickbooks", "keeper", "--set", "realm_id=ignored-by-flow"
    )
    run.follow()

    assert run.finish() == 0
    secret = stored_secret(stack, "keeper", "quickbooks")
    assert secret is not None
    assert secret["verifier_token"] == "from-the-portal"
    assert secret["refresh_token"] != "old"
    assert secret["realm_id"] == "ignored-by-flow"  # --set wins over the flow
    assert set(secret) >= set(vendor("quickbooks").secret_keys)


def test_given_a_forged_redirect_first_then_it_is_refused_and_the_real_one_still_connects(
    stack: LocalStack, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Connecting(stack, config_file, capsys, "quickbooks", "forgedfirst")
    run.authorize_url()

    forged = httpx.get(f"{run.redirect}?code=stolen&state=forged&realmId=1", timeout=10)
    run.follow()  # the person's own consent

    assert forged.status_code == 400
    assert run.finish() == 0
    assert stored_secret(stack, "forgedfirst", "quickbooks") is not None


def test_given_only_a_forged_redirect_then_exit_1_saying_so_and_nothing_stored(
    stack: LocalStack, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = Connecting(stack, config_file, capsys, "quickbooks", "forged", "--timeout", "2")
    run.authorize_url()

    forged = httpx.get(f"{run.redirect}?code=stolen&state=forged&realmId=1", timeout=10)

    assert forged.status_code == 400
    assert run.finish() == 1
    assert "state does not match" in " ".join(capsys.readouterr().err.split())
    assert stored_secret(stack, "forged", "quickbooks") is None


def test_given_the_person_declines_then_exit_1_saying_so(
    stack: LocalStack, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = stack.sandboxes["quickbooks"]
    sandbox.config.consents = False
    try:
        run = Connecting(stack, config_file, capsys, "quickbooks", "declined")
        assert run.follow()["error"] == ["access_denied"]
        assert run.finish() == 1
    finally:
        sandbox.config.consents = True
    assert "access was denied" in capsys.readouterr().err
    assert stored_secret(stack, "declined", "quickbooks") is None


def test_given_salesforce_when_connected_then_pkce_was_used_and_the_org_id_stored(
    stack: LocalStack, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = stack.sandboxes["salesforce"]
    run = Connecting(
        stack, config_file, capsys, "salesforce", "acme", "--set", "outbound_token=chosen"
    )
    query = parse_qs(urlsplit(run.authorize_url()).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["scope"] == ["api refresh_token"]

    run.follow()

    assert run.finish() == 0
    secret = stored_secret(stack, "acme", "salesforce")
    assert secret is not None
    assert secret["organization_id"] == sandbox.org_id
    assert secret["outbound_token"] == "chosen"
    assert refreshes(
        f"{stack.urls.sandboxes['salesforce']}/services/oauth2/token", secret, basic=False
    )


def test_given_xero_when_connected_then_the_tenant_comes_from_its_connections(
    stack: LocalStack, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sandbox = stack.sandboxes["xero"]
    run = Connecting(stack, config_file, capsys, "xero", "acme")

    run.follow()

    assert run.finish() == 0
    secret = stored_secret(stack, "acme", "xero")
    assert secret is not None
    assert secret["tenant_id"] == sandbox.config.tenant_id
    assert refreshes(f"{stack.urls.sandboxes['xero']}/connect/token", secret, basic=True)


def test_given_a_wrong_code_verifier_then_salesforce_refuses_the_code(stack: LocalStack) -> None:
    sandbox = stack.sandboxes["salesforce"]
    base = stack.urls.sandboxes["salesforce"]
    callback = sandbox.config.redirect_uris[0]
    pkce, other = pkce_pair(), pkce_pair()
    consent = httpx.get(
        f"{base}/services/oauth2/authorize",
        params={
            "response_type": "code",
            "client_id": sandbox.config.client_id,
            "redirect_uri": callback,
            "code_challenge": pkce.challenge,
            "code_challenge_method": "S256",
        },
        timeout=10,
    )
    code = parse_qs(urlsplit(consent.headers["location"]).query)["code"][0]

    answer = httpx.post(
        f"{base}/services/oauth2/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": callback,
            "client_id": sandbox.config.client_id,
            "client_secret": sandbox.config.client_secret,
            "code_verifier": other.verifier,
        },
        timeout=10,
    )

    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"


# --- connection add ----------------------------------------------------------------------


def secret_file(tmp_path: Path, name: str, **leave_out: Any) -> Path:
    """A secret with every key the vendor declares, less those named in ``leave_out``."""
    values = {key: f"{name}-{key}" for key in vendor(name).secret_keys if key not in leave_out}
    path = tmp_path / f"{name}{'-without-' + '-'.join(leave_out) if leave_out else ''}.json"
    path.write_text(json.dumps(values))
    return path


def add(
    config_file: Path, connection_id: str, *extra: str, mapping: Path = SALESFORCE_PRESET
) -> int:
    """``crmsync connection add`` of a Salesforce → Xero connection."""
    return main(
        [
            "connection",
            "add",
            "--connection",
            connection_id,
            "--crm",
            "salesforce",
            "--accounting",
            "xero",
            "--mapping",
            str(mapping),
            *extra,
            "--local",
            "--config",
            str(config_file),
        ]
    )


def stored(stack: LocalStack) -> DynamoConnections:
    return DynamoConnections(
        stack.clients.dynamodb,
        boto3.session.Session(
            aws_access_key_id=stack.config.aws.access_key_id,
            aws_secret_access_key=stack.config.aws.secret_access_key,
            region_name=stack.config.aws.region,
        ).resource("dynamodb", endpoint_url=stack.urls.moto),
        stack.resources.tables["Connections"],
    )


def test_given_a_new_connection_when_added_then_its_row_and_secrets_are_stored(
    stack: LocalStack, config_file: Path, tmp_path: Path
) -> None:
    files = [secret_file(tmp_path, "salesforce"), secret_file(tmp_path, "xero")]

    status = add(
        config_file, "initech", "--crm-secret", str(files[0]), "--accounting-secret", str(files[1])
    )

    assert status == 0
    connection = stored(stack).get("initech")
    assert connection is not None
    assert (connection.crm, connection.accounting) == ("salesforce", "xero")
    assert connection.mapping == SALESFORCE_PRESET.read_text()
    for name, path in zip(("salesforce", "xero"), files, strict=True):
        assert stored_secret(stack, "initech", name) == json.loads(path.read_text())
    # The connections the stack started with are still there.
    assert {c.id for c in stored(stack).all()} >= {
        "initech",
        *(c.id for c in stack.config.connections),
    }


def test_given_no_secret_files_when_added_then_the_row_only_and_connect_is_suggested(
    stack: LocalStack, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add(config_file, "rowonly") == 0

    assert stored(stack).get("rowonly") is not None
    assert stored_secret(stack, "rowonly", "xero") is None
    assert "crmsync connect xero --connection rowonly" in " ".join(capsys.readouterr().out.split())


def test_given_a_two_way_mapping_when_added_then_the_fields_to_make_are_named(
    stack: LocalStack, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    two_way = REPO / "config" / "salesforce" / "services-two-way.yaml"

    assert add(config_file, "twoway", mapping=two_way) == 0

    told = " ".join(capsys.readouterr().out.split())
    assert "writes back into these Salesforce properties:" in told
    assert "deal: Crmsync_Invoice_Status__c, Crmsync_Amount_Paid__c" in told
    assert "company: Crmsync_Open_Balance__c" in told
    assert "an admin makes them in Setup before the first write-back" in told
    assert 'README.md, "Salesforce: custom fields for two-way" says' in told


def test_given_a_one_way_mapping_when_added_then_no_fields_are_named(
    stack: LocalStack, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert add(config_file, "oneway") == 0

    assert "writes back" not in capsys.readouterr().out


def test_given_a_start_date_when_added_then_the_connection_carries_it(
    stack: LocalStack, config_file: Path
) -> None:
    assert add(config_file, "since", "--since", "2026-03-01") == 0

    connection = stored(stack).get("since")
    assert connection is not None
    assert connection.sync_since == date(2026, 3, 1)


@pytest.mark.parametrize(
    ("problem", "says"),
    [
        ("secret without a key", "Xero needs tenant_id"),
        ("mapping for another CRM", "written for source 'hubspot'"),
        ("secret that is not JSON strings", "a secret is a JSON object of strings"),
    ],
)
def test_given_a_wrong_connection_when_added_then_exit_1_saying_why_and_nothing_stored(
    stack: LocalStack,
    config_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    problem: str,
    says: str,
) -> None:
    extra = ["--crm-secret", str(secret_file(tmp_path, "salesforce"))]
    mapping = SALESFORCE_PRESET
    if problem == "secret without a key":
        extra += ["--accounting-secret", str(secret_file(tmp_path, "xero", tenant_id=True))]
    elif problem == "mapping for another CRM":
        mapping = REPO / "config" / "hubspot" / "services.yaml"
    else:
        bad = tmp_path / "bad.json"
        bad.write_text('{"client_id": 7}')
        extra = ["--crm-secret", str(bad)]
    before = {c.id: c for c in stored(stack).all()}

    status = add(config_file, "umbrella", *extra, mapping=mapping)

    assert status == 1
    assert says in " ".join(capsys.readouterr().err.split())
    assert {c.id: c for c in stored(stack).all()} == before
    assert stored_secret(stack, "umbrella", "salesforce") is None


def test_given_a_vendor_without_a_flow_when_connected_then_the_set_keys_are_stored(
    stack: LocalStack, config_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = ["--local", "--config", str(config_file)]

    status = main(
        ["connect", "hubspot", "--connection", "acme", "--set", "access_token=pat", *local]
    )
    unknown = main(["connect", "hubspot", "--connection", "acme", "--set", "realm_id=1", *local])

    assert (status, unknown) == (0, 1)
    assert stored_secret(stack, "acme", "hubspot") == {"access_token": "pat"}
    captured = capsys.readouterr()
    assert "Still missing: client_secret" in " ".join(captured.out.split())
    assert "keeps no such key" in captured.err
