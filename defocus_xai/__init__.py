"""defocus_xai: physically grounded, interpretable deepfake forensics with defocus-blur maps.

Typical use::

    import defocus_xai as dx
    result = dx.estimate_defocus(images)        # sigma maps in pixels, (B, 1, H, W)

Every public name of the subpackages is re-exported here; see ``docs/`` for the guide.
"""

from ._version import __version__
from . import analysis, data, defocus
from .analysis import *  # noqa: F401,F403
from .data import *  # noqa: F401,F403
from .defocus import *  # noqa: F401,F403

__all__ = ["__version__", "analysis", "data", "defocus",
           *defocus.__all__, *data.__all__, *analysis.__all__]
