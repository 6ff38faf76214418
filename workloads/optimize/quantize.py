"""INT8 post-training quantization with NNCF (the gate an INT8 model must pass: ``gate.py``).

Preset: MIXED (symmetric weights, asymmetric activations). The backbones' activations are far
from zero-centred — hard-swish in MobileNetV3 bottoms out at -0.375 and is unbounded above,
the 0..255 input is all positive — so a symmetric activation grid would waste about half of
its 256 levels. Asymmetric activations cost little on CPU and buy accuracy, which matters
because INT8 must pass the INT8 gate against FP32 (``workloads.optimize.gate``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov

from workloads.images import load_image
from workloads.progress import Progress

PRESET_NAME = "mixed"


class CalibrationImages:
    """Re-iterable calibration source: paths decoded on demand, so memory stays at one image."""

    def __init__(self, paths: Sequence[Path], image_size: int, progress: Progress, report_every: int = 0):
        self._paths = list(paths)
        self._size = image_size
        self._progress = progress
        self._every = report_every or max(1, len(self._paths) // 10)

    def __len__(self) -> int:
        return len(self._paths)

    def __iter__(self) -> Iterator[np.ndarray]:
        for index, path in enumerate(self._paths, start=1):
            image = load_image(path, self._size)[np.newaxis]
            # Reported before yielding: the consumer may stop right after the last image.
            if index % self._every == 0 or index == len(self._paths):
                self._progress(f"int8: calibration image {index}/{len(self._paths)}")
            yield image


def quantize_int8(
    fp32_model: ov.Model,
    calibration_paths: Sequence[Path],
    image_size: int,
    *,
    progress: Progress,
    validation: Sequence[tuple[Path, int]] = (),
    max_drop_points: float = 1.0,
) -> ov.Model:
    """Post-training INT8 quantization of an FP32 OpenVINO model (returns a new model).

    With ``validation`` (path, label) pairs, NNCF's accuracy control quantizes, measures the
    accuracy drop on them and returns the most drop-sensitive operations to floating point
    until the drop is within ``max_drop_points`` (0: no drop). The INT8 gate stays on the test split.
    """
    import nncf  # deferred: a heavy import that only this stage needs

    images = CalibrationImages(calibration_paths, image_size, progress)
    preset = nncf.QuantizationPreset.MIXED
    if not validation:
        progress(
            f"int8: NNCF post-training quantization, preset {PRESET_NAME}, {len(images)} calibration images"
        )
        return nncf.quantize(fp32_model, nncf.Dataset(images), preset=preset, subset_size=len(images))
    progress(
        f"int8: NNCF quantization with accuracy control, preset {PRESET_NAME}, {len(images)} calibration "
        f"images, max drop {max_drop_points:g} points on {len(validation)} validation images"
    )
    labelled = [(load_image(path, image_size)[np.newaxis], int(label)) for path, label in validation]
    return nncf.quantize_with_accuracy_control(
        fp32_model,
        nncf.Dataset(images),
        nncf.Dataset(labelled),
        validation_fn=top1_accuracy,
        max_drop=max_drop_points / 100.0,
        drop_type=nncf.DropType.ABSOLUTE,
        preset=preset,
        subset_size=len(images),
    )


def top1_accuracy(compiled_model: ov.CompiledModel, items: Iterable[tuple[Any, int]]) -> float:
    """NNCF validation function: top-1 accuracy over (image batch of one, label) items."""
    output = compiled_model.output(0)
    hits = [int(np.argmax(compiled_model(image)[output])) == label for image, label in items]
    return float(np.mean(hits)) if hits else 0.0
