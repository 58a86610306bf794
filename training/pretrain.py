"""Pretraining: one LSTM for many apps, trained on sampled members of the app family (``pycemaker pretrain``).

1. Simulate ``apps`` profiles of :mod:`telemetry.app_family` (never a held-out seed or the held-out
   corner), ``days`` each, and frame each with its own settings (streams, cadence, health rule).
2. One scaling for all (log1p for the heavy-tailed channels, fitted on the training apps); inside the
   network every window is standardised by itself (:mod:`training.base_network`); missing streams are
   masked as in any run.
3. Fit with Lightning (``accelerator="auto"``: bf16 on a GPU, float32 on CPU; training/fit.py), keep
   the best epoch on ``validation_apps`` other apps; ``members`` times, from other seeds, and average
   them (:class:`training.base_network.BaseEnsemble`), or combine members pretrained before (``combine``:
   base models of the same recipe, pretrained apart, e.g. two at a time on two cores); calibrate the
   health band on the validation apps, and score it zero-shot on held-out apps against seasonal naive.
4. Write ``models/base/<version>/``: ``model.onnx`` + ``card.json`` (the registry's format, so
   serving can run it as any version) and ``weights.pt`` (the state dict fine-tuning starts from),
   and the run's figures to ``bench/results/pretrain.json`` (one entry per device kind).

:func:`load_base` finds the newest base model; every training run scores it zero-shot and fine-tuned
(``training/candidates.py``: the kinds ``base`` and ``finetuned``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, TensorDataset

from forecasting import calibration, registry
from forecasting.contract import FEATURES, HEALTH, TARGETS
from forecasting.forecaster import to_original
from forecasting.windows import Scaling, feature_matrix, target_values, window_origins, windows
from telemetry import simulator
from telemetry.app_family import AppProfile, app_settings, held_out_profiles, pretraining_profiles
from telemetry.frames import cadence_for, minute_frame
from telemetry.settings import Settings
from training import scoring
from training.base_network import BaseEnsemble, BaseLSTM
from training.datamodule import ForecastDataModule
from training.fit import FitConfig, device_name, fit, validation_scores
from training.provenance import git_commit, package_versions

log = logging.getLogger(__name__)
UTC = dt.timezone.utc
BASE_DIR = "base"
WEIGHTS = "weights.pt"
#: The simulated histories start on a Monday; each app is shifted by a few hours more than the last.
FIRST_DAY = dt.datetime(2026, 4, 6, tzinfo=UTC)


@dataclass(frozen=True)
class PretrainConfig:
    """What the base model is trained on (recorded in its card)."""

    #: Family members trained on, and the others that choose the epoch and calibrate the band.
    apps: int = 256
    validation_apps: int = 4
    #: Unseen members (held-out seeds and corner) it is scored on, zero-shot.
    held_out_apps: int = 8
    days: float = 2.0
    first_seed: int = 0
    #: Minutes between two window origins of one app.
    stride: int = 10
    #: Simulation run seed (which run of each app).
    run_seed: int = 1
    #: The floor of a window's spread in the base network's per-window scaling (training/base_network.py).
    min_scale: float = 0.5
    #: Networks pretrained apart (seeds ``FitConfig.seed``, +1, ...) and averaged (``BaseEnsemble``); 1: one network.
    members: int = 4

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class AppFrame:
    profile: AppProfile
    settings: Settings
    frame: pd.DataFrame


@dataclass(frozen=True)
class BaseModel:
    """A base model in ``models/base/<version>/``."""

    directory: Path
    card: registry.ModelCard

    @property
    def onnx_path(self) -> Path:
        return self.directory / registry.MODEL

    @property
    def weights_path(self) -> Path:
        return self.directory / WEIGHTS

    @property
    def network_class(self) -> type[BaseLSTM] | type[BaseEnsemble]:
        """The torch class of its network: an ensemble's card names :class:`BaseEnsemble`."""
        return BaseEnsemble if self.card.training.get("network_class", "").endswith(".BaseEnsemble") else BaseLSTM

    def network_factory(self) -> partial:
        """Its class with the hyperparameters only that class takes bound, as ``fit(network=...)`` takes it (fine-tuning:
        fit passes the others, from its config)."""
        net = self.card.training["network"]
        return partial(self.network_class, **{k: net[k] for k in ("min_scale", "members") if k in net})

    def network(self) -> BaseLSTM | BaseEnsemble:
        """The torch network with its pretrained weights (evaluation mode, CPU), for fine-tuning or checks."""
        model = self.network_class(**self.card.training["network"])
        model.load_state_dict(torch.load(self.weights_path, map_location="cpu", weights_only=True))
        return model.eval()


