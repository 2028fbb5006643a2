"""Prepare data sets from their original downloads: FaceForensics++ videos and mask videos -> face crops.

:func:`prepare_ffpp` (command ``defocus-xai prepare ffpp``) writes the layout that
:class:`~defocus_xai.data.FaceForensicsDataset` reads. It needs the optional ``ffpp`` extra (PyAV, dlib),
imported only when called. docs/prepare.md walks from the download to the frames.
"""

from .faces import FACE_SCALE, FaceDetector, crop_box, face_box
from .ffpp import PrepareReport, prepare_ffpp
from .layout import VideoJob, find_ffpp_videos
from .video import VideoReadError, frame_count, frame_indices, iter_frames

__all__ = [
    "prepare_ffpp", "PrepareReport", "find_ffpp_videos", "VideoJob",
    "FaceDetector", "face_box", "crop_box", "FACE_SCALE",
    "VideoReadError", "frame_count", "frame_indices", "iter_frames",
]
