"""The dashboard in Debian's chromium (driven by playwright; no downloaded browser), against the serving
tests' simulated scenario on a fixed clock: the numbers shown are the API's, formatted as below.

The page's timers run on playwright's fake clock, paused: the countdown shown is exact, and ticks on demand.
(The README's screenshot is the product's, on `make demo`'s trained model: `make screenshot`.)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
from decimal import ROUND_HALF_UP, Decimal
from urllib.parse import urlparse

import pytest

from tests.conftest import CHROMIUM, needs_chromium
from tests.serving.conftest import Clock, at
from tests.serving.helpers import serving
from tests.serving.onnx_models import trend_model

pytestmark = [
    pytest.mark.browser,
    needs_chromium,
]
UTC = dt.timezone.utc
REFRESH_MS = 5000  # dashboard.js refreshes every 5 s
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


# --- the page's formatting, as dashboard.js does it (times in UTC: the browser runs with timezone UTC) ---


def fixed(value: float, digits: int) -> str:
    """JS ``value.toFixed(digits)``: the exact binary value rounded half up (Decimal(float) is that value)."""
    return str(Decimal(value).quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def pct(value: float | None) -> str:
    return "unknown" if value is None else fixed(value * 100, 1) + "%"


def flag_text(flag: float | None) -> str:
    return "flag ?" if flag is None else "flag " + (str(int(flag)) if flag == int(flag) else fixed(flag, 1))


def countdown(seconds: float) -> str:
    s = max(0, math.ceil(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def clock_text(iso: str, reference: str) -> str:
    """``19:34``; ``1 Mar 19:34`` on another day than ``reference``; ``1 Mar 2026 19:34`` in another year."""
    t, ref = dt.datetime.fromisoformat(iso).astimezone(UTC), dt.datetime.fromisoformat(reference).astimezone(UTC)
    if t.date() == ref.date():
        return t.strftime("%H:%M")
    return f"{t.day} {t:%b}" + ("" if t.year == ref.year else f" {t.year}") + f" {t:%H:%M}"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class _Page:
    """A page that may only talk to the served app, with its console errors collected."""

    def __init__(self, browser, base: str, **context):
        self.context = browser.new_context(timezone_id="UTC", locale="en-GB", **context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.outside: list[str] = []
        host = urlparse(base).hostname
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

        def only_this_server(route):
            if urlparse(route.request.url).hostname != host:
                self.outside.append(route.request.url)
                return route.abort()
            return route.continue_()

        self.page.route("**/*", only_this_server)

    def open(self, url: str) -> None:
        self.page.goto(url)
        self.page.wait_for_selector("body[data-loaded='true'] #health-chart canvas", timeout=30_000)

    def open_paused(self, url: str) -> None:
        """Open on playwright's fake clock, then pause it once the first refresh is done: timers run on demand."""
        self.page.clock.install()
        self.open(url)
        self.page.clock.pause_at(self.page.evaluate("Date.now()") + 1000)
        self.settle()

    def settle(self) -> None:
        """Wait until no refresh is in flight, so the next one is on the paused clock's timer."""
        self.page.wait_for_selector("body[data-busy='false']", timeout=30_000)
        self.page.wait_for_load_state("networkidle")

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text().strip()

    def close(self) -> None:
        self.context.close()


def _expect_text(page, selector: str, text: str) -> None:
    from playwright.sync_api import expect

    expect(page.locator(selector)).to_have_text(text, timeout=15_000)


