"""TF SavedModel → OpenVINO IR (FP32, and FP32 with FP16-compressed weights).

OVMS clients address tensors by name, so the IR's input is always ``image`` with shape
[-1, S, S, 3] (dynamic batch, static spatial size) and its output ``probabilities`` [-1, C],
whatever names the converter derived from the signature.
"""

from __future__ import annotations

import re
from pathlib import Path

import openvino as ov

from contracts.errors import OptimizationError
from contracts.model_repository import MODEL_XML

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"


def convert_saved_model(saved_model_dir: Path, image_size: int, num_classes: int) -> ov.Model:
    """Convert the SavedModel's serving signature and pin the tensor names and input shape."""
    try:
        model = ov.convert_model(str(saved_model_dir))
    except Exception as exc:  # the converter raises several unrelated exception types
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OptimizationError(f"OpenVINO could not convert {saved_model_dir}: {first_line}") from None
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise OptimizationError(
            f"{saved_model_dir} converts to {len(model.inputs)} inputs and {len(model.outputs)} outputs; "
            f"the serving signature must take one '{INPUT_NAME}' tensor and return one '{OUTPUT_NAME}' tensor"
        )
    _pin_input_shape(model, image_size, saved_model_dir)
    output_shape = model.output(0).get_partial_shape()
    if output_shape.rank.is_dynamic or output_shape.rank.get_length() != 2 or output_shape[1] != num_classes:
        raise OptimizationError(
            f"{saved_model_dir} outputs shape {output_shape}, expected [?,{num_classes}] probabilities"
        )
    model.input(0).get_tensor().set_names({INPUT_NAME})
    model.output(0).get_tensor().set_names({OUTPUT_NAME})
    # Before NNCF sees the graph: the names it gives the nodes it inserts derive from these.
    canonical_node_names(model)
    return model


def _pin_input_shape(model: ov.Model, image_size: int, source: Path) -> None:
    shape = model.input(0).get_partial_shape()
    expected = ov.PartialShape([-1, image_size, image_size, 3])
    if shape.rank.is_dynamic or shape.rank.get_length() != 4 or not shape.compatible(expected):
        raise OptimizationError(
            f"{source} takes input shape {shape}, "
            f"but the model card says [?,{image_size},{image_size},3] (NHWC)"
        )
    if shape != expected:
        # Dynamic spatial dimensions would make every request re-plan the graph; the batch stays dynamic.
        model.reshape({model.input(0): expected})


def save_ir(model: ov.Model, directory: Path, *, compress_to_fp16: bool) -> Path:
    """Write ``directory``/model.xml + model.bin and return the .xml path.

    The same graph always gives the same bytes (see :func:`canonical_node_names`), so publishing
    can tell an unchanged model from a new one by its sha256.
    """
    directory.mkdir(parents=True, exist_ok=True)
    xml = directory / MODEL_XML
    canonical_node_names(model)
    ov.save_model(model, str(xml), compress_to_fp16=compress_to_fp16)
    return xml


_AUTOMATIC_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]*_[0-9]+")


def canonical_node_names(model: ov.Model) -> None:
    """Rename nodes that carry an automatic OpenVINO name after their place in the graph.

    OpenVINO names an unnamed node ``<Type>_<n>`` with ``n`` from a per-process counter (and graph
    transformations pass such names on to the nodes they create), so the same graph built twice
    in one process, or after another model, would serialize to a different model.xml. Nodes with
    a name of their own (scoped SavedModel names, NNCF's ``…/fq_…``) keep it; tensor names, which
    clients use, are not touched.
    """
    for index, node in enumerate(model.get_ordered_ops()):
        if _AUTOMATIC_NAME.fullmatch(node.get_friendly_name()):
            node.set_friendly_name(f"{node.get_type_name()}_{index}")
