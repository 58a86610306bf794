"""Warnings and time to failure: do the forecasts warn before health fails, and how well do they time it?

One rule for the product and its measurements: the training run scores every candidate with it on
the held-back windows (training/selection.py), and the evaluation on the held-out weeks
(evaluation/ttf.py); the alert PycemakerFailurePredictedSoon fires on the same condition.

Definitions (also in docs/evaluation.md):

- **failing minute**: observed health <= ``failure_threshold``; a minute with no data inside an
  incident's ``[failure_time, end]`` (the JVM crashed and restarts) is failing too.
- **failure episode**: a run of failing minutes (gaps of up to ``merge_gap_minutes`` joined);
  its **onset** is its first minute. The simulated hourly load peak fails by design
  (docs/simulator.md), so most episodes are *scheduled*; an episode holding an incident's
  ``failure_time`` is an *incident* episode.
- **forecast crossing** at a scoring minute t: the first minute of the P50 health forecast
  from origin t that is at or below the threshold (none within the horizon: no crossing).
- **warning** at t: a crossing within ``lookahead_minutes`` (30) of t in the forecasts of t
  and the ``hold_minutes - 1`` scoring minutes before it (2 in all: the product's alert,
  PycemakerFailurePredictedSoon, fires when the condition has held for a minute; both numbers
  come from settings, ``warning_minutes`` and ``warning_hold_minutes``). Minutes where the
  system is already failing (the minute before t failed) are not scored: a warning is about
  a failure to come.
- **lead time** of an episode: how long before its onset warnings had been issued without
  a break (onset minus the first minute of the last unbroken run of warnings); 0 if the
  minute before the onset was not warned.
- An incident's failure **starts a new episode** when its ``failure_time`` is within
  ``merge_gap_minutes`` of the episode's onset; otherwise it began *during* a failure already
  under way (usually the hourly peak), and no warning could precede it. An incident is
  **predictable** when its failure came at least ``min_lead_minutes`` after it started:
  a cause that fails health within minutes cannot be seen coming from the metrics.
- **crossing error** k minutes before an onset: from the forecast issued k minutes before
  the onset, the forecast failure onset (a minute at or below the threshold after one above,
  or the first minute) nearest the real one, minus k. With a failure every hour, a forecast
  60 minutes ahead of an onset usually crosses earlier for the failure in between: the
  nearest forecast onset after that failure ended is the one meant for this one. None within
  ``lookahead_minutes`` of the real onset: *missed*.
- **failure within 30 min**: at each scored minute, whether a failing minute occurs in the
  next ``lookahead_minutes`` (minutes whose window holds unobserved minutes and no failure are
  left out); precision and recall of the warnings against it.
- **false alarm**: a run of consecutive warnings followed by no failing minute from its first
  warning until ``lookahead_minutes`` after its last, all those minutes observed (a run whose
  window holds unobserved minutes, such as a collector outage, is *unverifiable*), that does
  not begin within ``settle_minutes`` after a failure ends (a forecast that the failure goes on
  for a few minutes more is its *tail*, counted apart), nor within an incident (from
  ``lookahead_minutes`` before its start to its end: a warning of a real incident, too early or
  for a failure it never caused, is counted apart as an *incident alarm*; those minutes are no
  healthy hours either, so both sides of the rate leave them out). **Healthy hours**: minutes that are
  known, not failing, not within ``settle_minutes`` after a failure, not within
  ``lookahead_minutes`` before an onset, and not within any incident (from
  ``lookahead_minutes`` before its start to its end).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from telemetry.settings import Settings


@dataclass(frozen=True)
class TtfConfig:
    threshold: float = 0.3
    lookahead_minutes: int = 30
    #: A warning stands once the crossing has been forecast from this many consecutive scoring minutes.
    hold_minutes: int = 2
    #: How far ahead a forecast crossing is searched (the model's horizon).
    horizon_minutes: int = 180
    merge_gap_minutes: int = 2
    lead_points: tuple[int, ...] = (60, 30, 10)
    #: The quality bar: a failure is "warned" when the lead time is at least this.
    min_lead_minutes: int = 10
    #: Warnings that begin this soon after a failure ends are that failure's tail, not false alarms.
    settle_minutes: int = 5
    #: Minutes per row of the series scored. The other durations above count rows (a minute each by default);
    #: :meth:`in_steps` turns a per-minute configuration into one for coarser rows.
    step_minutes: int = 1

    @classmethod
    def from_settings(cls, settings: Settings, step_minutes: int = 1) -> "TtfConfig":
        """The product's warning rule: threshold, lookahead and hold from settings (one configuration)."""
        return cls(threshold=settings.failure_threshold, lookahead_minutes=settings.warning_minutes,
                   hold_minutes=settings.warning_hold_minutes).in_steps(step_minutes)

    def in_steps(self, step_minutes: int) -> "TtfConfig":
        """The same rule on rows of ``step_minutes``: every duration in whole rows (at least one), the hold in forecasts."""
        if step_minutes == self.step_minutes:
            return self
        rows = lambda minutes: max(1, -(-minutes // step_minutes))  # noqa: E731  (ceiling)
        return TtfConfig(self.threshold, rows(self.lookahead_minutes), self.hold_minutes, rows(self.horizon_minutes),
                         rows(self.merge_gap_minutes), tuple(rows(k) for k in self.lead_points), rows(self.min_lead_minutes),
                         rows(self.settle_minutes), step_minutes)


def _minute(t: Any) -> pd.Timestamp:
    """The UTC minute holding ``t`` (a naive time is UTC)."""
    ts = pd.Timestamp(t)
    return (ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")).floor("1min")


def failing_minutes(health: np.ndarray, times: pd.DatetimeIndex, incidents: Iterable[dict], threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """``(failing, known)`` per minute (see the module doc)."""
    health = np.asarray(health, dtype=float)
    known = np.isfinite(health)
    failing = known & (health <= threshold)
    for inc in incidents:
        if inc.get("failure_time") is None:
            continue
        a = times.searchsorted(_minute(inc["failure_time"]))
        b = times.searchsorted(pd.Timestamp(inc["end"]))
        crashed = ~known[a:b]
        failing[a:b] |= crashed
        known[a:b] |= crashed
    return failing, known


def episodes(failing: np.ndarray, merge_gap: int) -> list[tuple[int, int]]:
    """``[(onset, end)]`` of failure runs (end exclusive), gaps of up to ``merge_gap`` minutes joined."""
    idx = np.flatnonzero(failing)
    if len(idx) == 0:
        return []
    breaks = np.flatnonzero(np.diff(idx) > merge_gap + 1)
    starts = np.concatenate([[idx[0]], idx[breaks + 1]])
    ends = np.concatenate([idx[breaks], [idx[-1]]]) + 1
    return list(zip(starts.tolist(), ends.tolist()))


def crossings(median_paths: np.ndarray, threshold: float) -> np.ndarray:
    """Steps ahead of the first forecast minute at or below ``threshold``, per origin (NaN: none)."""
    below = np.asarray(median_paths) <= threshold
    first = np.argmax(below, axis=1).astype(float)
    return np.where(below.any(axis=1), first, np.nan)


def held(condition: np.ndarray, origins: np.ndarray, hold: int) -> np.ndarray:
    """``condition`` at each scoring minute and at the ``hold - 1`` before it, all consecutive (one stride apart)."""
    condition = np.asarray(condition, dtype=bool)
    if hold <= 1 or len(origins) < 2:
        return condition if hold <= 1 else np.zeros_like(condition)
    stride = int(np.min(np.diff(origins)))
    out = condition.copy()
    for k in range(1, hold):
        earlier = np.zeros_like(condition)
        earlier[k:] = condition[:-k] & (origins[k:] - origins[:-k] == k * stride)
        out &= earlier
    return out


@dataclass
class IncidentScore:
    type: str
    start: str
    failure_time: str | None
    #: "new failure", "during a failure", "no failure" (a collector outage), "outside the scored range"
    kind: str
    predictable: bool
    onset: str | None = None
    lead_minutes: float | None = None
    warned: bool = False
    crossing_error: dict[str, float | None] = field(default_factory=dict)


@dataclass
class TtfResult:
    method: str
    config: TtfConfig
    scored_minutes: int
    incidents: list[IncidentScore]
    #: Per episode class ("incident", "scheduled"): counts, warned share, lead times, crossing errors.
    episodes: dict[str, dict[str, Any]]
    precision: float
    recall: float
    recall_incidents: float
    false_alarms: int
    healthy_hours: float
    #: Warning runs that begin within ``settle_minutes`` after a failure ends (not counted as false alarms).
    tail_alarms: int = 0
    #: Warning runs with no failure after them but unobserved minutes (an outage) in their window.
    unverifiable_alarms: int = 0
    #: Warning runs with no failure after them that begin within an incident (module doc; not false alarms).
    incident_alarms: int = 0
    #: Scoring minutes inside the false alarms' warning runs (1 per minute with stride 1).
    false_alarm_minutes: int = 0
    #: Each false alarm: start, length, forecast crossing, observed health before it, minutes to the next failure.
    false_alarm_details: list[dict[str, Any]] = field(default_factory=list)
    #: The scoring minutes (row positions) and the forecast crossing from each (steps ahead, NaN: none).
    origins: np.ndarray = field(default=None, repr=False)
    crossing: np.ndarray = field(default=None, repr=False)

    @property
    def warnings(self) -> np.ndarray:
        """Whether a warning stands at each of ``origins`` (the crossing within the lookahead, held)."""
        return held(self.crossing < self.config.lookahead_minutes, self.origins, self.config.hold_minutes)

    @property
    def false_alarms_per_day(self) -> float:
        return self.false_alarms / (self.healthy_hours / 24.0) if self.healthy_hours > 0 else float("nan")

    def incident_summary(self) -> dict[str, Any]:
        failing = [i for i in self.incidents if i.kind in ("new failure", "during a failure")]
        new = [i for i in failing if i.kind == "new failure"]
        predictable = [i for i in new if i.predictable]

        def share(items: list[IncidentScore]) -> float:
            return sum(i.warned for i in items) / len(items) if items else float("nan")

        return {
            "incidents": len(self.incidents),
            "with_failure": len(failing),
            "new_failure": len(new),
            "during_a_failure": len(failing) - len(new),
            "predictable_new_failure": len(predictable),
            "warned_share_new_failure": share(new),
            "warned_share_predictable": share(predictable),
            "warned_share_all_with_failure": share(failing),
            "median_lead_new_failure": _median([i.lead_minutes for i in new]),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "config": asdict(self.config),
            "scored_minutes": self.scored_minutes,
            "incident_summary": self.incident_summary(),
            "incidents": [asdict(i) for i in self.incidents],
            "episodes": self.episodes,
            "precision_failure_within_lookahead": self.precision,
            "recall_failure_within_lookahead": self.recall,
            "recall_incident_failures_within_lookahead": self.recall_incidents,
            "false_alarms": self.false_alarms,
            "healthy_hours": self.healthy_hours,
            "false_alarms_per_24_healthy_hours": self.false_alarms_per_day,
            "false_alarm_minutes": self.false_alarm_minutes,
            "false_alarm_details": self.false_alarm_details,
            "tail_alarms": self.tail_alarms,
            "unverifiable_alarms": self.unverifiable_alarms,
            "incident_alarms": self.incident_alarms,
        }


def _median(values: Sequence[float | None]) -> float:
    vals = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.median(vals)) if vals else float("nan")


@dataclass(frozen=True)
class _Scoring:
    """What every part of :func:`score` reads: the failures, the scoring minutes and the warnings at them."""

    times: pd.DatetimeIndex
    health: np.ndarray
    config: TtfConfig
    failing: np.ndarray
    known: np.ndarray
    origins: np.ndarray
    median_paths: np.ndarray
    #: Steps ahead of each origin's forecast crossing (NaN: none), the held warnings, the minutes scored.
    cross: np.ndarray
    warn: np.ndarray
    scored: np.ndarray
    stride: int
    #: Failure episodes ``(onset, end)`` and, per onset, the end of the episode before it.
    eps: list[tuple[int, int]]
    prev_end: dict[int, int]

    @property
    def first_scored(self) -> int:
        return int(self.origins.min())

    @property
    def last_scored(self) -> int:
        return int(self.origins.max())

    def in_range(self, onset: int) -> bool:
        return self.first_scored < onset <= self.last_scored


def score(
    method: str,
    times: pd.DatetimeIndex,
    health: np.ndarray,
    incidents: Sequence[dict],
    origins: np.ndarray,
    median_paths: np.ndarray,
    config: TtfConfig = TtfConfig(),
) -> TtfResult:
    """Score warnings and crossings from P50 health forecasts issued at ``origins`` (every minute of a range).

    ``origins`` are row positions in ``times`` (consecutive minutes; a stride leaves gaps, which
    break warning runs); ``median_paths[n]`` is the forecast from ``origins[n]``.
    """
    failing, known = failing_minutes(health, times, incidents, config.threshold)
    origins = np.asarray(origins, dtype=int)
    cross = crossings(median_paths, config.threshold)
    eps = episodes(failing, config.merge_gap_minutes)
    s = _Scoring(
        times=times, health=np.asarray(health, dtype=float), config=config, failing=failing, known=known, origins=origins,
        median_paths=median_paths, cross=cross, warn=held(cross < config.lookahead_minutes, origins, config.hold_minutes),
        scored=~np.concatenate([[False], failing[:-1]])[origins] & known[np.maximum(origins - 1, 0)],
        stride=int(np.min(np.diff(origins))) if len(origins) > 1 else 1,
        eps=eps, prev_end={onset: (eps[k - 1][1] if k else 0) for k, (onset, _) in enumerate(eps)},
    )
    failure_rows = {j: int(times.searchsorted(_minute(inc["failure_time"])))
                    for j, inc in enumerate(incidents) if inc.get("failure_time") is not None}
    precision, recall, recall_incidents = _lookahead_precision_recall(s, incidents)
    in_incident = _incident_minutes(s, incidents)
    alarms = _alarm_runs(s, in_incident)
    return TtfResult(
        method=method,
        config=config,
        scored_minutes=int(s.scored.sum()),
        incidents=[_incident_score(s, inc, failure_rows.get(j)) for j, inc in enumerate(incidents)],
        episodes=_episodes_by_class(s, failure_rows.values()),
        precision=precision,
        recall=recall,
        recall_incidents=recall_incidents,
        false_alarms=alarms["false"],
        healthy_hours=_healthy_hours(s, in_incident),
        tail_alarms=alarms["tail"],
        unverifiable_alarms=alarms["unverifiable"],
        incident_alarms=alarms["incident"],
        false_alarm_minutes=alarms["false_minutes"],
        false_alarm_details=alarms["details"],
        origins=origins,
        crossing=cross,
    )


def _lead_time(s: _Scoring, onset: int) -> float | None:
    """Minutes of unbroken warnings before ``onset`` (0: the minute before was not warned; None: not scored)."""
    i = int(np.searchsorted(s.origins, onset)) - 1  # the last scoring minute before the onset
    if i < 0 or onset - s.origins[i] > s.stride:
        return None
    first = None
    while i >= 0 and s.origins[i] >= s.prev_end[onset] and s.scored[i] and s.warn[i]:
        first = int(s.origins[i])
        if i and s.origins[i] - s.origins[i - 1] > s.stride:
            break
        i -= 1
    return float(onset - first) * s.config.step_minutes if first is not None else 0.0


def _crossing_errors(s: _Scoring, onset: int) -> dict[str, float | None]:
    """The onset timing error of the forecasts issued ``lead_points`` minutes before ``onset`` (see the module doc)."""
    out: dict[str, float | None] = {}
    look = s.config.lookahead_minutes
    for k in s.config.lead_points:
        i = int(np.searchsorted(s.origins, onset - k, side="right")) - 1
        if i < 0 or onset - k - s.origins[i] >= s.stride:
            out[str(k)] = None  # outside the scored range
            continue
        actual = onset - int(s.origins[i])
        below = s.median_paths[i] <= s.config.threshold
        starts = np.flatnonzero(below & ~np.concatenate([[False], below[:-1]]))
        # a forecast onset before the previous failure ended is meant for that failure
        starts = starts[int(s.origins[i]) + starts >= s.prev_end[onset]]
        if len(starts) == 0:
            out[str(k)] = float("inf")
            continue
        nearest = int(starts[np.argmin(np.abs(starts - actual))])
        out[str(k)] = float(nearest - actual) if abs(nearest - actual) <= look else float("inf")
    return out


def _episodes_by_class(s: _Scoring, failure_rows) -> dict[str, dict[str, Any]]:
    """Episodes holding an incident's failure ("incident") and the others ("scheduled"), each summarised."""
    incident_onsets = {onset for row in failure_rows for onset, end in s.eps if onset <= row < end}
    classes: dict[str, list[tuple[int, float | None, dict]]] = {"incident": [], "scheduled": []}
    for onset, _ in s.eps:
        if s.in_range(onset):
            kind = "incident" if onset in incident_onsets else "scheduled"
            classes[kind].append((onset, _lead_time(s, onset), _crossing_errors(s, onset)))
    return {kind: _episode_stats(rows, s.config) for kind, rows in classes.items()}


def _incident_score(s: _Scoring, inc: dict, failure_row: int | None) -> IncidentScore:
    start = pd.Timestamp(inc["start"])
    failure = inc.get("failure_time")
    predictable = failure is not None and (pd.Timestamp(failure) - start) >= pd.Timedelta(minutes=s.config.min_lead_minutes * s.config.step_minutes)
    item = IncidentScore(
        type=inc["type"], start=start.isoformat(), failure_time=pd.Timestamp(failure).isoformat() if failure is not None else None,
        kind="no failure", predictable=bool(predictable),
    )
    if failure_row is None:
        return item
    episode = next(((a, b) for a, b in s.eps if a <= failure_row < b), None)
    if episode is None or not s.in_range(episode[0]):
        item.kind = "outside the scored range"
        return item
    onset = episode[0]
    item.kind = "new failure" if failure_row - onset <= s.config.merge_gap_minutes else "during a failure"
    item.onset = s.times[onset].isoformat()
    item.lead_minutes = _lead_time(s, onset)
    item.warned = item.lead_minutes is not None and item.lead_minutes >= s.config.min_lead_minutes * s.config.step_minutes
    item.crossing_error = _crossing_errors(s, onset)
    return item


def _lookahead_precision_recall(s: _Scoring, incidents: Sequence[dict]) -> tuple[float, float, float]:
    """Precision and recall of the warnings against "a failing minute within the lookahead", and the recall of incidents'."""
    look, n_times, origins = s.config.lookahead_minutes, len(s.times), s.origins
    fail_cum = np.concatenate([[0], np.cumsum(s.failing)])
    unknown_cum = np.concatenate([[0], np.cumsum(~s.known)])
    ends = np.minimum(origins + look, n_times)
    label = (fail_cum[ends] - fail_cum[origins]) > 0
    # A window with unobserved minutes and no failure cannot be judged (it may hide one).
    judged = label | ((unknown_cum[ends] - unknown_cum[origins]) == 0)
    ok = s.scored & (origins + look <= n_times) & judged
    tp = int((s.warn & label & ok).sum())
    fp = int((s.warn & ~label & ok).sum())
    fn = int((~s.warn & label & ok).sum())
    incident_rows = np.zeros(n_times, dtype=bool)
    for inc in incidents:
        if inc.get("failure_time") is not None:
            a = s.times.searchsorted(_minute(inc["failure_time"]))
            b = s.times.searchsorted(pd.Timestamp(inc["end"]))
            incident_rows[a:max(b, a + 1)] = True
    inc_cum = np.concatenate([[0], np.cumsum(s.failing & incident_rows)])
    inc_pos = ((inc_cum[ends] - inc_cum[origins]) > 0) & ok
    recall_inc = float((s.warn & inc_pos).sum() / inc_pos.sum()) if inc_pos.any() else float("nan")
    return (tp / (tp + fp) if tp + fp else float("nan"), tp / (tp + fn) if tp + fn else float("nan"), recall_inc)


def _after_failure(s: _Scoring) -> np.ndarray:
    """The ``settle_minutes`` just after each failure episode ends."""
    out = np.zeros(len(s.times), dtype=bool)
    for _, end in s.eps:
        out[end : end + s.config.settle_minutes] = True
    return out


def _incident_minutes(s: _Scoring, incidents: Sequence[dict]) -> np.ndarray:
    """The minutes within an incident: from ``lookahead_minutes`` before its start to its end."""
    out = np.zeros(len(s.times), dtype=bool)
    for inc in incidents:
        a = s.times.searchsorted(pd.Timestamp(inc["start"]) - pd.Timedelta(minutes=s.config.lookahead_minutes))
        b = s.times.searchsorted(pd.Timestamp(inc["end"]))
        out[a:b] = True
    return out


def _alarm_runs(s: _Scoring, in_incident: np.ndarray) -> dict[str, Any]:
    """Runs of consecutive warned scoring minutes never followed by a failure: false, a failure's tail, unverifiable,
    or within an incident (``in_incident``: :func:`_incident_minutes`)."""
    look, n_times, origins = s.config.lookahead_minutes, len(s.times), s.origins
    after_failure = _after_failure(s)
    out: dict[str, Any] = {"false": 0, "tail": 0, "unverifiable": 0, "incident": 0, "false_minutes": 0, "details": []}
    i = 0
    while i < len(origins):
        if not (s.scored[i] and s.warn[i]):
            i += 1
            continue
        j = i
        while j + 1 < len(origins) and s.scored[j + 1] and s.warn[j + 1] and origins[j + 1] - origins[j] <= s.stride:
            j += 1
        a, b = int(origins[i]), int(origins[j])
        stop = min(b + look, n_times)
        if not s.failing[a:stop].any():
            if not s.known[a:stop].all():
                out["unverifiable"] += 1
            elif after_failure[a]:
                out["tail"] += 1
            elif in_incident[a]:
                out["incident"] += 1
            else:
                out["false"] += 1
                out["false_minutes"] += j - i + 1
                later = np.flatnonzero(s.failing[a:])
                out["details"].append({
                    "start": s.times[a].isoformat(), "minutes": int(b - a + 1),
                    "forecast_crossing_minutes": float(s.cross[i]), "health_before": float(s.health[a - 1]) if a else None,
                    "next_failure_minutes": int(later[0]) if len(later) else None,
                })
        i = j + 1
    return out


def _healthy_hours(s: _Scoring, in_incident: np.ndarray) -> float:
    """Hours of the scored range that are known, not failing and not near a failure or within an incident (module
    doc; ``in_incident``: :func:`_incident_minutes`)."""
    look = s.config.lookahead_minutes
    healthy = s.known & ~s.failing & ~_after_failure(s) & ~in_incident
    for onset, _ in s.eps:
        healthy[max(0, onset - look) : onset] = False
    span = np.zeros(len(s.times), dtype=bool)
    span[s.first_scored : s.last_scored + 1] = True
    return float((healthy & span).sum() * s.config.step_minutes / 60.0)


def _episode_stats(rows: list[tuple[int, float | None, dict]], config: TtfConfig) -> dict[str, Any]:
    leads = [lead for _, lead, _ in rows if lead is not None]
    warned = sum(lead >= config.min_lead_minutes * config.step_minutes for lead in leads)
    out: dict[str, Any] = {
        "episodes": len(rows),
        #: Episodes whose lead time could be scored, and those warned at least ``min_lead_minutes`` ahead.
        "scored": len(leads),
        "warned": int(warned),
        "warned_share": (warned / len(leads)) if leads else float("nan"),
        "median_lead_minutes": _median(leads),
        "crossing_error": {},
    }
    for k in config.lead_points:
        errors = [err[str(k)] for _, _, err in rows if err.get(str(k)) is not None]
        finite = [e for e in errors if np.isfinite(e)]
        out["crossing_error"][str(k)] = {
            "scored": len(errors),
            "no_crossing_forecast": len(errors) - len(finite),
            "mean_abs_error_minutes": float(np.mean(np.abs(finite))) if finite else float("nan"),
            "median_error_minutes": float(np.median(finite)) if finite else float("nan"),
        }
    return out


__all__ = ["TtfConfig", "TtfResult", "IncidentScore", "failing_minutes", "episodes", "crossings", "held", "score"]
