"""The OpenAPI document: valid OpenAPI 3.0, documented throughout, and docs/openapi.json never drifts."""

from __future__ import annotations

import json

import jsonschema
from schemathesis.specs.openapi.definitions import OPENAPI_30

from serving.app import openapi_document
from serving.commands import openapi_text
from tests.conftest import REPO


def test_docs_openapi_json_matches_the_code():
    committed = (REPO / "docs" / "openapi.json").read_text()
    assert committed == openapi_text(), "docs/openapi.json is stale: run `pycemaker openapi`"


def test_the_document_is_valid_openapi_3_0():
    document = openapi_document()
    assert document["openapi"] == "3.0.3"
    jsonschema.validate(document, OPENAPI_30, cls=jsonschema.Draft4Validator)


def test_every_operation_and_field_is_described():
    document = openapi_document()
    paths = document["paths"]
    expected = {
        ("get", "/api/v1/status"), ("get", "/api/v1/health"), ("get", "/api/v1/forecast"), ("get", "/api/v1/models"),
        ("get", "/api/v1/services"), ("get", "/api/v1/fleet"), ("get", "/api/v1/services/{service}/status"),
        ("get", "/api/v1/services/{service}/health"), ("get", "/api/v1/services/{service}/forecast"),
        ("get", "/api/v1/models/{version}"), ("post", "/api/v1/models/{version}/activate"), ("post", "/api/v1/train"),
        ("get", "/livez"), ("get", "/readyz"), ("get", "/metrics"),
        ("get", "/health_data/{hours}"), ("get", "/predicted_data/{hours}"), ("get", "/current_health/{hours}"),
    }
    operations = {(m, p) for p, item in paths.items() for m in item if m in ("get", "post")}
    assert operations == expected
    for method, path in operations:
        op = paths[path][method]
        assert op.get("summary") and op.get("tags"), (method, path)
        for parameter in op.get("parameters", []):
            assert parameter.get("description"), (path, parameter["name"])
    for method, path in (("post", "/api/v1/models/{version}/activate"), ("post", "/api/v1/train")):
        assert paths[path][method]["security"] == [{"bearerAuth": []}]
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"

    undocumented = []
    for name, schema in document["components"]["schemas"].items():
        for field, prop in schema.get("properties", {}).items():
            described = prop.get("description") or "$ref" in prop or ("allOf" in prop) or prop.get("items", {}).get("$ref")
            if not described:
                undocumented.append(f"{name}.{field}")
    assert undocumented == []

    status = paths["/api/v1/status"]["get"]
    assert status["responses"]["200"]["content"]["application/json"]["example"]["state"] == "failure_predicted"
    assert "P10" in status["description"] and "P90" in status["description"]
    ttf = document["components"]["schemas"]["TimeToFailure"]["properties"]
    assert "P50" in ttf["expected"]["description"] or "P50" in json.dumps(ttf)
    assert "0 = no failure predicted" in document["components"]["schemas"]["CompatCurrentHealth"]["properties"]["predicted_remaining_time"]["description"]
