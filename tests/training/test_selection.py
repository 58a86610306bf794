"""Champion and challengers (training/selection.py) on known numbers: gates, "beats", and who serves. Torch-free."""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pandas as pd
import pytest

from telemetry.settings import Settings
from training import selection
from training.selection import Entry, Scores

SETTINGS = Settings()  # coverage 70-90%, a learned model at most 1.0 x seasonal naive's MAE


def entry(kind: str, mae: float, coverage: float = 0.8, warned: int = 5, false_alarms: int = 0, *, champion: bool = False,
          parity_ok: bool = True, held_back: bool = True, version: str | None = None, rmse: float | None = None) -> Entry:
    """A candidate whose health MAE is ``mae`` (its RMSE ``rmse``, else 1.3 x the MAE)."""
    scores = Scores(100, 60, 1.3 * mae if rmse is None else rmse, coverage, episodes=6, warned=warned,
                    false_alarms=false_alarms, healthy_hours=24.0, held_back=held_back, health_mae=mae)
    return Entry(kind, version or f"v-{kind}-{mae}", scores, parity_ok, champion=champion)


def test_the_most_accurate_eligible_candidate_wins_on_an_empty_registry():
    naive, ets, lstm = entry("seasonal_naive", 0.05), entry("ets", 0.04), entry("lstm", 0.03)
    chosen = selection.choose([naive, ets, lstm], None, SETTINGS, naive_mae=0.05)
    assert chosen.winner is lstm and lstm.verdict == "promoted"
    assert naive.verdict == ets.verdict == "lost" and "beaten by lstm" in ets.why


def test_accuracy_alone_never_wins_fewer_warnings_or_more_false_alarms_do_not_beat_the_champion():
    champion = entry("ets", 0.05, warned=5, false_alarms=0, champion=True)
    later = entry("lstm", 0.03, warned=3)
    noisier = entry("lstm", 0.03, false_alarms=2)
    for challenger in (later, noisier):
        chosen = selection.choose([challenger], champion, SETTINGS, naive_mae=0.06)
        assert chosen.winner is None and champion.verdict == "kept"
        assert "does not beat the champion" in chosen.reason
    better = entry("lstm", 0.03, warned=6)
    chosen = selection.choose([better], champion, SETTINGS, naive_mae=0.06)
    assert chosen.winner is better and champion.verdict == "replaced"
    assert "episodes warned 6 vs 5, false alarms 0 vs 0" in chosen.reason
    # One event either way is the noise of a held-back block: a much better MAE still wins.
    within_noise = entry("lstm", 0.03, warned=4, false_alarms=1)
    assert selection.choose([within_noise], entry("ets", 0.05, champion=True), SETTINGS, naive_mae=0.06).winner is within_noise


def test_a_worse_lstm_never_replaces_a_better_baseline_and_a_better_one_does():
    baseline = entry("seasonal_naive", 0.04, champion=True)
    worse = entry("lstm", 0.045)
    assert selection.choose([worse], baseline, SETTINGS, naive_mae=0.04).winner is None
    assert "MAE 0.0450 is 1.12 x seasonal naive's 0.0400" in worse.why  # and it is refused outright
    better = entry("lstm", 0.03)
    assert selection.choose([better], baseline, SETTINGS, naive_mae=0.04).winner is better


def test_accuracy_is_the_health_mae_so_a_few_large_misses_do_not_decide():
    """ETS is closer most of the time (lower MAE); the blend misses less at one incident (lower RMSE): ETS wins."""
    ets = entry("ets", 0.020, rmse=0.045)
    blend = entry("blend", 0.025, rmse=0.035)
    chosen = selection.choose([entry("seasonal_naive", 0.03), blend, ets], None, SETTINGS, naive_mae=0.03)
    assert chosen.winner is ets and "beaten by ets" in blend.why
    assert "health MAE 0.0200 vs 0.0250 (RMSE 0.0450 vs 0.0350)" in blend.why


def test_the_base_model_zero_shot_and_fine_tuned_are_held_to_the_seasonal_naive_gate_like_the_lstm():
    naive, ets = entry("seasonal_naive", 0.04), entry("ets", 0.05)
    base, tuned = entry("base", 0.045), entry("finetuned", 0.046)
    chosen = selection.choose([naive, ets, base, tuned], None, SETTINGS, naive_mae=0.04)
    assert chosen.winner is naive
    assert "1.12 x seasonal naive's" in base.why and "1.15 x seasonal naive's" in tuned.why and not ets.gate_failures
    better = entry("finetuned", 0.03)
    assert selection.choose([naive, entry("base", 0.035), better], None, SETTINGS, naive_mae=0.04).winner is better


