"""Datasets for lossnet: BAPPS 2AFC/JND, TID2013, KADID-10k, CSV opinion scores, the built-in
synthetic set, distortions, bundled photos, and a resumable downloader.

Example:
    >>> from lossnet.data import load_2afc
    >>> sets = load_2afc("builtin")  # synthetic, rule-based judgements
    >>> sets = load_2afc("data/bapps")  # doctest: +SKIP
"""
from .bapps import (
    JND_SUBSETS,
    TWOAFC_SUBSETS,
    JNDDataset,
    TwoAFCDataset,
    load_2afc,
    load_jnd,
    read_label,
    subset_order,
)
from .distortions import DISTORTIONS, apply_distortion, distort
from .download import (
    DATASETS,
    ArchivePart,
    DatasetInfo,
    dataset_info,
    download_dataset,
    download_file,
    extract_archive,
    manual_instructions,
)
from ..errors import DataError, DownloadError
from .fixtures import (
    write_bapps_fixture,
    write_jnd_fixture,
    write_kadid_fixture,
    write_mos_csv_fixture,
    write_tid2013_fixture,
)
from .images import load_image, resized_shape
from .mos import MOSDataset, load_kadid10k, load_mos_csv, load_tid2013
from .photos import builtin_photos
from .synthetic import SyntheticJND, SyntheticTwoAFC, builtin_2afc, builtin_jnd

__all__ = [
    "DATASETS",
    "DISTORTIONS",
    "JND_SUBSETS",
    "TWOAFC_SUBSETS",
    "ArchivePart",
    "DataError",
    "DatasetInfo",
    "DownloadError",
    "JNDDataset",
    "MOSDataset",
    "SyntheticJND",
    "SyntheticTwoAFC",
    "TwoAFCDataset",
    "apply_distortion",
    "builtin_2afc",
    "builtin_jnd",
    "builtin_photos",
    "dataset_info",
    "distort",
    "download_dataset",
    "download_file",
    "extract_archive",
    "load_2afc",
    "load_image",
    "load_jnd",
    "load_kadid10k",
    "load_mos_csv",
    "load_tid2013",
    "manual_instructions",
    "read_label",
    "resized_shape",
    "subset_order",
    "write_bapps_fixture",
    "write_jnd_fixture",
    "write_kadid_fixture",
    "write_mos_csv_fixture",
    "write_tid2013_fixture",
]
