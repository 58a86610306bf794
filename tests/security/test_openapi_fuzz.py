"""schemathesis over every route the server answers: the API, the original's routes, ``/``, ``/docs``,
``/openapi.json`` and the static files, stateless and stateful (following the document's links).

Every response must:
- be no server error, except a 503 on an operation that documents one (no model, no data, database down);
- if it is an error (4xx/5xx), be JSON ``{code, status, message}`` and never a traceback;
- conform to the document (status code, content type, headers, body schema), with the bearer
  token sent to the write routes and schemathesis's auth check (a write route refuses the request without it).

The pages are not API operations, so they are not in the served document: :data:`PAGES_DOCUMENT`
describes them for the fuzzer only. Stateful runs start from ``/api/v1/status`` and
``/api/v1/models`` and follow their links to a version's card and to activating it.

Size: ``PYCEMAKER_FUZZ_EXAMPLES`` examples per operation and mode (default 10, a few hundred calls in
all: CI); ``make fuzz`` runs 30 (over a thousand) and writes ``bench/results/fuzz.json`` (the
path in ``PYCEMAKER_FUZZ_REPORT``), from which ``scripts/fuzz_figures.py`` writes docs/operations.md's figures.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import json
import os
import platform
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import REPO
from tests.serving.conftest import Clock, at
from tests.serving.onnx_models import persistence_model

TOKEN = "s3cret"
EXAMPLES = int(os.environ.get("PYCEMAKER_FUZZ_EXAMPLES", "10"))
REPORT = os.environ.get("PYCEMAKER_FUZZ_REPORT")
STATIC = REPO / "serving" / "static"
#: Real static files, so the generated paths hit some (a random string almost never does).
STATIC_FILES = sorted(str(p.relative_to(STATIC)) for p in STATIC.rglob("*") if p.is_file() and p.suffix != ".sh")
_ERROR = {"$ref": "#/components/schemas/Error"}
PAGES_DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "pycemaker pages (for the fuzzer)", "version": "1"},
    "paths": {
        "/": {"get": {"responses": {"200": {"description": "the dashboard", "content": {"text/html": {}}}}}},
        "/docs": {"get": {"responses": {"200": {"description": "Swagger UI", "content": {"text/html": {}}}}}},
        "/openapi.json": {"get": {"responses": {"200": {"description": "the document", "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/static/{path}": {
            "get": {
                "parameters": [{"name": "path", "in": "path", "required": True,
                                "schema": {"anyOf": [{"enum": STATIC_FILES}, {"type": "string", "minLength": 1}]}}],
                "responses": {
                    "200": {"description": "a file"},
                    "404": {"description": "no such file", "content": {"application/json": {"schema": _ERROR}}},
                },
            }
        },
    },
    "components": {"schemas": {"Error": {"type": "object", "required": ["code", "status", "message"],
                                         "properties": {"code": {"type": "integer"}, "status": {"type": "string"}, "message": {"type": "string"}}}}},
}


@dataclasses.dataclass
class Tally:
    """Every call the fuzzer made, by operation and status (written to the report)."""

    calls: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    statuses: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    phases: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    def add(self, phase: str, case, response) -> None:
        self.calls[f"{case.operation.method.upper()} {case.operation.path}"] += 1
        self.statuses[str(response.status_code)] += 1
        self.phases[phase] += 1


TALLY = Tally()


def _documents(case, status: int) -> bool:
    responses = case.operation.definition.raw.get("responses", {})
    return str(status) in responses


def no_server_error_but_a_documented_503(ctx, response, case) -> None:
    status = response.status_code
    if status >= 500 and not (status == 503 and _documents(case, 503)):
        raise AssertionError(f"{case.operation.label} answered {status}: {response.text[:300]}")


def errors_are_json(ctx, response, case) -> None:
    assert "Traceback" not in response.text, case.operation.label
    if response.status_code < 400:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.startswith("application/json"), (case.operation.label, response.status_code, content_type)
    body = json.loads(response.text)
    assert {"code", "status", "message"} <= set(body) and body["code"] == response.status_code, body


OWN_CHECKS = [no_server_error_but_a_documented_503, errors_are_json]
API_CHECKS = [*OWN_CHECKS, status_code_conformance, content_type_conformance, response_headers_conformance,
              response_schema_conformance, ignored_auth]
PAGE_CHECKS = [*OWN_CHECKS, status_code_conformance]
INPUT = {GenerationMode.POSITIVE: "valid input", GenerationMode.NEGATIVE: "invalid input"}


def with_token(schema):
    """The bearer token on every call, as explicit credentials (schemathesis's auth check then probes
    each write route without it and with a wrong one)."""

    @schema.auth()
    class Token:
        def get(self, case, ctx):
            return TOKEN

        def set(self, case, data, ctx):
            case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}

    return schema


@pytest.fixture
def fuzz_app(scenario_settings, make_app):
    # Short maximums: the fuzzer is here for the logic, not to read a week of samples per example.
    settings = dataclasses.replace(scenario_settings, api_token=TOKEN, max_interval_hours=6.0, max_horizon_hours=6.0)
    persistence_model(settings.models_dir, "v1", L=30, H=15)
    return make_app(settings, Clock(at("21:30")))


def _fuzz(schema, checks, mode: GenerationMode, phase: str) -> int:
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1
        extra = [negative_data_rejection] if mode is GenerationMode.NEGATIVE and checks is API_CHECKS else []

        @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
        @hypothesis.settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                             suppress_health_check=list(hypothesis.HealthCheck))
        def call(case):
            response = case.call_and_validate(checks=checks + extra)
            TALLY.add(phase, case, response)

        try:
            call()
        except hypothesis.errors.Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # an operation without parameters has no invalid input
    return operations


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_api_response_conforms_to_the_openapi_document(fuzz_app, mode):
    schema = with_token(schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app))
    before = sum(TALLY.calls.values())
    assert _fuzz(schema, API_CHECKS, mode, f"API {INPUT[mode]}") >= 13
    assert sum(TALLY.calls.values()) - before >= 13
    assert "500" not in TALLY.statuses


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_pages_and_static_files_answer_and_their_errors_are_json(fuzz_app, mode):
    schema = schemathesis.openapi.from_dict(PAGES_DOCUMENT, config=None)
    schema.app = fuzz_app  # calls go to the app in-process (WSGI), like from_wsgi's
    _fuzz(schema, PAGE_CHECKS, mode, f"pages {INPUT[mode]}")
    ok = {op for op, n in TALLY.calls.items() if not op.startswith(("GET /api", "POST /api", "GET /livez", "GET /readyz", "GET /metrics"))}
    assert {"GET /", "GET /docs", "GET /openapi.json", "GET /static/{path}"} <= ok, TALLY.calls


def test_stateful_runs_follow_the_links_from_the_status_and_the_registry(fuzz_app):
    schema = with_token(schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app))
    followed = collections.Counter()

    class Workflow(schema.as_state_machine()):
        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=API_CHECKS, transport_kwargs=kwargs)
            TALLY.add("stateful", case, response)
            followed[f"{case.operation.method.upper()} {case.operation.path}"] += 1

    Workflow.run(settings=hypothesis.settings(max_examples=max(5, EXAMPLES * 2), stateful_step_count=6, deadline=None,
                                              derandomize=True, database=None, suppress_health_check=list(hypothesis.HealthCheck)))
    assert schema.statistic.transitions.total >= 5
    # Reached through a link, with a real version: a card and an activation that answered 200.
    assert followed["GET /api/v1/models/{version}"] and followed["POST /api/v1/models/{version}/activate"], followed


@pytest.fixture(scope="module", autouse=True)
def report():
    """After the module: the figures of this run, for `make fuzz` (only when PYCEMAKER_FUZZ_REPORT is set)."""
    yield
    if not REPORT or not TALLY.calls:
        return
    report = {
        "benchmark": "fuzz",
        "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "schemathesis": schemathesis.__version__,
        "examples_per_operation_and_mode": EXAMPLES,
        "calls": sum(TALLY.calls.values()),
        "operations": len(TALLY.calls),
        "by_phase": dict(sorted(TALLY.phases.items())),
        "by_status": dict(sorted(TALLY.statuses.items())),
        "by_operation": dict(sorted(TALLY.calls.items())),
        "server_errors": sum(n for s, n in TALLY.statuses.items() if s.startswith("5") and s != "503"),
    }
    path = Path(REPORT)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
