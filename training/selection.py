"""Champion and challengers: which model of a run serves, judged on the held-back windows.

Every training run fits every candidate kind (the baselines of :mod:`forecasting.linear`, the
pretrained base model zero-shot, blended with ETS and fine-tuned, and the LSTM) on the same data, and scores them all, and the current model (the champion), on the same
held-back test windows and the same minutes (:func:`score`):

- **accuracy**: the median's health MAE over the first ``gate_horizon_minutes`` (G) of each window (its RMSE is
  reported beside it). MAE, not RMSE: the goals are set in MASE, an absolute error; and on a held-back block of a few
  hours RMSE is led by a handful of large misses around one incident (which the warnings judge in their own right),
  so it picks among close candidates by noise (docs/model.md, "MAE, not RMSE", measures the two on unseen apps);
- **band**: the share of observed health inside the P10-P90 band over G (nominal 80%);
- **warnings** (:mod:`forecasting.warnings`, the product's alert rule, from every minute of the block):
  failure episodes warned at least ``min_lead_minutes`` ahead, and false alarms.

**Gates** (:func:`gate_failures`): a candidate is eligible when its ONNX graph matches its reference
(parity), it was scored on held-back windows, its band's coverage is within ``gate_coverage`` (widened by the
coverage's sampling noise on the block, :func:`coverage_noise`), and,
for a learned model (the LSTM, the fine-tuned base model) and the base model zero-shot, alone or blended, its MAE is at
most ``gate_naive_ratio`` x the run's seasonal naive's: a model that is not better than repeating the last season does not serve. A band outside
the range still passes when the champion's is no better calibrated on the same windows (a
miscalibrated champion must not lock out every successor).

**Who wins** (:func:`choose`): candidate A *beats* B when its MAE is lower (by more than float
noise) **and** its warnings are no worse: no fewer episodes warned ahead and no more false alarms
(on the same windows, so the same healthy hours) by more than one event, the noise of a held-back
block's small counts. Accuracy alone never wins. Where health carries no information on the block (the
MAEs tie: e.g. one imported stream whose health never changes), the **stream error** decides in its
place: the mean over the streams of the median's MAE scaled by the stream's mean one-step change
(:func:`stream_errors`, a MASE against persistence's in-sample error). The run's best
challenger is the eligible candidate that no other eligible one beats, with the lowest MAE; it is
promoted if it beats the champion (or there is none). A refused or failed run leaves the champion.

**Never serve nothing**: on an empty registry the best candidate is promoted even when no candidate
passes every gate (the reason says which failed), so a service with data always has a model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd

from forecasting import metrics
from forecasting.contract import median_index
from forecasting.warnings import TtfConfig
from forecasting.warnings import score as score_warnings
from telemetry.settings import Settings

#: Lower by more than this counts as better: the same model scored from torch and from onnxruntime
#: differs by float noise (~1e-7).
ERROR_MARGIN = 1e-6
#: Kinds fitted by gradient descent on the service's windows (they need the LSTM's split of the history).
LEARNED_KINDS = frozenset({"finetuned", "lstm"})
#: Held to the seasonal-naive gate: the learned kinds and the base model zero-shot, alone or blended; baselines are the reference.
NAIVE_GATED_KINDS = LEARNED_KINDS | {"base", "blend"}
#: Ties (and runs with nothing to score) go to the simplest kind.
PREFERENCE = ("seasonal_naive", "ets", "base", "blend", "finetuned", "lstm")


@dataclass(frozen=True)
class Scores:
    """One model on one block of windows: accuracy, band and warnings over the first ``horizon_minutes``."""

    windows: int
    horizon_minutes: int
    health_rmse: float
    coverage: float
    #: Failure episodes whose lead time could be scored, those warned ``min_lead`` ahead, and false alarms.
    episodes: int = 0
    warned: int = 0
    false_alarms: int = 0
    healthy_hours: float = 0.0
    #: False: scored on the windows it was fitted on (no held-back block in a short history).
    held_back: bool = True
    #: The streams' scaled error (:func:`stream_errors`): what decides where the health MAEs tie.
    stream_error: float = float("nan")
    #: How many disjoint ``horizon_minutes`` spans the windows cover: the coverage's sample size (:func:`coverage_noise`;
    #: 0: not measured, the range is not widened).
    coverage_spans: float = 0.0
    #: The median's health MAE on the same points as ``health_rmse``: what the accuracy is judged on (module doc).
    health_mae: float = float("nan")

    @property
    def false_alarms_per_day(self) -> float:
        return self.false_alarms / (self.healthy_hours / 24.0) if self.healthy_hours > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "false_alarms_per_24_healthy_hours": self.false_alarms_per_day}


@dataclass
class Entry:
    """A candidate (or the champion) with its scores, and what the run decided about it."""

    kind: str
    version: str
    scores: Scores
    parity_ok: bool = True
    champion: bool = False
    gate_failures: list[str] = field(default_factory=list)
    verdict: str = ""
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": self.version, "champion": self.champion, "scores": self.scores.to_dict(),
                "eligible": not self.gate_failures, "gate_failures": self.gate_failures, "verdict": self.verdict, "why": self.why}


def score(
    health: np.ndarray,
    actual_health: np.ndarray,
    times: pd.DatetimeIndex,
    frame_health: np.ndarray,
    origins: np.ndarray,
    mask: np.ndarray,
    quantiles: Sequence[float],
    settings: Settings,
    *,
    held_back: bool = True,
    step_minutes: int = 1,
) -> Scores:
    """Scores of health quantiles ``health`` [N, H, Q] against ``actual_health`` [N, H] on ``mask`` [N, G].

    The warnings come from every origin's median path; ``times`` and ``frame_health`` are the whole
    frame's minutes (the origins are row positions in it).
    """
    g = mask.shape[1]
    mid = median_index(quantiles)
    band, actual = health[:, :g], actual_health[:, :g]
    median = band[:, :, mid]
    rmse, mae = metrics.rmse(median, actual, mask), metrics.mae(median, actual, mask)
    coverage = metrics.coverage(band[:, :, 0], band[:, :, -1], actual, mask)
    spans = (int(np.max(origins)) - int(np.min(origins)) + g) / g if len(origins) else 0.0
    out = Scores(len(origins), g * step_minutes, rmse, coverage, held_back=held_back, coverage_spans=spans, health_mae=mae)
    if len(origins) < 2:
        return out
    config = TtfConfig(**{**asdict(TtfConfig.from_settings(settings, step_minutes)), "horizon_minutes": health.shape[1]})
    result = score_warnings("candidate", times, frame_health, [], origins, health[:, :, mid], config)
    episodes = result.episodes["scheduled"]
    return Scores(len(origins), g * step_minutes, rmse, coverage, episodes["scored"], episodes["warned"], result.false_alarms,
                  result.healthy_hours, held_back, coverage_spans=spans, health_mae=mae)


def stream_errors(medians: dict[str, np.ndarray], actual: np.ndarray, history: np.ndarray) -> dict[str, float]:
    """Each model's stream error: the mean over streams of its median's MAE [N, G, S] against ``actual`` [N, G, S],
    each scaled by the stream's mean absolute one-step change over ``history`` [time, S]; all models on the same points.
    Streams with no observed point or no change are left out (NaN when none is left)."""
    steps = np.abs(np.diff(history, axis=0))
    counts = np.isfinite(steps).sum(axis=0)
    scale = np.where(counts > 0, np.nansum(steps, axis=0) / np.maximum(counts, 1), np.nan)
    mask = metrics.common_mask(actual, *medians.values())
    usable = [s for s in range(actual.shape[2]) if np.isfinite(scale[s]) and scale[s] > 0 and mask[:, :, s].any()]
    out = {}
    for key, median in medians.items():
        errors = [metrics.mae(median[:, :, s], actual[:, :, s], mask[:, :, s]) / scale[s] for s in usable]
        out[key] = float(np.mean(errors)) if errors else float("nan")
    return out


def gate_failures(entry: Entry, naive_mae: float | None, settings: Settings, champion: Entry | None = None) -> list[str]:
    """Why a candidate may not serve (empty: it passes every gate). See the module doc."""
    s = entry.scores
    out = []
    if not entry.parity_ok:
        out.append("its ONNX graph does not match its reference (parity)")
    if not s.held_back:
        out.append("no held-back windows yet (a short history): scored on the data it was fitted on")
    if not math.isfinite(s.health_mae):
        out.append("no observed health minute to score it on")
        return out
    low, high = settings.gate_coverage
    noise = coverage_noise(s, settings)
    if (not (math.isfinite(s.coverage) and low - noise <= s.coverage <= high + noise)
            and not _calibrated_as_well(s, champion, settings)):
        within = f" (+-{noise:.0%}, the noise of {s.coverage_spans:.0f} spans of {s.horizon_minutes} min)" if noise else ""
        out.append(f"P10-P90 coverage {s.coverage:.1%} is outside {low:.0%}-{high:.0%}{within}")
    if entry.kind in NAIVE_GATED_KINDS and naive_mae is not None and math.isfinite(naive_mae) and naive_mae > 0:
        ratio = s.health_mae / naive_mae
        if ratio > settings.gate_naive_ratio:
            out.append(f"{s.horizon_minutes}-min health MAE {s.health_mae:.4f} is {ratio:.2f} x seasonal naive's "
                       f"{naive_mae:.4f} (at most {settings.gate_naive_ratio:.2f})")
    return out


def coverage_noise(s: Scores, settings: Settings) -> float:
    """The standard error of a band's coverage measured on ``s``'s windows, by which the gate's range is widened.

    Windows a minute apart share all but one of their target minutes, and a band's misses come in runs, so the
    windows are worth about one independent draw per disjoint ``horizon_minutes`` span they cover (a held-back block
    of 7 hours: 7), not one per window: the binomial error at the range's middle over that many draws. The 25-hour
    block of a week's history then tolerates about +-8 points, the 7-hour one of a day's +-15."""
    if not s.coverage_spans > 0:
        return 0.0
    middle = sum(settings.gate_coverage) / 2
    return math.sqrt(middle * (1 - middle) / s.coverage_spans)


def _calibrated_as_well(s: Scores, champion: Entry | None, settings: Settings) -> bool:
    """A band outside the range passes when the champion's, on the same windows, is no closer to the middle of it:
    a miscalibrated champion must not lock out a better model."""
    if champion is None or not math.isfinite(champion.scores.coverage) or not math.isfinite(s.coverage):
        return False
    middle = sum(settings.gate_coverage) / 2
    return abs(s.coverage - middle) <= abs(champion.scores.coverage - middle)


#: Warning counts on one held-back block are small (a handful of episodes, a day of windows): one event
#: either way is within their noise, two are not.
WARNING_TOLERANCE = 1


def warnings_not_worse(a: Scores, b: Scores) -> bool:
    """No fewer failure episodes warned ahead and no more false alarms than ``b``, on the same windows, by more than
    :data:`WARNING_TOLERANCE` event."""
    return a.warned >= b.warned - WARNING_TOLERANCE and a.false_alarms <= b.false_alarms + WARNING_TOLERANCE


def _health_tied(a: Scores, b: Scores) -> bool:
    """Health says nothing between them (its MAEs within float noise) while their streams were scored."""
    return (abs(a.health_mae - b.health_mae) <= ERROR_MARGIN and math.isfinite(a.stream_error)
            and math.isfinite(b.stream_error))


def beats(a: Entry, b: Entry) -> bool:
    """Lower MAE (the stream error where health ties) and warnings no worse (module doc); a model with nothing scored
    beats nothing."""
    sa, sb = a.scores, b.scores
    if not math.isfinite(sa.health_mae):
        return False
    if not math.isfinite(sb.health_mae):
        return True
    if _health_tied(sa, sb):
        return sa.stream_error < sb.stream_error * (1 - ERROR_MARGIN) and warnings_not_worse(sa, sb)
    return sa.health_mae < sb.health_mae - ERROR_MARGIN and warnings_not_worse(sa, sb)


def _best(entries: Sequence[Entry]) -> Entry:
    """The lowest MAE; within float noise of it, the lowest stream error, then (or with nothing scored) the simplest kind."""
    def kind_order(entry: Entry) -> int:
        return PREFERENCE.index(entry.kind) if entry.kind in PREFERENCE else len(PREFERENCE)

    finite = [e.scores.health_mae for e in entries if math.isfinite(e.scores.health_mae)]
    if not finite:
        return min(entries, key=kind_order)
    lowest = min(finite)
    def stream_order(entry: Entry) -> float:
        return entry.scores.stream_error if math.isfinite(entry.scores.stream_error) else math.inf

    return min((e for e in entries if e.scores.health_mae <= lowest + ERROR_MARGIN), key=lambda e: (stream_order(e), kind_order(e)))


@dataclass
class Selection:
    """The run's decision: the winner (None: the champion stays) and every entry with its verdict."""

    winner: Entry | None
    entries: list[Entry]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"winner": self.winner.version if self.winner else None, "reason": self.reason,
                "candidates": [e.to_dict() for e in self.entries]}