def load_base(models_root: Path) -> BaseModel | None:
    """The base model in ``models_root/base``: the one ``current`` names, else the newest; None if there is none."""
    return load_base_dir(Path(models_root) / BASE_DIR)


def load_base_dir(base: Path) -> BaseModel | None:
    """The base model in ``base`` (``Settings.base_models_dir``): its current one, else the newest; None if none."""
    version = registry.current_or_newest(Path(base))
    if version is None:
        return None
    card = registry.read_card(Path(base), version)
    model = BaseModel(Path(base) / version, card)
    for path in (model.onnx_path, model.weights_path):
        if not path.is_file():
            raise registry.RegistryError(f"base model {version} has no {path.name}")
    return model


def app_frame(profile: AppProfile, days: float, settings: Settings, run_seed: int) -> AppFrame:
    """``days`` of ``profile``'s app, framed per minute with the app's own settings and cadence."""
    service = app_settings(settings, profile)
    seed = profile.seed if profile.seed is not None else 0
    start = FIRST_DAY + dt.timedelta(hours=(seed * 13) % 168)
    end = start + dt.timedelta(days=days)
    sim = simulator.simulate(start, end, seed=run_seed * 100_003 + seed, settings=settings, profile=profile)
    return AppFrame(profile, service, minute_frame(sim.samples, start, end, service, cadence_for(None, service)))