def test_the_dashboard_shows_what_the_api_answers(scenario_settings, make_app, browser):
    trend_model(scenario_settings.models_dir)  # the memory leak at 19:08 is forecast to fail: a countdown
    app = make_app(scenario_settings, Clock(at("19:08:30")))
    status = app.test_client().get("/api/v1/status").get_json()
    assert status["state"] == "failure_predicted"
    ttf = status["time_to_failure"]

    with serving(app) as base:
        desktop = _Page(browser, base, viewport={"width": 1280, "height": 900})
        page = desktop.page
        try:
            page.clock.install()
            desktop.open(base + "/")
            points = _chart_points(page)
            assert points > 60  # an hour of minutes, then the 60-minute forecast
            assert page.locator(".stream canvas").count() == 4

            # Freeze the page's clock; picking a window refreshes at once: everything is re-read at the frozen time.
            page.clock.pause_at(page.evaluate("Date.now()") + 1000)
            page.wait_for_load_state("networkidle")
            page.locator('.windows button[data-window="6h"]').click()
            _wait_for_points(page, lambda n: n > points + 200)
            assert page.locator('.windows button[data-window="6h"]').get_attribute("aria-pressed") == "true"
            _expect_text(page, "#ttf-main", countdown(ttf["expected"]["seconds"]))
            assert desktop.text("#current-health") == pct(status["current"]["health"])
            assert desktop.text("#predicted-health") == pct(status["predicted_current"]["p50"])
            earliest, latest = ttf["earliest"]["seconds"], ttf["latest"]["seconds"]
            assert desktop.text("#ttf-range") == f"range {countdown(earliest)} – {countdown(latest)}"
            assert f"at {clock_text(ttf['expected']['at'], status['as_of'])}" in desktop.text("#ttf-detail")
            assert "bad" in page.locator("#ttf-main").get_attribute("class").split()
            assert desktop.text("#model-version") == status["model"]["version"]
            for stream, flag in status["current"]["flags"].items():
                assert desktop.text(f'.stream[data-stream="{stream}"] .flag') == flag_text(flag)

            # It ticks every second between refreshes, from the crossing timestamps.
            page.clock.run_for(3000)
            _expect_text(page, "#ttf-main", countdown(ttf["expected"]["seconds"] - 3))
            assert desktop.text("#ttf-range") == f"range {countdown(earliest - 3)} – {countdown(latest - 3)}"

            page.locator('.windows button[data-window="1h"]').click()
            _wait_for_points(page, lambda n: n == points)
            _expect_text(page, "#ttf-main", countdown(ttf["expected"]["seconds"]))  # refreshed at the frozen time

            assert desktop.errors == [] and desktop.outside == []
        finally:
            desktop.close()

        phone = _Page(browser, base, viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                      color_scheme="dark")
        try:
            phone.open(base + "/")
            assert phone.text("#current-health") == pct(status["current"]["health"])
            overflow = phone.page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
            assert overflow <= 0, f"{overflow} px of horizontal overflow at phone width"
            background = phone.page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert background != "rgb(244, 246, 248)", "the dark scheme was not applied"
            assert phone.errors == [] and phone.outside == []
        finally:
            phone.close()


