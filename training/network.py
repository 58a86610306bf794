"""The forecasting network: an LSTM encoder and a direct multi-horizon quantile head.

Input ``window`` [B, L, F] (channels :data:`forecasting.windows.FEATURES`, which begin with
the scaled :data:`forecasting.windows.TARGETS`); output [B, H, T, Q]: every target (the five streams and health) at each of the H minutes ahead,
at each quantile, in scaled units. "Direct" means all H steps come out of one pass (no
feeding forecasts back in), so an error at minute 1 does not compound to minute 180.

The loss is the pinball (quantile) loss, averaged over the targets that were observed:
a missing minute in the horizon is masked out, never scored as zero.
"""

from __future__ import annotations

from typing import Sequence

import lightning as L
import torch
from torch import nn

from forecasting.baselines import SEASON_MINUTES
from forecasting.contract import FEATURES, HEALTH, median_index

MINUTE_SIN = FEATURES.index("minute_sin")
MINUTE_COS = FEATURES.index("minute_cos")


def harmonics(sin: torch.Tensor, cos: torch.Tensor, count: int) -> torch.Tensor:
    """[B] phase (as sine and cosine) -> [B, 2 * count]: sin and cos of k * phase, k = 1..count.

    Built by repeated rotation (angle addition), so the export is plain multiplications.
    """
    out = []
    s_k, c_k = sin, cos
    for _ in range(count):
        out += [s_k, c_k]
        s_k, c_k = s_k * cos + c_k * sin, c_k * cos - s_k * sin
    return torch.stack(out, dim=-1)


