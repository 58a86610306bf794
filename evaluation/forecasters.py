"""Every method the backtest compares, behind one interface.

A method sees a history (the rows of a series strictly before the forecast origin) and
returns ``[H, C, 3]``: the P10, P50 and P90 of each of the series' C channels at each of
the H steps from the origin, in original units (NaN for a channel it does not forecast).
The backtest hands each method only that history, so no method can peek past the origin.

| method | what | channels | bands |
|---|---|---|---|
| ``persistence`` | last observed value | all | empirical: its own errors over the last day of history |
| ``seasonal_naive`` | same step one season ago | all | empirical, as above |
| ``sarimax`` | SARIMAX(1,0,1)(0,1,0,season), statsmodels, refit per origin on the last 3 h (minute data) or 3 seasons | health on minute frames (the original's), the stream on a single series | Gaussian 80% interval |
| ``autoets`` | statsforecast: MSTL on the season, AutoETS on the rest (statsforecast's ETS allows seasons of at most 24 steps) | all | 80% interval |
| ``served`` | the registry's current model, whatever its kind (what the API serves) | as its kind | the model's quantiles |
| ``fracast`` | Fracast-0 (PyPI ``fracast``), a pretrained zero-shot forecaster, each channel on its own (evaluation only) | all | its P10 and P90 |
| ``lstm``, ``ets_model``, ``seasonal_naive_model`` | the registry's models of each kind from one training run (the LSTM, the damped-trend ETS and seasonal naive baselines of forecasting/linear.py), run by onnxruntime exactly as the API runs them | the six targets, minute frames only | the model's quantiles |
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from evaluation.series import EvalSeries
from forecasting import baselines
from telemetry.settings import Settings
from forecasting.contract import TARGETS
from forecasting.windows import feature_matrix

log = logging.getLogger(__name__)
#: The quantiles every method reports: the band is P10-P90.
QUANTILES = (0.1, 0.5, 0.9)
LO, MID, HI = 0, 1, 2


class Method(Protocol):
    name: str

    def channels(self, series: EvalSeries) -> tuple[str, ...]:
        """The channels of ``series`` this method forecasts (empty: it does not apply)."""

    def forecast(self, history: pd.DataFrame, horizon: int, series: EvalSeries) -> np.ndarray:
        """``[horizon, len(series.channels), 3]`` from ``history`` (rows before the origin)."""


def _empty(horizon: int, series: EvalSeries) -> np.ndarray:
    return np.full((horizon, len(series.channels), len(QUANTILES)), np.nan)


# --- naive baselines (forecasting.baselines, the same functions the training gates use) ---------


@dataclass
class NaiveMethod:
    """Persistence or seasonal naive, with empirical P10-P90 bands.

    The band at step k is the point forecast plus the P10 and P90 of the method's own k-step
    errors at pseudo-origins inside the history's last ``calibration_steps`` (so, like the
    point forecast, it only uses the past).
    """

    name: str
    calibration_steps: int | None = None  # default: one day
    calibration_stride: int = 5

    def channels(self, series: EvalSeries) -> tuple[str, ...]:
        return series.channels

    def _point(self, values: np.ndarray, origins: np.ndarray, input_steps: int, horizon: int, season: int) -> np.ndarray:
        if self.name == "persistence":
            return baselines.persistence(values, origins, input_steps, horizon)
        return baselines.seasonal_naive(values, origins, input_steps, horizon, season=season)

    def _input_steps(self, series: EvalSeries) -> int:
        return 2 * series.season_steps

    def forecast(self, history: pd.DataFrame, horizon: int, series: EvalSeries) -> np.ndarray:
        return self.forecast_batch(history, np.array([len(history)]), horizon, series)[0]

    def forecast_batch(self, frame: pd.DataFrame, origins: np.ndarray, horizon: int, series: EvalSeries) -> np.ndarray:
        """``[N, H, C, 3]`` at many origins (row positions) of one frame; bands from the rows before the first origin."""
        values = frame[list(series.channels)].to_numpy(dtype=float)
        origins = np.asarray(origins, dtype=int)
        season = series.season_steps
        input_steps = self._input_steps(series)
        if origins.min() < season:
            raise ValueError(f"{self.name} needs at least one season ({season} steps) of history")
        out = np.full((len(origins), horizon, values.shape[1], len(QUANTILES)), np.nan)
        point = self._point(values, origins, min(input_steps, int(origins.min())), horizon, season)
        out[..., MID] = point
        lo, hi = self._band(values[: int(origins.min())], horizon, series)
        out[..., LO] = point + lo[None]
        out[..., HI] = point + hi[None]
        return out

    def _band(self, history: np.ndarray, horizon: int, series: EvalSeries) -> tuple[np.ndarray, np.ndarray]:
        """P10 and P90 of the k-step errors, ``[H, C]`` each (NaN where the history is too short)."""
        season = series.season_steps
        calibration = self.calibration_steps or series.steps(24 * 60)
        input_steps = min(self._input_steps(series), len(history))
        first = max(input_steps, len(history) - calibration - horizon)
        pseudo = np.arange(first, len(history) - horizon + 1, self.calibration_stride)
        nan = np.full((horizon, history.shape[1]), np.nan)
        if len(pseudo) < 10 or input_steps < season:
            return nan, nan
        point = self._point(history, pseudo, input_steps, horizon, season)
        actual = history[pseudo[:, None] + np.arange(horizon)[None, :]]
        errors = actual - point
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices (a channel never observed)
            lo, hi = np.nanquantile(errors, [QUANTILES[LO], QUANTILES[HI]], axis=0)
        return lo, hi


# --- SARIMAX, the original's model --------------------------------------------------------


@dataclass
class SarimaxMethod:
    """SARIMAX(1,0,1)(0,1,0,season), refit at every origin on a short window (as the original did).

    On minute frames it forecasts health only, fitted on the last 3 hours with the exact
    state-space likelihood: the original's set-up (0.5-2 s per fit on one core). On a single
    stream it forecasts the stream from the last 3 seasons; with a daily season at 5 minutes
    (288 steps) the exact likelihood carries a 289-dimensional state and costs minutes per fit,
    so above ``exact_max_season`` the seasonal difference is taken before fitting (statsmodels'
    ``simple_differencing``: the same model, the likelihood conditional on the first season)
    and the forecast is integrated back here with its exact variance (:func:`_integrate_seasonal`,
    checked against the exact model in ``tests/evaluation/test_forecasters.py``).
    """

    name: str = "sarimax"
    refits = True  # a model per origin: worth running in worker processes
    fit_minutes: int = 180
    fit_seasons: int = 3
    exact_max_season: int = 60
    failures: int = 0

    def channels(self, series: EvalSeries) -> tuple[str, ...]:
        return ("health",) if series.multivariate else tuple(c for c in series.channels if c != "health")

    def forecast(self, history: pd.DataFrame, horizon: int, series: EvalSeries) -> np.ndarray:
        out = _empty(horizon, series)
        season = series.season_steps
        for name in self.channels(series):
            window = series.steps(self.fit_minutes) if series.multivariate else self.fit_seasons * season
            y = history[name].to_numpy(dtype=float)[-window:]
            if np.isfinite(y).sum() < season + 10:
                continue
            try:
                band = self._fit_forecast(y, season, horizon)
            except Exception as exc:  # a fit that fails is reported, not fatal
                self.failures += 1
                log.debug("sarimax fit failed: %s", exc)
                continue
            out[:, series.channels.index(name), :] = band
        return out

    def _fit_forecast(self, y: np.ndarray, season: int, horizon: int) -> np.ndarray:
        from statistics import NormalDist

        from statsmodels.tsa.statespace.sarimax import SARIMAX

        z = NormalDist().inv_cdf(QUANTILES[HI])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence and frequency warnings on 3-hour fits
            if season <= self.exact_max_season:
                result = SARIMAX(y, order=(1, 0, 1), seasonal_order=(0, 1, 0, season)).fit(disp=False)
                forecast = result.get_forecast(horizon)
                mean = np.asarray(forecast.predicted_mean)
                sd = np.sqrt(np.asarray(forecast.var_pred_mean))
            else:
                model = SARIMAX(y, order=(1, 0, 1), seasonal_order=(0, 1, 0, season), simple_differencing=True)
                result = model.fit(disp=False)
                mean, sd = _integrate_seasonal(y, result, season, horizon)
        if not (np.isfinite(mean).all() and np.isfinite(sd).all()):
            raise FloatingPointError("non-finite SARIMAX forecast")
        return np.stack([mean - z * sd, mean, mean + z * sd], axis=-1)


def _integrate_seasonal(y: np.ndarray, result, season: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Forecast mean and sd of y from an ARMA(1,1) fitted on ``z_t = y_t - y_{t-season}``.

    ``y_{T+h} = z_{T+h} + y_{T+h-season}``, so the forecast error of y at step h is the sum
    of the ARMA's errors at steps h, h - season, ...; its psi weights give the variance.
    """
    from statsmodels.tsa.arima_process import arma2ma

    z_mean = np.asarray(result.forecast(horizon))
    params = dict(zip(result.model.param_names, result.params))
    phi, theta, sigma2 = params.get("ar.L1", 0.0), params.get("ma.L1", 0.0), params["sigma2"]
    history = list(_fill(y)[-season:])
    mean = np.empty(horizon)
    for h in range(horizon):
        mean[h] = z_mean[h] + history[h]  # history grows with the forecast itself beyond one season
        history.append(mean[h])
    psi = arma2ma(np.array([1.0, -phi]), np.array([1.0, theta]), lags=horizon)
    weights = np.array([psi[m::-season].sum() for m in range(horizon)])
    sd = np.sqrt(sigma2 * np.cumsum(weights**2))
    return mean, sd


