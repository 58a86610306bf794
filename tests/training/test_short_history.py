"""Fine-tuning on a short history: its windows come from the fit block alone, and none sees the held-back block."""

from __future__ import annotations

import numpy as np
import pytest

from telemetry.settings import Settings

pytest.importorskip("torch")

from training.data import MIN_SHORT_FINETUNE_WINDOWS, NotEnoughData, plan_run, refit_window_data, short_finetune_parts  # noqa: E402
from training.datamodule import WindowDataModule  # noqa: E402
from training.fit import FitConfig  # noqa: E402

L, H, GATE = 120, 180, 60


def test_a_day_of_history_is_cut_into_training_validation_and_the_runs_held_back_windows():
    plan = plan_run(1440, Settings())
    assert not plan.lstm and plan.name == "short" and plan.fit_end == 1007  # int(0.7 * 1440)
    parts = short_finetune_parts(plan, L, H, GATE)
    # Training targets end before the validation block's first minute; validation windows keep >= GATE minutes before
    # the fit block's end; the test windows are every candidate's.
    validation_start = 1007 - 252  # its last quarter
    assert parts.train[0] == L and parts.train[-1] + H == validation_start and len(parts.train) == 456
    assert parts.validation[0] == validation_start and parts.validation[-1] == 1007 - GATE
    np.testing.assert_array_equal(parts.test, plan.test)


def test_too_short_a_fit_block_or_nothing_held_back_is_not_enough():
    with pytest.raises(NotEnoughData, match=f"needs {MIN_SHORT_FINETUNE_WINDOWS} training windows"):
        short_finetune_parts(plan_run(600, Settings()), L, H, GATE)
    with pytest.raises(NotEnoughData):
        short_finetune_parts(plan_run(125, Settings()), L, H, GATE)  # fit only: nothing held back


def test_training_and_validation_windows_see_no_target_of_the_held_back_block(two_days_frame):
    frame = two_days_frame.iloc[:1440]
    plan = plan_run(len(frame), Settings())
    module = WindowDataModule(frame, L, H, parts=short_finetune_parts(plan, L, H, GATE), visible_rows=plan.fit_end)
    module.setup("fit")
    seen = module.validation.targets  # [N, H, T]: the minute of lead h of window i is origin_i + h
    minute = module.validation.origins[:, None] + np.arange(H)[None, :]
    assert np.isnan(seen[minute >= plan.fit_end]).all() and np.isfinite(seen[minute < plan.fit_end][:, 0]).mean() > 0.9
    assert (module.train.origins + H <= plan.fit_end).all()
    assert np.isnan(module.validation_values[plan.fit_end:]).all()
    np.testing.assert_array_equal(module.validation_values[: plan.fit_end], module.values[: plan.fit_end])
    # The test windows are the run's, to the frame's end (their minutes past it are missing), and see the whole block.
    np.testing.assert_array_equal(module.test.origins, plan.test)
    last = module.test.targets[-1]
    assert np.isnan(last[len(frame) - plan.test[-1]:]).all() and np.isfinite(last[0]).any()


def test_a_refit_trains_on_every_window_of_the_history_in_the_fitted_scaling(two_days_frame):
    """The served fine-tuning is refitted on the whole day: its training windows run to the frame's end, the held-back
    block included, in the scaling the selected fit used; its validation and test windows are the selected fit's."""
    frame = two_days_frame.iloc[:1440]
    plan = plan_run(len(frame), Settings())
    fitted = WindowDataModule(frame, L, H, train_stride=2, parts=short_finetune_parts(plan, L, H, GATE), visible_rows=plan.fit_end)
    every = refit_window_data(fitted, FitConfig(train_stride=2))
    every.setup("fit")
    np.testing.assert_array_equal(every.split.train, np.arange(L, len(frame) - H + 1))
    assert len(every.train) == len(np.arange(L, len(frame) - H + 1)[::2]) > 2 * len(fitted.train)
    assert every.scaling is fitted.scaling
    np.testing.assert_array_equal(every.validation.origins, fitted.validation.origins)
    np.testing.assert_array_equal(every.test.origins, fitted.test.origins)
    last = every.train.targets[-1]  # the last training window's horizon ends with the history: every minute seen
    assert every.train.origins[-1] + H >= len(frame) - 1 and np.isfinite(last[-1]).all()
