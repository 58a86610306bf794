"""``GET /``: the live dashboard, one static page (serving/static/dashboard) that reads only the public API;
``GET /?service=NAME`` the same for one service; ``GET /fleet``: every service ranked (serving/static/fleet).

The page is not an API operation, so it stays out of the OpenAPI document (docs/openapi.json).
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, send_from_directory

PAGE_DIR = Path(__file__).resolve().parents[1] / "static" / "dashboard"
FLEET_DIR = Path(__file__).resolve().parents[1] / "static" / "fleet"
# Everything the page loads comes from this server: no CDN, no fonts, no inline script.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'none'; object-src 'none'; base-uri 'none'; frame-ancestors 'self'"
)


# A plain Flask blueprint: registered on the app, not on the API, so the OpenAPI document never lists it.
blp = Blueprint("dashboard", __name__)


def _page(directory):
    """A page's index.html under the dashboard's content security policy, never cached."""
    response = send_from_directory(directory, "index.html", max_age=0)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-cache"
    return response


@blp.route("/")
def dashboard():
    return _page(PAGE_DIR)


@blp.route("/fleet")
def fleet():
    return _page(FLEET_DIR)
