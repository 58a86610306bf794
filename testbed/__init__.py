"""The test bed: a stand-in for the original form server (``pycemaker target``) and its Locust load test.

Not part of the product: it exists to feed the real data path (Prometheus -> collector ->
MongoDB) with metrics that behave like the original deployment's.
"""
