"""The compiled CPU path's small C library (``edge_pixels.c``): built once per machine with the C++
compiler that ``torch.compile`` uses, cached on disk, loaded with ``ctypes``.

Two functions, each exactly equal to the torch code it replaces on that path: :func:`order_statistics`
(the two order statistics of :func:`~.fast_graphs.percentile_99`) and :func:`edge_pixels` (the double
threshold and :func:`~.edges.hysteresis`, plus the list of edge pixels). The cache directory is
``$DEFOCUS_XAI_CACHE`` or ``$XDG_CACHE_HOME/defocus_xai`` (``~/.cache/defocus_xai``); the library's
name carries a hash of the source, the compiler and its flags, and it is written under a temporary
name and renamed, so that concurrent processes never load a half-written file. Any failure (no
compiler, a read-only cache) raises; the caller (:mod:`.fused`) then runs the eager code.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

__all__ = ["library", "order_statistics", "edge_pixels", "apply_coefficients"]

SOURCE = Path(__file__).with_name("edge_pixels.c")
FLAGS = ("-O3", "-shared", "-fPIC")
_LOCK = threading.Lock()
_LIB: list = []


def _compiler() -> str:
    """The C++ compiler inductor uses (``$CXX``, else ``c++``, ``g++``, ``clang++``)."""
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        path = name and shutil.which(name)
        if path:
            return path
    raise RuntimeError("no C++ compiler found ($CXX, c++, g++, clang++)")


def _cache_dir() -> Path:
    root = os.environ.get("DEFOCUS_XAI_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "defocus_xai")
    return Path(root)


def library() -> ctypes.CDLL:
    """The loaded library, built on the first call (a few tenths of a second) or found in the cache.

    Examples
    --------
    >>> from defocus_xai.defocus.native import library
    >>> hasattr(library(), "edge_pixels")
    True
    """
    if _LIB:
        return _LIB[0]
    with _LOCK:
        if not _LIB:
            compiler = _compiler()
            source = SOURCE.read_bytes()
            key = hashlib.sha256(source + compiler.encode() + " ".join(FLAGS).encode()).hexdigest()
            target = _cache_dir() / f"edge_pixels-{key[:16]}.so"
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
                os.close(fd)
                try:
                    subprocess.run([compiler, *FLAGS, "-x", "c++", str(SOURCE), "-o", tmp, "-lm"],
                                   check=True, capture_output=True, timeout=120)
                    os.replace(tmp, target)
                finally:
                    if os.path.exists(tmp):
                        os.unlink(tmp)
            lib = ctypes.CDLL(str(target))
            i64, ptr = ctypes.c_int64, ctypes.c_void_p
            lib.order_statistics.argtypes = [ptr, i64, i64, i64, i64, ptr, ptr]
            lib.order_statistics.restype = None
            lib.edge_pixels.argtypes = [ptr, i64, i64, ptr, ptr, ptr, i64, i64, i64, i64, ptr, ptr,
                                       ptr, ptr, ptr]
            lib.edge_pixels.restype = i64
            lib.apply_coefficients.argtypes = [ptr, ptr, i64, i64, i64, i64, i64, ctypes.c_float,
                                               ptr]
            lib.apply_coefficients.restype = ctypes.c_int
            _LIB.append(lib)
    return _LIB[0]


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


def order_statistics(values: torch.Tensor, below: int, above: int) -> tuple:
    """``(low, high)`` ``(B,)``: the ``below``-th and ``above``-th smallest values (0-based ranks,
    ``below <= above <= below + 1``) of each row of the float32 ``values`` ``(B, n)``, as from a sort.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.native import order_statistics
    >>> order_statistics(torch.tensor([[3.0, 1.0, 2.0, 5.0]]), 1, 2)
    (tensor([2.]), tensor([3.]))
    """
    values = values.contiguous()
    B, n = values.shape
    if not (values.dtype == torch.float32 and 0 <= below <= above <= below + 1 and above < n):
        raise ValueError(f"order_statistics: float32 rows and ranks 0 <= {below} <= {above} < {n}")
    out = torch.empty(B, 2, dtype=torch.float32)
    scratch = torch.empty(n, dtype=torch.float32)
    library().order_statistics(_ptr(values), B, n, below, above, _ptr(scratch), _ptr(out))
    return out[:, 0], out[:, 1]


def edge_pixels(mag: torch.Tensor, peaks: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
                frame: int = 0) -> tuple:
    """``(edges, idx, centre, block)``: the double threshold and hysteresis of
    :func:`~.edges.canny_from_gradients` on the suppressed gradient (``peaks``, ``uint8`` 0 / 1) with
    the per-image thresholds ``low``, ``high`` (``B`` values each), as ``uint8`` 0 / 1
    ``(B, 1, H, W)``; and for the edge pixels in ascending order: their flat indices into
    ``(B, H, W)``, into maps framed by ``frame`` pixels on each side
    ``(B, H + 2 frame, W + 2 frame)``, and of their ``2 x 2`` blocks on the
    ``(B, ceil(H / 2), ceil(W / 2))`` grid.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.native import edge_pixels
    >>> mag = torch.tensor([[[[0.0, 0.5, 0.2, 0.2, 0.0, 0.2]]]])
    >>> edges, idx, centre, block = edge_pixels(mag, (mag > 0).to(torch.uint8),
    ...                                         torch.tensor([0.1]), torch.tensor([0.4]), frame=1)
    >>> edges.flatten().tolist(), idx.tolist(), centre.tolist(), block.tolist()
    ([0, 1, 1, 1, 0, 0], [1, 2, 3], [10, 11, 12], [0, 1, 1])
    """
    B, _, H, W = mag.shape
    if mag.stride(-1) != 1:
        mag = mag.contiguous()           # rows with a stride of their own are read in place
    peaks = peaks.contiguous()
    if not (mag.dtype == torch.float32 and peaks.dtype == torch.uint8 and peaks.shape == mag.shape):
        raise ValueError("edge_pixels: float32 mag and uint8 peaks of the same shape")
    low = low.to(torch.float32).reshape(B).contiguous()
    high = high.to(torch.float32).reshape(B).contiguous()
    edges = torch.empty(B, 1, H, W, dtype=torch.uint8)
    stack = torch.empty(H * W, dtype=torch.int64)
    out = torch.empty(3, B * H * W, dtype=torch.int64)
    count = library().edge_pixels(_ptr(mag), mag.stride(0), mag.stride(2), _ptr(peaks), _ptr(low),
                                  _ptr(high), B, H, W, frame,
                                  _ptr(edges), _ptr(stack), _ptr(out[0]), _ptr(out[1]),
                                  _ptr(out[2]))
    return (edges, *out[:, :count])


def apply_coefficients(coef: torch.Tensor, gray: torch.Tensor, sigma_max: float,
                       out: torch.Tensor | None = None) -> torch.Tensor:
    """The guided filter's last step on the full grid: the linear coefficients ``coef``
    ``(B, 2, h, w)`` upsampled bilinearly to ``gray``'s ``(B, 1, H, W)`` (``F.interpolate``,
    ``align_corners=False``, within float rounding) and applied, ``a * gray + b``, clamped to
    ``[0, sigma_max]``; written into ``out`` (contiguous float32 ``(B, 1, H, W)``) when given.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.native import apply_coefficients
    >>> coef = torch.tensor([[[[2.0]], [[0.5]]]])            # a = 2, b = 0.5 everywhere
    >>> apply_coefficients(coef, torch.full((1, 1, 2, 3), 0.25), 5.0).flatten().tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    """
    B, _, h, w = coef.shape
    H, W = gray.shape[-2:]
    coef, gray = coef.contiguous(), gray.contiguous()
    if not (coef.dtype == gray.dtype == torch.float32 and coef.shape[1] == 2 and gray.shape[:2] == (B, 1)):
        raise ValueError("apply_coefficients: float32 coefficients (B, 2, h, w) and gray (B, 1, H, W)")
    dense = torch.empty(B, 1, H, W, dtype=torch.float32) if out is None else out
    if not (dense.shape == (B, 1, H, W) and dense.dtype == torch.float32 and dense.is_contiguous()):
        raise ValueError("apply_coefficients: out must be a contiguous float32 (B, 1, H, W) tensor")
    if library().apply_coefficients(_ptr(coef), _ptr(gray), B, h, w, H, W, sigma_max, _ptr(dense)):
        raise MemoryError("apply_coefficients: out of memory")
    return dense
