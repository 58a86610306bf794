"""One training run, end to end: every candidate kind on the same data, the best one serves.

store (the last N days) -> per-minute frame -> the plan and shared inputs (training/candidates.py)
-> the baselines (seconds) -> on an empty registry, the best of them is promoted at once, so a new
service has a model while the LSTM trains -> the LSTM (when the history is long enough) -> every
candidate and the champion scored on the same held-back windows, champion/challenger
(training/selection.py) -> every candidate into the registry, the winner activated, the others
marked with why they lost -> prune -> a ``training_runs`` record.

Safety: a version directory appears whole (:func:`forecasting.registry.add_version`), and ``current``
moves only by :func:`forecasting.registry.activate` (write, then rename), so a run that fails or is
killed at any point leaves the current model untouched; a refused run never removes it. One training
at a time per registry: a lock file in ``models_dir`` (``flock``) is held for the whole run, by
``train --once`` and by the scheduler alike.

Distributed (DDP, docs/scaling.md): every process reads the same minutes and trains; only
global rank zero takes the lock, records the run, exports, judges and writes the registry.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from forecasting import linear, metrics, registry, training_runs
from forecasting.contract import HEALTH, TARGETS, median_index
from forecasting.windows import target_values
from telemetry.settings import Settings
from training import scoring, selection
from training.candidates import (Candidate, CandidateSkipped, RunData, RunStopped, build_base, build_baseline, build_blend,
                                 build_finetuned, build_lstm, lstm_windows, run_data)
from training.data import connect_store, load_fleet_frames, load_training_frame, only_the_default, plan_run, training_services
from training.datamodule import NotEnoughData
from training.distributed import DATA_END_ENV, DistributedSetupError, launched_from_outside, pin_data_end, pinned_data_end, process_is_rank_zero
from training.export import ExportError
from training.fit import FitConfig, fit
from training.lock import TrainingBusy, TrainingLock

log = logging.getLogger(__name__)
#: The targets other than health: the stream error (:func:`training.selection.stream_errors`) is scored on them.
STREAM_TARGETS = [t for t in range(len(TARGETS)) if t != HEALTH]
#: ``RunResult.status`` of a distributed run's process other than rank zero: it trained, rank zero did the rest.
FOLLOWER = "follower"


@dataclass
class RunResult:
    run_id: str | None
    status: str
    #: The version promoted by this run, else its best candidate's.
    version: str | None = None
    promoted: bool = False
    reason: str = ""
    error: str | None = None
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)


def train_once(
    settings: Settings,
    db=None,
    *,
    days: float | None = None,
    end: dt.datetime | None = None,
    config: FitConfig | None = None,
    trigger: str = "cli",
    progress_bar: bool = True,
    stop: threading.Event | None = None,
    already_locked: bool = False,
) -> RunResult:
    """One whole run (see the module doc). Never raises for a failed run: the result says so.

    ``days``: history to train on (default ``train_days``), ending at ``end`` (default: the newest
    whole minute in the store). ``config``: the LSTM's fit (default: from the settings).
    Raises :class:`TrainingBusy` (before recording anything) when another run holds the lock, and
    :class:`DistributedSetupError` when a distributed run's processes could not share their data.
    In a distributed run (``config.distributed``), a process other than rank zero only reads and
    trains (:func:`_follow`).
    """
    if config is not None and config.distributed:
        if launched_from_outside() and pinned_data_end() is None:
            raise DistributedSetupError(
                f"a distributed run started by a launcher needs {DATA_END_ENV} (the same ISO-8601 time in every "
                "process) so that all of them train on the same minutes: see docs/scaling.md"
            )
        if not process_is_rank_zero():
            return _follow(settings, db, days, config)
    lock = None
    if not already_locked:
        lock = TrainingLock(settings.models_dir)
        if not lock.acquire():
            raise TrainingBusy(f"another training run holds {lock.path}")
    try:
        db = db if db is not None else connect_store(settings)
        abandoned = training_runs.fail_abandoned_runs(db, training_runs.registry_of(settings.models_dir))
        if abandoned:
            log.warning("marked %d abandoned run(s) as failed", abandoned)
        pinned = config is not None and config.distributed and pinned_data_end() is None and pin_data_end(db)
        try:
            return _run(settings, db, days, end, config or FitConfig.from_settings(settings), trigger, progress_bar, stop)
        finally:
            if pinned:
                os.environ.pop(DATA_END_ENV, None)
    finally:
        if lock is not None:
            lock.release()


def _follow(settings: Settings, db, days: float | None, config: FitConfig) -> RunResult:
    """A distributed run's process other than rank zero: read the same minutes and train. The lock, the run
    record, the export, the gates and the registry are rank zero's alone."""
    began = time.perf_counter()
    db = db if db is not None else connect_store(settings)
    days = settings.train_days if days is None else days
    data = _read(db, settings, days, pinned_data_end())
    fit(lstm_windows(data, settings, config), tuple(settings.quantiles), config, progress_bar=False)
    return RunResult(None, FOLLOWER, seconds=time.perf_counter() - began)


