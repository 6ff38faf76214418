"""Typed errors. Every error the CLI reports is one line: ``str(err)``."""


class ToolkitError(Exception):
    """Base class for errors that are reported to the user as one clear line."""


class ConfigError(ToolkitError):
    """A configuration value is missing, of the wrong type or out of range."""


class DatasetError(ToolkitError):
    """The dataset cannot be found, read or split."""


class TrainingError(ToolkitError):
    """Training cannot start or continue."""


class TrainingInterrupted(TrainingError):
    """Training was stopped by Ctrl-C (SIGINT); the message names the command that resumes it."""

    EXIT_CODE = 130  # 128 + SIGINT, as a shell reports a process that Ctrl-C ended

    def __init__(self, run_id: str, *, resumable: bool, resume_command: str = "invoke train") -> None:
        self.run_id = run_id
        self.resumable = resumable
        if resumable:
            message = f"training interrupted; resume with `{resume_command} --resume --run-id {run_id}`"
        else:
            message = "training interrupted before its first epoch finished; nothing was kept"
        super().__init__(message)


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