def test_a_base_model_that_is_the_only_candidate_serves_an_empty_registry_even_when_refused():
    base = entry("base", 0.05)
    chosen = selection.choose([base], None, SETTINGS, naive_mae=0.04)
    assert chosen.winner is base and "no candidate passed every gate" in chosen.reason


def test_ties_go_to_the_simplest_kind_the_base_model_before_the_learned_ones():
    tied = [entry("lstm", 0.03, version="a"), entry("finetuned", 0.03, version="b"), entry("base", 0.03, version="c")]
    assert selection.choose(tied, None, SETTINGS, naive_mae=0.04).winner.kind == "base"


@pytest.mark.parametrize("coverage", [0.6, 0.95])
def test_a_band_that_is_too_narrow_or_too_wide_is_refused(coverage):
    wrong = entry("ets", 0.01, coverage=coverage)
    right = entry("seasonal_naive", 0.05)
    chosen = selection.choose([wrong, right], None, SETTINGS, naive_mae=0.05)
    assert chosen.winner is right and wrong.verdict == "refused" and "is outside 70%-90%" in wrong.why


def test_the_coverage_range_widens_by_the_noise_of_a_short_held_back_block():
    """7 hours of windows are 7 draws of a 60-minute band (+-15 points at 80%); a week's are 168 (+-3)."""
    week, hours = (dataclasses.replace(entry("ets", 0.01, coverage=0.6).scores, coverage_spans=spans) for spans in (168, 7))
    assert selection.coverage_noise(week, SETTINGS) == pytest.approx(0.4 / 168 ** 0.5)
    assert selection.coverage_noise(hours, SETTINGS) == pytest.approx(0.4 / 7 ** 0.5)
    assert "the noise of 168 spans of 60 min" in selection.gate_failures(Entry("ets", "v", week), 0.05, SETTINGS)[0]
    assert selection.gate_failures(Entry("ets", "v", hours), 0.05, SETTINGS) == []
    far_off = dataclasses.replace(hours, coverage=0.5)  # 20 points below the range: beyond 7 spans' noise too
    assert "is outside 70%-90% (+-15%" in selection.gate_failures(Entry("ets", "v", far_off), 0.05, SETTINGS)[0]


def test_scores_count_the_disjoint_spans_their_windows_cover():
    n, horizon = 600, 60
    times = pd.date_range("2026-07-01", periods=n, freq="1min", tz="UTC")
    health = np.full(n, 0.9)
    origins = np.arange(120, 421)  # 301 consecutive windows: they and their horizons span 360 minutes
    actual = health[np.minimum(origins[:, None] + np.arange(horizon), n - 1)]
    band = np.repeat(actual[..., None], 3, axis=-1)
    scores = selection.score(band, actual, times, health, origins, np.ones((len(origins), horizon), bool), (0.1, 0.5, 0.9),
                             SETTINGS)
    assert scores.coverage_spans == pytest.approx(6.0)


def test_a_candidate_failing_parity_is_refused_however_accurate():
    broken = entry("lstm", 0.0, parity_ok=False)
    chosen = selection.choose([broken, entry("ets", 0.05)], None, SETTINGS, naive_mae=0.05)
    assert chosen.winner.kind == "ets" and "parity" in broken.why


def test_an_empty_registry_always_gets_a_model_even_when_no_candidate_passes_every_gate():
    narrow, wide = entry("seasonal_naive", 0.05, coverage=0.5), entry("ets", 0.04, coverage=0.95)
    chosen = selection.choose([narrow, wide], None, SETTINGS, naive_mae=0.05)
    assert chosen.winner is wide and "so that the service has a model" in chosen.reason
    # With a champion, nothing that fails a gate replaces it.
    champion = entry("lstm", 0.06, champion=True)
    assert selection.choose([entry("seasonal_naive", 0.05, coverage=0.5)], champion, SETTINGS, 0.05).winner is None


def test_without_held_back_windows_the_best_in_sample_candidate_serves_a_new_service_only():
    short = [entry("seasonal_naive", 0.02, held_back=False), entry("ets", 0.01, held_back=False)]
    chosen = selection.choose(short, None, SETTINGS, naive_mae=0.02)
    assert chosen.winner.kind == "ets" and all("no held-back windows" in e.why or e.verdict == "promoted" for e in short)
    champion = entry("lstm", 0.05, champion=True)
    assert selection.choose([entry("ets", 0.01, held_back=False)], champion, SETTINGS, 0.02).winner is None


