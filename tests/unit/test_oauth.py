"""The authorization code grant's pieces: the PKCE pair, the authorize URL, what the
answers fill, and the vendors' declarations."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest

from ops.command import CommandError
from ops.oauth import authorize_url, collect, pkce_pair, s256
from shared.connectors.registry import vendor, vendors
from shared.connectors.spec import SecretFrom


def test_given_rfc_7636_appendix_b_verifier_when_hashed_then_its_challenge() -> None:
    assert (
        s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )


def test_given_two_pairs_then_each_verifier_is_fresh_unreserved_and_matches_its_challenge() -> None:
    first, second = pkce_pair(), pkce_pair()

    assert first.verifier != second.verifier
    for pair in (first, second):
        assert 43 <= len(pair.verifier) <= 128
        assert re.fullmatch(r"[A-Za-z0-9\-._~]+", pair.verifier)
        assert pair.challenge == s256(pair.verifier)
        assert "=" not in pair.challenge


def test_given_pkce_when_building_the_authorize_url_then_every_parameter_is_there() -> None:
    url = authorize_url(
        "https://login.example.com/services/oauth2/authorize",
        client_id="app id",
        redirect="http://localhost:8765/callback",
        scopes=["api", "refresh_token"],
        state="s-1",
        challenge="abc",
    )

    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == (
        "https://login.example.com/services/oauth2/authorize"
    )
    assert parse_qs(parts.query) == {
        "response_type": ["code"],
        "client_id": ["app id"],
        "redirect_uri": ["http://localhost:8765/callback"],
        "scope": ["api refresh_token"],
        "state": ["s-1"],
        "code_challenge": ["abc"],
        "code_challenge_method": ["S256"],
    }


def test_given_no_pkce_and_a_query_in_the_endpoint_then_no_challenge_and_one_query() -> None:
    url = authorize_url(
        "https://example.com/authorize?prompt=consent",
        client_id="c",
        redirect="http://localhost:1/callback",
        scopes=["a"],
        state="s",
        challenge=None,
    )

    query = parse_qs(urlsplit(url).query)
    assert query["prompt"] == ["consent"]
    assert "code_challenge" not in query and "code_challenge_method" not in query


def test_given_declared_sources_when_collected_then_each_key_from_its_place() -> None:
    fills = {
        "refresh_token": SecretFrom("token", "refresh_token"),
        "realm_id": SecretFrom("redirect", "realmId"),
        "organization_id": SecretFrom("token", "id", pattern=r"/id/([^/]+)/"),
        "webhook_key": SecretFrom("token", "never_sent"),
    }

    values = collect(
        fills,
        token={"refresh_token": "r-1", "id": "https://login.example.com/id/00Dx/005y"},
        redirect={"code": "c", "realmId": "9341"},
        settings={},
        given={"webhook_key": "typed"},  # given with --set: not looked for
    )

    assert values == {"refresh_token": "r-1", "realm_id": "9341", "organization_id": "00Dx"}


def test_given_an_answer_without_a_declared_field_then_a_command_error_names_it() -> None:
    with pytest.raises(CommandError, match="realmId"):
        collect(
            {"realm_id": SecretFrom("redirect", "realmId")},
            token={},
            redirect={"code": "c"},
            settings={},
            given={},
        )


def test_every_vendor_flow_fills_only_declared_keys_from_its_settings() -> None:
    # VendorSpec checks this when built; here: every registered vendor was built.
    for spec in vendors():
        settings = spec.read_settings({}).model_dump()
        if spec.oauth is not None:
            assert settings[spec.oauth.authorize_setting].startswith("https://")
            assert settings[spec.oauth.token_setting].startswith("https://")
            assert set(spec.oauth.fills) <= set(spec.secret_keys)
        for environment in spec.environments or {"production": {}}:
            assert set(spec.environment_settings(environment)) <= set(settings)


def test_given_an_environment_a_vendor_lacks_then_a_value_error_naming_its_own() -> None:
    with pytest.raises(ValueError, match="production"):
        vendor("xero").environment_settings("sandbox")
    assert vendor("quickbooks").environment_settings("sandbox") == {
        "api_url": "https://sandbox-quickbooks.api.intuit.com"
    }