def _fill(y: np.ndarray) -> np.ndarray:
    """Linear interpolation over gaps, the ends held (statistical fitters need complete series)."""
    s = pd.Series(y, dtype=float)
    return s.interpolate(limit_direction="both").to_numpy()


# --- statsforecast ------------------------------------------------------------------------


@dataclass
class AutoEtsMethod:
    """statsforecast AutoETS on the MSTL-deseasonalised series (the season added back by MSTL).

    statsforecast's ETS (a mirror of R's forecast::ets) refuses seasonal components longer
    than 24 steps and silently fits a non-seasonal model instead, which trends off on a
    60-minute load cycle; MSTL handles the long season and AutoETS the remainder. Fitted per
    origin on the last day (minute data) or the last 3 seasons.
    """

    name: str = "autoets"
    refits = True
    fit_minutes: int = 24 * 60
    fit_seasons: int = 3
    failures: int = 0

    def channels(self, series: EvalSeries) -> tuple[str, ...]:
        return series.channels

    def forecast(self, history: pd.DataFrame, horizon: int, series: EvalSeries) -> np.ndarray:
        from statsforecast.models import MSTL, AutoETS

        out = _empty(horizon, series)
        season = series.season_steps
        window = series.steps(self.fit_minutes) if series.multivariate else self.fit_seasons * season
        for c, name in enumerate(self.channels(series)):
            raw = history[name].to_numpy(dtype=float)[-window:]
            if np.isfinite(raw).sum() < 2 * season + 10:
                continue
            y = _fill(raw)
            if np.ptp(y) == 0:
                out[:, c, :] = y[-1]  # a constant series: nothing to fit
                continue
            model = MSTL(season_length=season, trend_forecaster=AutoETS(model="ZZN")) if len(y) >= 2 * season else AutoETS()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    result = model.forecast(y=y, h=horizon, level=[80])
            except Exception as exc:
                self.failures += 1
                log.debug("autoets fit failed on %s: %s", name, exc)
                continue
            out[:, c, LO] = result["lo-80"]
            out[:, c, MID] = result["mean"]
            out[:, c, HI] = result["hi-80"]
        return out