def test_without_a_model_or_with_stale_data_the_page_says_so(scenario_settings, make_app, browser, tmp_path):
    empty = dataclasses.replace(scenario_settings, base_models_dir=tmp_path / "no-base")  # no base model to fall back on
    no_model = make_app(empty, Clock(at("21:02:20")))  # no model installed yet
    with serving(no_model) as base:
        status = no_model.test_client().get("/api/v1/status").get_json()
        assert (status["state"], status["reason"]) == ("unknown", "no_model")
        view = _Page(browser, base, viewport={"width": 1024, "height": 800})
        try:
            view.open(base + "/")
            assert view.text("#current-health") == pct(status["current"]["health"])
            assert view.text("#predicted-health") == "unknown"
            assert view.text("#ttf-main") == "unknown: no model yet"
            assert view.text("#chart-note").startswith("no forecast: 503: ")
            assert _chart_points(view.page) > 50  # observed health is still drawn
            assert view.text("#model-version") == "none loaded"
            # A 503 is an answer, not a page error: only the browser's own resource log mentions it.
            assert all("503" in e for e in view.errors) and view.outside == []
        finally:
            view.close()

        # The database goes away: the status itself answers 503; the page says so instead of going blank.
        view = _Page(browser, base, viewport={"width": 1024, "height": 800})
        down = {"code": 503, "status": "Service Unavailable", "message": "database unavailable: connection refused", "errors": {}}
        view.page.route("**/api/v1/status", lambda route: route.fulfill(status=503, json=down, headers={"Retry-After": "5"}))
        try:
            view.page.goto(base + "/")
            _expect_text(view.page, "#banner", "API 503: database unavailable: connection refused; retrying every 5 s")
            assert view.text("#ttf-main") == "unknown: 503: database unavailable: connection refused"
            assert view.text("#current-health") == "unknown"
            assert view.page.locator("header h1").is_visible()
        finally:
            view.close()

    trend_model(scenario_settings.models_dir)
    stale = make_app(scenario_settings, Clock(at("23:59:59") + dt.timedelta(minutes=10)))  # the data ends at midnight
    with serving(stale) as base:
        status = stale.test_client().get("/api/v1/status").get_json()
        assert (status["state"], status["reason"]) == ("unknown", "stale_data")
        view = _Page(browser, base, viewport={"width": 1024, "height": 800})
        try:
            view.open(base + "/")
            since = clock_text(status["data"]["stale_since"], status["as_of"])
            assert view.text("#ttf-main") == f"unknown: data stale since {since}"
            assert view.text("#current-health") == "unknown"
            assert not view.page.locator("#banner").is_hidden() and since in view.text("#banner")
        finally:
            view.close()


def _chart_points(page) -> int:
    return int(page.locator("#health-chart").get_attribute("data-points"))


def _wait_for_points(page, wanted, timeout_s: float = 15.0) -> None:
    """Polled from here: the page's CSP forbids the eval that ``page.wait_for_function`` needs."""
    deadline = time.monotonic() + timeout_s
    while not wanted(_chart_points(page)):
        assert time.monotonic() < deadline, f"the chart still has {_chart_points(page)} points"
        time.sleep(0.05)


def _requests_to(page, path: str) -> list[str]:
    """Every URL the page requests whose path is ``path`` (appended to as they happen)."""
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url) if urlparse(request.url).path == path else None)
    return seen


def test_it_refreshes_every_5_seconds_and_says_failing_now(scenario_settings, make_app, browser):
    trend_model(scenario_settings.models_dir)
    clock = Clock(at("19:08:30"))
    app = make_app(scenario_settings, clock)
    with serving(app) as base:
        view = _Page(browser, base, viewport={"width": 1280, "height": 900})
        page = view.page
        statuses = _requests_to(page, "/api/v1/status")
        try:
            view.open_paused(base + "/")
            assert "bad" in page.locator("#ttf-main").get_attribute("class").split()  # a countdown: failure predicted
            seen = len(statuses)

            clock.now = at("19:30:30")  # the leak fails for good from 19:16
            status = app.test_client().get("/api/v1/status").get_json()
            assert status["state"] == "failing_now"
            page.clock.run_for(REFRESH_MS)  # the next refresh is due within 5 s of the last one
            _expect_text(page, "#ttf-main", "failing now")
            assert len(statuses) == seen + 1
            since = clock_text(status["time_to_failure"]["expected"]["at"], status["as_of"])
            assert view.text("#ttf-range") == f"since {since}"
            assert view.text("#ttf-detail").startswith(f"health at or below {pct(status['threshold'])}")
            assert "bad" in page.locator("#ttf-main").get_attribute("class").split()
            assert view.text("#current-health") == pct(status["current"]["health"])
            assert "bad" in page.locator("#current-health").get_attribute("class").split()

            # The period is 5 s from the end of the last refresh: nothing at 4.5 s, the next one by 5 s.
            view.settle()
            page.clock.run_for(REFRESH_MS - 500)
            page.wait_for_timeout(1000)  # real time: a refresh that was due would have been requested
            assert len(statuses) == seen + 1
            page.clock.run_for(500)
            _wait_for(page, lambda: len(statuses) == seen + 2, "the refresh after the next 5 s")
            assert view.errors == [] and view.outside == []
        finally:
            view.close()


