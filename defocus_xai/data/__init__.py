"""Data: safe image decoding, dataset loaders with real/fake pairing, and the DefocusSynth benchmark.

:func:`load_image` decodes one file or raises :class:`ImageLoadError`; the datasets (files on disk) and
:class:`DefocusSynth` (rendered, with ground truth) yield dict samples that :func:`collate` batches.
See docs/data.md and docs/synth.md.
"""

from .batching import collate
from .datasets import (FF_METHODS, IMAGE_EXTENSIONS, CIFAKEDataset, FaceForensicsDataset, FolderDataset,
                       ImageDataset, list_images)
from .io import ImageLoadError, load_image
from .prepare import prepare_ffpp
from .synth import DefocusSynth

__all__ = [
    "load_image", "ImageLoadError",
    "ImageDataset", "FolderDataset", "FaceForensicsDataset", "CIFAKEDataset",
    "list_images", "IMAGE_EXTENSIONS", "FF_METHODS", "DefocusSynth", "collate", "prepare_ffpp",
]