def test_a_tie_goes_to_the_simplest_kind_and_float_noise_is_a_tie():
    ets, naive = entry("ets", 0.04), entry("seasonal_naive", 0.04 + selection.ERROR_MARGIN / 2)
    assert selection.choose([ets, naive], None, SETTINGS, naive_mae=0.04).winner is naive


def test_the_champion_among_the_candidates_stays_when_it_is_still_the_best():
    interim = entry("ets", 0.04, champion=True)
    chosen = selection.choose([entry("seasonal_naive", 0.05), interim], interim, SETTINGS, naive_mae=0.05)
    assert chosen.winner is None and interim.verdict == "kept" and "it stays" in chosen.reason


def test_scores_count_warned_episodes_and_false_alarms_with_the_products_rule():
    """A failure at minutes 200-210 of a flat 0.9 series: one forecaster sees it 20 minutes ahead, one never does."""
    n, horizon = 300, 60
    times = pd.date_range("2026-07-01", periods=n, freq="1min", tz="UTC")
    health = np.full(n, 0.9)
    health[200:210] = 0.2
    origins = np.arange(100, 240)
    actual = health[np.minimum(origins[:, None] + np.arange(horizon), n - 1)]
    seeing = np.repeat(actual[..., None], 3, axis=-1) + np.array([-0.05, 0.0, 0.05])
    blind = np.full_like(seeing, 0.9) + np.array([-0.05, 0.0, 0.05])
    mask = np.ones((len(origins), horizon), bool)
    good = selection.score(seeing, actual, times, health, origins, mask, (0.1, 0.5, 0.9), SETTINGS)
    bad = selection.score(blind, actual, times, health, origins, mask, (0.1, 0.5, 0.9), SETTINGS)
    assert good.episodes == bad.episodes == 1
    assert (good.warned, bad.warned) == (1, 0) and good.false_alarms == bad.false_alarms == 0
    assert good.health_rmse == good.health_mae == pytest.approx(0.0) and good.coverage == pytest.approx(1.0)
    assert bad.health_mae < bad.health_rmse  # a miss of 0.7 for 10 minutes weighs more in the RMSE
    assert selection.warnings_not_worse(good, bad)
    assert selection.warnings_not_worse(bad, good)  # one episode apart: within the tolerance
    assert not selection.warnings_not_worse(dataclasses.replace(bad, warned=good.warned - 2), good)
    assert dt.timedelta(hours=good.healthy_hours) < dt.timedelta(minutes=len(origins))


def test_a_miscalibrated_champion_does_not_lock_out_a_better_calibrated_successor():
    champion = entry("ets", 0.05, coverage=0.97, champion=True)
    closer = entry("lstm", 0.03, coverage=0.93)
    assert selection.choose([closer], champion, SETTINGS, naive_mae=0.05).winner is closer
    farther = entry("lstm", 0.03, coverage=0.98)
    assert selection.choose([farther], champion, SETTINGS, naive_mae=0.05).winner is None


def test_where_health_ties_the_stream_error_decides():
    """One imported stream whose health never moves: every model's health error is 0, the streams tell them apart."""
    flat = selection.Scores(40, 60, 0.0, 1.0, health_mae=0.0)
    sn = selection.Entry("seasonal_naive", "v-sn", dataclasses.replace(flat, stream_error=1.0))
    lstm = selection.Entry("lstm", "v-lstm", dataclasses.replace(flat, stream_error=0.7))
    assert selection.beats(lstm, sn) and not selection.beats(sn, lstm)
    assert selection.best_challenger([sn, lstm]) is lstm
    assert "stream error 0.700 vs 1.000" in selection._compare(lstm.scores, sn.scores)


def test_stream_errors_scale_each_stream_by_its_own_one_step_change():
    history = np.array([[0.0, 0.0, np.nan], [1.0, 10.0, np.nan], [0.0, 0.0, np.nan]])  # steps of 1 and 10; a stream never seen
    actual = np.array([[[1.0, 10.0, 5.0]]])
    medians = {"a": np.array([[[0.0, 10.0, 0.0]]]), "b": np.array([[[1.0, 0.0, 0.0]]])}
    errors = selection.stream_errors(medians, actual, history)
    assert errors == {"a": pytest.approx(0.5), "b": pytest.approx(0.5)}  # (1/1 + 0/10)/2 and (0/1 + 10/10)/2
