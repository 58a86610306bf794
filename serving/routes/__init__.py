"""The API's blueprints, one module each; :data:`BLUEPRINTS` is what the app registers."""

from serving.routes import compat, dashboard, forecast, health, models, ops, status

BLUEPRINTS = (status.blp, health.blp, forecast.blp, models.blp, ops.blp, compat.blp, dashboard.blp)
