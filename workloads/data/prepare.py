"""`invoke data`: get the images (synthetic, local folder or Kaggle), scan, split, write the manifest."""

from __future__ import annotations

from pathlib import Path

from contracts.config import ToolkitConfig
from workloads.data.kaggle import download
from workloads.data.layout import scan_dataset
from workloads.data.manifest import SplitManifest
from workloads.data.split import build_manifest
from workloads.data.synthetic import generate_dataset
from workloads.progress import Progress, print_progress


def prepare_data(config: ToolkitConfig, *, progress: Progress = print_progress) -> SplitManifest:
    """Produce the dataset named by ``config.data.source``, split it and save the split manifest.

    synthetic: generate into ``config.paths.synthetic_dataset`` (skipped when already up to date);
    local: use ``config.data.path``; kaggle: download into ``config.paths.kaggle_dataset``.
    The manifest is written atomically to ``config.paths.split_manifest``.
    """
    data = config.data
    paths = config.paths
    progress(f"[data] source: {data.source}")
    if data.source == "synthetic":
        root = generate_dataset(
            paths.synthetic_dataset,
            images_per_class=data.synthetic_images_per_class,
            image_size=data.synthetic_image_size,
            seed=data.seed,
            progress=progress,
            workers=data.workers,
        )
    elif data.source == "local":
        root = Path(data.path)
    else:
        root = download(data.kaggle_handle, paths.kaggle_dataset, progress)

    progress(f"[data] scanning {root}")
    scan = scan_dataset(root, workers=data.workers, progress=progress)
    progress(f"[data] splitting (seed {data.seed}, val {data.val_fraction:g}, test {data.test_fraction:g})")
    manifest = build_manifest(
        scan,
        seed=data.seed,
        val_fraction=data.val_fraction,
        test_fraction=data.test_fraction,
        source=data.source,
    ).anchored_at(paths.split_manifest)
    path = manifest.save(paths.split_manifest)
    for line in manifest.summary_lines():
        progress(line)
    if not manifest.relocatable:
        progress(
            f"warning: the dataset {manifest.dataset_root} is outside {path.parent}, so the manifest "
            "names it by absolute path: a copy of the artifacts tree elsewhere (the in-cluster bench) "
            f"finds its images only if you place the dataset under {path.parent}/ and re-run `invoke data`"
        )
    progress(f"[data] wrote split manifest {path} (sha256 {manifest.sha256()[:12]}…)")
    return manifest
