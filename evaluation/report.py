"""Reports: markdown tables, a JSON file, PNG plots (matplotlib, no display needed)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from evaluation.backtest import HORIZONS_MINUTES, BacktestResult
from evaluation.forecasters import HI, LO, MID
from evaluation.ttf import TtfResult

LABELS = {
    "persistence": "persistence",
    "seasonal_naive": "seasonal naive",
    "sarimax": "SARIMAX",
    "autoets": "AutoETS (MSTL)",
    "lstm": "LSTM (ONNX)",
    "lstm_uncalibrated": "LSTM, uncalibrated",
    "ets_model": "damped ETS (model)",
    "seasonal_naive_model": "seasonal naive (model)",
    "served": "served",
    "fracast": "Fracast-0 (zero-shot)",
    "base_zero_shot": "base model (zero-shot)",
    "blend": "base + ETS (blend)",
}
COLOURS = {"persistence": "#999999", "seasonal_naive": "#1f77b4", "sarimax": "#ff7f0e", "autoets": "#2ca02c", "lstm": "#d62728",
           "ets_model": "#9467bd", "seasonal_naive_model": "#17becf", "served": "#000000", "fracast": "#bcbd22",
           "base_zero_shot": "#8c564b"}


def label(method: str) -> str:
    return LABELS.get(method, method)


def fmt(value: Any, digits: int = 3, percent: bool = False) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if percent:
        return f"{100 * value:.0f}%"
    return f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _pick(rows: list[dict], method: str, channel: str, horizon: int) -> dict | None:
    for r in rows:
        if r["method"] == method and r["channel"] == channel and r["horizon_minutes"] == horizon:
            return r
    return None


def channel_table(rows: list[dict], channel: str, methods: Sequence[str], horizons: Sequence[int] = HORIZONS_MINUTES) -> str:
    """One row per horizon and method: MAE, RMSE, MASE, P10-P90 coverage (the best MAE/RMSE/MASE in bold)."""
    out = []
    for h in horizons:
        present = [(m, _pick(rows, m, channel, h)) for m in methods]
        present = [(m, r) for m, r in present if r is not None]
        best = {k: min((r[k] for _, r in present if math.isfinite(r[k])), default=None) for k in ("mae", "rmse", "mase")}
        for m, r in present:
            cells = [f"{h} min", label(m)]
            for k in ("mae", "rmse", "mase"):
                text = fmt(r[k])
                cells.append(f"**{text}**" if best[k] is not None and r[k] == best[k] else text)
            cells += [fmt(r["coverage"], percent=True), str(r["points"])]
            out.append(cells)
    return table(["horizon", "method", "MAE", "RMSE", "MASE", "P10-P90 coverage", "points"], out)


def _mase_cell(rows: list[dict], method: str, channel: str, horizon: int) -> str:
    """"MASE (coverage)" of one method and channel at one horizon; n/a where the method does not forecast it."""
    r = _pick(rows, method, channel, horizon)
    return f"{fmt(r['mase'], 2)} ({fmt(r['coverage'], percent=True)})" if r else "n/a"


def streams_table(rows: list[dict], channels: Sequence[str], methods: Sequence[str], horizon: int = 60) -> str:
    """MASE (coverage) per channel and method at one horizon; n/a where a method does not forecast the channel."""
    out = []
    for c in channels:
        cells = [f"`{c}`"]
        for m in methods:
            cells.append(_mase_cell(rows, m, c, horizon))
        out.append(cells)
    return table(["channel"] + [label(m) for m in methods], out)


def ttf_table(results: Sequence[TtfResult]) -> str:
    """The time-to-failure figures, one column per method."""
    summaries = [r.incident_summary() for r in results]

    def ep(r: TtfResult, kind: str, key: str, k: str | None = None) -> str:
        stats = r.episodes.get(kind, {})
        if k is None:
            return fmt(stats.get(key), 1) if key != "warned_share" else fmt(stats.get(key), percent=True)
        ce = stats.get("crossing_error", {}).get(k, {})
        if not ce.get("scored"):
            return "n/a (0 scored)"
        return (f"{fmt(ce.get('mean_abs_error_minutes'), 1)} min, median {fmt(ce.get('median_error_minutes'), 0)} "
                f"(n={ce['scored']}, {ce['no_crossing_forecast']} missed)")

    lines = [
        ("incidents with a failure in range (new / during a failure already under way)",
         [f"{s['with_failure']} ({s['new_failure']} / {s['during_a_failure']})" for s in summaries]),
        ("new-failure incidents warned >= 10 min ahead", [fmt(s["warned_share_new_failure"], percent=True) for s in summaries]),
        ("... of those predictable (failure >= 10 min after the cause)",
         [f"{fmt(s['warned_share_predictable'], percent=True)} of {s['predictable_new_failure']}" for s in summaries]),
        ("all incidents with a failure, warned >= 10 min before their episode", [fmt(s["warned_share_all_with_failure"], percent=True) for s in summaries]),
        ("median lead time, new-failure incidents (min)", [fmt(s["median_lead_new_failure"], 1) for s in summaries]),
        ("scheduled (hourly peak) failures warned >= 10 min ahead", [ep(r, "scheduled", "warned_share") for r in results]),
    ]
    for k in results[0].config.lead_points if results else ():
        lines.append((f"onset timing error {k} min before, incident episodes (mean abs)", [ep(r, "incident", "", str(k)) for r in results]))
        lines.append((f"onset timing error {k} min before, scheduled episodes (mean abs)", [ep(r, "scheduled", "", str(k)) for r in results]))
    look = results[0].config.lookahead_minutes if results else 30
    lines += [
        (f"precision, failure within {look} min", [fmt(r.precision, percent=True) for r in results]),
        (f"recall, failure within {look} min", [fmt(r.recall, percent=True) for r in results]),
        (f"recall, incident failure within {look} min", [fmt(r.recall_incidents, percent=True) for r in results]),
        ("false alarms per 24 healthy hours", [f"{fmt(r.false_alarms_per_day, 1)} ({r.false_alarms} in {r.healthy_hours:.0f} h)" for r in results]),
        (f"warning runs starting within {results[0].config.settle_minutes if results else 5} min after a failure ended (its tail)",
         [str(r.tail_alarms) for r in results]),
        ("warning runs over unobserved minutes (unverifiable)", [str(r.unverifiable_alarms) for r in results]),
        ("warning runs within an incident with no failure after them (not false alarms)",
         [str(r.incident_alarms) for r in results]),
    ]
    return table(["measure"] + [label(r.method) for r in results], ([name] + vals for name, vals in lines))


def nab_table(results: Sequence[tuple[str, BacktestResult]], horizon: int = 60) -> str:
    """MASE (and P10-P90 coverage) per NAB series and method at one horizon."""
    methods: list[str] = []
    for _, res in results:
        methods += [m for m in res.methods if m not in methods]
    out = []
    for name, res in results:
        rows = res.metric_rows([horizon])
        channel = res.series.channels[0]
        cells = [f"`{name}`"]
        for m in methods:
            cells.append(_mase_cell(rows, m, channel, horizon))
        out.append(cells)
    return table(["series"] + [label(m) for m in methods], out)


# --- JSON ------------------------------------------------------------------------------------


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def write_json(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (NaN and infinity as null, datetimes as ISO-8601)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_clean(payload), indent=2, sort_keys=False) + "\n")
    return path


def backtest_payload(result: BacktestResult, horizons: Sequence[int] = HORIZONS_MINUTES) -> dict[str, Any]:
    return {"summary": result.summary(), "metrics": result.metric_rows(horizons)}


# --- plots ----------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_forecasts(result: BacktestResult, channel: str, path: Path, origin: int | None = None, context_steps: int | None = None) -> Path:
    """Forecast vs observed with the P10-P90 band, one panel per method, at one origin."""
    plt = _pyplot()
    series = result.series
    c = series.channels.index(channel)
    methods = [m for m in result.methods if channel in result.method_channels[m]]
    i = len(result.origins) // 2 if origin is None else origin
    o = int(result.origins[i])
    context = context_steps or min(o, 2 * result.horizon)
    times = series.frame.index
    past = slice(o - context, o)
    future = slice(o, o + result.horizon)
    fig, axes = plt.subplots(len(methods), 1, figsize=(10, 2.2 * len(methods)), sharex=True, squeeze=False)
    for ax, m in zip(axes[:, 0], methods):
        f = result.method_forecast(m)[i, :, c, :]
        ax.plot(times[past], series.frame[channel].iloc[past], color="black", lw=1, label="observed")
        ax.plot(times[future], series.frame[channel].iloc[future], color="black", lw=1, alpha=0.4)
        ax.fill_between(times[future], f[:, LO], f[:, HI], color=COLOURS.get(m, "C0"), alpha=0.25, label="P10-P90")
        ax.plot(times[future], f[:, MID], color=COLOURS.get(m, "C0"), lw=1.5, label=f"{label(m)} P50")
        ax.axvline(times[o], color="grey", ls=":", lw=1)
        ax.set_ylabel(channel)
        ax.legend(loc="upper left", fontsize=7, ncol=3)
    axes[0, 0].set_title(f"{series.name}: forecasts from {times[o]:%Y-%m-%d %H:%M} UTC")
    fig.autofmt_xdate()
    return _save(fig, path)


def plot_error_by_horizon(result: BacktestResult, channel: str, path: Path) -> Path:
    """Mean absolute error of the P50 at each step ahead, one line per method."""
    plt = _pyplot()
    series = result.series
    steps = np.arange(1, result.horizon + 1) * series.cadence_minutes
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for m in result.methods:
        if channel not in result.method_channels[m]:
            continue
        ax.plot(steps, result.error_by_step(m, channel), label=label(m), color=COLOURS.get(m))
    ax.set_xlabel("minutes ahead")
    ax.set_ylabel(f"MAE, {channel} (log scale)")
    ax.set_yscale("log")
    ax.set_title(f"{series.name}: error by horizon ({len(result.origins)} origins)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_warnings(series, results: Sequence[TtfResult], incident: dict, path: Path, before: int = 120, after: int = 30) -> Path:
    """Observed health around one incident, and when each method warned (P50 crossing within the lookahead)."""
    import pandas as pd

    plt = _pyplot()
    times = series.frame.index
    f = pd.Timestamp(incident["failure_time"]).floor("1min")
    a, b = times.searchsorted(f - pd.Timedelta(minutes=before)), times.searchsorted(f + pd.Timedelta(minutes=after))
    fig, ax = plt.subplots(figsize=(9, 3.2))
    ax.plot(times[a:b], series.frame["health"].iloc[a:b], color="black", lw=1.2, label="observed health")
    ax.axhline(results[0].config.threshold, color="grey", ls="--", lw=1)
    ax.axvline(f, color="black", ls=":", lw=1)
    for k, r in enumerate(results):
        origins = r.origins
        sel = (origins >= a) & (origins < b) & r.warnings
        ax.scatter(times[origins[sel]], np.full(sel.sum(), 1.02 + 0.04 * k), s=6, color=COLOURS.get(r.method), label=f"{label(r.method)} warns")
    ax.set_ylim(0, 1.12 + 0.04 * len(results))
    ax.set_title(f"{incident['type']} starting {pd.Timestamp(incident['start']):%Y-%m-%d %H:%M} UTC: warnings before its failure")
    ax.legend(fontsize=7, loc="lower left")
    fig.autofmt_xdate()
    return _save(fig, path)


__all__ = ["label", "fmt", "table", "channel_table", "streams_table", "ttf_table", "nab_table", "write_json", "backtest_payload",
           "plot_forecasts", "plot_error_by_horizon", "plot_warnings"]
