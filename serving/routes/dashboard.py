"""``GET /``: the live dashboard, one static page (serving/static/dashboard) that reads only the public API.

The page is not an API operation, so it stays out of the OpenAPI document (docs/openapi.json).
"""

from __future__ import annotations

from pathlib import Path

from flask import send_from_directory
from flask_smorest import Blueprint

PAGE_DIR = Path(__file__).resolve().parents[1] / "static" / "dashboard"
# Everything the page loads comes from this server: no CDN, no fonts, no inline script.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'none'; object-src 'none'; base-uri 'none'; frame-ancestors 'self'"
)


class PageBlueprint(Blueprint):
    """A flask-smorest blueprint that documents nothing: no paths and no tag in the OpenAPI document."""

    def register_views_in_doc(self, api, app, spec, *, name, parameters):
        # flask-smorest tags every blueprint right after this call; skip that one tag (ours) only.
        def tag_unless_ours(tag: dict):
            del spec.tag  # back to APISpec.tag for every later call
            return spec if tag.get("name") == name else spec.tag(tag)

        spec.tag = tag_unless_ours


blp = PageBlueprint("dashboard", __name__, description="The live dashboard page (HTML, not part of the API).")


@blp.route("/")
def dashboard():
    response = send_from_directory(PAGE_DIR, "index.html", max_age=0)
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["Cache-Control"] = "no-cache"
    return response
