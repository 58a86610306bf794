"""The whole evaluation, as ``make evaluate`` runs it, from a fresh clone.

1. **A model.** The registry's current model (``PYCEMAKER_MODELS_DIR``). With none, one is
   trained: a week simulated with the training seed (``simulator_seed``, 42) is written to a
   temporary embedded server and ``pycemaker train --once`` runs against it in a subprocess
   (this process never imports torch).
2. **Held-out weeks.** Two weeks simulated in memory with a seed no training run uses
   (:data:`HELDOUT_SEED`), after the training week. The first day is history only (warm-up).
3. **Backtest** of every method on it (rolling origins, horizons 15 / 60 / 180 min).
4. **Time-to-failure** scoring of the LSTM and the seasonal naive forecast against the
   simulator's ground-truth incidents, every minute after the warm-up.
   Then the ablation: the LSTM with and without its calibration, warnings held for 1 to 3
   minutes (:func:`run_ablation`).
5. **Real data.** The four NAB series are imported (``pycemaker import-csv``'s code) into a
   temporary embedded server, one database each, and backtested at their own cadence.
6. **Report.** ``docs/evaluation.md``, ``docs/img/evaluation-*.png`` and
   ``bench/results/evaluation.json``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from evaluation import backtest, forecasters, report, series as series_mod, ttf
from evaluation.bars import quality_bars
from evaluation.document import render
from evaluation.nab import NAB_DIR, NAB_FILES
from forecasting import registry
from telemetry.settings import Settings

log = logging.getLogger(__name__)
UTC = dt.timezone.utc
REPO = Path(__file__).resolve().parents[1]
#: A seed no training run uses: the CLI and the demo simulate with ``simulator_seed`` (42) and,
#: live, 43, 44, ... one per day; tests and fixtures use small seeds.
HELDOUT_SEED = 7919
HELDOUT_START = dt.datetime(2026, 6, 1, tzinfo=UTC)
#: The training week (when a model has to be trained here): before the held-out week, another seed.
TRAIN_END = dt.datetime(2026, 5, 25, tzinfo=UTC)

@dataclass
class EvaluationConfig:
    heldout_seed: int = HELDOUT_SEED
    heldout_start: dt.datetime = HELDOUT_START
    heldout_days: float = 14.0
    origins: int = 96
    horizons: tuple[int, ...] = backtest.HORIZONS_MINUTES
    methods: tuple[str, ...] = forecasters.METHOD_NAMES
    nab_dir: Path = NAB_DIR
    nab_origins: int = 40
    #: None: the product's warning rule, from settings (:meth:`ttf.TtfConfig.from_settings`).
    ttf: ttf.TtfConfig | None = None
    #: Train even when the registry has a model (into the same registry).
    retrain: bool = False
    quick_train: bool = False
    train_days: float = 7.0
    docs_path: Path = REPO / "docs" / "evaluation.md"
    img_dir: Path = REPO / "docs" / "img"
    json_path: Path = REPO / "bench" / "results" / "evaluation.json"
    progress: bool = True
    #: Processes for the methods that refit per origin (SARIMAX, AutoETS).
    workers: int = field(default_factory=lambda: max(1, min(2, os.cpu_count() or 1)))


# --- 1. the model ----------------------------------------------------------------------------


def ensure_model(settings: Settings, config: EvaluationConfig) -> tuple[str | None, dict[str, Any]]:
    """The version to evaluate, and how it came about (trained here or found in the registry)."""
    existing = newest_version(settings.models_dir)
    if existing and not config.retrain:
        return existing, {"trained_here": False, "models_dir": str(settings.models_dir)}
    if config.heldout_seed == settings.simulator_seed:
        raise ValueError("the held-out seed must differ from the training seed (simulator_seed)")
    info = train_model(settings, config)
    return newest_version(settings.models_dir), info


def newest_version(models_dir: Path, prefer_current: bool = True) -> str | None:
    """The current model; else (a run the gates rejected is still worth measuring) the newest version."""
    current = registry.current_version(models_dir)
    if current and prefer_current:
        return current
    versions = registry.list_versions(models_dir)
    return versions[-1].version if versions else current


def train_model(settings: Settings, config: EvaluationConfig) -> dict[str, Any]:
    """Simulate the training week into a temporary embedded server and run ``pycemaker train --once`` on it."""
    from telemetry import simulator, store
    from telemetry.embedded import open_server

    seed = settings.simulator_seed
    start = TRAIN_END - dt.timedelta(days=config.train_days)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="pycemaker-eval-train-") as tmp:
        server = open_server(Path(tmp) / "db", port=0)
        try:
            db_settings = dataclasses.replace(settings, mongo_uri=server.uri, database="evaluation_train")
            db = store.connect(db_settings, autostart=False)
            log.info("simulating the training week (seed %d) into a temporary server", seed)
            simulator.write(db, simulator.simulate(start, TRAIN_END, seed, settings), settings)
            db.client.close()
            _train_subprocess(db_settings, ["--quick"] if config.quick_train else [])
        finally:
            server.stop()
    return {
        "trained_here": True,
        "models_dir": str(settings.models_dir),
        "train_seed": seed,
        "train_range": [start.isoformat(), TRAIN_END.isoformat()],
        "quick": config.quick_train,
        "seconds": round(time.perf_counter() - began, 1),
    }


# --- 2-4. the held-out week -------------------------------------------------------------------


def heldout_series(settings: Settings, config: EvaluationConfig) -> series_mod.EvalSeries:
    end = config.heldout_start + dt.timedelta(days=config.heldout_days)
    return series_mod.from_simulation(
        config.heldout_seed, config.heldout_start, end, settings,
        name=f"held-out simulated weeks (seed {config.heldout_seed})",
    )


def served_column(settings: Settings, version: str | None) -> str | None:
    """The backtest column of the model that serves (the registry's current one, or ``version``)."""
    if version is None:
        return None
    return forecasters.KIND_COLUMNS.get(registry.read_card(settings.models_dir, version).kind)


def run_heldout(settings: Settings, config: EvaluationConfig, version: str | None) -> tuple[backtest.BacktestResult, list[ttf.TtfResult]]:
    """Every method on the held-out weeks; time to failure for every registry kind and the reference seasonal naive
    (the served kind first)."""
    held = heldout_series(settings, config)
    # The base model zero-shot is the registry's own ``base_model`` column here (same model, minute frames).
    methods = forecasters.build_methods(tuple(m for m in config.methods if m != "base_zero_shot"), settings, version)
    result = backtest.run_backtest(held, methods, origins=config.origins, horizon_minutes=max(config.horizons),
                                   progress=config.progress, workers=config.workers)
    ttf_results = []
    warmup = backtest.default_warmup(held, methods)
    ttf_config = config.ttf or ttf.TtfConfig.from_settings(settings)
    for m in ttf.scored_methods(methods):
        ttf_results.append(ttf.score_method(m, held, ttf_config, start_row=warmup))
    served = served_column(settings, version)
    ttf_results.sort(key=lambda r: (r.method != served, r.method == "seasonal_naive"))
    return result, ttf_results


def run_ablation(held: backtest.BacktestResult, ttf_results: Sequence[ttf.TtfResult], settings: Settings,
                 version: str | None) -> list[dict[str, Any]]:
    """What the calibration and the warning hold change: the LSTM with and without each, on the held-out weeks.

    The same origins as the main backtest (60-min health RMSE and P10-P90 coverage, the two LSTM
    variants scored on the same minutes) and the same scoring minutes for time to failure.
    """
    lstm = next((m for m in forecasters.registry_methods(settings, version) if m.name == "lstm"), None)
    main_ttf = next((r for r in ttf_results if r.method == "lstm"), None)
    if lstm is None or main_ttf is None or not lstm.card.calibration:
        return []
    raw = dataclasses.replace(lstm, name="lstm_uncalibrated", calibrated=False, _runner=None)
    # Same warm-up, count and horizon as the main backtest: the same origins.
    result = backtest.run_backtest(held.series, [lstm, raw], origins=len(held.origins), horizon_minutes=held.horizon,
                                   warmup=int(held.origins[0]), progress=False)
    if not np.array_equal(result.origins, held.origins):
        raise RuntimeError("the ablation must score the main backtest's origins")
    accuracy = {r["method"]: r for r in result.metric_rows((60,)) if r["channel"] == "health"}
    ttf_config = main_ttf.config
    origins = main_ttf.origins
    rows = []
    for method in (lstm, raw):
        paths = ttf.health_median_paths(method, held.series, origins, ttf_config.horizon_minutes)
        for hold in sorted({1, ttf_config.hold_minutes, ttf_config.hold_minutes + 1}):
            scored = ttf.score(method.name, held.series.frame.index, held.series.frame["health"].to_numpy(),
                               held.series.incidents, origins, paths, dataclasses.replace(ttf_config, hold_minutes=hold))
            summary = scored.incident_summary()
            rows.append({
                "method": method.name, "calibrated": method.calibrated, "hold_minutes": hold,
                "rmse_60": accuracy[method.name]["rmse"], "coverage_60": accuracy[method.name]["coverage"],
                "warned_share_new_failure": summary["warned_share_new_failure"],
                "warned_share_predictable": summary["warned_share_predictable"],
                "false_alarms": scored.false_alarms, "false_alarms_per_24_healthy_hours": scored.false_alarms_per_day,
                "precision": scored.precision, "recall": scored.recall,
            })
    return rows


# --- 5. real data -----------------------------------------------------------------------------


#: What the NAB backtests compare: the served model, the LSTM of the same run (trained from scratch on the
#: series), the baselines, SARIMAX, and two zero-shot models: the shipped base model (resampled to its minutes:
#: :class:`evaluation.forecasters.BaseZeroShotMethod`) and Fracast-0.
NAB_METHODS = ("served", "lstm", "ets_model", "seasonal_naive", "persistence", "autoets", "sarimax", "base_zero_shot",
               "fracast")
#: The share of each NAB series the champion run is trained on; the rest is backtested.
NAB_TRAIN_SHARE = 0.7


def run_nab(settings: Settings, config: EvaluationConfig) -> list[tuple[str, backtest.BacktestResult]]:
    """Each NAB file imported into its own database (``pycemaker import-csv``'s code), a champion run trained on its
    first 70% (``pycemaker train --once --end T``, the service configured with that one stream), then every
    method backtested from T on: the ``served`` column is whatever the run promoted."""
    from telemetry import store
    from telemetry.catalogue import STREAMS_BY_COLLECTION
    from telemetry.embedded import open_server
    from telemetry.importer import import_csv

    methods = tuple(m for m in NAB_METHODS if m in config.methods or m in ("served", "lstm", "ets_model"))
    out = []
    with tempfile.TemporaryDirectory(prefix="pycemaker-eval-nab-") as tmp:
        server = open_server(Path(tmp) / "db", port=0)
        try:
            for name, spec in NAB_FILES.items():
                short = name.removesuffix(".csv")
                stream = STREAMS_BY_COLLECTION[spec.stream].name
                db_settings = dataclasses.replace(settings, mongo_uri=server.uri, database="nab_" + short[-6:],
                                                  models_dir=Path(tmp) / "models" / short, streams=(stream,))
                db = store.connect(db_settings, autostart=False)
                import_csv(db, config.nab_dir / name, spec.stream, db_settings, scale=spec.scale)
                (series,) = series_mod.from_store(db, db_settings)
                db.client.close()
                series.name = short
                index = series.frame.index
                split = int(NAB_TRAIN_SHARE * len(index))
                train_end = index[split].to_pydatetime()
                days = (train_end - index[0].to_pydatetime()).total_seconds() / 86400
                _train_subprocess(db_settings, ["--end", train_end.isoformat(), "--days", f"{days:.4f}"])
                built = forecasters.build_methods(methods, db_settings)
                out.append((short, backtest.run_backtest(series, built, origins=config.nab_origins, warmup=split,
                                                         horizon_minutes=max(config.horizons), progress=config.progress,
                                                         workers=config.workers)))
        finally:
            server.stop()
    return out


def _train_subprocess(settings: Settings, args: list[str]) -> None:
    """``pycemaker train --once`` in its own process (this one never imports torch), on ``settings``' database and registry."""
    cmd = [sys.executable, "-m", "pycemaker", "train", "--once", "--no-progress", *args]
    env = dict(os.environ, MONGO_URI=settings.mongo_uri, PYCEMAKER_DATABASE=settings.database,
               PYCEMAKER_MODELS_DIR=str(Path(settings.models_dir).resolve()), PYCEMAKER_STREAMS=",".join(settings.streams),
               PYTHONPATH=str(REPO))
    log.info("training %s: %s", settings.database, " ".join(cmd[3:]))
    proc = subprocess.run(cmd, cwd=REPO, env=env)
    if proc.returncode not in (0, 4):
        raise RuntimeError(f"`pycemaker train --once` exited with {proc.returncode}")


# --- 6. the quality bars and the report ----------------------------------------------------------


def run(settings: Settings, config: EvaluationConfig) -> dict[str, Any]:
    """Steps 1-6 (see the module doc); returns the JSON payload written."""
    began = time.perf_counter()
    timings: dict[str, float] = {}
    t = time.perf_counter()
    wants_registry = bool(set(config.methods) & set(forecasters.KIND_COLUMNS.values()))
    version, model_info = ensure_model(settings, config) if wants_registry else (None, {})
    timings["model"] = time.perf_counter() - t
    t = time.perf_counter()
    held, ttf_results = run_heldout(settings, config, version)
    timings["heldout"] = time.perf_counter() - t
    t = time.perf_counter()
    ablation = run_ablation(held, ttf_results, settings, version)
    timings["ablation"] = time.perf_counter() - t
    t = time.perf_counter()
    nab = run_nab(settings, config)
    timings["nab"] = time.perf_counter() - t
    served = served_column(settings, version) or "lstm"
    bars = quality_bars(held, ttf_results, nab, served)
    card = registry.read_card(settings.models_dir, version) if version else None
    payload = {
        "generated_at": dt.datetime.now(UTC).isoformat(timespec="seconds"),
        "model": {"version": version, **model_info, "kind": card.kind if card else None, "served_column": served,
                  "selection": card.selection if card else None, "status": card.status if card else None,
                  "reason": card.reason if card else None,
                  "card_metrics": card.metrics if card else None, "card_training": card.training if card else None,
                  "data_range": card.data_range if card else None},
        "heldout": {**report.backtest_payload(held, config.horizons), "seed": config.heldout_seed,
                    "incidents": held.series.incidents},
        "ttf": [r.to_dict() for r in ttf_results],
        "ablation": ablation,
        "nab": [{"name": name, **report.backtest_payload(res, config.horizons)} for name, res in nab],
        "quality_bars": bars,
        "seconds": {k: round(v, 1) for k, v in timings.items()} | {"total": round(time.perf_counter() - began, 1)},
    }
    images = write_plots(held, ttf_results, nab, config)
    report.write_json(config.json_path, payload)
    write_markdown(config, payload, held, ttf_results, nab, bars, images)
    return payload


def write_plots(held, ttf_results, nab, config: EvaluationConfig) -> dict[str, Path]:
    img = config.img_dir
    images = {
        "forecast_health": report.plot_forecasts(held, "health", img / "evaluation-forecast-health.png"),
        "error_health": report.plot_error_by_horizon(held, "health", img / "evaluation-error-by-horizon-health.png"),
        "error_cpu": report.plot_error_by_horizon(held, "cpu", img / "evaluation-error-by-horizon-cpu.png"),
    }
    incident = showcase_incident(ttf_results)
    if incident is not None:
        images["warnings"] = report.plot_warnings(held.series, ttf_results, incident, img / "evaluation-warnings.png")
    for name, res in nab[:1]:
        images["nab_forecast"] = report.plot_forecasts(res, res.series.channels[0], img / "evaluation-nab-forecast.png")
    for name, res in nab:
        images[f"nab_error_{name}"] = report.plot_error_by_horizon(res, res.series.channels[0], img / f"evaluation-nab-error-{name}.png")
    return images


def showcase_incident(ttf_results: Sequence[ttf.TtfResult]) -> dict | None:
    """A memory leak that starts a new failure (the clearest picture of a warning), else any new-failure incident."""
    if not ttf_results:
        return None
    scored = [i for i in ttf_results[0].incidents if i.kind == "new failure"]
    scored.sort(key=lambda i: (i.type != "memory_leak", not i.predictable))
    if not scored:
        return None
    pick = scored[0]
    return {"type": pick.type, "start": pick.start, "failure_time": pick.failure_time}


def write_markdown(config, payload, held, ttf_results, nab, bars, images) -> Path:
    text = render(config, payload, held, ttf_results, nab, bars, images)
    config.docs_path.parent.mkdir(parents=True, exist_ok=True)
    config.docs_path.write_text(text)
    return config.docs_path


__all__ = ["EvaluationConfig", "HELDOUT_SEED", "ensure_model", "train_model", "heldout_series",
           "run_heldout", "run_ablation", "run_nab", "run"]
