"""Every error is JSON (``{code, status, message, errors}``, ``message`` always), never a traceback.

Validation errors name the field (``errors: {query: {end: ["must be after start"]}}``); a
database that is down, or no model yet, is a 503 with a reason and a ``Retry-After``; a
bug is logged and answered with a bare 500.
"""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from flask_smorest import abort
from pymongo.errors import PyMongoError
from werkzeug.exceptions import HTTPException

from telemetry.store import DatabaseUnavailable

log = logging.getLogger(__name__)


def abort_field(field: str, message: str, *, location: str = "query", status: int = 422):
    """Reject one parameter the way the schema validation does."""
    abort(status, message=f"{field}: {message}", errors={location: {field: [message]}})


def unavailable(message: str, retry_after: int = 5):
    abort(503, message=message, headers={"Retry-After": str(retry_after)})


def no_model(reason: str | None = None):
    unavailable(reason or "no model has been promoted yet: train one (`pycemaker train`) and retry", retry_after=30)


def _json(code: int, status: str, message: str, headers: dict | None = None):
    response = jsonify({"code": code, "status": status, "message": message})
    response.status_code = code
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def ensure_message(error: HTTPException) -> None:
    """Give an HTTP error a ``message`` when it has none (schema validation, an unknown URL, a wrong
    method): the fields' first messages in words (``start: Out of range...; step: ...``), else the
    status's standard description. flask-smorest's handler then writes it."""
    data = getattr(error, "data", None) or {}
    if "message" in data:
        return
    errors = data.get("errors") or data.get("messages")
    parts = []
    for fields in (errors or {}).values():
        for name, messages in (fields.items() if isinstance(fields, dict) else []):
            first = messages[0] if isinstance(messages, list) and messages else messages
            parts.append(f"{name}: {first}")
    error.data = {**data, "message": "; ".join(parts) or error.description or error.name}


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DatabaseUnavailable)
    def _database_down(exc: DatabaseUnavailable):
        return _json(503, "Service Unavailable", f"database unavailable: {exc}", {"Retry-After": "5"})

    @app.errorhandler(PyMongoError)
    def _database_error(exc: PyMongoError):
        return _json(503, "Service Unavailable", f"database unavailable ({type(exc).__name__})", {"Retry-After": "5"})

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        if isinstance(exc, HTTPException):  # handled by flask-smorest's JSON handler
            return exc
        log.exception("unhandled error")
        return _json(500, "Internal Server Error", "internal error; the server log has the details")
