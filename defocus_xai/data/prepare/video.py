"""Video decoding with PyAV (its wheels ship FFmpeg): frame counts, evenly spaced frame indices, frames."""

from __future__ import annotations

import os
from typing import Iterator, Sequence

import numpy as np

from ._deps import import_av

__all__ = ["VideoReadError", "frame_count", "frame_indices", "iter_frames"]


class VideoReadError(ValueError):
    """A video that cannot be opened or holds no decodable video stream.

    Attributes
    ----------
    path : str
        The video file.
    reason : str
        What went wrong.
    """

    def __init__(self, path, reason: str):
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"cannot read video {self.path!r}: {reason}")


def _errors():
    """The exceptions a broken or truncated file raises in PyAV."""
    return (import_av().error.FFmpegError, OSError, ValueError, EOFError)


def frame_count(path: str | os.PathLike) -> int:
    """Number of frames of the first video stream (the container's count, else by reading packets).

    Parameters
    ----------
    path : str or os.PathLike
        A video file (any container FFmpeg reads).

    Returns
    -------
    int
        The frame count, > 0.

    Raises
    ------
    VideoReadError
        The file cannot be opened, has no video stream or no frames.

    Examples
    --------
    >>> frame_count("000.mp4")          # doctest: +SKIP
    396
    """
    av = import_av()
    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                raise VideoReadError(path, "no video stream")
            stream = container.streams.video[0]
            n = int(stream.frames or 0)
            if n <= 0:
                n = sum(1 for packet in container.demux(stream) if packet.size)
    except VideoReadError:
        raise
    except _errors() as exc:
        raise VideoReadError(path, f"{type(exc).__name__}: {exc}") from None
    if n <= 0:
        raise VideoReadError(path, "no frames")
    return n


def frame_indices(total: int, n: int | None) -> np.ndarray:
    """``n`` evenly spaced frame indices in ``[0, total - 1]`` (first and last included), or all frames.

    Parameters
    ----------
    total : int
        Frames in the video.
    n : int or None
        Frames wanted; ``None`` or ``n >= total`` gives every frame.

    Returns
    -------
    numpy.ndarray
        Sorted unique int64 indices.

    Examples
    --------
    >>> frame_indices(10, 4).tolist()
    [0, 3, 6, 9]
    >>> frame_indices(3, 32).tolist()
    [0, 1, 2]
    """
    if total <= 0:
        raise ValueError(f"total must be positive, got {total}")
    if n is None or n >= total:
        return np.arange(total, dtype=np.int64)
    if n <= 0:
        raise ValueError(f"n must be positive or None, got {n}")
    if n == 1:
        return np.array([0], dtype=np.int64)
    return np.unique(np.rint(np.linspace(0, total - 1, n)).astype(np.int64))


def iter_frames(path: str | os.PathLike, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """Decode the video and yield ``(index, frame)`` for the wanted frame indices, in order.

    Frames are counted in the order the decoder returns them (presentation order); decoding stops after the
    last wanted index. ``frame`` is ``(H, W, 3)`` uint8 RGB.

    Parameters
    ----------
    path : str or os.PathLike
        A video file.
    indices : sequence of int
        Frame indices (0-based).

    Raises
    ------
    VideoReadError
        The file cannot be opened or decoding fails (frames before the failure have been yielded).

    Examples
    --------
    >>> frames = dict(iter_frames("000.mp4", [0, 10]))      # doctest: +SKIP
    """
    av = import_av()
    wanted = {int(i) for i in indices}
    if not wanted:
        return
    last = max(wanted)
    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                raise VideoReadError(path, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    yield i, frame.to_ndarray(format="rgb24")
                if i >= last:
                    break
    except VideoReadError:
        raise
    except _errors() as exc:
        raise VideoReadError(path, f"decoding failed: {type(exc).__name__}: {exc}") from None
