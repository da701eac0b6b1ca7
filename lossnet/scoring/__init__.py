"""Scoring metrics on human judgements: BAPPS 2AFC and JND, opinion-score datasets (TID2013,
KADID-10k, CSV), the Kumar et al. analyses, and LPIPS-style calibration of lin weights.

Everything goes through one engine (:class:`DistanceEngine`) and one streaming pass
(:func:`stream_pairs`): one forward pass per batch gives every extraction point, the combined
score and several distance functions.

Example:
    >>> import lossnet
    >>> from lossnet.data import builtin_2afc
    >>> r = score_2afc(lossnet.PerceptualLoss(distance="l2"), builtin_2afc(n_per_subset=5), bootstrap=0,
    ...                progress=False)
    >>> sorted(r.subsets)
    ['mixed-family', 'same-family', 'structure-vs-appearance']
"""
from .analyses import analyze_2afc, format_analysis
from .calibration import CalibrationError, LinCalibrator, calibrate
from .datasets import ScoringError, as_datasets, is_synthetic
from .engine import COMBINED, DistanceEngine, stream_pairs
from .jnd import JNDResult, jnd_average_precision, score_jnd
from .mos import MOSResult, mos_correlations, score_mos
from .tables import format_table
from .twoafc import (
    SYNTHETIC_NOTE,
    TripletDistances,
    TwoAFCResult,
    bootstrap_means,
    score_2afc,
    twoafc_scores,
)

__all__ = [
    "COMBINED", "CalibrationError", "DistanceEngine", "JNDResult", "LinCalibrator", "MOSResult", "SYNTHETIC_NOTE",
    "ScoringError", "TripletDistances", "TwoAFCResult", "analyze_2afc", "as_datasets", "bootstrap_means", "calibrate",
    "format_analysis", "format_table", "is_synthetic", "jnd_average_precision", "mos_correlations", "score_2afc",
    "score_jnd", "score_mos", "stream_pairs", "twoafc_scores",
]
