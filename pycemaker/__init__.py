"""pycemaker: scores a web application's health, forecasts it and says how long until it fails."""

__version__ = "0.1.0"
