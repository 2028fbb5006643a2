"""Safe image decoding: :func:`load_image` turns an image file into a float32 RGB array or fails clearly.

Every way a file can be unusable raises :class:`ImageLoadError`, a ``ValueError`` naming the file and the
problem; nothing returns a placeholder image, and no Pillow setting is changed. docs/data.md lists the
conversion of every Pillow mode and every refused case.
"""

from __future__ import annotations

import os
import struct
import warnings
from typing import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageLoadError", "load_image", "DEFAULT_MAX_PIXELS"]

#: Default upper limit on ``width * height`` accepted by :func:`load_image` (8192 x 8192, about 67 megapixels).
#: It is checked from the header, before any pixel is decoded, and it is below Pillow's own decompression-bomb
#: warning threshold (``PIL.Image.MAX_IMAGE_PIXELS``, about 89 megapixels by default).
DEFAULT_MAX_PIXELS = 8192 * 8192


class ImageLoadError(ValueError):
    """An image file could not be turned into an RGB array.

    Parameters
    ----------
    path : str
        The file that failed.
    reason : str
        What was wrong with it, in words (for example ``"file is truncated or corrupt: ..."``).

    Attributes
    ----------
    path : str
    reason : str

    Examples
    --------
    >>> err = ImageLoadError("/data/x.png", "empty file (0 bytes)")
    >>> str(err)
    "cannot load image '/data/x.png': empty file (0 bytes)"
    >>> isinstance(err, ValueError)
    True
    """

    def __init__(self, path, reason: str | None = None):
        if reason is None:  # one argument: a finished message (how torch re-raises a DataLoader worker's error)
            self.path, self.reason = "", str(path)
            super().__init__(self.reason)
            return
        self.path = os.fspath(path) if path is not None else ""
        self.reason = str(reason)
        super().__init__(f"cannot load image {self.path!r}: {self.reason}")

    def __reduce__(self):  # keep path/reason when pickled (DataLoader workers, multiprocessing)
        return (type(self), (self.path, self.reason))


def _check_fill(fill) -> np.ndarray | None:
    """Validate an RGBA fill colour: three floats in [0, 1] (as float32) or ``None``."""
    if fill is None:
        return None
    try:
        rgb = np.asarray(fill, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"fill must be three floats in [0, 1] or None, got {fill!r}") from None
    if rgb.size != 3 or not np.all(np.isfinite(rgb)) or np.any(rgb < 0) or np.any(rgb > 1):
        raise ValueError(f"fill must be three floats in [0, 1] or None, got {fill!r}")
    return rgb.astype(np.float32)


def _bomb_limit_text() -> str:
    limit = Image.MAX_IMAGE_PIXELS
    return "disabled" if limit is None else f"{2 * int(limit)} pixels"


def _check_range(arr: np.ndarray, top: int, path: str, *, what: str, limits: str, spec: str) -> None:
    """Raise :class:`ImageLoadError` when ``arr`` has values outside ``[0, top]`` (values shown with ``spec``)."""
    lo, hi = arr.min().item(), arr.max().item()
    if lo < 0 or hi > top:
        raise ImageLoadError(
            path,
            f"{what} with values in [{lo:{spec}}, {hi:{spec}}], outside {limits}; "
            "its intensity range is unknown, so it cannot be mapped to [0, 1]",
        )


def _to_rgb_float(im: Image.Image, fill: np.ndarray | None, path: str) -> np.ndarray:
    """Convert a fully loaded Pillow image to (H, W, 3) float32 in [0, 1] (the table in docs/data.md)."""
    mode = im.mode
    if mode.startswith("I;16"):
        gray = np.asarray(im).astype(np.float32) / np.float32(65535.0)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "I":
        arr = np.asarray(im)
        _check_range(arr, 65535, path, what="32-bit integer image", limits="the 16-bit range [0, 65535]",
                     spec="d")
        gray = arr.astype(np.float32) / np.float32(65535.0)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        if not np.all(np.isfinite(arr)):
            raise ImageLoadError(path, "floating-point image contains NaN or infinite values")
        _check_range(arr, 1, path, what="floating-point image", limits="[0, 1]", spec="g")
        return np.repeat(arr[:, :, None], 3, axis=2).astype(np.float32)
    if mode == "1":
        im = im.convert("L")
        mode = "L"
    if mode == "L" and "transparency" not in im.info:
        gray = np.asarray(im).astype(np.float32) / np.float32(255.0)
        return np.repeat(gray[:, :, None], 3, axis=2)

    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
        mode in ("P", "L", "RGB") and "transparency" in im.info
    )
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA")).astype(np.float32) / np.float32(255.0)
        rgb, alpha = rgba[:, :, :3], rgba[:, :, 3:4]
        if fill is None:
            return np.ascontiguousarray(rgb)
        return rgb * alpha + fill.reshape(1, 1, 3) * (np.float32(1.0) - alpha)
    if mode != "RGB":
        try:
            im = im.convert("RGB")
        except (ValueError, OSError) as exc:
            raise ImageLoadError(path, f"cannot convert Pillow mode {mode!r} to RGB: {exc}") from exc
    return np.asarray(im).astype(np.float32) / np.float32(255.0)


