"""Synthetic workloads: models of services whose metrics respond to replicas and resources.

Used by the dev exporter (`autoloop simulate`), the benchmarks and the tests. Pure models here;
the exporter process that serves them lives in `autoloop.simulation.exporter`.
"""
