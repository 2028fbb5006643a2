"""Dataset loaders for real-vs-fake image collections, with source pairing and an explicit error policy.

Every loader is a :class:`torch.utils.data.Dataset` of dict items (``image``, ``label``, ``path``,
``source_id``, ``family``, ``video_id``, ``index``); batch them with :func:`defocus_xai.data.collate`.
docs/data.md describes the layouts, the FF++ split policy and the error policy.
"""

from .base import ImageDataset
from .cifake import CIFAKEDataset
from .faceforensics import FF_METHODS, FaceForensicsDataset
from .files import IMAGE_EXTENSIONS, list_images
from .folder import FolderDataset

__all__ = ["IMAGE_EXTENSIONS", "list_images", "FF_METHODS", "ImageDataset", "FolderDataset",
           "FaceForensicsDataset", "CIFAKEDataset"]