def best_challenger(candidates: Sequence[Entry]) -> Entry | None:
    """The eligible candidate no other eligible one beats, lowest MAE first (None: none is eligible)."""
    eligible = [c for c in candidates if not c.gate_failures]
    unbeaten = [c for c in eligible if not any(beats(o, c) for o in eligible if o is not c)]
    return _best(unbeaten) if unbeaten else None


def choose(candidates: list[Entry], champion: Entry | None, settings: Settings, naive_mae: float | None) -> Selection:
    """Judge the run's candidates against each other and the champion (module doc); sets each entry's verdict."""
    for entry in candidates:
        entry.gate_failures = gate_failures(entry, naive_mae, settings, champion if champion is not entry else None)
    best = best_challenger(candidates)
    entries = ([champion] if champion is not None and champion not in candidates else []) + candidates
    if best is None:
        if champion is None:
            usable = [c for c in candidates if c.parity_ok]
            if not usable:
                return _verdicts(Selection(None, entries, "no candidate could be exported faithfully: nothing to serve"))
            best = _best(usable)
            reason = (f"{best.kind} promoted so that the service has a model: the registry was empty and no candidate "
                      f"passed every gate ({'; '.join(best.gate_failures)})")
            return _verdicts(Selection(best, entries, reason))
        return _verdicts(Selection(None, entries, f"no candidate passed every gate; the champion {champion.version} stays"))
    if champion is None:
        return _verdicts(Selection(best, entries, f"{best.kind} is the best of this run and the registry was empty"))
    if champion.version == best.version:
        return _verdicts(Selection(None, entries, f"the champion ({champion.kind}) is this run's best; it stays"))
    if beats(best, champion):
        return _verdicts(Selection(best, entries, f"{best.kind} beats the champion {champion.kind} {champion.version}: "
                                                  f"{_compare(best.scores, champion.scores)}"))
    return _verdicts(Selection(None, entries, f"the best challenger, {best.kind}, does not beat the champion {champion.kind} "
                                              f"{champion.version}: {_compare(best.scores, champion.scores)}"))