def load_image(
    path: str | os.PathLike,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    fill: Sequence[float] | None = (1.0, 1.0, 1.0),
) -> np.ndarray:
    """Decode an image file into an RGB float32 array in ``[0, 1]``, or raise :class:`ImageLoadError`.

    Parameters
    ----------
    path : str or os.PathLike
        Image file (any format Pillow reads: PNG, JPEG, BMP, TIFF, WebP, GIF, ...).
    max_pixels : int or None, optional
        Largest accepted ``width * height``, checked from the file header *before* decoding (default
        :data:`DEFAULT_MAX_PIXELS`, 8192 x 8192). ``None`` applies no limit of ours. Pillow's own
        decompression-bomb guard (``PIL.Image.MAX_IMAGE_PIXELS``, read, never changed here) still applies:
        images above twice that limit are refused by Pillow and reported as :class:`ImageLoadError`; Pillow's
        warning for images between one and two times its limit is turned into an error unless the image is
        within an explicitly larger ``max_pixels``.
    fill : sequence of 3 floats in [0, 1] or None, optional
        RGB colour that transparent pixels are composited over (straight alpha:
        ``rgb * a + fill * (1 - a)``). Default white ``(1, 1, 1)``, as an image viewer shows it.
        ``None`` ignores alpha and keeps the stored colour values, as ``PIL.Image.convert("RGB")`` does
        (use it to reproduce pipelines that loaded images that way).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` float32, C-contiguous, values in ``[0, 1]``, never NaN, upright per EXIF orientation.
        8-bit sources are divided by 255, 16-bit grayscale by 65535 (docs/data.md lists every mode).

    Raises
    ------
    ImageLoadError
        The file is missing, a directory, empty, not an image, truncated or corrupt, has zero width or
        height, exceeds ``max_pixels`` or Pillow's decompression-bomb limit, or holds values with no known
        mapping to ``[0, 1]``. ``err.path`` and ``err.reason`` say which file and why.
    ValueError
        ``fill`` or ``max_pixels`` is invalid.

    Examples
    --------
    >>> import numpy as np, PIL.Image, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "gray.png")
    >>> PIL.Image.fromarray(np.full((4, 5), 255, np.uint8)).save(path)
    >>> img = load_image(path)
    >>> img.shape, img.dtype, float(img.max())
    ((4, 5, 3), dtype('float32'), 1.0)
    """
    rgb_fill = _check_fill(fill)
    if max_pixels is not None:
        if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels <= 0:
            raise ValueError(f"max_pixels must be a positive int or None, got {max_pixels!r}")
    spath = _checked_file(path)
    im, caught = _open(spath)
    with im:
        _check_size(im, spath, max_pixels, caught)
        width, height = im.size
        try:
            im.load()  # force the full decode: truncated or corrupt data fails here, not later
            im = ImageOps.exif_transpose(im)
            arr = _to_rgb_float(im, rgb_fill, spath)
        except ImageLoadError:
            raise
        except MemoryError as exc:
            raise ImageLoadError(spath, f"out of memory decoding a {width} x {height} image") from exc
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError,
                struct.error) as exc:
            raise ImageLoadError(spath, f"file is truncated or corrupt: {type(exc).__name__}: {exc}") from exc

    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageLoadError(spath, f"decoded to an unexpected array shape {arr.shape}")
    # 8/16-bit sources are finite by construction; float sources were checked. Clip rounding noise only.
    np.clip(arr, 0.0, 1.0, out=arr)
    return arr


def _checked_file(path) -> str:
    """``path`` as a str naming an existing, non-empty regular file, or :class:`ImageLoadError`."""
    try:
        spath = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None
    if isinstance(spath, bytes):
        spath = os.fsdecode(spath)
    if not os.path.exists(spath):
        raise ImageLoadError(spath, "file not found")
    if os.path.isdir(spath):
        raise ImageLoadError(spath, "is a directory, not an image file")
    try:
        nbytes = os.path.getsize(spath)
    except OSError as exc:
        raise ImageLoadError(spath, f"cannot read file: {exc}") from exc
    if nbytes == 0:
        raise ImageLoadError(spath, "empty file (0 bytes)")
    return spath


def _open(spath: str):
    """Open the file's header with Pillow: ``(image, caught warnings)`` or :class:`ImageLoadError`."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", Image.DecompressionBombWarning)
            im = Image.open(spath)
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(
            spath,
            f"image too large, refused by Pillow's decompression-bomb guard ({exc}); its limit "
            f"({_bomb_limit_text()}) is PIL.Image.MAX_IMAGE_PIXELS x 2",
        ) from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(spath, "not a recognised image file (unknown format or corrupt header)") from exc
    except PermissionError as exc:
        raise ImageLoadError(spath, f"permission denied: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageLoadError(spath, f"cannot open image: {type(exc).__name__}: {exc}") from exc
    return im, caught


def _check_size(im: Image.Image, spath: str, max_pixels: int | None, caught) -> None:
    """Refuse zero-size images and images over ``max_pixels`` or Pillow's bomb threshold (header only)."""
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageLoadError(spath, f"zero-size image ({width} x {height})")
    npix = int(width) * int(height)
    if max_pixels is not None and npix > max_pixels:
        raise ImageLoadError(
            spath,
            f"image is {width} x {height} = {npix} pixels, more than max_pixels={int(max_pixels)} "
            "(possible decompression bomb; raise max_pixels to accept it)",
        )
    # Pillow warned (between 1x and 2x its limit): accepted only when the caller raised max_pixels.
    bomb_warned = any(issubclass(w.category, Image.DecompressionBombWarning) for w in caught)
    if bomb_warned and max_pixels is None:
        raise ImageLoadError(
            spath,
            f"image is {width} x {height} = {npix} pixels, over Pillow's decompression-bomb threshold "
            f"PIL.Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS}; pass max_pixels >= {npix} to accept it",
        )
