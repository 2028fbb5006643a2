"""Data: safe image I/O, dataset loaders with real/fake pairing, and the DefocusSynth benchmark.

* :func:`load_image` decodes one file to an (H, W, 3) float32 array in [0, 1], or raises
  :class:`ImageLoadError` naming the file and the problem;
* :class:`FolderDataset`, :class:`FaceForensicsDataset`, :class:`CIFAKEDataset` yield dict samples
  (``image``, ``label``, ``path``, ``source_id``, ``family``, ``video_id``, ``index``);
* :mod:`defocus_xai.data.synth` (also ``dx.synth``) renders the DefocusSynth benchmark with physical
  ground truth (true sigma, depth, manipulation mask).
"""

from . import synth
from .datasets import (FF_METHODS, IMAGE_EXTENSIONS, CIFAKEDataset, FaceForensicsDataset, FolderDataset,
                       ImageDataset, collate)
from .io import DEFAULT_MAX_PIXELS, ImageLoadError, load_image
from .synth import DefocusSynth

__all__ = [
    "load_image", "ImageLoadError", "DEFAULT_MAX_PIXELS",
    "ImageDataset", "FolderDataset", "FaceForensicsDataset", "CIFAKEDataset", "collate",
    "IMAGE_EXTENSIONS", "FF_METHODS", "DefocusSynth", "synth",
]
