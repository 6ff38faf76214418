"""Typed vSphere errors; each message is one line that says what to do."""

from __future__ import annotations

from contracts.errors import ToolkitError


class VsphereError(ToolkitError):
    """Talking to vCenter failed."""


class VsphereUnreachableError(VsphereError):
    """vCenter does not answer at the configured address."""


class VsphereTlsError(VsphereError):
    """The vCenter certificate does not match the pinned thumbprint, or TLS failed."""


class VsphereLoginError(VsphereError):
    """Credentials are missing or rejected."""


class VspherePermissionError(VsphereError):
    """The user lacks a privilege the operation needs."""


class PreflightError(ToolkitError):
    """One or more preflight checks failed; ``failures`` holds one line per problem."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = tuple(failures)
        count = len(failures)
        super().__init__(
            f"vSphere preflight found {count} problem{'s' if count != 1 else ''}: " + " | ".join(failures)
        )


class SpecValidationError(ToolkitError):
    """A rendered EKS Anywhere document does not match its CRD schema."""
