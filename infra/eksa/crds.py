"""Validation of rendered documents against the EKS Anywhere CRD schemas (infra/eksa/crds)."""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from infra.eksa.errors import SpecValidationError

CRDS_ENV = "EKSA_CRDS_DIR"
REPO_ROOT = Path(__file__).resolve().parents[2]
# A copy of the team's shared schemas (../shared/eksa-crds), so a clone validates on its own;
# tests/test_eksa_render.py checks the copy still equals the shared folder where that exists.
DEFAULT_CRDS = Path(__file__).resolve().parent / "crds"
SHARED_CRDS = REPO_ROOT.parent / "shared" / "eksa-crds"


def crds_dir() -> Path:
    """$EKSA_CRDS_DIR, else the vendored copy of the EKS Anywhere CRDs in ``infra/eksa/crds``."""
    directory = Path(os.environ.get(CRDS_ENV) or DEFAULT_CRDS)
    if not any(directory.glob("*.yaml")):
        raise SpecValidationError(
            f"EKS Anywhere CRD schemas not found in {directory}; put the CRD YAML files there "
            f"or point {CRDS_ENV} at them"
        )
    return directory


def _strict(schema: Any) -> Any:
    """Reject unknown fields like `kubectl --validate=strict`: closed objects where fields are listed."""
    if isinstance(schema, dict):
        schema = {key: _strict(value) for key, value in schema.items()}
        if (
            schema.get("type") == "object"
            and "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(item) for item in schema]
    return schema


@functools.cache
def load_schemas(directory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """{(apiVersion, kind): JSON schema} for every served version of every CRD in ``directory``."""
    schemas = {}
    for path in sorted(directory.glob("*.yaml")):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = copy.deepcopy(version["schema"]["openAPIV3Schema"])
                schema["properties"].pop("status", None)  # written by the controllers, never by us
                schemas[(f"{group}/{version['name']}", kind)] = _strict(schema)
    return schemas


def validate_document(document: Any, *, directory: Path | None = None) -> None:
    """Raise SpecValidationError naming the document and the field path of the first problem."""
    schemas = load_schemas(directory or crds_dir())
    if not isinstance(document, dict):
        raise SpecValidationError(f"rendered document is not a mapping: {document!r:.80}")
    key = (document.get("apiVersion"), document.get("kind"))
    name = (document.get("metadata") or {}).get("name", "?")
    if key not in schemas:
        known = ", ".join(sorted(kind for _version, kind in schemas))
        raise SpecValidationError(f"{key[1]} {name}: no CRD schema for {key[0]}/{key[1]} (known: {known})")
    validator = jsonschema.Draft4Validator(schemas[key])
    errors = sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        problems = [
            f"{'.'.join(str(part) for part in error.absolute_path) or '(document)'}: {error.message}"
            for error in errors[:3]
        ]
        more = f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""
        raise SpecValidationError(f"{key[1]} {name}: {'; '.join(problems)}{more}")
