"""Query inputs never reach MongoDB as operators: every command the API sends is watched on the wire.

Each hostile request carries the marker ``pwn3d``; the test records every command the app's
client sends (pymongo command monitoring) and checks that no key and no string value in any of
them holds the marker or a ``$`` taken from a request. Valid requests are sent too, so the
monitor provably sees the reads.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any, Iterator

import pytest
from pymongo import MongoClient, monitoring

from tests.serving.conftest import Clock, at
from tests.serving.onnx_models import persistence_model

UTC = dt.timezone.utc
MARK = "pwn3d"
HOSTILE_GETS = [
    f"/api/v1/health?start[$gt]={MARK}",
    f"/api/v1/health?start=%7B%22%24gt%22%3A%22{MARK}%22%7D",  # start={"$gt": "pwn3d"}
    f"/api/v1/health?start=2026-03-01T20:00:00Z&$where=sleep(1000)%2F%2F{MARK}",
    f"/api/v1/health?step=%7B%22%24ne%22%3A%22{MARK}%22%7D",
    f"/api/v1/forecast?horizon=%7B%22%24ne%22%3A0%7D&{MARK}=1",
    f"/api/v1/forecast?start[$ne]={MARK}",
    f"/api/v1/status?$where={MARK}",
    f"/api/v1/models/%7B%22%24ne%22%3Anull%7D{MARK}",
    f"/api/v1/models/$where{MARK}",
    f"/api/v1/models/..%2F..%2F..%2Fetc%2Fpasswd{MARK}",
    f"/api/v1/models/%2e%2e{MARK}",
    f"/health_data/%7B%22%24gt%22%3A0%7D{MARK}",
    f"/health_data/1;{MARK}",
    f"/current_health/$where{MARK}",
    f"/static/..%2F..%2Fpyproject.toml?{MARK}",
]
HOSTILE_POSTS = [
    (f"/api/v1/models/$where{MARK}/activate", None),
    (f"/api/v1/models/%7B%22%24ne%22%3A1%7D{MARK}/activate", None),
    (f"/api/v1/train?requested_by[$set]={MARK}", {"$where": MARK, "requested_by": {"$ne": MARK}}),
]
#: A repeated parameter: the first value is used (webargs), the second is dropped, never read into a query.
VALID_GETS = [f"/api/v1/health?start=2026-03-01T20:00:00Z&start=%24{MARK}",
              "/api/v1/health?start=2026-03-01T20:00:00Z&end=2026-03-01T21:00:00Z", "/api/v1/status", "/api/v1/forecast"]


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.seen: list[dict] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.seen.append(dict(event.command))

    def succeeded(self, event) -> None:
        pass

    def failed(self, event) -> None:
        pass


def _walk(value: Any, path: str = "") -> Iterator[tuple[str, str, Any]]:
    """Every ("key" | "value", path, item) in a command document."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield "key", f"{path}.{key}", key
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]")
    else:
        yield "value", path, value


def test_no_request_input_reaches_the_database_as_an_operator_or_a_value(scenario_settings, make_app):
    settings = dataclasses.replace(scenario_settings, api_token="t0ken")
    persistence_model(settings.models_dir, "v1", L=30, H=15)
    commands = Commands()
    client = MongoClient(settings.mongo_uri, event_listeners=[commands], tz_aware=True, serverSelectionTimeoutMS=2000)
    try:
        from bson.codec_options import CodecOptions

        db = client.get_database(settings.database, codec_options=CodecOptions(tz_aware=True, tzinfo=UTC))
        app = make_app(settings, Clock(at("21:30")), db=db).test_client()
        for url in HOSTILE_GETS:
            response = app.get(url)
            assert response.status_code in (404, 422), (url, response.status_code, response.get_data(as_text=True)[:200])
            assert response.is_json and "Traceback" not in response.get_data(as_text=True)
        for url, body in HOSTILE_POSTS:
            response = app.post(url, json=body, headers={"Authorization": "Bearer t0ken"})
            assert response.status_code in (202, 404, 422), (url, response.status_code)
        hostile = list(commands.seen)
        for url in VALID_GETS:
            assert app.get(url).status_code == 200, url
    finally:
        client.close()

    reads = [c for c in commands.seen[len(hostile):] if "find" in c]
    assert reads, "the monitor saw no read: the test would prove nothing"
    for command in commands.seen:
        for kind, path, item in _walk(command):
            assert MARK not in str(item), (path, command)
            if kind == "value" and isinstance(item, str):
                assert not item.startswith("$"), (path, command)  # no operator or field reference as a value
            if kind == "value" and ".filter.time_series." in path:
                assert isinstance(item, dt.datetime), (path, item)  # range bounds are dates the API built
    # The one write a request may cause: a training request, with fixed fields only.
    inserts = [c for c in commands.seen if c.get("insert") == "training_requests"]
    assert len(inserts) == 1
    (doc,) = inserts[0]["documents"]
    assert set(doc) == {"_id", "requested_at", "requested_by", "taken_at"} and doc["requested_by"] == "api"
    assert isinstance(doc["requested_at"], dt.datetime) and doc["taken_at"] is None


@pytest.mark.parametrize("url", ["/api/v1/health?start=2026-03-01T20:00:00Z&end=2026-03-08T20:00:01Z", "/api/v1/forecast?horizon=1441",
                                 "/health_data/169", "/predicted_data/25", "/current_health/25"])
def test_intervals_beyond_the_limits_are_refused_before_anything_is_read(scenario_settings, make_app, url):
    """max_interval_hours (7 days) and max_horizon_hours (24 h) bound what one request can make the server read or compute."""
    persistence_model(scenario_settings.models_dir, "v1", L=30, H=15)
    response = make_app(scenario_settings, Clock(at("21:30"))).test_client().get(url)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert "max_interval_hours" in response.get_json()["message"] or "max_horizon_hours" in response.get_json()["message"]
