"""Detectors: defocus-map, RGB and two-branch classifiers; checkpoints; metrics; training.

Examples
--------
>>> import defocus_xai as dx                                    # doctest: +SKIP
>>> det = dx.detect.load_detector("bundled-defocus")            # doctest: +SKIP
>>> det.predict_proba(images)                                   # doctest: +SKIP
"""

from .backbones import SmallCNN, create_backbone
from .checkpoints import load_detector, save_detector
from .metrics import detection_metrics, metrics_by_group
from .models import DefocusDetector, RGBDetector, TwoBranchDetector
from .train import evaluate_detector, train_detector

__all__ = [
    "DefocusDetector",
    "RGBDetector",
    "TwoBranchDetector",
    "load_detector",
    "save_detector",
    "detection_metrics",
    "metrics_by_group",
    "train_detector",
    "evaluate_detector",
    "create_backbone",
    "SmallCNN",
]
