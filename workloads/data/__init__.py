"""Data layer: synthetic generator, dataset scan, stratified split, split manifest, Kaggle download.

Entry point for `invoke data`: :func:`prepare_data`. Later stages read the split with
:meth:`SplitManifest.load`.
"""

from workloads.data.kaggle import download, find_credentials, require_credentials
from workloads.data.layout import (
    DatasetScan,
    ExcludedFile,
    ScannedImage,
    inspect_image,
    locate_dataset,
    read_abbreviations,
    scan_dataset,
)
from workloads.data.manifest import SCHEMA_VERSION, SPLITS, ManifestEntry, SplitManifest
from workloads.data.prepare import prepare_data
from workloads.data.split import build_manifest, split_class, split_sizes
from workloads.data.synthetic import draw_cell, generate_dataset

__all__ = [
    "SCHEMA_VERSION",
    "SPLITS",
    "DatasetScan",
    "ExcludedFile",
    "ManifestEntry",
    "ScannedImage",
    "SplitManifest",
    "build_manifest",
    "download",
    "draw_cell",
    "find_credentials",
    "generate_dataset",
    "inspect_image",
    "locate_dataset",
    "prepare_data",
    "read_abbreviations",
    "require_credentials",
    "scan_dataset",
    "split_class",
    "split_sizes",
]
