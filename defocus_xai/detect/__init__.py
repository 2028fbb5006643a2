"""Detectors: defocus-map, RGB and two-branch classifiers; checkpoints; metrics; training.

Examples
--------
>>> import defocus_xai as dx                                    # doctest: +SKIP
>>> det = dx.detect.load_detector("bundled-defocus")            # doctest: +SKIP
>>> det.predict_proba(images)                                   # doctest: +SKIP
"""

from .backbones import SmallCNN, create_backbone
from .checkpoints import load_detector, save_detector
from .defocus_detector import DefocusDetector
from .evaluate import evaluate_detector
from .maps import scale_sigma_maps
from .metrics import detection_metrics, metrics_by_group
from .protocol import Detector, MapDetector, uses_maps
from .rgb_detector import RGBDetector
from .train import TrainResult, train_detector
from .two_branch import TwoBranchDetector

__all__ = [
    "DefocusDetector",
    "RGBDetector",
    "TwoBranchDetector",
    "Detector",
    "MapDetector",
    "uses_maps",
    "load_detector",
    "save_detector",
    "detection_metrics",
    "metrics_by_group",
    "train_detector",
    "TrainResult",
    "evaluate_detector",
    "scale_sigma_maps",
    "create_backbone",
    "SmallCNN",
]