def test_a_calm_hour_says_no_failure_expected(scenario_settings, make_app, browser):
    trend_model(scenario_settings.models_dir)
    app = make_app(scenario_settings, Clock(at("21:01:30")))
    status = app.test_client().get("/api/v1/status").get_json()
    assert status["state"] == "no_failure_within_horizon"
    ttf = status["time_to_failure"]
    with serving(app) as base:
        view = _Page(browser, base, viewport={"width": 1280, "height": 900})
        try:
            view.open_paused(base + "/")
            assert view.text("#ttf-main") == f"no failure expected in the next {status['horizon']['minutes'] // 60} h"
            assert {"good", "message"} <= set(view.page.locator("#ttf-main").get_attribute("class").split())
            if ttf["earliest"] is None:
                assert view.text("#ttf-range") == ""  # (a no-break space)
            else:
                assert view.text("#ttf-range").startswith("risk: the P10 path crosses in ")
            assert view.text("#current-health") == pct(status["current"]["health"])
            assert view.text("#predicted-health") == pct(status["predicted_current"]["p50"])
            assert view.errors == [] and view.outside == []
        finally:
            view.close()


@pytest.mark.parametrize(("window", "hours", "step", "caption"), [
    ("24h", 24, 5, "last 24 h, mean per 5 min"),
    ("7d", 168, 30, "last 7 days, mean per 30 min"),
])
def test_the_long_windows_show_their_buckets(scenario_settings, make_app, browser, window, hours, step, caption):
    trend_model(scenario_settings.models_dir)
    app = make_app(scenario_settings, Clock(at("23:30:00")))
    api = app.test_client()
    status = api.get("/api/v1/status").get_json()
    with serving(app) as base:
        view = _Page(browser, base, viewport={"width": 1280, "height": 900})
        page = view.page
        healths = _requests_to(page, "/api/v1/health")
        try:
            view.open_paused(base + "/")
            page.locator(f'.windows button[data-window="{window}"]').click()
            page.clock.run_for(100)  # a click during a refresh queues another at 0 ms: let the paused clock run it
            _wait_for(page, lambda: healths and f"step={step}" in healths[-1], f"the {window} health request")
            page.wait_for_load_state("networkidle")
            assert page.locator(f'.windows button[data-window="{window}"]').get_attribute("aria-pressed") == "true"
            assert urlparse(page.url).fragment == window

            # Buckets aligned on the step, the window back from the status's as_of (dashboard.js healthQuery).
            query = urlparse(healths[-1]).query
            as_of = dt.datetime.fromisoformat(status["as_of"])
            step_s = step * 60
            first = math.ceil((as_of - dt.timedelta(hours=hours, minutes=-1)).timestamp() / step_s) * step_s
            assert query == f"start={dt.datetime.fromtimestamp(first, UTC):%Y-%m-%dT%H:%M:%SZ}".replace(":", "%3A") + f"&step={step}"

            health = api.get("/api/v1/health?" + query).get_json()
            forecast = api.get("/api/v1/forecast").get_json()
            assert len(health["points"]) == math.ceil((as_of.timestamp() - first) / step_s)  # one per bucket, up to now
            times = {p["time"] for p in health["points"]} | {p["time"] for p in forecast["points"]}
            _wait_for(page, lambda: _chart_points(page) == len(times), f"{len(times)} chart points")
            _expect_text(page, "#chart-caption", f"· {caption} · forecast 1 h ahead")
            known = [p for p in health["points"] if p["health"] is not None]
            assert known and len(known) < len(health["points"])  # 8 h of data: the older buckets are unknown, not healthy
            assert view.errors == [] and view.outside == []
        finally:
            view.close()


def _wait_for(page, ready, what: str, timeout_s: float = 15.0) -> None:
    """Poll ``ready``; waiting through playwright, so the page's events (requests seen) are delivered meanwhile."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        page.wait_for_timeout(50)
