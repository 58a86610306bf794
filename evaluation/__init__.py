"""Evaluation: rolling-origin backtests against baselines, time-to-failure scoring, reports.

Torch-free: the LSTM is run from the model registry with onnxruntime
(:mod:`forecasting.forecaster`), so evaluation works wherever a registry is readable.

- :mod:`forecasting.metrics`: MAE, RMSE, MASE, interval coverage (NaN-aware).
- :mod:`evaluation.series`: what a backtest runs on (minute frames, or one stream at its own cadence).
- :mod:`evaluation.forecasters`: every method behind one interface.
- :mod:`evaluation.backtest`: rolling-origin orchestration.
- :mod:`evaluation.ttf`: time-to-failure scoring against ground-truth incidents.
- :mod:`evaluation.report`: markdown, JSON and PNG output.
- :mod:`evaluation.pipeline`: the whole evaluation ``make evaluate`` runs.
"""