def _read(db, settings: Settings, days: float, end: dt.datetime | None) -> RunData:
    """What a run trains on: the default service's frame alone (the one-service run), or one model for the fleet:
    the primary service's frame with the other services' pooled (``train_services``; docs/model.md)."""
    services = training_services(db, settings)
    if only_the_default(services):
        return run_data(load_training_frame(db, settings, days, end=end), settings)
    fleet = load_fleet_frames(db, settings, days, services, end=end)
    log.info("training across %d service(s): %s", len(fleet), ", ".join(name for name, _ in fleet))
    return run_data(fleet[0][1], settings, tuple(name for name, _ in fleet), tuple(fleet[1:]))


def _run(settings, db, days, end, config, trigger, progress_bar, stop) -> RunResult:
    days = settings.train_days if days is None else days
    params = {"days": days, "end": end.isoformat() if end else None, "kinds": list(settings.candidate_kinds),
              "config": config.to_dict(), "input_minutes": settings.input_minutes, "horizon_minutes": settings.horizon_minutes}
    run_id = training_runs.start_run(db, trigger, params, registry=training_runs.registry_of(settings.models_dir))
    began = time.perf_counter()
    registered: list[str] = []
    log.info("training run %s (%s) started", run_id, trigger)
    try:
        data = _read(db, settings, days, end or (pinned_data_end() if config.distributed else None))
        frame = data.frame
        read_seconds = time.perf_counter() - began
        log.info("%d minutes of history: %s plan; season %s", len(frame), data.plan.name,
                 f"{data.season.minutes} min" if data.season.minutes else "none found")
        with tempfile.TemporaryDirectory(prefix="pycemaker-train-") as workdir:
            run = _Run(settings, data, Path(workdir), run_id, registered)
            outcome = run.execute(config, progress_bar, stop)
            outcome.metrics["seconds"] = {"read": round(read_seconds, 2), **outcome.metrics.get("seconds", {})}
    except BaseException as exc:  # recorded, then re-raised only for interrupts
        error = f"{type(exc).__name__}: {exc}"
        for version in registered:
            _mark_failed(settings, version, error)
        try:
            training_runs.finish_run(db, run_id, training_runs.FAILED, version=registered[-1] if registered else None, error=error)
        except Exception:  # the database may be what failed
            log.exception("could not record the failed run %s", run_id)
        if not isinstance(exc, Exception):
            raise
        expected = isinstance(exc, (NotEnoughData, RunStopped, ExportError))
        log.log(logging.WARNING if expected else logging.ERROR, "training run %s failed: %s", run_id, error,
                exc_info=not expected)
        promoted = any(registry.read_card(settings.models_dir, v).status == registry.STATUS_PROMOTED for v in _existing(settings, registered))
        return RunResult(run_id, training_runs.FAILED, version=registered[-1] if registered else None, promoted=promoted,
                         error=error, seconds=time.perf_counter() - began)

    seconds = time.perf_counter() - began
    training_runs.finish_run(db, run_id, training_runs.SUCCEEDED, version=outcome.version, promoted=outcome.promoted,
                             metrics=outcome.metrics, reason=outcome.reason)
    log.info("training run %s: %s in %.1f s (%s)", run_id, f"promoted {outcome.version}" if outcome.promoted else "nothing promoted",
             seconds, outcome.reason)
    return RunResult(run_id, training_runs.SUCCEEDED, outcome.version, outcome.promoted, outcome.reason, None, seconds,
                     outcome.metrics)


