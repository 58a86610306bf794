"""Training: the Lightning LSTM, ONNX export, promotion gates and scheduled retraining (needs torch)."""
