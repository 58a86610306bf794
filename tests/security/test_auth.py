"""Write routes: the bearer token, compared in constant time; 401 without one, 403 with a wrong one.

Already proven elsewhere: without a configured token the write routes answer 403 (disabled)
(tests/serving/test_routes.py::test_write_routes_are_disabled_without_a_token); activation and
training work with the right token (::test_activate_and_train_need_the_bearer_token,
::test_train_files_a_request_for_the_scheduler); a token from a secret file
(tests/telemetry/test_settings.py::test_secrets_from_files).
"""

from __future__ import annotations

import dataclasses
import hmac

import pytest

from tests.serving.onnx_models import persistence_model

TOKEN = "s3cret-Tok3n"


@pytest.fixture
def client(settings, db, make_app):
    persistence_model(settings.models_dir, "v1")
    return make_app(dataclasses.replace(settings, api_token=TOKEN)).test_client()


@pytest.mark.parametrize("route", ["/api/v1/train", "/api/v1/models/v1/activate"])
@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (None, 401),
        ("", 401),
        ("Bearer", 401),
        ("Bearer    ", 401),
        (f"Basic {TOKEN}", 401),
        (TOKEN, 401),  # the token without its scheme
        ("Bearer wrong", 403),
        (f"Bearer {TOKEN[:-1]}", 403),  # a prefix of the token
        (f"Bearer {TOKEN}x", 403),
        (f"Bearer {TOKEN.lower()}", 403),
        (f"bearer  {TOKEN} ", None),  # the scheme is case-insensitive, spaces around the token do not matter
        (f"Bearer {TOKEN}", None),
    ],
)
def test_a_missing_token_is_401_a_wrong_one_403_and_neither_is_echoed(client, db, route, authorization, status):
    headers = {} if authorization is None else {"Authorization": authorization}
    response = client.post(route, headers=headers)
    if status is None:
        assert response.status_code in (200, 202), response.get_data(as_text=True)
        return
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["code"] == status and "Traceback" not in str(body)
    text = response.get_data(as_text=True)
    assert TOKEN[:-1] not in text and TOKEN.lower() not in text  # neither the token nor what was sent
    if status == 401:
        assert response.headers["WWW-Authenticate"] == 'Bearer realm="pycemaker"'
    assert db["training_requests"].count_documents({}) == 0  # nothing was done


def test_every_token_check_is_a_constant_time_comparison(client, monkeypatch):
    """The given token is compared with hmac.compare_digest, whole, never with == or a prefix check."""
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    for given in ("wrong", TOKEN[:3], TOKEN, "x" * 4096):
        client.post("/api/v1/train", headers={"Authorization": f"Bearer {given}"})
    assert calls == [(g.encode(), TOKEN.encode()) for g in ("wrong", TOKEN[:3], TOKEN, "x" * 4096)]


def test_read_routes_need_no_token_and_ignore_one(scenario_settings, make_app):
    persistence_model(scenario_settings.models_dir, "v1", L=30, H=15)
    client = make_app(dataclasses.replace(scenario_settings, api_token=TOKEN)).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert client.get("/api/v1/models", headers=headers).status_code == 200
        assert client.get("/livez", headers=headers).status_code == 200
