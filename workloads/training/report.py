"""Run-directory reports: confusion-matrix figure and the model card."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workloads.classes import CLASS_MEANINGS

PREPROCESSING = (
    "workloads.images.decode_image (Pillow: decode, JPEG with the accurate integer IDCT → RGB → "
    "bilinear resize, antialiased when shrinking, to {size}x{size}) → float32 0..255, NHWC; "
    "the backbone's normalisation is inside the graph"
)


def save_confusion_matrix(
    matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path, title: str
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = np.asarray(matrix, dtype=np.float64)
    row_sums = counts.sum(axis=1, keepdims=True)
    normalised = np.divide(counts, row_sums, out=np.zeros_like(counts), where=row_sums > 0)
    fig, ax = plt.subplots(figsize=(11, 9.5), dpi=100)
    im = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(classes)), classes, rotation=90, fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for (i, j), value in np.ndenumerate(counts):
        if value:
            colour = "white" if normalised[i, j] > 0.6 else "black"
            ax.text(j, i, f"{int(value)}", ha="center", va="center", fontsize=6, color=colour)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="row-normalised recall")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def model_card(
    *,
    model_name: str,
    run_id: str,
    backbone: str,
    weights: str,
    image_size: int,
    classes: Sequence[str],
    split_manifest: Path,
    split_manifest_sha256: str,
    metrics: Mapping[str, Any],
    framework: Mapping[str, str],
    training_data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The model card; ``training_data`` is :meth:`TrainingData.report` (class counts, absent
    classes, class weights)."""
    return {
        "model_name": model_name,
        "run_id": run_id,
        "backbone": backbone,
        "weights": weights,
        "image_size": image_size,
        "classes": list(classes),
        "class_meanings": {code: CLASS_MEANINGS[code] for code in classes},
        "input": {
            "name": "image",
            "shape": [-1, image_size, image_size, 3],
            "dtype": "float32",
            "layout": "NHWC",
            "color": "RGB",
            "range": [0, 255],
        },
        "output": {"name": "probabilities", "shape": [-1, len(classes)], "dtype": "float32"},
        "preprocessing": PREPROCESSING.format(size=image_size),
        "split_manifest": str(split_manifest),
        "split_manifest_sha256": split_manifest_sha256,
        "metrics": dict(metrics),
        "training_data": dict(training_data or {}),
        "framework": dict(framework),
        "intended_use": (
            "Research and benchmarking of bone-marrow cytology classification; "
            "not a medical device and not for diagnosis."
        ),
    }


def model_card_markdown(card: Mapping[str, Any]) -> str:
    test = card["metrics"].get("test", {})
    lines = [
        f"# Model card: {card['model_name']} (run {card['run_id']})",
        "",
        f"- Backbone: {card['backbone']} (initial weights: {card['weights']})",
        f"- Input: `{card['input']['name']}` {card['input']['shape']} {card['input']['dtype']}, "
        f"{card['input']['layout']}, {card['input']['color']} {card['input']['range']}",
        f"- Output: `{card['output']['name']}` {card['output']['shape']} (softmax over the classes below)",
        f"- Preprocessing: {card['preprocessing']}",
        f"- Data: split manifest `{card['split_manifest']}` (sha256 {card['split_manifest_sha256'][:16]}…)",
        *_absent_lines(card.get("training_data", {})),
        f"- Framework: {', '.join(f'{k} {v}' for k, v in card['framework'].items())}",
        f"- Intended use: {card['intended_use']}",
        "",
        "## Test-split figures",
        "",
        f"accuracy {test.get('accuracy', float('nan')):.4f} · "
        f"balanced accuracy {test.get('balanced_accuracy', float('nan')):.4f} · "
        f"macro-F1 {test.get('macro_f1', float('nan')):.4f}",
        "",
        "| index | code | meaning | precision | recall | support |",
        "|---:|---|---|---:|---:|---:|",
    ]
    per_class = test.get("per_class", {})
    for index, code in enumerate(card["classes"]):
        row = per_class.get(code, {})
        lines.append(
            f"| {index} | {code} | {card['class_meanings'][code]} | {row.get('precision', 0):.3f} "
            f"| {row.get('recall', 0):.3f} | {row.get('support', 0)} |"
        )
    return "\n".join(lines) + "\n"


def _absent_lines(training_data: Mapping[str, Any]) -> list[str]:
    """Model-card lines naming the classes without training or test images (none when all are there)."""
    absent = training_data.get("absent_classes", {})
    lines = []
    if absent.get("train"):
        lines.append(
            f"- Classes without training images: {', '.join(absent['train'])} (their outputs are kept "
            "but never learned; do not trust their probabilities)"
        )
    untested = [code for code in absent.get("test", []) if code not in absent.get("train", [])]
    if untested:
        lines.append(f"- Classes without test images (no test figures): {', '.join(untested)}")
    return lines
