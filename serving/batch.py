"""Many services' statuses in one go: the model runs once per model for all of them (the batch axis), not once each.

A round of the fleet (serving/fleet.py) hands a list of :class:`StatusService` here. Each is *prepared*
(its newest samples checked; when something changed, its recent frame read up to now), then the input
windows of every service that needs a forecast are stacked and each model is run once
(:meth:`forecasting.forecaster.OnnxForecaster.forecast_many`), grouped by the model object a service's
status uses, and each status is *finished* with its own row of the result (:func:`serving.status.compute_status`).
The statuses equal the ones :meth:`StatusService.refresh` computes one by one (tests/serving/test_batch.py).
"""

from __future__ import annotations

import logging
from typing import Callable

import pandas as pd

from forecasting.forecaster import Forecast
from serving.status_service import Pending, Snapshot, StatusService

log = logging.getLogger(__name__)


def origin_of(pending: Pending) -> pd.Timestamp | None:
    """The minute the status forecasts from: the newest scored minute at or before ``now`` (as compute_status picks it)."""
    frame = pending.frame
    observed = frame.index[(frame.index <= pd.Timestamp(pending.now)) & frame["health"].notna().to_numpy()]
    return observed[-1] if len(observed) else None


def refresh_batched(statuses: list[StatusService]) -> list[tuple[str, Snapshot]]:
    """Refresh every one of ``statuses``, running each model once for all that need a forecast; (service, snapshot) each."""
    done: list[tuple[str, Snapshot]] = []
    pending: list[Pending] = []
    for status in statuses:
        try:
            step = status.prepare()
        except Exception:  # one service's failure never stops the others'
            log.exception("status refresh of %s failed", status.service)
            continue
        if isinstance(step, Snapshot):
            done.append((status.service, step))
        else:
            pending.append(step)
    forecasts = _forecasts(pending)
    for item in pending:
        try:
            done.append((item.service.service, item.service.finish(item, _precomputed(item, forecasts.get(id(item))))))
        except Exception:
            log.exception("status refresh of %s failed", item.service.service)
    return done


def _forecasts(pending: list[Pending]) -> dict[int, Forecast]:
    """Each pending status's forecast from its origin, one network run per model (by ``id`` of the Pending)."""
    groups: dict[int, tuple[object, list[tuple[Pending, pd.Timestamp]]]] = {}
    for item in pending:
        forecaster = item.model.forecaster
        origin = origin_of(item) if forecaster is not None else None
        if origin is not None:
            groups.setdefault(id(forecaster), (forecaster, []))[1].append((item, origin))
    out: dict[int, Forecast] = {}
    for forecaster, items in groups.values():
        try:
            results = forecaster.forecast_many([(item.frame, origin) for item, origin in items])
        except Exception:  # each status then runs the model on its own (and reports its own failure)
            log.exception("batched forecast with model %s failed", getattr(forecaster, "version", "?"))
            continue
        for (item, _), forecast in zip(items, results):
            out[id(item)] = forecast
    return out


def _precomputed(item: Pending, forecast: Forecast | None) -> Callable[[pd.DataFrame, pd.Timestamp], Forecast] | None:
    if forecast is None:
        return None
    forecaster = item.model.forecaster

    def forecast_at(frame: pd.DataFrame, minute: pd.Timestamp) -> Forecast:
        if frame is item.frame and pd.Timestamp(minute).floor(f"{forecaster.step_minutes}min") == forecast.origin:
            return forecast
        return forecaster.forecast(frame, minute)

    return forecast_at


__all__ = ["refresh_batched", "origin_of"]