# --- registry models, through onnxruntime -------------------------------------------------

#: The backtest column of each registry kind (the baselines' ids differ from the reference methods above).
KIND_COLUMNS = {"lstm": "lstm", "ets": "ets_model", "seasonal_naive": "seasonal_naive_model", "base": "base_model",
                "blend": "blend", "finetuned": "finetuned"}


@dataclass
class RegistryMethod:
    """A registry model of any kind, run by :class:`forecasting.forecaster.OnnxForecaster` (no torch)."""

    models_dir: Path
    version: str
    settings: Settings
    name: str = "lstm"
    batch_size: int = 512
    #: False: the network's health quantiles without the card's calibration (to measure what it does).
    calibrated: bool = True
    _runner: object = field(default=None, repr=False)

    @property
    def runner(self):
        if self._runner is None:
            from forecasting.forecaster import OnnxForecaster

            self._runner = OnnxForecaster(Path(self.models_dir), self.version, self.settings)
            if not self.calibrated:
                self._runner.health_offsets = None
            missing = [q for q in QUANTILES if q not in self._runner.quantiles]
            if missing:
                raise ValueError(f"model {self.version} has no quantile(s) {missing}; it has {self._runner.quantiles}")
        return self._runner

    @property
    def card(self):
        return self.runner.card

    def _quantile_index(self) -> list[int]:
        return [self.runner.quantiles.index(q) for q in QUANTILES]

    def channels(self, series: EvalSeries) -> tuple[str, ...]:
        return tuple(c for c in series.channels if c in TARGETS) if series.frames else ()

    def forecast(self, history: pd.DataFrame, horizon: int, series: EvalSeries) -> np.ndarray:
        out = _empty(horizon, series)
        if not self.channels(series):
            return out
        origin = history.index[-1] + pd.Timedelta(minutes=series.cadence_minutes)
        result = self.runner.forecast(history, origin, horizon)
        values = result.values[:, :, self._quantile_index()]  # [H, T, 3]
        for c, name in enumerate(series.channels):
            if name in TARGETS:
                out[:, c, :] = values[:, TARGETS.index(name), :]
        return out

    def forecast_batch(self, frame: pd.DataFrame, origins: np.ndarray, horizon: int, series: EvalSeries) -> np.ndarray:
        """``[N, H, C, 3]`` at many origins in batched onnxruntime calls (``horizon`` <= the model's).

        Same inputs as :meth:`forecast`: the features are computed over the whole frame, but
        each row only depends on earlier minutes (forward fill, fixed scaling), and each
        window holds only the ``input_minutes`` before its origin.
        """
        runner = self.runner
        if horizon > runner.horizon_steps:
            raise ValueError(f"batched forecasts go up to the model's horizon ({runner.horizon_steps} steps)")
        L = runner.input_steps
        if origins.min() < L:
            raise ValueError(f"{self.name} needs {L} minutes of input before each origin")
        features = feature_matrix(frame, runner.scaling)
        out = np.full((len(origins), horizon, len(series.channels), len(QUANTILES)), np.nan)
        offsets = np.arange(-L, 0)
        for i in range(0, len(origins), self.batch_size):
            chunk = origins[i : i + self.batch_size]
            x = features[chunk[:, None] + offsets[None, :]]
            values = runner.to_original(runner.predict_scaled(x))[:, :horizon][..., self._quantile_index()]
            for c, name in enumerate(series.channels):
                if name in TARGETS:
                    out[i : i + len(chunk), :, c, :] = values[:, :, TARGETS.index(name), :]
        return out


