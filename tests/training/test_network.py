"""The network's pieces: the masked pinball loss, the seasonal base, the head's shape."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from forecasting.contract import FEATURES, TARGETS  # noqa: E402
from training.network import QuantileLSTM, harmonics, pinball_loss, seasonal_index  # noqa: E402

Q = (0.1, 0.5, 0.9)


def test_pinball_loss_matches_its_definition_and_ignores_missing_targets():
    prediction = torch.tensor([[[[0.0, 1.0, 2.0]], [[5.0, 5.0, 5.0]]]])  # [B=1, H=2, T=1, Q=3]
    target = torch.tensor([[[1.0], [float("nan")]]])
    loss = pinball_loss(prediction, target, torch.tensor(Q))
    # step 0, y=1: q=0.1 under by 1 -> 0.1; q=0.5 exact -> 0; q=0.9 over by 1 -> 0.1; mean 0.2/3
    assert loss.item() == pytest.approx(0.2 / 3)
    # the missing step contributes nothing (it would add 5-ish otherwise)
    weights = torch.tensor([3.0])
    assert pinball_loss(prediction, target, torch.tensor(Q), weights).item() == pytest.approx(0.2 / 3)
    all_missing = torch.full_like(target, float("nan"))
    assert pinball_loss(prediction, all_missing, torch.tensor(Q)).item() == 0.0


def test_pinball_loss_is_minimised_by_the_quantiles():
    rng = np.random.default_rng(0)
    y = torch.tensor(rng.normal(size=(4000, 1, 1)), dtype=torch.float32)
    losses = {}
    for shift in (-0.3, 0.0, 0.3):
        pred = torch.tensor([-1.2816 + shift, 0.0 + shift, 1.2816 + shift]).expand(4000, 1, 1, 3)
        losses[shift] = pinball_loss(pred, y, torch.tensor(Q)).item()
    assert losses[0.0] < losses[-0.3] and losses[0.0] < losses[0.3]


def test_seasonal_index_points_at_the_same_minute_of_each_input_hour():
    index = seasonal_index(input_minutes=120, horizon_minutes=180)
    assert index.shape == (2, 180)
    assert index[0, 0] == 60 and index[0, 59] == 119 and index[0, 60] == 60 and index[0, 179] == 119
    assert index[1, 0] == 0 and index[1, 61] == 1
    short = seasonal_index(input_minutes=30, horizon_minutes=5)
    assert short.shape == (1, 5) and (short == 29).all()  # under an hour of input: the last minute


def test_harmonics_are_sines_and_cosines_of_multiples_of_the_phase():
    angle = torch.tensor([0.3, 2.0])
    out = harmonics(torch.sin(angle), torch.cos(angle), 4)
    for k in range(1, 5):
        torch.testing.assert_close(out[:, 2 * (k - 1)], torch.sin(k * angle), atol=1e-6, rtol=0)
        torch.testing.assert_close(out[:, 2 * k - 1], torch.cos(k * angle), atol=1e-6, rtol=0)


def test_untrained_network_forecasts_the_mean_of_the_input_hours():
    model = QuantileLSTM(len(FEATURES), len(TARGETS), input_minutes=120, horizon_minutes=90, quantiles=Q, hidden_size=8)
    window = torch.randn(3, 120, len(FEATURES))
    out = model(window)
    assert out.shape == (3, 90, len(TARGETS), 3)
    expected = (window[:, 60:120, : len(TARGETS)] + window[:, 0:60, : len(TARGETS)]) / 2
    torch.testing.assert_close(out[:, :60, :, 1], expected)
    torch.testing.assert_close(out[:, 60:90, :, 0], expected[:, :30])


def test_level_sources_join_the_seasons_and_a_gate_can_pick_the_recent_level():
    """With ``level_sources`` the base also draws on the last input minute and the mean of the last LEVEL_MINUTES;
    untrained, the seasons weigh 1 each and the level sources exp(LEVEL_PRIOR) (mostly the seasonal mean still); the
    window-dependent gate can hand all the weight to one of them."""
    from training.network import LEVEL_MINUTES, LEVEL_PRIOR

    T = len(TARGETS)
    model = QuantileLSTM(len(FEATURES), T, input_minutes=120, horizon_minutes=90, quantiles=Q, hidden_size=8,
                         level_sources=True)
    window = torch.randn(3, 120, len(FEATURES))
    targets = window[:, :, :T]
    seasons = (targets[:, 60:120] + targets[:, 0:60]) / 2  # [B, 60, T]
    last, level = targets[:, -1:], targets[:, -LEVEL_MINUTES:].mean(dim=1, keepdim=True)
    small = float(np.exp(LEVEL_PRIOR))
    expected = (2 * seasons + small * (last + level)) / (2 + 2 * small)
    torch.testing.assert_close(model(window)[:, :60, :, 1], expected)
    with torch.no_grad():  # the gate's bias: the last minute's source (index K = 2) far above the others
        model.gate.bias.view(4, T)[2] = 50.0
    torch.testing.assert_close(model(window)[:, :, :, 1], last.expand(-1, 90, -1))
    # Without level sources the network has no gate: the weights of a model trained before them still load.
    plain = QuantileLSTM(len(FEATURES), T, input_minutes=120, horizon_minutes=90, quantiles=Q, hidden_size=8)
    assert plain.gate is None and not any(name.startswith("gate") for name in plain.state_dict())
