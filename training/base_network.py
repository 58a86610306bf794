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

:class:`BaseEnsemble` averages several of them, each pretrained apart (its own seed: initial weights and
the order of the windows), quantile by quantile: a deep ensemble. Networks trained alike from other seeds
forecast an unseen app about equally well but err differently, so their mean errs less than any of them
(docs/model.md, "The pretrained base model"). It is one module, so it exports to one ONNX graph and
fine-tunes as one network (each member on its own loss).
"""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from training.network import QuantileLSTM, pinball_loss

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


class BaseEnsemble(L.LightningModule):
    """``members`` :class:`BaseLSTM` of the same hyperparameters (``network``), their outputs averaged.

    Training (fine-tuning) minimises the mean of the members' own losses, so each stays a forecaster of its own;
    validation, the checkpoint and early stopping judge the average, which is what serves."""

    def __init__(self, *, members: int = 2, min_scale: float = MIN_SCALE, **network):
        super().__init__()
        self.save_hyperparameters()
        self.members = nn.ModuleList(BaseLSTM(min_scale=min_scale, **network) for _ in range(members))
        first = self.members[0]
        self.median_index = first.median_index
        self.register_buffer("quantiles", first.quantiles.clone(), persistent=False)
        self.register_buffer("target_weights", first.target_weights.clone(), persistent=False)

    @classmethod
    def of(cls, networks: list[BaseLSTM]) -> "BaseEnsemble":
        """The ensemble of trained networks (same hyperparameters), their weights copied."""
        hyper = dict(networks[0].hparams)
        if any(dict(n.hparams) != hyper for n in networks[1:]):
            raise ValueError("an ensemble's members must share their hyperparameters")
        ensemble = cls(members=len(networks), **{"min_scale": networks[0].min_scale, **hyper})
        for member, trained in zip(ensemble.members, networks):
            member.load_state_dict(trained.state_dict())
        return ensemble.eval()

    def forward(self, window: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(window) for member in self.members]).mean(dim=0)

    def _loss(self, batch) -> torch.Tensor:
        window, target = batch
        return torch.stack([pinball_loss(m(window), target, self.quantiles, self.target_weights) for m in self.members]).mean()

    # The single network's steps and optimiser: they call self._loss, self(window) and read the hyperparameters.
    training_step = QuantileLSTM.training_step
    validation_step = QuantileLSTM.validation_step
    configure_optimizers = QuantileLSTM.configure_optimizers
