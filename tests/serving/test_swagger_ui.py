"""Swagger UI at /docs renders every operation in headless Chromium, from local assets only."""

from __future__ import annotations

from urllib.parse import urlparse

import pytest

from tests.conftest import CHROMIUM, needs_chromium
from tests.serving.conftest import Clock, at
from tests.serving.helpers import serving
from tests.serving.onnx_models import persistence_model

pytestmark = [
    pytest.mark.browser,
    needs_chromium,
]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


def test_swagger_ui_renders_every_operation_offline(scenario_settings, make_app):
    from playwright.sync_api import sync_playwright

    persistence_model(scenario_settings.models_dir, L=30, H=15)
    app = make_app(scenario_settings, Clock(at("21:02:20")))
    operations = sum(1 for item in app.test_client().get("/openapi.json").get_json()["paths"].values()
                     for method in item if method in ("get", "post"))
    outside: list[str] = []

    with serving(app) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()

            def only_loopback(route):
                if urlparse(route.request.url).hostname != "127.0.0.1":
                    outside.append(route.request.url)
                    return route.abort()
                return route.continue_()

            page.route("**/*", only_loopback)
            page.goto(base + "/docs")
            page.wait_for_selector(".opblock", timeout=30_000)
            assert page.locator(".opblock").count() == operations == 18
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            assert {"/api/v1/status", "/api/v1/forecast", "/api/v1/health", "/current_health/{hours}"} <= {p.strip() for p in paths}
            assert "pycemaker API" in page.locator(".info .title").inner_text()

            # Try one operation for real from the page.
            page.locator("#operations-status-get_api_v1_status .opblock-summary").click()
            page.get_by_role("button", name="Try it out").click()
            page.get_by_role("button", name="Execute").click()
            page.wait_for_selector(".live-responses-table tr.response .response-col_status", timeout=15_000)
            assert page.locator(".live-responses-table tr.response .response-col_status").first.inner_text().strip() == "200"
        finally:
            browser.close()
    assert outside == []  # no CDN, no validator: everything came from this server
