"""The dashboard at ``/``: one static page from local assets, reading only the public API, kept out of the OpenAPI document."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlparse

from serving.app import openapi_document
from serving.routes.dashboard import PAGE_DIR
from tests.conftest import REPO
from tests.serving.conftest import Clock, at


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.urls.append(a["src"])
        if tag == "link" and a.get("href"):
            self.urls.append(a["href"])


def test_the_page_and_every_asset_it_loads_come_from_this_server(scenario_settings, make_app):
    client = make_app(scenario_settings, Clock(at("21:02:20"))).test_client()
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    parser = _Assets()
    parser.feed(page.get_data(as_text=True))
    local = [u for u in parser.urls if not u.startswith("data:")]
    assert {"static/dashboard/format.js", "static/dashboard/dashboard.js", "static/dashboard/vendor/uPlot.iife.min.js"} <= set(local)
    for url in local:
        assert not urlparse(url).scheme and not url.startswith("//"), url
        assert client.get("/" + url).status_code == 200, url
    for name in ("index.html", "format.js", "dashboard.js", "dashboard.css"):
        text = (PAGE_DIR / name).read_text()
        assert not re.search(r"https?://|//cdn|@import|url\(", text), name  # no CDN, no web fonts
    script = (PAGE_DIR / "dashboard.js").read_text()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script  # API data only through textContent
    # The default service's routes (API = "api/v1/"), or one service's (API = "api/v1/services/NAME/": /?service=NAME).
    assert set(re.findall(r'"(api/v1/[a-z]+)', script)) == {"api/v1/services", "api/v1/models"}
    assert set(re.findall(r'API \+ "([a-z]+)', script)) == {"status", "health", "forecast"}


def test_the_fleet_page_and_its_assets_come_from_this_server(scenario_settings, make_app):
    client = make_app(scenario_settings, Clock(at("21:02:20"))).test_client()
    page = client.get("/fleet")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    parser = _Assets()
    parser.feed(page.get_data(as_text=True))
    local = [u for u in parser.urls if not u.startswith("data:")]
    assert local.index("static/dashboard/format.js") < local.index("static/fleet/fleet.js")  # shared formats first
    for url in local:
        assert not urlparse(url).scheme and not url.startswith("//"), url
        assert client.get("/" + url.lstrip("./")).status_code == 200, url
    fleet_dir = PAGE_DIR.parent / "fleet"
    for name in ("index.html", "fleet.js", "fleet.css"):
        text = (fleet_dir / name).read_text()
        assert not re.search(r"https?://|//cdn|@import|url\(", text), name
    script = (fleet_dir / "fleet.js").read_text()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script
    assert set(re.findall(r'"(api/v1/[a-z]+)', script)) == {"api/v1/fleet"}


def test_the_vendored_chart_library_is_the_pinned_one_with_its_licence():
    vendor = PAGE_DIR / "vendor"
    version = (vendor / "VERSION").read_text().strip()
    assert f'UPLOT_VERSION:-{version}' in (REPO / "serving" / "static" / "fetch_uplot.sh").read_text()
    assert (vendor / "uPlot.iife.min.js").read_text().startswith(f"/*! https://github.com/leeoniya/uPlot (v{version})")
    assert "MIT License" in (vendor / "LICENSE").read_text()


def test_the_page_is_not_an_api_operation():
    document = openapi_document()
    assert "/" not in document["paths"]
    assert "dashboard" not in {tag["name"] for tag in document.get("tags", [])}
