"""Datasets for lossnet: BAPPS 2AFC/JND, TID2013, KADID-10k, CSV opinion scores, the built-in
synthetic set, distortions, bundled photos, the downstream tasks' data (autoencoding,
super-resolution, road segmentation), fixture writers in the official layouts, and the table of
downloadable datasets.

Example:
    >>> from lossnet.data import load_2afc
    >>> sets = load_2afc("builtin")  # synthetic, rule-based judgements
    >>> sets = load_2afc("data/bapps")  # doctest: +SKIP
"""
from ..errors import DataError, DownloadError
from .autoencoding import (
    AE_DATASETS,
    STL10_FILES,
    SVHN_FILES,
    ArrayImages,
    AutoencodingData,
    builtin_digits,
    digit_labels,
    download_torchvision,
    load_autoencoding_data,
    load_builtin_digits,
    load_stl10,
    load_svhn,
)
from .bapps import (
    JND_SUBSETS,
    REFERENCE_INTERPOLATION,
    REFERENCE_SIZE,
    TWOAFC_SUBSETS,
    JNDDataset,
    TwoAFCDataset,
    bapps_protocol,
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
from .fixtures import (
    MASSACHUSETTS_LAYOUTS,
    REAL_SHAPES,
    digit_images,
    write_bapps_fixture,
    write_jnd_fixture,
    write_kadid_fixture,
    write_massachusetts_fixture,
    write_mos_csv_fixture,
    write_stl10_fixture,
    write_superres_fixture,
    write_svhn_fixture,
    write_tid2013_fixture,
)
from .images import (
    IMAGE_EXTENSIONS,
    INTERPOLATIONS,
    center_crop_square,
    describe_loading,
    list_images,
    load_image,
    mod_crop,
    resize_pil,
    resized_shape,
)
from .mos import (
    MAX_ABS_SCORE,
    SCORE_SCALES,
    MOSDataset,
    load_kadid10k,
    load_mos_csv,
    load_tid2013,
)
from .pairing import pair_by_stem
from .photos import builtin_photos
from .roads import (
    SPLIT_ALIASES,
    RoadPairs,
    SegmentationData,
    generate_roads,
    load_mask,
    load_segmentation_data,
    massachusetts_layout,
    random_crop_flip,
    road_tile,
)
from .samples import Key, sample_rng, split_key
from .superres import (
    BUILTIN_SR_EVAL,
    EVAL_SET_NAMES,
    TRAIN_FOLDER_NAMES,
    ImageFolderCrops,
    PhotoCrops,
    SuperresData,
    eval_set_images,
    load_superres_data,
)
from .synthetic import SyntheticJND, SyntheticTwoAFC, builtin_2afc, builtin_jnd

__all__ = [
    "AE_DATASETS", "BUILTIN_SR_EVAL", "DATASETS", "DISTORTIONS", "EVAL_SET_NAMES", "IMAGE_EXTENSIONS",
    "INTERPOLATIONS", "JND_SUBSETS", "MASSACHUSETTS_LAYOUTS", "MAX_ABS_SCORE", "REAL_SHAPES",
    "REFERENCE_INTERPOLATION", "REFERENCE_SIZE", "SCORE_SCALES", "SPLIT_ALIASES", "STL10_FILES", "SVHN_FILES",
    "TRAIN_FOLDER_NAMES", "TWOAFC_SUBSETS",
    "ArchivePart", "ArrayImages", "AutoencodingData", "DataError", "DatasetInfo", "DownloadError",
    "ImageFolderCrops", "JNDDataset", "Key", "MOSDataset", "PhotoCrops", "RoadPairs", "SegmentationData",
    "SuperresData", "SyntheticJND", "SyntheticTwoAFC", "TwoAFCDataset",
    "apply_distortion", "bapps_protocol", "builtin_2afc", "builtin_digits", "builtin_jnd", "builtin_photos",
    "center_crop_square", "dataset_info", "describe_loading", "digit_images", "digit_labels", "distort",
    "download_dataset", "download_file", "download_torchvision", "eval_set_images", "extract_archive",
    "generate_roads", "list_images", "load_2afc", "load_autoencoding_data", "load_builtin_digits", "load_image",
    "load_jnd", "load_kadid10k", "load_mask", "load_mos_csv", "load_segmentation_data", "load_stl10",
    "load_superres_data", "load_svhn", "load_tid2013", "manual_instructions", "massachusetts_layout", "mod_crop",
    "pair_by_stem", "random_crop_flip", "read_label", "resize_pil", "resized_shape", "road_tile", "sample_rng",
    "split_key", "subset_order", "write_bapps_fixture", "write_jnd_fixture", "write_kadid_fixture",
    "write_massachusetts_fixture", "write_mos_csv_fixture", "write_stl10_fixture", "write_superres_fixture",
    "write_svhn_fixture", "write_tid2013_fixture",
]
