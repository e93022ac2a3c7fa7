"""Pure computation: forecasting, failure prediction, anomaly detection and root cause,
allocation, scheduling, QUBO/annealing, safety validation and learning.

Contract: modules here import numpy, scikit-learn, OR-Tools, dimod and our own `autoloop.api`
models only. No Kubernetes client, no kopf, no HTTP, no file or network I/O. Every engine has a
documented entry point over plain data so the operator, the benchmarks and outside evaluations
call the same code.
"""
