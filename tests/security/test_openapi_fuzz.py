"""schemathesis over every operation of the served OpenAPI document: every response conforms to it.

tests/serving/test_errors.py::test_no_operation_answers_a_server_error already fuzzes every
operation for 5xx (valid and invalid inputs). Here every response is validated against the
document: status code documented, content type, headers and body schema (a 422 or 503 must
match ``ErrorSchema`` as well as a 200 its own), with the bearer token sent to the write routes,
plus schemathesis's auth check (a write route must refuse the request without it).
"""

from __future__ import annotations

import dataclasses

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.serving.conftest import Clock, at
from tests.serving.onnx_models import persistence_model

TOKEN = "s3cret"
CONFORMANCE = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
               response_schema_conformance, ignored_auth]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_response_conforms_to_the_openapi_document(scenario_settings, make_app, mode):
    settings = dataclasses.replace(scenario_settings, api_token=TOKEN, max_interval_hours=6.0, max_horizon_hours=6.0)
    persistence_model(settings.models_dir, "v1", L=30, H=15)
    schema = schemathesis.openapi.from_wsgi("/openapi.json", make_app(settings, Clock(at("21:30"))))
    checks = CONFORMANCE + ([negative_data_rejection] if mode is GenerationMode.NEGATIVE else [])
    operations = 0
    statuses: set[int] = set()
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis.settings(max_examples=12, deadline=None, derandomize=True, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck))
        def call(case):
            response = case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"}, checks=checks)
            statuses.add(response.status_code)

        try:
            call()
        except hypothesis.errors.Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # an operation without parameters has no invalid input
    assert operations >= 13
    assert 500 not in statuses and (200 in statuses if mode is GenerationMode.POSITIVE else 422 in statuses)
