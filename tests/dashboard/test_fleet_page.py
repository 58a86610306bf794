"""The fleet page in Debian's chromium: the ranking the API answers, as a table whose rows open each service's page."""

from __future__ import annotations

import pytest

from tests.conftest import needs_chromium
from tests.dashboard.test_browser import _Page, browser, countdown, pct  # noqa: F401  (browser: the module's chromium)
from tests.serving.conftest import Clock
from tests.serving.fleet_data import NOW, STALE
from tests.serving.helpers import serving

pytestmark = [pytest.mark.browser, needs_chromium]


def _rows(page) -> list[list[str]]:
    return [[c.strip() for c in row.locator("td").all_inner_texts()] for row in page.locator("#rows tr").all()]


def test_the_fleet_page_shows_the_ranking_and_opens_a_services_page(fleet_settings, make_app, browser):  # noqa: F811
    from playwright.sync_api import expect

    app = make_app(fleet_settings, Clock(NOW))
    fleet = app.test_client().get("/api/v1/fleet").get_json()
    with serving(app) as base:
        tab = _Page(browser, base, viewport={"width": 1280, "height": 900})
        page = tab.page
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        try:
            page.goto(base + "/fleet")
            page.wait_for_selector("body[data-loaded='true'] #rows tr", timeout=30_000)
            rows = _rows(page)
            assert [r[0] for r in rows] == [e["service"] for e in fleet["services"]]
            for row, entry in zip(rows, fleet["services"]):
                assert row[2] == pct(entry["health"])
                expected = entry["time_to_failure"] and entry["time_to_failure"]["expected"]
                if entry["state"] == "failure_predicted" and expected:
                    assert row[3] == countdown(expected["seconds"])
                assert row[5] == (entry["driver"] or "–")
            assert rows[-1][0] == STALE and rows[-1][1] == "unknown"
            assert page.locator("#count").inner_text() == f"({fleet['count']})"

            page.locator('.windows button[data-state="unknown"]').click()
            expect(page.locator("#rows tr")).to_have_count(1, timeout=15_000)
            assert _rows(page)[0][0] == STALE

            page.locator('.windows button[data-state=""]').click()
            expect(page.locator("#rows tr")).to_have_count(fleet["count"], timeout=15_000)
            first = fleet["services"][0]["service"]
            page.locator(f"#rows tr[data-service='{first}'] a").click()
            page.wait_for_selector("body[data-loaded='true'] #health-chart canvas", timeout=30_000)
            assert page.url.split("#")[0].endswith(f"/?service={first}")
            assert page.locator("#service-name").inner_text().strip() == (first if first != "default" else "")
            status_path = f"/api/v1/services/{first}/status" if first != "default" else "/api/v1/status"
            assert any(url.endswith(status_path) for url in requested)
            assert tab.errors == [] and tab.outside == []
        finally:
            tab.close()
