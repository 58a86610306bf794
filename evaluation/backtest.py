"""Rolling-origin backtests: every method forecasts from the same origins, scored on the same points.

At each origin ``o`` (a row of the series) every method is handed ``frame.iloc[:o]``, the
history strictly before the origin, and forecasts the next H steps; the forecasts are then
compared with the rows ``[o, o + H)``. A method cannot see past its origin because it is
never given those rows.

Origins are evenly spaced (by a step coprime with the season) from ``warmup`` (enough history for every method: the LSTM's input,
the statistical models' fit windows, a day for the baselines' bands) to the last origin whose
whole horizon is inside the data. Metrics at horizon h pool the first h minutes of every
origin ("60-min RMSE" is over lead times 1-60).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from forecasting import metrics
from evaluation.forecasters import HI, LO, MID, QUANTILES, Method
from evaluation.series import EvalSeries

log = logging.getLogger(__name__)
HORIZONS_MINUTES = (15, 60, 180)
#: Physical floor of every channel, ceiling of those that are ratios.
UPPER_BOUND = {"health": 1.0}


def rolling_origins(n_rows: int, warmup: int, horizon: int, count: int, season: int = 1) -> np.ndarray:
    """``count`` evenly spaced origins in ``[warmup, n_rows - horizon]`` (fewer if the range is short).

    The step is coprime with ``season``, so the origins visit every phase of the season: with
    a step of exactly 3 hours every origin would fall on the hour, and every 15-minute
    forecast would be scored on the calm start of the load cycle.
    """
    last = n_rows - horizon
    if last < warmup:
        return np.array([], dtype=int)
    if count < 2 or last == warmup:
        return np.array([warmup], dtype=int)
    step = max(1, (last - warmup) // (count - 1))
    while step > 1 and math.gcd(step, season) != 1:
        step -= 1
    return warmup + step * np.arange(min(count, (last - warmup) // step + 1))


@dataclass
class BacktestResult:
    """Forecasts of every method at every origin, and the observations they are scored against."""

    series: EvalSeries
    methods: list[str]
    #: The methods' channels (the others are NaN), per method.
    method_channels: dict[str, tuple[str, ...]]
    origins: np.ndarray  # row positions in series.frame
    horizon: int  # steps
    #: [M, N, H, C, 3] (P10, P50, P90) in original units.
    forecasts: np.ndarray
    #: [N, H, C]
    actuals: np.ndarray
    #: MASE scale per origin and channel [N, C] (mean seasonal difference of each origin's history).
    scales: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def origin_times(self) -> pd.DatetimeIndex:
        return self.series.frame.index[self.origins]

    def method_forecast(self, method: str) -> np.ndarray:
        return self.forecasts[self.methods.index(method)]

    def metric_rows(self, horizons_minutes: Sequence[int] = HORIZONS_MINUTES, common: bool = True) -> list[dict[str, Any]]:
        """One row per method, channel and horizon: MAE, RMSE, MASE, P10-P90 coverage and the point count.

        ``common``: score each channel only on the points every method that forecasts it
        has forecast (so a fit that failed at one origin does not change the others' sample).
        """
        rows = []
        for c, channel in enumerate(self.series.channels):
            applicable = [m for m in self.methods if channel in self.method_channels[m]]
            if not applicable:
                continue
            mask = np.isfinite(self.actuals[:, :, c])
            if common:
                for m in applicable:
                    mask &= np.isfinite(self.method_forecast(m)[:, :, c, MID])
            for minutes in horizons_minutes:
                steps = min(self.horizon, self.series.steps(minutes))
                for m in applicable:
                    f = self.method_forecast(m)[:, :steps, c, :]
                    a = np.where(mask[:, :steps], self.actuals[:, :steps, c], np.nan)
                    scale = self.scales[:, c][:, None]
                    rows.append(
                        {
                            "method": m,
                            "channel": channel,
                            "horizon_minutes": int(minutes),
                            "mae": metrics.mae(f[..., MID], a),
                            "rmse": metrics.rmse(f[..., MID], a),
                            "mase": metrics.mase(f[..., MID], a, scale),
                            "coverage": metrics.coverage(f[..., LO], f[..., HI], a),
                            "points": int(np.isfinite(a).sum()),
                        }
                    )
        return rows

    def error_by_step(self, method: str, channel: str) -> np.ndarray:
        """Mean absolute error of the median at each step ahead, ``[H]`` (NaN where nothing was scored)."""
        c = self.series.channels.index(channel)
        err = np.abs(self.method_forecast(method)[:, :, c, MID] - self.actuals[:, :, c])
        known = np.isfinite(err)
        with np.errstate(invalid="ignore"):
            return np.where(known.any(axis=0), np.nansum(err, axis=0) / np.maximum(known.sum(axis=0), 1), np.nan)

    def summary(self) -> dict[str, Any]:
        s = self.series
        times = self.origin_times
        return {
            "series": s.name,
            "source": s.source,
            "channels": list(s.channels),
            "cadence_minutes": s.cadence_minutes,
            "season_steps": s.season_steps,
            "multivariate": s.multivariate,
            "rows": len(s.frame),
            "start": s.frame.index[0].isoformat(),
            "end": (s.frame.index[-1] + pd.Timedelta(minutes=s.cadence_minutes)).isoformat(),
            "origins": len(self.origins),
            "first_origin": times[0].isoformat() if len(times) else None,
            "last_origin": times[-1].isoformat() if len(times) else None,
            "horizon_steps": self.horizon,
            "methods": self.methods,
            "method_channels": {m: list(c) for m, c in self.method_channels.items()},
            "seconds": {m: round(v, 2) for m, v in self.seconds.items()},
            "fit_failures": self.failures,
        }


def default_warmup(series: EvalSeries, methods: Sequence[Method]) -> int:
    """Rows of history every method needs before the first origin."""
    need = [2 * series.season_steps, series.steps(24 * 60)]  # baselines' bands: a day of history
    for m in methods:
        card = getattr(m, "card", None) if hasattr(m, "runner") and series.frames else None
        if card is not None:
            need.append(card.input_steps + 5)
        if m.name == "sarimax" and not series.multivariate:
            need.append(3 * series.season_steps)
    return max(need)


def run_backtest(
    series: EvalSeries,
    methods: Sequence[Method],
    *,
    origins: int = 40,
    horizon_minutes: int = 180,
    warmup: int | None = None,
    progress: bool = True,
    workers: int = 1,
) -> BacktestResult:
    """Forecast from ``origins`` rolling origins with every method (see the module doc).

    ``workers`` > 1 runs the methods that refit a model at every origin (SARIMAX, AutoETS:
    ``refits = True``) in that many processes, a share of the origins each; the others run here.
    """
    from tqdm import tqdm

    horizon = series.steps(horizon_minutes)
    methods = [m for m in methods if m.channels(series)]
    warmup = default_warmup(series, methods) if warmup is None else warmup
    positions = rolling_origins(len(series.frame), warmup, horizon, origins, series.season_steps)
    if len(positions) == 0:
        raise ValueError(
            f"{series.name}: {len(series.frame)} rows are too few for a {warmup}-row warm-up and a {horizon}-step horizon"
        )
    values = series.values()
    C = len(series.channels)
    forecasts = np.full((len(methods), len(positions), horizon, C, len(QUANTILES)), np.nan)
    actuals = values[positions[:, None] + np.arange(horizon)[None, :]]
    scales = np.array([[metrics.seasonal_scale(values[:o, c], series.season_steps) for c in range(C)] for o in positions])
    seconds = {m.name: 0.0 for m in methods}
    failures = {m.name: 0 for m in methods}
    remote = [k for k, m in enumerate(methods) if workers > 1 and getattr(m, "refits", False)]
    local = [k for k in range(len(methods)) if k not in remote]
    bar = tqdm(total=len(positions) * len(methods), desc=f"backtest {series.name}", unit="fit", disable=not progress, leave=False)
    try:
        pending = _submit(series, [methods[k] for k in remote], positions, horizon, workers) if remote else []
        for k in local:
            part = forecast_origins(series, [methods[k]], positions, horizon, bar)
            forecasts[k] = part.forecasts[0]
            seconds[methods[k].name] += part.seconds[0]
            failures[methods[k].name] += part.failures[0]
        for chunk, future in pending:
            part = future.result()
            for j, k in enumerate(remote):
                forecasts[k][chunk] = part.forecasts[j]
                seconds[methods[k].name] += part.seconds[j]
                failures[methods[k].name] += part.failures[j]
            bar.update(len(chunk) * len(remote))
    finally:
        bar.close()
    for k in local:
        failures[methods[k].name] = int(getattr(methods[k], "failures", 0))
    forecasts = _bounded(forecasts, series.channels)
    return BacktestResult(
        series=series,
        methods=[m.name for m in methods],
        method_channels={m.name: m.channels(series) for m in methods},
        origins=positions,
        horizon=horizon,
        forecasts=forecasts,
        actuals=actuals,
        scales=scales,
        seconds=seconds,
        failures=failures,
    )


@dataclass
class _Part:
    forecasts: np.ndarray  # [M, n, H, C, 3]
    seconds: list[float]
    failures: list[int]


def forecast_origins(series: EvalSeries, methods: Sequence[Method], positions: np.ndarray, horizon: int, bar=None) -> _Part:
    """Every method at every origin, each handed only the rows before its origin."""
    out = np.full((len(methods), len(positions), horizon, len(series.channels), len(QUANTILES)), np.nan)
    seconds = [0.0] * len(methods)
    before = [int(getattr(m, "failures", 0)) for m in methods]
    with single_threaded_blas():
        for i, o in enumerate(positions):
            history = series.frame.iloc[:o]
            for k, method in enumerate(methods):
                began = time.perf_counter()
                out[k, i] = method.forecast(history, horizon, series)
                seconds[k] += time.perf_counter() - began
                if bar is not None:
                    bar.update(1)
    return _Part(out, seconds, [int(getattr(m, "failures", 0)) - b for m, b in zip(methods, before)])


def single_threaded_blas():
    """BLAS on one thread: the statistical fits multiply small matrices, where a second thread
    costs more in synchronisation than it saves (a SARIMAX fit takes 2-3x longer on 2 threads)."""
    try:
        import scipy.linalg  # noqa: F401  (loads scipy's own BLAS, which statsmodels' Kalman filter calls, so it is limited too)
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - statsforecast depends on threadpoolctl
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _worker_init() -> None:
    """Each worker process is one core's worth: BLAS and OpenMP on one thread."""
    import os

    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    single_threaded_blas()  # the libraries already loaded; later ones read the variables


def _submit(series: EvalSeries, methods: list, positions: np.ndarray, horizon: int, workers: int):
    """Origins in interleaved chunks (so each process gets early and late ones) to a pool of fresh processes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init)
    chunks = [np.arange(i, len(positions), 2 * workers) for i in range(2 * workers)]
    chunks = [c for c in chunks if len(c)]
    futures = [(c, pool.submit(forecast_origins, series, methods, positions[c], horizon)) for c in chunks]
    pool.shutdown(wait=False)
    return futures


def _bounded(forecasts: np.ndarray, channels: Sequence[str]) -> np.ndarray:
    """Every channel is non-negative; health is within [0, 1]; quantiles are sorted."""
    out = np.maximum(forecasts, 0.0)
    for c, name in enumerate(channels):
        if name in UPPER_BOUND:
            out[..., c, :] = np.minimum(out[..., c, :], UPPER_BOUND[name])
    complete = np.isfinite(out).all(axis=-1, keepdims=True)  # a median without a band keeps its place
    return np.where(complete, np.sort(out, axis=-1), out)


def relative(rows: list[dict], method: str, reference: str, channel: str, horizon: int, metric: str = "rmse") -> float:
    """``method``'s metric divided by ``reference``'s (NaN when either is missing)."""
    def pick(name: str) -> float:
        for r in rows:
            if r["method"] == name and r["channel"] == channel and r["horizon_minutes"] == horizon:
                return r[metric]
        return float("nan")

    ref = pick(reference)
    return pick(method) / ref if ref and np.isfinite(ref) else float("nan")


__all__ = ["HORIZONS_MINUTES", "rolling_origins", "BacktestResult", "run_backtest", "default_warmup", "relative"]
