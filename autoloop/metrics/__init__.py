"""Metric reads behind one small interface.

Contract: `MetricSource` is what the operator asks for numbers. `PrometheusSource` talks PromQL
over HTTP to a real server; `RecordedSource` replays recorded series for tests and benchmarks.
`queries` builds the built-in PromQL and scopes user PromQL to a namespace. Nothing here writes
to Kubernetes; engines never import this package.
"""
