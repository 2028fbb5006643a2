"""Attributions of defocus detectors, their export, and the checks of an attribution method.

* :func:`attribute` -- one entry point over shap and captum methods, on the defocus map or the image,
  with its options in one :class:`AttributionSettings` (the paper's: :meth:`AttributionSettings.paper`)
  and the attribution reference (``background``) recorded in its meta;
* :func:`export_attributions` -- stream a data set to a ``.npz`` file or store (read it with
  :mod:`defocus_xai.store`);
* :func:`extract_features` -- pooled penultimate features of a detector, for t-SNE / PCA;
* :func:`randomization_test` -- the model-parameter randomization sanity check;
* :func:`deletion_insertion` -- deletion / insertion faithfulness curves on the defocus map.

Examples
--------
>>> import defocus_xai.explain as dxe                                          # doctest: +SKIP
>>> attr = dxe.attribute(detector, maps, method="shap_gradient")             # doctest: +SKIP
>>> dxe.export_attributions(detector, dataset, "shap_data.npz", background_data=train)  # doctest: +SKIP
"""

from .attribution import attribute
from .export import export_attributions
from .faithfulness import CurveSet, FaithfulnessResult, deletion_insertion
from .features import FeatureSet, extract_features
from .sanity import randomization_test
from .settings import BACKGROUNDS, METHODS, SPACES, WRAPPERS, AttributionSettings

__all__ = [
    "attribute",
    "AttributionSettings",
    "export_attributions",
    "extract_features",
    "FeatureSet",
    "randomization_test",
    "deletion_insertion",
    "FaithfulnessResult",
    "CurveSet",
    "METHODS",
    "SPACES",
    "BACKGROUNDS",
    "WRAPPERS",
]