def _compare(a: Scores, b: Scores) -> str:
    streams = f" (tied: stream error {a.stream_error:.3f} vs {b.stream_error:.3f})" if _health_tied(a, b) else ""
    return (f"{a.horizon_minutes}-min health MAE {a.health_mae:.4f} vs {b.health_mae:.4f} (RMSE {a.health_rmse:.4f} vs "
            f"{b.health_rmse:.4f}){streams}, episodes warned "
            f"{a.warned} vs {b.warned}, false alarms {a.false_alarms} vs {b.false_alarms}")


def _verdicts(selection: Selection) -> Selection:
    """Each entry's verdict (won, lost, kept, ...) and a sentence saying why."""
    winner = selection.winner
    for entry in selection.entries:
        if winner is not None and entry is winner:
            entry.verdict, entry.why = "promoted", selection.reason
        elif entry.champion:
            entry.verdict = "replaced" if winner is not None else "kept"
            entry.why = selection.reason
        elif entry.gate_failures:
            entry.verdict, entry.why = "refused", "; ".join(entry.gate_failures)
        else:
            better = [o for o in selection.entries if o is not entry and beats(o, entry)]
            entry.verdict = "lost"
            entry.why = (f"beaten by {better[0].kind} ({_compare(better[0].scores, entry.scores)})" if better
                         else f"{selection.reason}")
    return selection


__all__ = ["Scores", "Entry", "Selection", "score", "gate_failures", "coverage_noise", "beats", "warnings_not_worse", "best_challenger", "choose"]