def app_windows(
    frame: pd.DataFrame, scaling: Scaling, input_minutes: int, horizon_minutes: int, stride: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inputs [N, L, F], scaled targets [N, H, T] and origins of one app's windows, ``stride`` minutes apart."""
    origins = window_origins(len(frame), input_minutes, horizon_minutes, stride)
    x, y = windows(feature_matrix(frame, scaling), scaling.transform(target_values(frame)), origins, input_minutes, horizon_minutes)
    return x, y, origins


class FamilyWindows(ForecastDataModule):
    """Windows of many apps, held in memory: training ones shuffled, validation ones in order."""

    def __init__(self, train: tuple[np.ndarray, np.ndarray], validation: tuple[np.ndarray, np.ndarray],
                 batch_size: int, seed: int):
        super().__init__()
        self.train, self.validation = train, validation
        self.batch_size, self.seed = batch_size, seed
        self.input_minutes, self.horizon_minutes = train[0].shape[1], train[1].shape[1]

    def setup(self, stage: str | None = None) -> None:
        pass

    def _loader(self, part: tuple[np.ndarray, np.ndarray], shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        dataset = TensorDataset(torch.from_numpy(part[0]), torch.from_numpy(part[1]))
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, generator=generator, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.validation, False)


def _predict(model: BaseLSTM | BaseEnsemble, inputs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([model(torch.from_numpy(inputs[i : i + 512])) for i in range(0, len(inputs), 512)]).numpy()


def _band_offsets(model: BaseLSTM | BaseEnsemble, apps: list[AppFrame], scaling: Scaling, quantiles: tuple[float, ...],
                  input_minutes: int, horizon_minutes: int, stride: int) -> tuple[np.ndarray, int]:
    """Conformal offsets [H, Q] of the health band, from the validation apps' windows pooled."""
    forecasts, actuals = [], []
    for app in apps:
        x, _, origins = app_windows(app.frame, scaling, input_minutes, horizon_minutes, stride)
        original = to_original(_predict(model, x), scaling, "direct", app.settings, None)
        forecasts.append(original[:, :, HEALTH, :])
        actuals.append(scoring.horizon_actuals(target_values(app.frame), origins, horizon_minutes)[:, :, HEALTH])
    forecast, actual = np.concatenate(forecasts), np.concatenate(actuals)
    return calibration.conformal_offsets(forecast, actual, quantiles), len(forecast)


def _held_out_scores(model: BaseLSTM | BaseEnsemble, apps: list[AppFrame], scaling: Scaling, quantiles: tuple[float, ...],
                     offsets: np.ndarray, input_minutes: int, horizon_minutes: int, stride: int) -> dict[str, Any]:
    """Zero-shot health scores on apps pretraining never saw, beside seasonal naive's on the same windows."""
    rows, gate_minutes = [], None
    for app in apps:
        x, _, origins = app_windows(app.frame, scaling, input_minutes, horizon_minutes, stride)
        v = scoring.validate(_predict(model, x), target_values(app.frame), origins, scaling, quantiles, input_minutes,
                             app.settings, health_source="direct", health_offsets=offsets)
        gate = v.metrics["gate"]
        gate_minutes = gate["horizon_minutes"]
        rows.append({
            "profile": app.profile.name, "traffic": app.profile.traffic, "streams": list(app.profile.streams),
            "windows": int(len(origins)),
            "health_rmse_gate": gate["health_rmse"]["model"], "seasonal_naive_rmse_gate": gate["health_rmse"]["seasonal_naive"],
            "health_mae": v.metrics["health_mae"]["model"], "seasonal_naive_mae": v.metrics["health_mae"]["seasonal_naive"],
            "coverage_gate": gate["coverage"],
        })
    ratios = [r["health_rmse_gate"] / r["seasonal_naive_rmse_gate"] for r in rows if r["seasonal_naive_rmse_gate"]]
    return {
        "gate_minutes": gate_minutes,
        "apps": rows,
        "median_rmse_ratio_to_seasonal_naive": float(np.median(ratios)) if ratios else None,
    }


def pretrain(
    settings: Settings,
    config: PretrainConfig,
    fit_config: FitConfig,
    models_root: Path,
    results_path: Path | None = None,
    progress_bar: bool = True,
    combine: list[str] | None = None,
) -> BaseModel:
    """Pretrain, export and write the base model (see the module doc); returns it. ``combine``: versions of
    single-network base models in ``models_root/base`` pretrained before with this recipe (``config`` but
    ``members``; another seed each), averaged instead of fitting ``config.members`` networks."""
    began = time.perf_counter()
    L_, H_, quantiles = settings.input_minutes, settings.horizon_minutes, tuple(settings.quantiles)
    profiles = list(pretraining_profiles(config.apps + config.validation_apps, config.first_seed))
    apps = [app_frame(p, config.days, settings, config.run_seed) for p in profiles]
    held_out = [app_frame(p, config.days, settings, config.run_seed) for p in held_out_profiles(config.held_out_apps)]
    train_apps, validation_apps = apps[: config.apps], apps[config.apps :] or apps[-1:]
    scaling = Scaling.fit(np.concatenate([target_values(a.frame) for a in train_apps]))  # a stream none has: mean 0, spread 1

    def stack(part: list[AppFrame]) -> tuple[np.ndarray, np.ndarray]:
        cut = [app_windows(a.frame, scaling, L_, H_, config.stride)[:2] for a in part]
        return np.concatenate([c[0] for c in cut]), np.concatenate([c[1] for c in cut])

    data = FamilyWindows(stack(train_apps), stack(validation_apps), fit_config.batch_size, fit_config.seed)
    simulated = time.perf_counter()
    log.info("pretraining on %d apps (%d windows), validating on %d (%d windows); simulated in %.0f s",
             len(train_apps), len(data.train[0]), len(validation_apps), len(data.validation[0]), simulated - began)
    base = Path(models_root) / BASE_DIR
    if combine:
        members = [_member_of(base, version, config, scaling) for version in combine]
    else:
        members = [_fit_member(data, quantiles, dataclasses.replace(fit_config, seed=fit_config.seed + i), config.min_scale,
                               progress_bar) for i in range(config.members)]
    model = members[0].network if len(members) == 1 else BaseEnsemble.of([m.network for m in members])
    validation = validation_scores(model, data, dataclasses.replace(fit_config, accelerator="cpu"), "32-true")
    offsets, calibrated_on = _band_offsets(model, validation_apps, scaling, quantiles, L_, H_, config.stride)
    scores = _held_out_scores(model, held_out, scaling, quantiles, offsets, L_, H_, config.stride)
    fitted_at = time.perf_counter()
    fit_seconds = sum(m.figures["fit_seconds"] for m in members)

    base.mkdir(parents=True, exist_ok=True)
    version = registry.new_version(suffix=f"base-lstm-{secrets.token_hex(3)}")
    staging = Path(tempfile.mkdtemp(dir=base, prefix=f".{version}."))
    try:
        from training.export import export_and_verify

        report = export_and_verify(model, staging / registry.MODEL, data.validation[0][:256], H_, len(TARGETS),
                                   len(quantiles), threads=settings.onnx_threads)
        torch.save(model.state_dict(), staging / WEIGHTS)
        exported = time.perf_counter()
        first = members[0].figures
        fitted_here = 0.0 if combine else fit_seconds
        figures = {
            "device": first["device"], "precision": first["precision"], "world_size": first["world_size"],
            # fit: the members' fits (a combination's ran before, apart); total: this command's wall clock.
            "seconds": {"simulate": round(simulated - began, 1), "fit": round(fit_seconds, 1),
                        "score": round(fitted_at - simulated - fitted_here, 1),
                        "export": round(exported - fitted_at, 1), "total": round(exported - began, 1)},
            "epochs": sum(m.figures["epochs"] for m in members),
            "stopped_by": ", ".join(sorted({m.figures["stopped_by"] for m in members})),
            "loss": {"val_pinball": validation["val_loss"], "val_health_mae_scaled": validation["val_health_mae"]},
            "members": [m.figures for m in members], **({"combined": list(combine)} if combine else {}),
            "train_windows": int(len(data.train[0])), "validation_windows": int(len(data.validation[0])),
        }
        card = registry.ModelCard(
            version=version,
            created_at=dt.datetime.now(UTC).isoformat(timespec="seconds"),
            kind="lstm",
            step_minutes=1,
            tolerance_s=settings.alignment_tolerance_s,
            streams=list(settings.streams),
            input_minutes=L_,
            horizon_minutes=H_,
            quantiles=list(quantiles),
            features=list(FEATURES),
            targets=list(TARGETS),
            scaling=scaling.to_dict(),
            health_source="direct",
            data_range={"family": {"seeds": [p.seed for p in profiles[: config.apps]],
                                   "validation_seeds": [a.profile.seed for a in validation_apps], "days_each": config.days},
                        "held_out": [a.profile.name for a in held_out]},
            calibration=calibration.to_card(offsets, calibrated_on),
            metrics={"validation": {"pinball_loss": validation["val_loss"], "health_mae_scaled": validation["val_health_mae"]},
                     "held_out_zero_shot": scores},
            training={**figures, "base": True, "pretrain": config.to_dict(), "config": members[0].config,
                      "network": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dict(model.hparams).items()},
                      "network_class": f"training.base_network.{type(model).__name__}", "weights": WEIGHTS,
                      "git_commit": git_commit(), "packages": package_versions()},
            onnx=report.to_dict(),
        )
        (staging / registry.CARD).write_text(card.to_json())
        staging.chmod(0o755)
        os.replace(staging, base / version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    registry.activate(base, version, reason="pretrained base model (pycemaker pretrain)")
    log.info("base model %s: %d network(s), %d epochs in %.0f s on %s; held-out gate RMSE / seasonal naive: %s", version,
             len(members), figures["epochs"], fit_seconds, figures["device"], scores["median_rmse_ratio_to_seasonal_naive"])
    if results_path is not None:
        write_results(results_path, {"version": version, **figures, "pretrain": config.to_dict(),
                                     "fit": members[0].config, "held_out_zero_shot": scores,
                                     "onnx_bytes": report.size_bytes, "weights_bytes": (base / version / WEIGHTS).stat().st_size})
    return BaseModel(base / version, registry.read_card(base, version))


@dataclass
class Member:
    """One pretrained network of a base model, and how it was fitted (its entry in the card's ``training.members``)."""

    network: BaseLSTM
    figures: dict[str, Any]
    #: Its FitConfig, as a dict.
    config: dict[str, Any]


def _fit_member(data: FamilyWindows, quantiles: tuple[float, ...], fit_config: FitConfig, min_scale: float,
                progress_bar: bool) -> Member:
    """One network fitted from ``fit_config.seed`` (its initial weights and its order of the windows)."""
    data.seed = fit_config.seed
    fitted = fit(data, quantiles, fit_config, progress_bar=progress_bar, network=partial(BaseLSTM, min_scale=min_scale))
    return Member(fitted.model, {
        "seed": fit_config.seed, "device": fitted.device, "precision": fitted.precision, "world_size": fitted.world_size,
        "fit_seconds": round(fitted.fit_seconds, 1), "epochs": fitted.epochs, "best_epoch": fitted.best_epoch,
        "stopped_by": fitted.stopped_by, "epoch_seconds_mean": round(fitted.mean_epoch_seconds, 2),
        "loss": {"best_val_pinball": fitted.best_val_loss, "best_val_health_mae_scaled": fitted.best_val_health_mae,
                 "history": fitted.history},
    }, fit_config.to_dict())


def _member_of(base: Path, version: str, config: PretrainConfig, scaling: Scaling) -> Member:
    """The single network of base model ``version``, pretrained before on this recipe and this scaling."""
    card = registry.read_card(base, version)
    model = BaseModel(base / version, card)
    recipe = {k: v for k, v in config.to_dict().items() if k != "members"}
    theirs = {k: v for k, v in card.training.get("pretrain", {}).items() if k != "members"}
    if model.network_class is not BaseLSTM or theirs != recipe:
        raise ValueError(f"base model {version} is not one network of this recipe ({theirs} against {recipe})")
    theirs_scaling = Scaling.from_dict(card.scaling)
    if not (np.allclose(theirs_scaling.mean, scaling.mean) and np.allclose(theirs_scaling.std, scaling.std)):
        raise ValueError(f"base model {version} was scaled on other data than this recipe's")
    t = card.training
    figures = t["members"][0] if "members" in t else {  # a card from before ensembles: its one network's figures
        "seed": t["config"]["seed"], "device": t["device"], "precision": t["precision"], "world_size": t.get("world_size", 1),
        "fit_seconds": t["seconds"]["fit"], "epochs": t["epochs"], "best_epoch": t["best_epoch"],
        "stopped_by": t["stopped_by"], "epoch_seconds_mean": t["epoch_seconds_mean"], "loss": t["loss"],
    }
    return Member(model.network(), {"version": version, **figures}, t["config"])


def write_results(path: Path, run: dict[str, Any]) -> None:
    """Record ``run`` under its device kind (``cpu`` or ``cuda``) in ``path``, keeping the other kind's entry."""
    path = Path(path)
    try:
        results = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        results = {}
    runs = results.get("runs", {})
    runs["cuda" if run["device"].startswith("cuda") else "cpu"] = {
        **run, "measured_at": dt.datetime.now(UTC).isoformat(timespec="seconds"),
    }
    results = {"what": "pycemaker pretrain: the base LSTM on sampled app-family members, per device kind", "runs": runs}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(registry.json_safe(results), indent=2) + "\n")


__all__ = ["BaseModel", "Member", "PretrainConfig", "app_frame", "device_name", "load_base", "load_base_dir", "pretrain", "write_results"]
