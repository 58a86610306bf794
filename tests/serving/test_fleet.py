"""Services and the fleet on the real embedded server: three simulated services beside the default one."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import pytest

from serving.fleet import fleet_order
from serving.schemas import FleetSchema, ForecastSchema, HealthSeriesSchema, ServiceListSchema, StatusSchema
from serving.status import FAILING_NOW, FAILURE_PREDICTED, NO_FAILURE, UNKNOWN
from telemetry.catalogue import STREAMS
from tests.serving.conftest import Clock
from tests.serving.fleet_data import END, NOW, PEAK, SERVICES, STALE, START
from tests.serving.helpers import get_json as _get

UTC = dt.timezone.utc
ORDER = {FAILING_NOW: 0, FAILURE_PREDICTED: 1, NO_FAILURE: 2, UNKNOWN: 3}


def _seconds(crossing):
    return math.inf if crossing is None else crossing["seconds"]


def test_services_lists_every_service_with_streams_range_and_state(fleet_settings, make_app):
    client = make_app(fleet_settings, Clock(NOW)).test_client()
    body = _get(client, "/api/v1/services", ServiceListSchema)
    assert body["count"] == 4
    names = [s["name"] for s in body["services"]]
    assert names == ["default", *SERVICES]
    by_name = {s["name"]: s for s in body["services"]}
    assert [s["default"] for s in body["services"]] == [True, False, False, False]
    for name, service in by_name.items():
        assert [s["stream"] for s in service["streams"]] == sorted(s.collection for s in STREAMS)
        first, last = dt.datetime.fromisoformat(service["data"]["first"]), dt.datetime.fromisoformat(service["data"]["last"])
        assert START <= first < START + dt.timedelta(seconds=12)
        expected_end = END - dt.timedelta(hours=1) if name == STALE else NOW  # samples after "now" are not seen yet
        assert expected_end - dt.timedelta(seconds=12) < last <= expected_end
    assert by_name[STALE]["state"] == UNKNOWN and by_name[STALE]["reason"] == "stale_data"
    for name in ("svc-01", "svc-02"):
        status = _get(client, f"/api/v1/services/{name}/status", StatusSchema)
        assert by_name[name]["state"] == status["state"] != UNKNOWN


def test_fleet_ranks_soonest_failure_first_with_each_services_own_status(fleet_settings, make_app):
    client = make_app(fleet_settings, Clock(NOW)).test_client()
    fleet = _get(client, "/api/v1/fleet", FleetSchema)
    assert fleet["count"] == 4 and fleet["threshold"] == 0.3
    entries = fleet["services"]
    assert sorted(e["service"] for e in entries) == ["default", *SERVICES]
    for entry in entries:  # each row is the service's own status
        status = _get(client, f"/api/v1/services/{entry['service']}/status", StatusSchema)
        assert entry["state"] == status["state"] and entry["reason"] == status["reason"]
        assert entry["health"] == status["current"]["health"] and entry["driver"] == status["driver"]
        assert entry["time_to_failure"] == status["time_to_failure"]
    # The documented order, recomputed from the rows.
    def key(e):
        ttf = e["time_to_failure"] or {}
        if e["state"] == FAILURE_PREDICTED:
            return (1, _seconds(ttf.get("expected")), _seconds(ttf.get("earliest")), e["service"])
        return (ORDER[e["state"]], 0, 0, e["service"])
    assert [e["service"] for e in entries] == [e["service"] for e in sorted(entries, key=key)]
    assert entries[-1]["service"] == STALE and entries[-1]["state"] == UNKNOWN
    predicted = [e for e in entries if e["state"] == FAILURE_PREDICTED]
    expected = [e["time_to_failure"]["expected"]["seconds"] for e in predicted]
    assert len(predicted) >= 2 and expected == sorted(expected) and len(set(expected)) >= 2, entries  # the services differ

    for state in {e["state"] for e in entries}:
        only = _get(client, f"/api/v1/fleet?state={state}", FleetSchema)
        assert [e["service"] for e in only["services"]] == [e["service"] for e in entries if e["state"] == state]
    assert "state" in _get(client, "/api/v1/fleet?state=broken", status=422)["message"]
    assert _get(client, "/api/v1/fleet?sort=name", status=422)["errors"]["query"]["sort"]


def test_fleet_puts_failing_services_first_and_filters_by_state(fleet_settings, make_app):
    clock = Clock(PEAK)
    client = make_app(fleet_settings, clock).test_client()
    entries = _get(client, "/api/v1/fleet", FleetSchema)["services"]
    failing = [e["service"] for e in entries if e["state"] == FAILING_NOW]
    assert failing and [e["service"] for e in entries[: len(failing)]] == sorted(failing)
    assert all(e["time_to_failure"]["expected"]["seconds"] == 0 and e["health"] <= 0.3 for e in entries[: len(failing)])
    assert entries[-1]["service"] == STALE
    only = _get(client, "/api/v1/fleet?state=failing_now", FleetSchema)
    assert only["count"] == len(failing) and [e["service"] for e in only["services"]] == sorted(failing)
    assert _get(client, "/api/v1/fleet?state=unknown", FleetSchema)["services"][0]["service"] == STALE


def test_a_services_health_and_forecast_are_its_own(fleet_settings, make_app):
    client = make_app(fleet_settings, Clock(NOW)).test_client()
    healths = {}
    for name in ("svc-01", "svc-02"):
        body = _get(client, f"/api/v1/services/{name}/health?start=2026-03-01T23:00:00Z&end=2026-03-02T00:00:00Z", HealthSeriesSchema)
        assert len(body["points"]) == 60
        healths[name] = [p["health"] for p in body["points"]]
        forecast = _get(client, f"/api/v1/services/{name}/forecast?horizon=30", ForecastSchema)
        assert len(forecast["points"]) == 30 and forecast["model_version"] == "v-decline"
    assert healths["svc-01"] != healths["svc-02"]
    assert _get(client, "/api/v1/services/svc-01/health?step=7x", status=422)["errors"]["query"]["step"]


def test_default_service_routes_answer_as_before(fleet_settings, make_app):
    client = make_app(fleet_settings, Clock(NOW)).test_client()
    status = _get(client, "/api/v1/status", StatusSchema)
    assert _get(client, "/api/v1/services/default/status") == status
    interval = "start=2026-03-01T23:00:00Z&end=2026-03-02T00:00:00Z"
    assert _get(client, f"/api/v1/services/default/health?{interval}") == _get(client, f"/api/v1/health?{interval}")
    assert _get(client, "/api/v1/services/default/forecast?horizon=20") == _get(client, "/api/v1/forecast?horizon=20")
    assert _get(client, "/current_health/1")["current_health"] == status["current"]["health"]
    # Another service's data is not the default service's.
    other = _get(client, "/api/v1/services/svc-01/forecast?horizon=20")["points"]
    assert [p["cpu"] for p in other] != [p["cpu"] for p in _get(client, "/api/v1/forecast?horizon=20")["points"]]


def test_another_default_service_name_answers_for_samples_without_one(fleet_settings, make_app):
    settings = dataclasses.replace(fleet_settings, default_service="shop")
    client = make_app(settings, Clock(NOW)).test_client()
    names = [s["name"] for s in _get(client, "/api/v1/services", ServiceListSchema)["services"]]
    assert names == ["shop", *SERVICES]
    assert _get(client, "/api/v1/services/shop/status") == _get(client, "/api/v1/status")
    assert _get(client, "/api/v1/services/default/status", status=404)


@pytest.mark.parametrize("route", ["status", "health", "forecast"])
def test_unknown_service_is_404_naming_it_and_a_bad_name_is_422(fleet_settings, make_app, route):
    client = make_app(fleet_settings, Clock(NOW)).test_client()
    body = _get(client, f"/api/v1/services/svc-99/{route}", status=404)
    assert "svc-99" in body["message"] and body["code"] == 404
    for bad in ("-svc", "svc%20one", "x" * 64, "svc!"):
        body = _get(client, f"/api/v1/services/{bad}/{route}", status=422)
        assert body["errors"]["path"]["service"] and "service" in body["message"]


def test_fleet_order_tiers_and_ties():
    from serving import eta
    from serving.status import TimeToFailure

    at = dt.datetime(2026, 3, 1, tzinfo=UTC)

    def status(state, expected=None, earliest=None):
        ttf = TimeToFailure(*(eta.Crossing(at, s) if s is not None else None for s in (expected, earliest, None)))
        return type("S", (), {"state": state, "time_to_failure": ttf})()

    rows = {
        "healthy-b": status(NO_FAILURE), "healthy-a": status(NO_FAILURE), "gone": None, "dark": status(UNKNOWN),
        "soon": status(FAILURE_PREDICTED, 600, 300), "soon-tie": status(FAILURE_PREDICTED, 600, 120),
        "risk": status(FAILURE_PREDICTED, None, 60), "later": status(FAILURE_PREDICTED, 1800, 900),
        "down-z": status(FAILING_NOW, 0, 0), "down-a": status(FAILING_NOW, 0, 0),
    }
    ranked = sorted(rows, key=lambda name: fleet_order(name, rows[name]))
    assert ranked == ["down-a", "down-z", "soon-tie", "soon", "later", "risk", "healthy-a", "healthy-b", "dark", "gone"]


def test_metrics_label_the_services_soonest_to_fail_and_count_them_all(fleet_settings, make_app):
    from prometheus_client.parser import text_string_to_metric_families

    settings = dataclasses.replace(fleet_settings, metrics_services=2)
    app = make_app(settings, Clock(NOW))
    client = app.test_client()
    ranked = [e["service"] for e in _get(client, "/api/v1/fleet")["services"]]
    app.extensions["pycemaker"].fleet.refresh_all()  # what the background refresher does every round
    families = {f.name: f for f in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))}
    health = {s.labels["service"]: s.value for s in families["pycemaker_service_health"].samples}
    assert sorted(health) == sorted(ranked[:2])  # bounded: the two soonest to fail only
    ttf = {(s.labels["service"], s.labels["bound"]) for s in families["pycemaker_service_time_to_failure_seconds"].samples}
    assert ttf == {(name, bound) for name in ranked[:2] for bound in ("expected", "earliest", "latest")}
    counts = {s.labels["state"]: s.value for s in families["pycemaker_services"].samples}
    assert sum(counts.values()) == 4 and counts[UNKNOWN] == 1


def test_with_the_refresher_running_requests_hand_out_what_the_last_round_left(fleet_settings, make_app):
    app = make_app(fleet_settings, Clock(NOW))
    client = app.test_client()
    fleet = app.extensions["pycemaker"].fleet
    fleet._running = lambda: True  # as while the background thread goes round (started by the app in production)
    entries = _get(client, "/api/v1/fleet", FleetSchema)["services"]
    assert [e["state"] for e in entries] == [UNKNOWN] * 4  # nothing computed yet: no request waits for it
    assert all(e["detail"].startswith("status not computed yet") for e in entries)
    fleet.refresh_all()
    after = _get(client, "/api/v1/fleet", FleetSchema)["services"]
    assert after[-1]["service"] == STALE and {e["state"] for e in after[:-1]} - {UNKNOWN} == {e["state"] for e in after[:-1]}
    status = _get(client, "/api/v1/services/svc-01/status", StatusSchema)
    assert next(e for e in after if e["service"] == "svc-01")["as_of"] == status["as_of"]


def test_the_first_scan_reaches_back_services_scan_hours(fleet_settings, make_app):
    settings = dataclasses.replace(fleet_settings, services_scan_hours=0.5)
    client = make_app(settings, Clock(NOW)).test_client()
    services = _get(client, "/api/v1/services", ServiceListSchema)["services"]
    assert [s["name"] for s in services] == ["default", "svc-01", "svc-02"]  # svc-03 silent for 52 min: not listed
    assert all(s["data"]["first"] >= (NOW - dt.timedelta(minutes=30)).isoformat() for s in services)
    assert _get(client, f"/api/v1/services/{STALE}/status", status=404)


def test_a_first_scan_over_its_budget_goes_on_a_window_per_scan_until_it_lists_what_one_read_would(fleet_settings, monkeypatch):
    """Twenty-minute windows, no time budget: the first scan reads the newest window only (svc-03, silent for 52 min,
    is not listed yet, the others' ranges start 20 min back); each later scan one window more, until the ranges are
    those of one read over the whole span."""
    from serving import service_directory
    from telemetry import store

    monkeypatch.setattr(service_directory, "SCAN_WINDOW", dt.timedelta(minutes=20))
    monkeypatch.setattr(service_directory, "SCAN_BUDGET_S", 0.0)
    fleet_settings = dataclasses.replace(fleet_settings, services_scan_hours=3.0)  # the data's 2 h 13 min, and more
    db = store.connect(fleet_settings, autostart=False)
    try:
        directory = service_directory.ServiceDirectory(db, fleet_settings, Clock(NOW))
        directory.refresh()
        first = directory.services(max_age_s=math.inf)
        assert STALE not in first and set(first) == {"default", *SERVICES} - {STALE}
        assert all(s.first >= NOW - dt.timedelta(minutes=20) for s in first.values())
        scans = 1
        while directory._backlog is not None:
            directory.refresh()
            scans += 1
        span = NOW - dt.timedelta(hours=fleet_settings.services_scan_hours)
        expected = store.list_services(db, fleet_settings.stream_set, since=span, until=NOW,
                                       default_name=fleet_settings.default_service)
        got = directory.services(max_age_s=math.inf)
        assert scans == math.ceil((NOW - span) / dt.timedelta(minutes=20)) == 9  # a window each
        assert {n: {c: (r.first, r.last) for c, r in d.streams.items()} for n, d in got.items()} == {
            n: {c: (r.first, r.last) for c, r in streams.items()} for n, streams in expected.items()}
    finally:
        db.client.close()


def test_the_fleet_route_hands_out_one_rendering_per_change_of_the_rows(fleet_settings, make_app):
    import json
    import urllib.request

    from tests.serving.helpers import serving

    clock = Clock(NOW)
    app = make_app(fleet_settings, clock)
    fleet = app.extensions["pycemaker"].fleet
    fleet._running = lambda: True  # as while the background thread goes round (started by the app in production)
    fleet.refresh_all()
    listing = fleet.listing()
    assert listing.bodies.get(None) is not None  # rendered by the round, not by a request
    assert [e["service"] for e in listing.entries][-1] == STALE

    def whole(state=None):
        """What a dump of the whole document by FleetSchema, as the app's JSON, gives for ``listing`` now."""
        entries = [e for e in listing.entries if state is None or e["state"] == state]
        doc = FleetSchema().dump({"as_of": clock(), "threshold": fleet_settings.failure_threshold, "count": len(entries),
                                  "services": entries})
        return app.json.response(doc).get_data()

    with serving(app) as base:
        def get(path):
            with urllib.request.urlopen(base + path) as response:
                assert response.status == 200 and response.headers["Content-Type"] == "application/json"
                return response.read()

        first = get("/api/v1/fleet")
        assert first == whole()
        fleet.refresh_all()  # a round that found nothing new: the same rows, the same rendering kept
        kept = fleet.listing()
        assert kept is not listing and kept.entries is listing.entries and kept.bodies is listing.bodies
        listing = kept
        clock.now += dt.timedelta(seconds=1)  # a request's own time: the rows are the same rendering
        second = get("/api/v1/fleet")
        assert second == whole() != first
        assert json.loads(second)["as_of"] == clock().isoformat()
        assert json.loads(second)["services"] == json.loads(first)["services"]
        assert fleet.listing() is listing
        state = listing.entries[0]["state"]
        assert get(f"/api/v1/fleet?state={state}") == whole(state)
        FleetSchema().load(json.loads(second))  # valid against its documented schema

        clock.now += dt.timedelta(seconds=60)  # new samples for every service: rows change, a new rendering
        fleet.refresh_all()
        listing = fleet.listing()
        assert listing.entries is not kept.entries
        third = json.loads(get("/api/v1/fleet"))
        assert third == json.loads(whole())
        svc = next(e for e in third["services"] if e["service"] == "svc-01")
        assert svc["as_of"] == json.loads(get("/api/v1/services/svc-01/status"))["as_of"] == clock().isoformat()


def test_services_is_rendered_once_per_change_of_the_rows_or_the_scan(fleet_settings, make_app):
    clock = Clock(NOW)
    app = make_app(fleet_settings, clock)
    client = app.test_client()
    fleet = app.extensions["pycemaker"].fleet
    before = _get(client, "/api/v1/services", ServiceListSchema)  # no refresher: the request computes the statuses
    scans, rendered = fleet.listing().services_body
    assert client.get("/api/v1/services").data == rendered and fleet.listing().services_body[1] is rendered  # kept
    fleet._running = lambda: True  # as while the background thread goes round (started by the app in production)
    fleet.refresh_all()  # a round of the same statuses: the same rows, the same rendering
    body = _get(client, "/api/v1/services", ServiceListSchema)
    assert body == before and fleet.listing().services_body[1] is rendered
    states = {e["service"]: (e["state"], e["reason"]) for e in _get(client, "/api/v1/fleet", FleetSchema)["services"]}
    assert {s["name"]: (s["state"], s["reason"]) for s in body["services"]} == states

    clock.now += dt.timedelta(seconds=60)  # a minute of new samples: a rescan and a round, a new rendering
    fleet.directory.refresh(max_age_s=0)
    after = _get(client, "/api/v1/services", ServiceListSchema)
    assert fleet.directory.scans > scans and fleet.listing().services_body[0] == fleet.directory.scans
    lasts = {s["name"]: dt.datetime.fromisoformat(s["data"]["last"]) for s in after["services"]}
    assert lasts[STALE] == dt.datetime.fromisoformat(next(s for s in body["services"] if s["name"] == STALE)["data"]["last"])
    assert all(NOW + dt.timedelta(seconds=48) < lasts[name] <= NOW + dt.timedelta(seconds=60) for name in ("default", "svc-01"))
    assert {s["name"]: s["state"] for s in after["services"]} == {s["name"]: s["state"] for s in body["services"]}
    fleet.refresh_all()  # the statuses follow the samples: a listing of new rows, rendered again
    renewed = _get(client, "/api/v1/services", ServiceListSchema)
    states = {e["service"]: (e["state"], e["reason"]) for e in _get(client, "/api/v1/fleet", FleetSchema)["services"]}
    assert {s["name"]: (s["state"], s["reason"]) for s in renewed["services"]} == states