def train_frame(frame, settings: Settings, config: FitConfig, run_id: str = "in-memory") -> dict[str, Any]:
    """One run on a frame held in memory (no store, no lock, no ``training_runs`` record), into ``settings.models_dir``;
    returns its summary (``selection``-style: plan, candidates with versions and verdicts, promoted). For evaluations."""
    data = run_data(frame, settings)
    with tempfile.TemporaryDirectory(prefix="pycemaker-train-") as workdir:
        outcome = _Run(settings, data, Path(workdir), run_id, []).execute(config, False, None)
    return {**outcome.metrics, "version": outcome.version}


def _existing(settings: Settings, versions: list[str]) -> list[str]:
    return [v for v in versions if (settings.models_dir / v).is_dir()]


@dataclass
class _Outcome:
    version: str | None
    promoted: bool
    reason: str
    metrics: dict[str, Any]


class _Run:
    """The candidates of one run, their judgement and their registration (state: what is registered so far)."""

    def __init__(self, settings: Settings, data: RunData, workdir: Path, run_id: str, registered: list[str]):
        self.settings = settings
        self.data = data
        self.workdir = workdir
        self.run_id = run_id
        self.registered = registered
        self.candidates: list[Candidate] = []
        self.failed: list[dict[str, str]] = []
        self.promoted: str | None = None
        #: A fleet run's services whose held-back block the last judgement scored.
        self.scored_services: list[str] = list(data.services[:1])
        #: A fleet run's per-service choice: baselines fitted on one service that serve it, and each service's verdict.
        self.service_candidates: list[Candidate] = []
        self.service_choices: dict[str, dict[str, Any]] = {}

    def execute(self, config: FitConfig, progress_bar: bool, stop: threading.Event | None) -> _Outcome:
        kinds = self.settings.candidate_kinds
        began = time.perf_counter()
        on_the_base = {"base": build_base, "blend": build_blend}
        for kind in (k for k in kinds if k not in selection.LEARNED_KINDS):
            if kind in on_the_base:
                self._build(kind, lambda b=on_the_base[kind]: b(self.data, self.settings, self.workdir))
            else:
                self._build(kind, lambda k=kind: build_baseline(k, self.data, self.settings, self.workdir))
        _check(stop)
        champion = registry.current_version(self.settings.models_dir)
        # The LSTM needs its split of the history; fine-tuning the base model also runs on a short one (on its fit block).
        plan = self.data.plan
        learned = [k for k in kinds if k in selection.LEARNED_KINDS and (plan.lstm or (k == "finetuned" and len(plan.test)))]
        if champion is None and self.candidates and learned:
            # A new service gets a model now, not after the networks: the best baseline (or the base model) serves meanwhile.
            interim = self._judge(None)
            if interim.winner is not None:
                self._register(interim, interim_note=" (interim, while the networks train)")
                champion = self.promoted
        builders = {"finetuned": build_finetuned, "lstm": build_lstm}
        for kind in kinds:
            if kind in learned:
                self._build(kind, lambda b=builders[kind]: b(self.data, self.settings, config, self.workdir,
                                                             progress_bar=progress_bar, stop=stop))
            elif kind in selection.LEARNED_KINDS:
                needs = f"the LSTM's split needs {self._lstm_minimum()}" if kind == "lstm" else "nothing is held back to judge it"
                self.failed.append({"kind": kind, "verdict": "skipped", "error": f"{plan.rows} minutes of history; {needs}"})
        _check(stop)
        fitted = time.perf_counter()
        if not self.candidates:
            raise ExportError("no candidate could be built: " + "; ".join(f"{f['kind']}: {f['error']}" for f in self.failed))
        final = self._judge(champion)
        assignments = self._assign_services(final, champion)
        self._register(final, assignments=assignments)
        pruned = registry.prune(self.settings.models_dir, self.settings.keep_versions)
        if pruned:
            log.info("pruned %d old version(s): %s", len(pruned), ", ".join(pruned))
        best = final.winner or selection.best_challenger([e for e in final.entries if not e.champion]) or final.entries[-1]
        summary = {"plan": self.data.plan.name, "season_minutes": self.data.season.minutes, **final.to_dict(),
                   **({"services": list(self.data.services), "scored_services": self.scored_services} if self.data.services else {}),
                   **({"assignments": assignments.services, "service_choices": self.service_choices} if assignments else {}),
                   "failed": self.failed, "promoted": self.promoted,
                   "seconds": {"candidates": {c.kind: c.card.training.get("seconds") for c in self.candidates},
                               "fit_all": round(fitted - began, 2), "judge_and_register": round(time.perf_counter() - fitted, 2)}}
        return _Outcome(self.promoted or best.version, self.promoted is not None, final.reason, summary)

    def _lstm_minimum(self) -> int:
        from training.datamodule import minimum_minutes

        return minimum_minutes(self.data.steps(self.settings.input_minutes), self.data.steps(self.settings.horizon_minutes)) * self.data.step_minutes

    def _build(self, kind: str, build) -> None:
        try:
            self.candidates.append(build())
        except (RunStopped, NotEnoughData):
            raise
        except CandidateSkipped as exc:
            log.info("candidate %s skipped: %s", kind, exc)
            self.failed.append({"kind": kind, "verdict": "skipped", "error": str(exc)})
        except Exception as exc:  # one kind failing never stops the others: the service still gets a model
            log.exception("candidate %s failed", kind)
            self.failed.append({"kind": kind, "verdict": "failed", "error": f"{type(exc).__name__}: {exc}"})

    # --- judging --------------------------------------------------------------------------
    def _judge(self, champion: str | None) -> selection.Selection:
        """Score every candidate (and the champion) on the same windows, then choose (training/selection.py)."""
        settings, data = self.settings, self.data
        quantiles = tuple(settings.quantiles)
        by_version = {c.card.version: c for c in self.candidates}
        outside = champion if champion and champion not in by_version else None
        champion_card = registry.read_card(settings.models_dir, outside) if outside else None
        longest = max([c.input_steps for c in self.candidates] + ([champion_card.input_steps] if champion_card else []))
        gate = data.steps(settings.gate_horizon_minutes)
        origins = data.plan.test[data.plan.test >= longest]
        entries: list[selection.Entry] = []
        if len(origins):
            rows = {c.card.version: _rows(c.test, origins) for c in self.candidates}
            forecasts = {version: r.health() for version, r in rows.items()}
            stream_medians = {version: r.values[:, :, STREAM_TARGETS, median_index(quantiles)] for version, r in rows.items()}
            champion_entry_values = None
            if champion_card is not None:
                try:
                    values, card = scoring.registry_model_values(settings.models_dir, outside, data.frame, origins, settings)
                    champion_entry_values = (values[:, :, HEALTH, :], tuple(card.quantiles))
                    stream_medians[outside] = values[:, :, STREAM_TARGETS, median_index(card.quantiles)]
                except scoring.NotComparable as exc:
                    log.warning("the champion %s cannot be scored on this run's windows: %s", outside, exc)
            leads = min([gate] + [f.shape[1] for f in forecasts.values()]
                        + ([champion_entry_values[0].shape[1]] if champion_entry_values else []))
            actual = scoring.horizon_actuals(data.values, origins, leads)[:, :, HEALTH]
            medians = [f[:, :leads, median_index(quantiles)] for f in forecasts.values()]
            if champion_entry_values:
                medians.append(champion_entry_values[0][:, :leads, median_index(champion_entry_values[1])])
            mask = metrics.common_mask(actual, *medians)

            def scored(health, levels) -> selection.Scores:
                return selection.score(health, scoring.horizon_actuals(data.values, origins, health.shape[1])[:, :, HEALTH],
                                       data.frame.index, data.frame["health"].to_numpy(), origins, mask, levels, settings,
                                       step_minutes=data.step_minutes)

            for c in self.candidates:
                entries.append(selection.Entry(c.kind, c.card.version, scored(forecasts[c.card.version], quantiles),
                                               c.export.parity_ok, champion=c.card.version == champion))
            if champion_card is not None:
                if champion_entry_values:
                    entry_scores = scored(*champion_entry_values)
                else:
                    entry_scores = selection.Scores(0, leads, float("nan"), float("nan"))
                entries.insert(0, selection.Entry(champion_card.kind, outside, entry_scores, champion=True))
            actual_streams = scoring.horizon_actuals(data.values, origins, leads)[:, :, STREAM_TARGETS]
            errors = selection.stream_errors({v: m[:, :leads] for v, m in stream_medians.items()}, actual_streams,
                                             data.values[: origins[0], STREAM_TARGETS])
            for entry in entries:
                entry.scores = replace(entry.scores, stream_error=errors.get(entry.version, float("nan")))
            if data.pool:
                self._score_across_services(entries, outside, longest)
        else:  # no held-back block: each candidate on the windows it was fitted on
            for c in self.candidates:
                v = c.in_sample
                if v is None:
                    s = selection.Scores(0, 0, float("nan"), float("nan"), held_back=False)
                else:
                    leads = min(gate, v.actual.shape[1])
                    health = v.health()
                    actual = v.actual[:, :, HEALTH]
                    mask = metrics.common_mask(actual[:, :leads], health[:, :leads, median_index(quantiles)])
                    s = selection.score(health, actual, data.frame.index, data.frame["health"].to_numpy(), v.origins, mask,
                                        quantiles, settings, held_back=False, step_minutes=data.step_minutes)
                entries.append(selection.Entry(c.kind, c.card.version, s, c.export.parity_ok, champion=c.card.version == champion))
            if champion_card is not None:
                entries.insert(0, selection.Entry(champion_card.kind, outside, selection.Scores(0, 0, float("nan"), float("nan"),
                                                                                             held_back=False), champion=True))
        naive = next((e.scores.health_mae for e in entries if e.kind == "seasonal_naive" and e.version in by_version), None)
        candidates = [e for e in entries if not e.champion or e.version in by_version]
        champion_entry = next((e for e in entries if e.champion), None)
        return selection.choose(candidates, champion_entry, settings, naive)

    def _score_across_services(self, entries: list[selection.Entry], outside: str | None, longest: int) -> None:
        """A fleet run: every entry scored on each other service's held-back block too, through its exported
        model as serving runs it, then its scores pooled over the services (:func:`pooled_scores`)."""
        settings, data = self.settings, self.data
        staged = self.workdir / "staged"
        for c in self.candidates:
            if not (staged / c.card.version).is_dir():
                registry.add_version(staged, c.onnx_path, c.card)
        per_version = {e.version: [e.scores] for e in entries}
        self.scored_services = [data.services[0]]
        where = {e.version: settings.models_dir if e.version == outside else staged for e in entries}
        for name, frame in data.pool:
            scores = self._service_scores(name, frame, where, longest)
            if not scores:
                continue
            for version, s in scores.items():
                per_version[version].append(s)
            self.scored_services.append(name)
        for e in entries:
            e.scores = pooled_scores(per_version[e.version])

    def _service_scores(self, name: str, frame, where: dict[str, Path], longest: int) -> dict[str, selection.Scores]:
        """Each model of ``where`` (version -> the registry directory holding it) on the held-back block of ``frame``
        (the service ``name``'s), through its exported model as serving runs it, all on the same windows and minutes;
        empty when the service has no held-back block or no model could be run on it."""
        settings, data = self.settings, self.data
        try:
            plan = plan_run(len(frame), settings, data.step_minutes)
        except NotEnoughData:
            return {}
        origins = plan.test[plan.test >= longest]
        if not len(origins):
            return {}
        served: dict[str, tuple[np.ndarray, tuple[float, ...]]] = {}
        for version, models_dir in where.items():
            try:
                values, card = scoring.registry_model_values(models_dir, version, frame, origins, settings)
                served[version] = (values, tuple(card.quantiles))
            except scoring.NotComparable as exc:
                log.warning("%s cannot be scored on service %s: %s", version, name, exc)
        if not served:
            return {}
        series = target_values(frame)
        leads = min([data.steps(settings.gate_horizon_minutes)] + [v.shape[1] for v, _ in served.values()])
        actual = scoring.horizon_actuals(series, origins, leads)
        mask = metrics.common_mask(actual[:, :, HEALTH], *[v[:, :leads, HEALTH, median_index(q)] for v, q in served.values()])
        errors = selection.stream_errors({k: v[:, :leads][:, :, STREAM_TARGETS, median_index(q)] for k, (v, q) in served.items()},
                                         actual[:, :, STREAM_TARGETS], series[: origins[0], STREAM_TARGETS])
        out = {}
        for version, (values, levels) in served.items():
            health = values[:, :, HEALTH, :]
            scores = selection.score(health, scoring.horizon_actuals(series, origins, health.shape[1])[:, :, HEALTH],
                                     frame.index, frame["health"].to_numpy(), origins, mask, levels, settings,
                                     step_minutes=data.step_minutes)
            out[version] = replace(scores, stream_error=errors.get(version, float("nan")))
        return out

    # --- per service ------------------------------------------------------------------------
    def _assign_services(self, judged: selection.Selection, champion: str | None) -> registry.Assignments | None:
        """A fleet run: for each service, whether another model serves it measurably better than the fleet's model.

        On each service's held-back block, through the exported models as serving runs them, the model that will
        serve the fleet (this run's winner, else the champion that stays) is the champion, and the challengers are
        the run's other candidates, except that the baselines (fitted on the first service) are replaced by the same
        kinds fitted on that service's own history: a baseline is a per-service model. The same rules decide
        (:func:`training.selection.choose`, the service's own seasonal naive as the gate's reference); a challenger
        that wins serves that service (``services.json``: :func:`forecasting.registry.write_assignments`)."""
        settings, data = self.settings, self.data
        serving = judged.winner.version if judged.winner is not None else champion
        if serving is None or not data.pool:
            return None
        staged = self.workdir / "staged"
        for c in self.candidates:
            if not (staged / c.card.version).is_dir():
                registry.add_version(staged, c.onnx_path, c.card)
        by_version = {c.card.version: c for c in self.candidates}
        serving_card = by_version[serving].card if serving in by_version else registry.read_card(settings.models_dir, serving)
        kinds = {c.kind for c in self.candidates if c.kind in linear.KINDS}
        services: dict[str, dict[str, Any]] = {}
        self.service_choices: dict[str, dict[str, Any]] = {}
        for name, frame in ((data.services[0], data.frame), *data.pool):
            try:
                chosen = self._choose_for_service(name, frame, serving, serving_card, kinds)
            except Exception:  # one service's choice failing never stops the others': it keeps the fleet's model
                log.exception("the per-service choice for %s failed; it keeps the fleet's model", name)
                continue
            if chosen is not None:
                services[name] = chosen
        return registry.Assignments(serving, services, self.run_id, dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))

    def _choose_for_service(self, name: str, frame, serving: str, serving_card: registry.ModelCard,
                            kinds: set[str]) -> dict[str, Any] | None:
        """One service's choice (:meth:`_assign_services`): its assignment, or None when the fleet's model serves it best."""
        settings, data, staged = self.settings, self.data, self.workdir / "staged"
        in_run = {c.card.version for c in self.candidates}
        own = self._own_baselines(name, frame, kinds) if name != data.services[0] else []
        replaced = {c.kind for c in own}
        challengers = [c for c in self.candidates if c.kind not in replaced and c.card.version != serving] + own
        where = {c.card.version: staged for c in challengers}
        where[serving] = staged if serving in in_run else settings.models_dir
        longest = max([c.input_steps for c in challengers] + [serving_card.input_steps])
        scores = self._service_scores(name, frame, where, longest)
        if serving not in scores or not challengers:
            return None
        entries = [selection.Entry(c.kind, c.card.version, scores[c.card.version], c.export.parity_ok)
                   for c in challengers if c.card.version in scores]
        incumbent = selection.Entry(serving_card.kind, serving, scores[serving], champion=True)
        naive = next((e.scores.health_mae for e in entries if e.kind == linear.SEASONAL_NAIVE), None)
        picked = selection.choose(entries, incumbent, settings, naive)
        self.service_choices[name] = {"serving": picked.winner.version if picked.winner else serving,
                                      "reason": picked.reason, "candidates": [e.to_dict() for e in picked.entries]}
        if picked.winner is None:
            return None
        chosen = next(c for c in challengers if c.card.version == picked.winner.version)
        chosen.card.metrics.setdefault("service_scores", {})[name] = picked.winner.scores.to_dict()
        if chosen in own:
            chosen.card.metrics["scores"] = picked.winner.scores.to_dict()
            self.service_candidates.append(chosen)
        log.info("service %s: %s serves it (%s)", name, chosen.card.version, picked.reason)
        return {"version": chosen.card.version, "kind": chosen.kind, "reason": picked.reason}

    def _own_baselines(self, name: str, frame, kinds: set[str]) -> list[Candidate]:
        """The baseline kinds of this run fitted on one service's own history (none when it is too short)."""
        try:
            own = run_data(frame, self.settings, services=(name,))
        except NotEnoughData:
            return []
        workdir = self.workdir / "services" / name
        workdir.mkdir(parents=True, exist_ok=True)
        out = []
        for kind in sorted(kinds, key=selection.PREFERENCE.index):
            try:
                candidate = build_baseline(kind, own, self.settings, workdir, scored_by_caller=True)
            except Exception:  # the fleet's model still serves the service
                log.exception("%s for service %s failed", kind, name)
                continue
            registry.add_version(self.workdir / "staged", candidate.onnx_path, candidate.card)
            out.append(candidate)
        return out

    # --- the registry -----------------------------------------------------------------------
    def _register(self, judged: selection.Selection, interim_note: str = "", assignments: registry.Assignments | None = None) -> None:
        """Every candidate into the registry (once), then the winner activated and the rest marked with why. A fleet
        run's ``assignments`` (the baselines fitted for one service that serve it registered too) are written just
        before ``current`` moves: they name the model they were decided against, so they hold from that move on."""
        models = self.settings.models_dir
        record = {"run_id": self.run_id, "plan": self.data.plan.name, "season_minutes": self.data.season.minutes,
                  **judged.to_dict(), "failed": self.failed}
        verdicts = {e.version: e for e in judged.entries}
        for c in self.candidates:
            entry = verdicts.get(c.card.version)
            c.card.selection = record
            if entry is not None:
                c.card.metrics["scores"] = entry.scores.to_dict()
            if c.card.version in self.registered:
                registry.update_card(models, _with_status(registry.read_card(models, c.card.version), c.card))
                continue
            registry.add_version(models, c.onnx_path, c.card)
            self.registered.append(c.card.version)
        winner = judged.winner
        for c in self.candidates:
            entry = verdicts.get(c.card.version)
            # The interim winner stays promoted only while it keeps serving; replaced in the same run, it is marked so.
            if entry is None or (winner is not None and entry is winner) or (winner is None and c.card.version == self.promoted):
                continue
            registry.reject(models, c.card.version, f"{entry.verdict}: {entry.why}")
        if assignments is not None:
            for c in self.service_candidates:
                service = c.card.training["services"][0]
                c.card.selection = record
                c.card.reason = f"fitted on service {service}, and serves it: {assignments.services[service]['reason']}"
                registry.add_version(models, c.onnx_path, c.card)
                self.registered.append(c.card.version)
            registry.write_assignments(models, assignments)
        if winner is not None and winner.version != registry.current_version(models):
            registry.activate(models, winner.version, reason=judged.reason + interim_note)
            self.promoted = winner.version


