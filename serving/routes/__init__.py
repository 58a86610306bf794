"""The API's blueprints, one module each; :data:`BLUEPRINTS` (API) and :data:`PAGES` are what the app registers."""

from serving.routes import compat, dashboard, forecast, health, models, ops, services, status

BLUEPRINTS = (status.blp, health.blp, forecast.blp, services.blp, models.blp, ops.blp, compat.blp)
#: Pages, not API operations: plain Flask blueprints, kept out of the OpenAPI document.
PAGES = (dashboard.blp,)
