"""Kubernetes workloads: OVMS per node pool, the in-cluster bench Job; render, validate, apply."""
