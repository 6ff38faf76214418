"""Validate documents against the Kubernetes schemas of the pinned version (kubernetes-validate, strict)."""

from __future__ import annotations

import functools
import re
from typing import Any

import jsonschema
import kubernetes_validate
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

from contracts.errors import DeployError


def supported_versions() -> list[str]:
    """Kubernetes minor versions the installed kubernetes-validate ships schemas for."""
    return sorted(
        {kv_utils.major_minor(v) for v in kv_utils.all_versions()},
        key=lambda v: tuple(map(int, v.split("."))),
    )


def check_version(version: str) -> None:
    # Checked here: kubernetes-validate compares versions as strings and falls back to older schemas.
    known = supported_versions()
    if version not in known:
        raise DeployError(
            f"kubernetes.version {version} has no schemas in kubernetes-validate "
            f"{kubernetes_validate.__version__}; choose one of {known[0]}…{known[-1]}"
        )


def validate_document(document: Any, *, version: str, source: str) -> None:
    """Raise a one-line DeployError unless ``document`` validates strictly (unknown fields rejected).

    ``document`` is whatever a YAML document parsed to: not necessarily a mapping.
    """
    check_version(version)
    kind = document.get("kind", "?") if isinstance(document, dict) else "?"
    name = (document.get("metadata") or {}).get("name", "?") if isinstance(document, dict) else "?"
    try:
        validator = _validator(version, document["apiVersion"], document["kind"])
        error = jsonschema.exceptions.best_match(validator.iter_errors(document))
    except kv_utils.SchemaNotFoundError as exc:
        raise DeployError(f"{source}: {exc.message}") from None
    except (KeyError, TypeError) as exc:
        raise DeployError(f"{source}: document {kind}/{name} lacks apiVersion/kind ({exc})") from None
    if error is not None:
        where = ".".join(str(p) for p in error.absolute_path) or "(document)"
        raise DeployError(
            f"{source}: {kind}/{name} is invalid for Kubernetes {version} at {where}: {error.message}"
        ) from None


@functools.lru_cache(maxsize=64)
def _validator(version: str, api_version: str, kind: str) -> jsonschema.protocols.Validator:
    """The strict schema of one kind, as kubernetes_validate.validate builds it, built once.

    (kubernetes_validate.validate re-reads the multi-megabyte definitions on every call.)
    """
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    folder = f"kubernetes-json-schema/v{version}.0-local-strict"
    try:
        schema = kv_utils.schema_contents(f"{folder}/{kind.lower()}-{group_version}.json", version)
    except FileNotFoundError:
        raise kv_utils.SchemaNotFoundError(version=version, kind=kind, api_version=api_version) from None
    definitions = kv_utils.schema_contents(f"{folder}/_definitions.json", version)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)
