"""defocus_xai: physically grounded, interpretable deepfake forensics with defocus-blur maps.

Typical use::

    import defocus_xai as dx
    maps = dx.estimate_defocus(images)                   # sigma maps in pixels, (B, 1, H, W)
    detector = dx.load_detector("bundled-defocus")       # weights shipped in the package
    shaps = dx.attribute(detector, images)               # Shapley values on the defocus map
    fig = dx.plot.defocus_triptych(images[0], result=maps)

The top level holds the verbs and result types a notebook needs; everything else lives in its
subpackage (``dx.store``, ``dx.analysis``, ``dx.plot``, ...). See ``docs/api.md``.
"""

from ._version import __version__
from . import analysis, data, defocus, detect, explain, pipeline, plot, store
from .analysis import (alignment_scores, binary_mask, embed, localization_scores, mask_activation, separability,
                       variance_test)
from .data import DefocusSynth, FaceForensicsDataset, FolderDataset, collate, load_image
from .defocus import DefocusEstimator, DefocusResult, estimate_defocus
from .detect import evaluate_detector, load_detector, train_detector
from .explain import AttributionSettings, attribute, export_attributions, extract_features
from .pipeline import paper_figures, run_demo
from .store import load_attributions

__all__ = [
    "__version__",
    # subpackages
    "analysis", "data", "defocus", "detect", "explain", "pipeline", "plot", "store",
    # defocus maps
    "estimate_defocus", "DefocusEstimator", "DefocusResult",
    # data
    "load_image", "DefocusSynth", "FolderDataset", "FaceForensicsDataset", "collate",
    # detectors
    "load_detector", "train_detector", "evaluate_detector",
    # attributions and the store
    "attribute", "AttributionSettings", "export_attributions", "load_attributions", "extract_features",
    # the paper's analyses
    "binary_mask", "mask_activation", "variance_test", "embed", "separability", "alignment_scores",
    "localization_scores",
    # the whole pipeline
    "run_demo", "paper_figures",
]
