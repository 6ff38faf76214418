"""Deploying the toolkit's infrastructure and workloads to its targets."""
