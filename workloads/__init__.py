"""Bone-marrow cell classifier toolkit: data, training, optimization, serving, benchmarks."""

__version__ = "0.1.0"
