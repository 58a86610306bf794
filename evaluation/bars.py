"""The quality bars: each goal, measured on the served model, with the figure, the target and whether it is met."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from evaluation import backtest, report, ttf


def quality_bars(held: backtest.BacktestResult, ttf_results: Sequence[ttf.TtfResult],
                 nab: Sequence[tuple[str, backtest.BacktestResult]], served: str = "lstm") -> list[dict[str, Any]]:
    """Each bar, measured on the served model (column ``served``): what, the figure, the target, met or not."""
    rows = held.metric_rows((60,))
    bars = []

    def pick(method: str, key: str) -> float:
        for r in rows:
            if r["method"] == method and r["channel"] == "health":
                return r[key]
        return float("nan")

    name = report.label(served)
    model, sarimax, naive = pick(served, "rmse"), pick("sarimax", "rmse"), pick("seasonal_naive", "rmse")
    ratio_s = model / sarimax if np.isfinite(sarimax) and sarimax else float("nan")
    ratio_n = model / naive if np.isfinite(naive) and naive else float("nan")
    cov = pick(served, "coverage")
    bars.append({"bar": "held-out 60-min health RMSE <= 0.7 x SARIMAX", "value": ratio_s, "target": "<= 0.70",
                 "met": bool(ratio_s <= 0.7), "detail": f"{name} {model:.4f}, SARIMAX {sarimax:.4f}"})
    bars.append({"bar": "held-out 60-min health RMSE <= 0.8 x seasonal naive", "value": ratio_n, "target": "<= 0.80",
                 "met": bool(ratio_n <= 0.8), "detail": f"{name} {model:.4f}, seasonal naive {naive:.4f}"})
    bars.append({"bar": "held-out P10-P90 health coverage within 70-90% (60 min)", "value": cov, "target": "0.70-0.90",
                 "met": bool(0.7 <= cov <= 0.9), "detail": f"{name} {cov:.1%}"})
    served_ttf = next((r for r in ttf_results if r.method == served), None)
    if served_ttf is not None:
        s = served_ttf.incident_summary()
        bars.append({"bar": ">= 90% of incidents warned >= 10 min ahead (incidents that start a new failure)",
                     "value": s["warned_share_new_failure"], "target": ">= 0.90",
                     "met": bool(s["warned_share_new_failure"] >= 0.9),
                     "detail": f"{s['new_failure']} such incidents; predictable ones: {report.fmt(s['warned_share_predictable'], percent=True)} "
                               f"of {s['predictable_new_failure']}; all with a failure: {report.fmt(s['warned_share_all_with_failure'], percent=True)}"})
        bars.append({"bar": "<= 1 false alarm per 24 healthy hours", "value": served_ttf.false_alarms_per_day, "target": "<= 1",
                     "met": bool(served_ttf.false_alarms_per_day <= 1),
                     "detail": f"{served_ttf.false_alarms} false alarm(s) in {served_ttf.healthy_hours:.0f} healthy hours "
                               f"({served_ttf.false_alarm_minutes} warned minute(s) in all); apart: {served_ttf.tail_alarms} failure tails, "
                               f"{served_ttf.unverifiable_alarms} unverifiable, {served_ttf.incident_alarms} within incidents"})
    bars.extend(nab_bars(nab))
    return bars


def nab_ratios(nab: Sequence[tuple[str, backtest.BacktestResult]]) -> dict[str, float]:
    """Per NAB series: the served model's 60-min MASE of the stream over seasonal naive's (same points)."""
    out = {}
    for name, res in nab:
        channel = res.series.channels[0]
        mase = {r["method"]: r["mase"] for r in res.metric_rows((60,)) if r["channel"] == channel}
        naive = mase.get("seasonal_naive", float("nan"))
        out[name] = mase.get("served", float("nan")) / naive if naive and np.isfinite(naive) else float("nan")
    return out


def nab_bars(nab: Sequence[tuple[str, backtest.BacktestResult]]) -> list[dict[str, Any]]:
    """The real-data goal: the served model's 60-min MASE at most 0.85 x seasonal naive's in the median over the
    series, and never above 1.1 x on any one."""
    ratios = nab_ratios(nab)
    if not ratios:
        return []
    values = np.array(list(ratios.values()), dtype=float)
    detail = "; ".join(f"{n}: {report.fmt(v, 3)}" for n, v in ratios.items())
    median, worst = float(np.nanmedian(values)), float(np.nanmax(values))
    return [
        {"bar": "NAB: served 60-min MASE <= 0.85 x seasonal naive's (median over the series)", "value": median,
         "target": "<= 0.85", "met": bool(median <= 0.85), "detail": detail},
        {"bar": "NAB: served 60-min MASE never above 1.1 x seasonal naive's", "value": worst, "target": "<= 1.10",
         "met": bool(worst <= 1.1), "detail": detail},
    ]


__all__ = ["quality_bars", "nab_ratios", "nab_bars"]