def _mean(values: list[float]) -> float:
    known = [v for v in values if not np.isnan(v)]
    return float(np.mean(known)) if known else float("nan")


def pooled_scores(scores: list[selection.Scores]) -> selection.Scores:
    """One model's scores over several services' held-back blocks: windows, episodes, warnings, false alarms
    and healthy hours summed; health RMSE and MAE, coverage and stream error the mean over the services (each service
    counts once, whatever its length); the shortest horizon scored."""
    if len(scores) == 1:
        return scores[0]
    return selection.Scores(
        windows=sum(s.windows for s in scores), horizon_minutes=min(s.horizon_minutes for s in scores),
        health_rmse=_mean([s.health_rmse for s in scores]), coverage=_mean([s.coverage for s in scores]),
        episodes=sum(s.episodes for s in scores), warned=sum(s.warned for s in scores),
        false_alarms=sum(s.false_alarms for s in scores), healthy_hours=sum(s.healthy_hours for s in scores),
        held_back=all(s.held_back for s in scores), stream_error=_mean([s.stream_error for s in scores]),
        coverage_spans=sum(s.coverage_spans for s in scores), health_mae=_mean([s.health_mae for s in scores]),
    )


def _with_status(stored: registry.ModelCard, fresh: registry.ModelCard) -> registry.ModelCard:
    """The fresh card's figures and selection, the stored card's status and reason (set by activate/reject)."""
    fresh.status, fresh.reason = stored.status, stored.reason
    return fresh


def _rows(validation: scoring.Validation, origins: np.ndarray) -> scoring.Validation:
    """The rows of a validation at ``origins`` (a subset of its own), in that order."""
    index = np.searchsorted(validation.origins, origins)
    if not np.array_equal(validation.origins[np.minimum(index, len(validation.origins) - 1)], origins):
        raise ValueError("a candidate was not scored on every common origin")
    derived = validation.derived_health[index] if validation.derived_health is not None else None
    return scoring.Validation(origins, validation.values[index], validation.actual[index], validation.seasonal_naive[index],
                              validation.persistence[index], validation.quantiles, derived, validation.health_source)


def _check(stop: threading.Event | None) -> None:
    if stop is not None and stop.is_set():
        raise RunStopped("stopped before the candidates were judged")


def _mark_failed(settings: Settings, version: str, error: str) -> None:
    """A version that made it into the registry before the run failed is marked rejected (never current)."""
    try:
        card = registry.read_card(settings.models_dir, version)
        if card.status != registry.STATUS_PROMOTED:
            registry.reject(settings.models_dir, version, f"run failed: {error}")
    except registry.RegistryError:
        log.exception("could not mark version %s as rejected", version)
