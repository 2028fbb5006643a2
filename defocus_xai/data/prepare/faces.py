"""Face boxes by FaceForensics++'s convention: dlib's HOG frontal face detector, the largest face, the box
enlarged 1.3x around its centre, a square crop clipped to the frame. docs/prepare.md has the details.
"""

from __future__ import annotations

import numpy as np

from ._deps import import_dlib

__all__ = ["FACE_SCALE", "face_box", "crop_box", "FaceDetector"]

#: Enlargement of the detector's box around its centre (FaceForensics++'s ``scale=1.3``).
FACE_SCALE = 1.3

_GRAY_WEIGHTS = np.array([0.299, 0.587, 0.114])


def face_box(face, width: int, height: int, *, scale: float = FACE_SCALE) -> tuple[int, int, int]:
    """The square crop box of a face box, as FaceForensics++ computes it.

    The side is ``int(max(right - left, bottom - top) * scale)``; the square is centred on the box centre
    (integer division, as the FaceForensics++ code); its top-left corner is clipped to 0 and the side
    shrunk so that the square stays inside the frame.

    Parameters
    ----------
    face : (int, int, int, int)
        ``(left, top, right, bottom)`` in pixels, as dlib's rectangles give them.
    width, height : int
        Frame size in pixels.
    scale : float, optional
        Enlargement factor (default 1.3).

    Returns
    -------
    (int, int, int)
        ``(x, y, size)``: the crop is ``frame[y:y + size, x:x + size]``.

    Examples
    --------
    >>> face_box((100, 50, 200, 150), 640, 480)
    (85, 35, 130)
    >>> face_box((0, 0, 100, 100), 640, 480)      # clipped at the frame's corner
    (0, 0, 130)
    """
    left, top, right, bottom = (int(v) for v in face)
    size = int(max(right - left, bottom - top) * scale)
    cx, cy = (left + right) // 2, (top + bottom) // 2
    x = max(int(cx - size // 2), 0)
    y = max(int(cy - size // 2), 0)
    size = min(width - x, size)
    size = min(height - y, size)
    return x, y, size


def crop_box(image: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    """``image[y:y + size, x:x + size]`` for ``box = (x, y, size)`` (a copy).

    Examples
    --------
    >>> crop_box(np.zeros((10, 12, 3), np.uint8), (2, 1, 5)).shape
    (5, 5, 3)
    """
    x, y, size = box
    return np.ascontiguousarray(image[y:y + size, x:x + size])


class FaceDetector:
    """dlib's frontal face detector (HOG + linear SVM; its weights ship inside the dlib wheel).

    Parameters
    ----------
    upsample : int, optional
        Times the image is upsampled before detection (default 1, as FaceForensics++: faces down to
        about 40 px are found).

    Examples
    --------
    >>> from skimage import data                                   # doctest: +SKIP
    >>> FaceDetector().largest_face(data.astronaut())              # doctest: +SKIP
    (179, 83, 266, 170)
    """

    def __init__(self, *, upsample: int = 1):
        if isinstance(upsample, bool) or int(upsample) < 0:
            raise ValueError(f"upsample must be a non-negative int, got {upsample!r}")
        self.upsample = int(upsample)
        self._detector = import_dlib().get_frontal_face_detector()

    def largest_face(self, rgb: np.ndarray) -> tuple[int, int, int, int] | None:
        """``(left, top, right, bottom)`` of the largest face in an RGB frame, or ``None``.

        Parameters
        ----------
        rgb : numpy.ndarray
            ``(H, W, 3)`` uint8 frame. It is converted to grey with the ITU-R 601 weights (as OpenCV's
            ``COLOR_BGR2GRAY`` that FaceForensics++ uses) before detection.
        """
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 frame, got shape {rgb.shape} dtype {rgb.dtype}")
        gray = np.ascontiguousarray(np.clip(np.rint(rgb @ _GRAY_WEIGHTS), 0, 255).astype(np.uint8))
        faces = self._detector(gray, self.upsample)
        if len(faces) == 0:
            return None
        best = max(faces, key=lambda r: (r.right() - r.left()) * (r.bottom() - r.top()))
        return best.left(), best.top(), best.right(), best.bottom()