def registry_methods(settings: Settings, version: str | None = None) -> list[RegistryMethod]:
    """Every kind of the training run behind ``version`` (default: the current model) still in the registry,
    one column per kind; just that version for a card from before runs were recorded."""
    from forecasting import registry

    version = version or registry.current_version(settings.models_dir)
    if version is None:
        return []
    card = registry.read_card(settings.models_dir, version)
    candidates = (card.selection or {}).get("candidates", [])
    members = [(c["kind"], c["version"]) for c in candidates if not c.get("champion") or c["version"] == version]
    # The champion stands for its kind when the run has no other of that kind (on an empty registry the run's own
    # baseline is promoted first and then defends as the champion).
    kinds = {kind for kind, _ in members}
    members += [(c["kind"], c["version"]) for c in candidates if c.get("champion") and c["kind"] not in kinds]
    present = {c.version for c in registry.list_versions(settings.models_dir)}
    members = [(k, v) for k, v in members if v in present] or [(card.kind, version)]
    return [RegistryMethod(settings.models_dir, v, settings, name=KIND_COLUMNS.get(k, k)) for k, v in members]


@dataclass
class BaseZeroShotMethod:
    """The shipped base model (``base_models_dir``, ``pycemaker pretrain``) zero-shot, on any frame, as the column
    ``base_zero_shot``: no training run, no registry.

    The base model is a per-minute model (its card's ``step_minutes`` is 1: minute-of-hour features, a 120-minute
    window, a 180-minute horizon); its inputs are scaled by the pretraining data's fixed means and deviations (in the
    streams' own units: a CPU ratio, requests per second), not per window. A coarser series (NAB: 5 minutes) is
    therefore *resampled* to the minute, never fed as if its rows were minutes (that would run the learned
    dynamics and the hour features 5 times too fast): each sample is held until the next (what a per-minute
    collector reads between two scrapes: no look-ahead, at most ``cadence - 1`` minutes, so real gaps stay gaps), the
    model forecasts 180 minutes from the origin, and every ``cadence``-th minute is the series' step. Steps beyond
    the model's horizon are left unforecast (NaN).
    """

    settings: Settings
    name: str = "base_zero_shot"
    _runner: object = field(default=None, repr=False)

    @property
    def runner(self):
        if self._runner is None:
            from forecasting import registry
            from forecasting.forecaster import OnnxForecaster

            base = Path(self.settings.base_models_dir)
            version = registry.current_or_newest(base)
            if version is None:
                raise ValueError(f"no base model in {base} (`pycemaker pretrain`)")
            self._runner = OnnxForecaster(base, version, self.settings)
        return self._runner

    def channels(self, series: EvalSeries) -> tuple[str, ...]:
        return tuple(c for c in series.channels if c in TARGETS) if series.frames else ()

    def forecast(self, history: pd.DataFrame, horizon: int, series: EvalSeries) -> np.ndarray:
        out = _empty(horizon, series)
        runner = self.runner
        cadence = series.cadence_minutes
        if not self.channels(series) or runner.step_minutes != 1:
            return out
        # Enough rows for the model's window (in minutes), held to the minute; the origin is one row after the last.
        rows = history.iloc[-(runner.input_steps // cadence + 2):]
        last = rows.index[-1]
        minutes = pd.date_range(rows.index[0], last + pd.Timedelta(minutes=cadence - 1), freq="1min")
        frame = rows.reindex(minutes).ffill(limit=cadence - 1) if cadence > 1 else rows
        frame.attrs = dict(history.attrs)
        origin = last + pd.Timedelta(minutes=cadence)
        steps = min(horizon, -(-runner.horizon_steps // cadence))
        result = runner.forecast(frame, origin, runner.horizon_steps)
        picked = np.arange(steps) * cadence
        picked = picked[picked < runner.horizon_steps]
        quantiles = [runner.quantiles.index(q) for q in QUANTILES]
        values = result.values[picked][:, :, quantiles]  # [steps, T, 3]
        for c, name in enumerate(series.channels):
            if name in TARGETS:
                out[: len(picked), c, :] = values[:, TARGETS.index(name), :]
        return out


# --- Fracast-0, a pretrained zero-shot forecaster (evaluation only) ---------------------------


@dataclass
class FracastMethod:
    """Fracast-0 (PyPI ``fracast``, Apache-2.0): 85k parameters, weights inside the wheel, zero-shot.

    Each channel on its own, from the last ``context`` steps of history (it reads up to 2 048); its
    9 quantiles include the P10, P50 and P90. Evaluation only: it needs torch, serving never imports it.
    """

    name: str = "fracast"
    context: int = 2048
    _model: object = field(default=None, repr=False)

    def channels(self, series: EvalSeries) -> tuple[str, ...]:
        return series.channels

    @property
    def model(self):
        if self._model is None:
            import os

            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the bundled weights; never a download
            import torch
            from fracast import FracastModel

            torch.set_num_threads(1)
            self._model = FracastModel.from_pretrained()
        return self._model

    def forecast(self, history: pd.DataFrame, horizon: int, series: EvalSeries) -> np.ndarray:
        out = _empty(horizon, series)
        context = history[list(series.channels)].to_numpy(dtype=float)[-self.context :].T  # [C, T]
        usable = [c for c in range(len(series.channels)) if np.isfinite(context[c]).sum() >= 8]
        if not usable:
            return out
        levels = list(self.model.quantiles)
        picked = [levels.index(q) for q in QUANTILES]
        forecast = self.model.forecast(context[usable].astype(np.float32), horizon=horizon)  # [C, H, 9]
        for i, c in enumerate(usable):
            out[:, c, :] = forecast[i][:, picked]
        return out


def served_method(settings: Settings, version: str | None = None) -> RegistryMethod | None:
    """The registry's current model (or ``version``), whatever its kind, as the column ``served``."""
    from forecasting import registry

    version = version or registry.current_version(settings.models_dir)
    return RegistryMethod(settings.models_dir, version, settings, name="served") if version else None


METHOD_NAMES = ("persistence", "seasonal_naive", "sarimax", "autoets", *KIND_COLUMNS.values(), "served", "base_zero_shot",
                "fracast")
#: ``pycemaker backtest``'s default: every method but Fracast-0 (evaluation only, slower) and the base model zero-shot
#: (on minute frames the run's ``base_model`` column is that model; ``--methods base_zero_shot`` asks for it).
BACKTEST_METHODS = tuple(m for m in METHOD_NAMES if m not in ("fracast", "base_zero_shot"))


def build_methods(names: tuple[str, ...], settings: Settings, model_version: str | None = None) -> list[Method]:
    """The named methods; the registry's kinds come from the run behind ``model_version`` (default: the current model),
    and are left out (with a warning) when the registry has none of them."""
    methods: list[Method] = []
    from_registry = {m.name: m for m in registry_methods(settings, model_version)} if set(names) & set(KIND_COLUMNS.values()) else {}
    for name in names:
        if name in ("persistence", "seasonal_naive"):
            methods.append(NaiveMethod(name))
        elif name == "sarimax":
            methods.append(SarimaxMethod())
        elif name == "autoets":
            methods.append(AutoEtsMethod())
        elif name == "fracast":
            methods.append(FracastMethod())
        elif name == "base_zero_shot":
            methods.append(BaseZeroShotMethod(settings))
        elif name == "served":
            served = served_method(settings, model_version)
            if served is None:
                log.warning("no model in %s: the served column is left out (run `pycemaker train --once`)", settings.models_dir)
            else:
                methods.append(served)
        elif name in KIND_COLUMNS.values():
            if name in from_registry:
                methods.append(from_registry[name])
            else:
                log.warning("no %s model in %s: left out (run `pycemaker train --once`)", name, settings.models_dir)
        else:
            raise ValueError(f"unknown method {name!r}; known: {', '.join(METHOD_NAMES)}")
    return methods


__all__ = ["QUANTILES", "Method", "NaiveMethod", "SarimaxMethod", "AutoEtsMethod", "RegistryMethod", "BaseZeroShotMethod", "FracastMethod",
           "KIND_COLUMNS", "registry_methods", "served_method", "build_methods", "METHOD_NAMES", "BACKTEST_METHODS"]
