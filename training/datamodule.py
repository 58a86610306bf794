"""The Lightning data module: per-minute frames -> scaled, leak-free windows.

Everything about channels, gaps, scaling and splits comes from :mod:`forecasting.windows`
(the module serving uses too); this module only fits the scaling on the training block,
cuts the windows and hands them to torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import lightning as L
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, TensorDataset

from forecasting.contract import FEATURES, TARGETS
from forecasting.windows import Scaling, Split, feature_matrix, split_origins, target_values, windows

#: Train / validation / test shares of the minutes, in time order.
FRACTIONS = (0.7, 0.15, 0.15)


class NotEnoughData(ValueError):
    """The frame is too short to cut train, validation and test windows from."""


def minimum_minutes(input_minutes: int, horizon_minutes: int, fractions: tuple[float, float, float] = FRACTIONS) -> int:
    """The shortest frame whose smallest block still holds one whole window."""
    return int(np.ceil((input_minutes + horizon_minutes) / min(fractions))) + 1


@dataclass
class WindowSet:
    """Windows of one split part: inputs [N, L, F], targets [N, H, T] (scaled, NaN where missing)."""

    origins: np.ndarray
    inputs: np.ndarray
    targets: np.ndarray

    def __len__(self) -> int:
        return len(self.origins)


def cut(features: np.ndarray, scaled_targets: np.ndarray, origins: np.ndarray, input_minutes: int,
        horizon_minutes: int) -> WindowSet:
    """The windows at ``origins`` of one frame's feature matrix and scaled targets."""
    x, y = windows(features, scaled_targets, origins, input_minutes, horizon_minutes)
    return WindowSet(origins, x, y)


class ForecastDataModule(L.LightningDataModule):
    """What the network is built from: the number of input features and of forecast targets (the contract's)."""

    @property
    def n_features(self) -> int:
        return len(FEATURES)

    @property
    def n_targets(self) -> int:
        return len(TARGETS)


def capped_stride(origins: int, stride: int, max_windows: int | None) -> int:
    """``stride``, widened until ``origins`` training origins give at most ``max_windows`` windows (None: no cap)."""
    stride = max(1, int(stride))
    if max_windows and origins > max_windows * stride:
        stride = -(-origins // max_windows)
    return stride


class WindowDataModule(ForecastDataModule):
    """Train / validation / test windows of one per-minute frame.

    ``train_stride`` > 1 keeps every n-th training window (neighbouring windows overlap by
    all but one minute, so striding costs little accuracy and saves epoch time); ``max_train_windows``
    widens that stride where more windows would be cut (a window is ~11 KB: this bounds memory and an epoch).
    Validation and test keep every window: the gates score on all of them.
    """

    def __init__(
        self,
        frame: pd.DataFrame,
        input_minutes: int,
        horizon_minutes: int,
        batch_size: int = 256,
        train_stride: int = 1,
        fractions: tuple[float, float, float] = FRACTIONS,
        seed: int = 7,
        scaling: Scaling | None = None,
        max_train_windows: int | None = None,
        parts: Split | None = None,
        visible_rows: int | None = None,
    ):
        """``scaling``: a fixed one (the base model's when fine-tuning it; a pooled run's, :mod:`training.pooled`);
        None: fitted on the training minutes. ``parts``: the windows' origins, where the run chose them (a short
        history's fine-tuning, :func:`training.data.short_finetune_parts`) instead of the fractions' split, whose test
        windows may run past the frame's end (those minutes are missing, NaN). ``visible_rows``: the training and
        validation windows see no target at or past it (the held-back block)."""
        super().__init__()
        self.parts = parts
        self.visible_rows = visible_rows
        self.frame = frame
        self.input_minutes = input_minutes
        self.horizon_minutes = horizon_minutes
        self.batch_size = batch_size
        self.train_stride = max(1, int(train_stride))
        self.max_train_windows = max_train_windows
        self.fractions = fractions
        self.seed = seed
        self.scaling: Scaling | None = scaling
        self.split: Split | None = None
        self.train: WindowSet | None = None
        self.validation: WindowSet | None = None
        self.test: WindowSet | None = None
        self.values: np.ndarray | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        n = len(self.frame)
        L_, H_ = self.input_minutes, self.horizon_minutes
        split = self.parts or split_origins(n, L_, H_, self.fractions)
        need = minimum_minutes(L_, H_, self.fractions) if self.parts is None else 0
        if n < need or not all(len(part) for part in (split.train, split.validation, split.test)):
            raise NotEnoughData(
                f"{n} minutes of data; at least {need} are needed for L={L_}, "
                f"H={H_} and a {'/'.join(f'{f:.0%}' for f in self.fractions)} split"
            )
        self.values = target_values(self.frame)
        # Scaling sees only the minutes the training windows cover (never validation or test).
        first, last = split.train[0] - L_, split.train[-1] + H_
        if self.scaling is None:
            self.scaling = Scaling.fit(self.values[first:last])
        features = feature_matrix(self.frame, self.scaling)
        scaled_targets = self.scaling.transform(self.values)
        self.split = split
        self.train_stride = capped_stride(len(split.train), self.train_stride, self.max_train_windows)
        seen = scaled_targets if self.visible_rows is None else _hidden_from(scaled_targets, self.visible_rows)
        self.train = cut(features, seen, split.train[:: self.train_stride], L_, H_)
        self.validation = cut(features, seen, split.validation, L_, H_)
        if self.parts is not None:  # test windows may run past the frame's end: those minutes are missing (NaN)
            scaled_targets = np.concatenate([scaled_targets, np.full((H_, scaled_targets.shape[1]), np.nan, scaled_targets.dtype)])
        self.test = cut(features, scaled_targets, split.test, L_, H_)

    @property
    def validation_values(self) -> np.ndarray:
        """The targets (original units) the validation windows are scored on: none from the held-back block."""
        assert self.values is not None
        return self.values if self.visible_rows is None else _hidden_from(self.values, self.visible_rows)

    def _loader(self, windows_: WindowSet, shuffle: bool) -> DataLoader:
        dataset = TensorDataset(torch.from_numpy(windows_.inputs), torch.from_numpy(windows_.targets))
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, generator=generator, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.validation, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test, shuffle=False)


