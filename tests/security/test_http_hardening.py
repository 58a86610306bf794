"""Standard security headers on every response, a request size limit, CORS off unless configured.

Already proven elsewhere: with an allow-list, CORS answers only the listed origins
(tests/serving/test_routes.py::test_cors_allows_only_the_configured_origins); gunicorn's own
limits on the request line and headers (tests/reliability/test_database_outage.py, under gunicorn).
"""

from __future__ import annotations

import dataclasses

import pytest

from serving.app import API_CONTENT_SECURITY_POLICY, MAX_REQUEST_BYTES
from tests.serving.conftest import Clock, at
from tests.serving.onnx_models import persistence_model

PAGES = {
    "/api/v1/status": 200,
    "/api/v1/health?step=bad": 422,
    "/api/v1/nothing": 404,
    "/api/v1/models/ghost": 404,
    "/metrics": 200,
    "/openapi.json": 200,
    "/docs": 200,
    "/static/swagger-ui/swagger-ui.css": 200,
}


@pytest.fixture
def client(scenario_settings, make_app):
    persistence_model(scenario_settings.models_dir, "v1", L=30, H=15)
    return make_app(dataclasses.replace(scenario_settings, api_token="t0ken"), Clock(at("21:30"))).test_client()


@pytest.mark.parametrize(("url", "status"), PAGES.items())
def test_every_response_carries_the_security_headers(client, url, status):
    response = client.get(url)
    assert response.status_code == status
    headers = response.headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["X-Frame-Options"] == "DENY"
    if response.mimetype == "text/html":  # Swagger UI runs an inline script: no policy that would break it
        assert "Content-Security-Policy" not in headers
    else:
        assert headers["Content-Security-Policy"] == API_CONTENT_SECURITY_POLICY
    assert "Access-Control-Allow-Origin" not in headers


def test_a_request_body_over_the_limit_is_refused_before_anything_else(client, db):
    big = b"x" * (MAX_REQUEST_BYTES + 1)
    for headers in ({}, {"Authorization": "Bearer t0ken"}):
        response = client.post("/api/v1/train", data=big, headers={**headers, "Content-Type": "application/json"})
        assert response.status_code == 413 and response.get_json()["code"] == 413
        assert str(MAX_REQUEST_BYTES) in response.get_json()["message"]
    assert client.get("/api/v1/status", data=big).status_code == 413
    small = client.post("/api/v1/train", data=b"{}", headers={"Authorization": "Bearer t0ken", "Content-Type": "application/json"})
    assert small.status_code == 202


def test_cors_is_off_by_default(client):
    origin = {"Origin": "https://evil.example"}
    for response in (
        client.get("/api/v1/status", headers=origin),
        client.options("/api/v1/train", headers={**origin, "Access-Control-Request-Method": "POST",
                                                  "Access-Control-Request-Headers": "Authorization"}),
    ):
        assert not [h for h in response.headers.keys() if h.lower().startswith("access-control-")], dict(response.headers)


def test_an_allowed_origin_never_gets_credentials_and_a_wildcard_never_reflects(scenario_settings, make_app):
    settings = dataclasses.replace(scenario_settings, cors_origins=("*",))
    client = make_app(settings, Clock(at("21:30"))).test_client()
    response = client.get("/api/v1/status", headers={"Origin": "https://any.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"  # not the caller's origin echoed back
    assert "Access-Control-Allow-Credentials" not in response.headers
