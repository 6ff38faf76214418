"""Render the EKS Anywhere spec (jinja2), parse it back, validate it against the CRDs, write it."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
import yaml

from contracts.files import atomic_write_text
from infra.eksa.crds import validate_document
from infra.eksa.errors import SpecValidationError
from infra.eksa.spec import SpecValues

TEMPLATES = Path(__file__).parent / "templates"


def _to_json(value: object) -> str:
    """Scalars and mappings as JSON, which YAML reads as-is: quoting is never the template's problem."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    return json.dumps(value)


_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)
_ENV.filters["tojson"] = _to_json


def render_documents(values: SpecValues) -> str:
    """Cluster, VSphereDatacenterConfig and one VSphereMachineConfig per role, as one YAML stream."""
    data = values.as_template_data()
    parts = [
        _ENV.get_template("cluster.yaml.j2").render(data),
        _ENV.get_template("vsphere-datacenter.yaml.j2").render(data),
    ]
    parts += [
        _ENV.get_template("vsphere-machine.yaml.j2").render(data, machine=machine)
        for machine in data["machines"]
    ]
    return "---\n" + "---\n".join(parts)


def validate_stream(text: str, *, crds: Path | None = None) -> list[dict]:
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise SpecValidationError(f"rendered spec is not valid YAML: {str(exc).splitlines()[0]}") from None
    for document in documents:
        validate_document(document, directory=crds)
    return documents


def write_spec(values: SpecValues, out_dir: Path, *, crds: Path | None = None) -> Path:
    """Render and validate everything first; only then write ``<out_dir>/<cluster>.yaml`` atomically."""
    text = render_documents(values)
    validate_stream(text, crds=crds)
    return atomic_write_text(out_dir / f"{values.cluster_name}.yaml", text)