def pinball_loss(
    prediction: torch.Tensor, target: torch.Tensor, quantiles: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Masked pinball loss. ``prediction`` [B, H, T, Q]; ``target`` [B, H, T] with NaN where missing."""
    observed = ~torch.isnan(target)
    target = torch.nan_to_num(target)
    diff = target.unsqueeze(-1) - prediction.float()
    loss = torch.maximum(quantiles * diff, (quantiles - 1.0) * diff).mean(dim=-1)  # [B, H, T]
    mask = observed.float()
    if weights is not None:
        mask = mask * weights
    return (loss * mask).sum() / mask.sum().clamp_min(1.0)


def seasonal_index(input_minutes: int, horizon_minutes: int, season: int = SEASON_MINUTES) -> torch.Tensor:
    """[K, H] input positions of the same minute of the hour in each of the K whole seasons of input.

    Row k holds, for horizon step h, the position ``L - (k + 1) * season + h % season``. With
    less than one season of input, K = 1 and every step points at the last input minute.
    """
    seasons = input_minutes // season
    steps = torch.arange(horizon_minutes)
    if seasons == 0:
        return torch.full((1, horizon_minutes), input_minutes - 1, dtype=torch.long)
    rows = [input_minutes - (k + 1) * season + steps % season for k in range(seasons)]
    return torch.stack(rows).long()


#: Minutes averaged for the recent level, a base source of a network with ``level_sources``.
LEVEL_MINUTES = 15
#: The level sources' starting logit (the seasons' is 0): an untrained network is still ~98% the seasonal mean, a
#: strong start for a service that repeats hourly; training (the gate) raises them where the level forecasts better.
LEVEL_PRIOR = -4.0


class QuantileLSTM(L.LightningModule):
    """Seasonal base + LSTM correction -> [B, H, T, Q] (see the module doc).

    - Base: for each horizon minute, a learned weighted mean of the same minute of the hour
      in each whole hour of the input (scaled targets). At initialisation that is the mean of
      the last hours: seasonal naive with less noise, so training starts from a strong forecast.
      With ``level_sources`` (``FitConfig``'s default), two more sources join them, the last input minute and
      the mean of the last :data:`LEVEL_MINUTES`, starting at a small weight (:data:`LEVEL_PRIOR`),
      and the weights also depend on the window (a gate from the encoder's state, zero at the
      start): a service whose load does not repeat hourly (diurnal, flat, bursty) is better
      forecast from its recent level.
    - Correction: an LSTM encodes the window; an MLP head maps its last state, the last input
      minute and harmonics of its minute of the hour to a per-quantile offset for every target
      and horizon minute (the head's output layer starts at zero). Incidents, recoveries and
      the band width are what it learns.
    """

    def __init__(
        self,
        n_features: int,
        n_targets: int,
        input_minutes: int,
        horizon_minutes: int,
        quantiles: Sequence[float],
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        learning_rate: float = 3e-3,
        weight_decay: float = 1e-4,
        health_weight: float = 2.0,
        n_harmonics: int = 8,
        level_sources: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.horizon_minutes = horizon_minutes
        self.n_targets = n_targets
        self.n_quantiles = len(quantiles)
        self.encoder = nn.LSTM(
            n_features, hidden_size, num_layers=num_layers, batch_first=True, dropout=dropout if num_layers > 1 else 0.0
        )
        state_size = hidden_size + n_features + 2 * n_harmonics
        self.head = nn.Sequential(
            nn.Linear(state_size, 2 * hidden_size),
            nn.GELU(),
            nn.Linear(2 * hidden_size, horizon_minutes * n_targets * self.n_quantiles),
        )
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)
        index = seasonal_index(input_minutes, horizon_minutes)
        self.register_buffer("season_index", index, persistent=False)
        sources = index.shape[0] + (2 if level_sources else 0)
        # Softmax weights over the K seasons (and the level sources), per horizon minute and target: the seasons equal
        # at the start, the level sources at LEVEL_PRIOR.
        logits = torch.zeros(sources, horizon_minutes, n_targets)
        logits[index.shape[0]:] = LEVEL_PRIOR
        self.season_logits = nn.Parameter(logits)
        self.gate = nn.Linear(state_size, sources * n_targets) if level_sources else None
        if self.gate is not None:
            nn.init.zeros_(self.gate.weight)
            nn.init.zeros_(self.gate.bias)
        self.register_buffer("quantiles", torch.tensor(list(quantiles), dtype=torch.float32), persistent=False)
        self.median_index = median_index(quantiles)
        weights = torch.ones(n_targets)
        weights[HEALTH] = health_weight  # health is what the gates and the API judge
        self.register_buffer("target_weights", weights, persistent=False)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        targets = window[:, :, : self.n_targets]  # FEATURES begin with the scaled TARGETS
        _, (hidden, _) = self.encoder(window)
        last = window[:, -1, :]
        phase = harmonics(last[:, MINUTE_SIN], last[:, MINUTE_COS], self.hparams.n_harmonics)
        state = torch.cat([hidden[-1], last, phase], dim=-1)
        sources = targets[:, self.season_index, :]  # [B, K, H, T]
        if self.gate is None:
            weights = torch.softmax(self.season_logits, dim=0).unsqueeze(0)
        else:
            level = torch.stack([targets[:, -1, :], targets[:, -LEVEL_MINUTES:, :].mean(dim=1)], dim=1)  # [B, 2, T]
            sources = torch.cat([sources, level.unsqueeze(2).expand(-1, -1, self.horizon_minutes, -1)], dim=1)
            gate = self.gate(state).reshape(-1, self.season_logits.shape[0], 1, self.n_targets)
            weights = torch.softmax(self.season_logits.unsqueeze(0) + gate, dim=1)
        base = (sources * weights).sum(dim=1)  # [B, H, T]
        offset = self.head(state).reshape(-1, self.horizon_minutes, self.n_targets, self.n_quantiles)
        return base.unsqueeze(-1) + offset

    def _loss(self, batch) -> torch.Tensor:
        window, target = batch
        return pinball_loss(self(window), target, self.quantiles, self.target_weights)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        # sync_dist: under DDP every process sees the mean over all of them (one device: no effect), so early
        # stopping, the checkpoint kept and the learning-rate schedule agree across processes.
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch[0]),
                 sync_dist=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        window, target = batch
        prediction = self(window)
        loss = pinball_loss(prediction, target, self.quantiles, self.target_weights)
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(window),
                 sync_dist=True)
        # The gates' figure (health median MAE), in scaled units: the checkpoint kept is the best by it.
        health = target[:, :, HEALTH]
        observed = ~torch.isnan(health)
        error = (prediction[:, :, HEALTH, self.median_index].float() - torch.nan_to_num(health)).abs()
        mae = (error * observed).sum() / observed.sum().clamp_min(1)
        self.log("val_health_mae", mae, on_step=False, on_epoch=True, prog_bar=True, batch_size=int(observed.sum()),
                 sync_dist=True)
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay
        )
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss"}}
