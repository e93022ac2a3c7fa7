"""autoloop: a Kubernetes operator that runs autonomous, safety-gated optimisation loops."""

__version__ = "0.1.0"
