"""defocus_xai: physically grounded, interpretable deepfake forensics with defocus-blur maps.

Typical use::

    import defocus_xai as dx
    result = dx.estimate_defocus(images)                 # sigma maps in pixels, (B, 1, H, W)
    detector = dx.load_detector("bundled-defocus")       # weights shipped in the package
    shaps = dx.attribute(detector, result.dense)         # Shapley values on the defocus map
    fig = dx.plot.defocus_triptych(images[0], result.sparse[0], result.dense[0])

Every public name of the subpackages ``defocus``, ``data``, ``detect``, ``explain`` and ``analysis``
is re-exported here; figures live in :mod:`defocus_xai.plot` (``dx.plot``), the whole demo in
:func:`defocus_xai.pipeline.run_demo` (``dx.pipeline``). See ``docs/`` for the guide.
"""

from ._version import __version__
from . import analysis, data, defocus, detect, explain, pipeline, plot
from .analysis import *  # noqa: F401,F403
from .data import *  # noqa: F401,F403
from .defocus import *  # noqa: F401,F403
from .detect import *  # noqa: F401,F403
from .explain import *  # noqa: F401,F403

__all__ = ["__version__", "analysis", "data", "defocus", "detect", "explain", "pipeline", "plot",
           *defocus.__all__, *data.__all__, *detect.__all__, *explain.__all__, *analysis.__all__]
