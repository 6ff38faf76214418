"""Typed errors. Every error the CLI reports is one line: ``str(err)``."""


class ToolkitError(Exception):
    """Base class for errors that are reported to the user as one clear line."""


class ConfigError(ToolkitError):
    """A configuration value is missing, of the wrong type or out of range."""


class DatasetError(ToolkitError):
    """The dataset cannot be found, read or split."""


class TrainingError(ToolkitError):
    """Training cannot start or continue."""


class ModelRepositoryError(ToolkitError):
    """A model repository, or a version in it, is missing or incomplete."""


class OptimizationError(ToolkitError):
    """Conversion, quantization or publication of a model failed."""


class BenchError(ToolkitError):
    """A benchmark cannot run, or its figures cannot be trusted (errors, wrong answers)."""


class ServingError(ToolkitError):
    """The model server cannot start, stop or serve."""


class DeployError(ToolkitError):
    """Deploying infrastructure or workloads failed."""