def _hidden_from(values: np.ndarray, row: int) -> np.ndarray:
    """``values`` with every row from ``row`` on missing (NaN)."""
    hidden = values.copy()
    hidden[row:] = np.nan
    return hidden


def _joined(parts: list[WindowSet]) -> WindowSet:
    return WindowSet(np.concatenate([p.origins for p in parts]), np.concatenate([p.inputs for p in parts]),
                     np.concatenate([p.targets for p in parts]))


class PooledWindowDataModule(WindowDataModule):
    """Several services' frames, one fit: every frame's training windows pooled, every frame's validation
    windows pooled for early stopping, all scaled with one scaling fitted on every frame's training span
    (the served contract has one scaling per model: docs/model.md, "One model for the fleet"). Past
    ``max_train_windows`` every frame's training windows are thinned with one wider stride, so a large
    fleet's fit keeps a bounded memory and epoch time and every service its share.

    The first frame (the run's primary service) keeps its own parts in ``validation``, ``test`` and
    ``values``: the band is calibrated and the model judged on them as in a one-service run. A frame
    too short for the split is left out (``used``: the frames that were kept).
    """

    def __init__(self, frames: list[pd.DataFrame], input_minutes: int, horizon_minutes: int, **kwargs):
        super().__init__(frames[0], input_minutes, horizon_minutes, **kwargs)
        self.frames = list(frames)
        self.pooled_validation: WindowSet | None = None
        self.used: list[int] = []

    def setup(self, stage: str | None = None) -> None:
        if self.train is not None:
            return
        L_, H_ = self.input_minutes, self.horizon_minutes
        need = minimum_minutes(L_, H_, self.fractions)
        spans, splits, origins, validation_origins = [], [], 0, 0
        for i, frame in enumerate(self.frames):
            split = split_origins(len(frame), L_, H_, self.fractions)
            if len(frame) < need or not all(len(part) for part in (split.train, split.validation, split.test)):
                if i == 0:
                    raise NotEnoughData(f"{len(frame)} minutes of data; at least {need} are needed for L={L_}, H={H_}")
                continue
            self.used.append(i)
            splits.append(split)
            origins += len(split.train)
            validation_origins += len(split.validation)
            spans.append(target_values(frame)[split.train[0] - L_ : split.train[-1] + H_])
        scaling = Scaling.fit(np.concatenate(spans))
        self.train_stride = capped_stride(origins, self.train_stride, self.max_train_windows)
        # Early stopping's pool is thinned alike, to the split's proportion of validation to training windows.
        most_validation = max(1, round(self.max_train_windows * self.fractions[1] / self.fractions[0])) \
            if self.max_train_windows else None
        validation_stride = capped_stride(validation_origins, 1, most_validation)
        first = WindowDataModule(self.frames[0], L_, H_, self.batch_size, self.train_stride, self.fractions, self.seed,
                                 scaling=scaling)
        first.setup(stage)
        self.scaling, self.split, self.values = scaling, first.split, first.values
        self.validation, self.test = first.validation, first.test
        every = slice(None, None, validation_stride)
        trains = [first.train]
        validations = [WindowSet(first.validation.origins[every], first.validation.inputs[every],
                                 first.validation.targets[every])]
        for i, split in zip(self.used[1:], splits[1:]):
            # The other services' windows are cut straight to what the pools keep (and no test windows:
            # a thousand services' weeks of them would take gigabytes).
            frame = self.frames[i]
            features, targets = feature_matrix(frame, scaling), scaling.transform(target_values(frame))
            trains.append(cut(features, targets, split.train[:: self.train_stride], L_, H_))
            validations.append(cut(features, targets, split.validation[every], L_, H_))
        self.train, self.pooled_validation = _joined(trains), _joined(validations)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.pooled_validation, shuffle=False)
