"""The pretrained base model's network: the LSTM of :mod:`training.network` behind a per-window scaling.

Apps differ by orders of magnitude in request rate and in how much their streams move, so the
base model standardises each input window by itself (each target channel's mean and spread over
the window's observed minutes), forecasts in those units and maps the forecast back. The spread
has a floor (``min_scale``, in the card's scaled units) so a flat window's noise is not blown up; a
network's floor is one of its hyperparameters (in its card), :data:`MIN_SCALE` for those carded before it.
Missing streams stay masked (value 0, mask 0): a service without memory is an ordinary input.

Inside the graph, so the ONNX contract (input ``window`` in the card's scaled units, output
``quantiles`` in the same units) is the registry's: serving runs it like any other model. The
state dict is :class:`training.network.QuantileLSTM`'s (no extra parameters).
"""

from __future__ import annotations

import torch

from training.network import QuantileLSTM

#: Least per-window spread of a target, in the card's scaled units, of the networks carded before it was a hyperparameter.
MIN_SCALE = 0.5


def window_scale(window: torch.Tensor, n_targets: int, min_scale: float = MIN_SCALE) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-window mean and spread [B, T] of the target channels over observed minutes (spread at least ``min_scale``)."""
    values, observed = window[:, :, :n_targets], window[:, :, n_targets : 2 * n_targets]
    count = observed.sum(dim=1).clamp_min(1.0)
    mean = (values * observed).sum(dim=1) / count
    var = (((values - mean.unsqueeze(1)) ** 2) * observed).sum(dim=1) / count
    return mean, torch.sqrt(var + min_scale**2)


class BaseLSTM(QuantileLSTM):
    """:class:`QuantileLSTM` on per-window standardised targets; inputs and outputs in the card's units.
    ``min_scale``: the floor of a window's spread (a hyperparameter: saved with the others)."""

    def __init__(self, *args, min_scale: float = MIN_SCALE, **kwargs):
        super().__init__(*args, **kwargs)
        self.min_scale = float(min_scale)

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        T = self.n_targets
        mean, scale = window_scale(window, T, self.min_scale)
        observed = window[:, :, T : 2 * T]
        values = (window[:, :, :T] - mean.unsqueeze(1)) / scale.unsqueeze(1) * observed
        standardised = torch.cat([values, window[:, :, T:]], dim=-1)
        out = super().forward(standardised)  # [B, H, T, Q]
        return out * scale[:, None, :, None] + mean[:, None, :, None]
