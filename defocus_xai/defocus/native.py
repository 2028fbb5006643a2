"""The compiled CPU path's small C library (``edge_pixels.c``, ``propagation.c``): built once per
machine with the C++ compiler that ``torch.compile`` uses, cached on disk, loaded with ``ctypes``.

Four functions, each equal to the torch code it replaces on that path (exactly, or within float
rounding): :func:`edge_thresholds` (the percentile and thresholds of
:func:`~.edges.edge_thresholds`), :func:`edge_pixels` (the double threshold and
:func:`~.edges.hysteresis`, plus the list of edge pixels), :func:`guided_coefficients` (the guided
propagation at half resolution) and :func:`apply_coefficients` (its coefficients upsampled and
applied to the gray image). Scalar C that the compiler vectorizes where it can (no machine-specific
flags: the cached library runs on any CPU of the architecture). The cache directory is
``$DEFOCUS_XAI_CACHE`` or ``$XDG_CACHE_HOME/defocus_xai`` (``~/.cache/defocus_xai``), or where that
is read-only a per-user folder in the temporary directory; the library's name carries a hash of
the sources, the compiler and its flags, and it is written under a temporary name and renamed, so
that concurrent processes never load a half-written file. Any failure (no compiler, no writable
folder) raises; the caller (:mod:`.fused`) then runs the eager code.
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

__all__ = ["library", "edge_thresholds", "edge_pixels", "guided_coefficients", "apply_coefficients"]

SOURCES = tuple(Path(__file__).with_name(name) for name in ("edge_pixels.c", "propagation.c"))
#: ``-ffp-contract=off``: multiply-adds rounded as written (torch's order), on every architecture.
FLAGS = ("-O3", "-ffp-contract=off", "-shared", "-fPIC")
_LOCK = threading.Lock()
_LIB: list = []


def _compiler() -> str:
    """The C++ compiler inductor uses (``$CXX``, else ``c++``, ``g++``, ``clang++``)."""
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        path = name and shutil.which(name)
        if path:
            return path
    raise RuntimeError("no C++ compiler found ($CXX, c++, g++, clang++)")


def _cache_dirs() -> list:
    """Where the library is cached: ``$DEFOCUS_XAI_CACHE``, else ``$XDG_CACHE_HOME/defocus_xai``
    (``~/.cache/defocus_xai``), then a per-user folder in the temporary directory."""
    first = os.environ.get("DEFOCUS_XAI_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "defocus_xai")
    user = getattr(os, "getuid", lambda: "user")()
    return [Path(first), Path(tempfile.gettempdir()) / f"defocus_xai_{user}"]


def _check_private(path: Path) -> None:
    """Refuse (``PermissionError``) a cache folder or library that another user owns or may write:
    a library planted there would run in this process."""
    if not hasattr(os, "getuid"):
        return
    st = path.stat()
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise PermissionError(f"{path} is not private to this user (owner {st.st_uid}, "
                              f"mode {oct(st.st_mode & 0o777)})")


def _build(compiler: str, name: str) -> Path:
    """The library's path in the first writable cache folder, compiled there if absent (written
    under a temporary name, then renamed: a concurrent process never loads a half-written file)."""
    errors = []
    for folder in _cache_dirs():
        target = folder / name
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            _check_private(folder)
            if target.exists():
                _check_private(target)
                return target
            fd, tmp = tempfile.mkstemp(suffix=".so", dir=folder)
        except OSError as exc:                   # read-only, or not ours: the next folder
            errors.append(f"{folder}: {exc}")
            continue
        os.close(fd)
        try:
            subprocess.run([compiler, *FLAGS, "-x", "c++", *map(str, SOURCES), "-o", tmp, "-lm"],
                           check=True, capture_output=True, timeout=120)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return target
    raise OSError("no writable cache folder for the C library: " + "; ".join(errors))


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
            source = b"".join(path.read_bytes() for path in SOURCES)
            key = hashlib.sha256(source + compiler.encode() + " ".join(FLAGS).encode()).hexdigest()
            lib = ctypes.CDLL(str(_build(compiler, f"defocus_xai_native-{key[:16]}.so")))
            i64, ptr = ctypes.c_int64, ctypes.c_void_p
            f32 = ctypes.c_float
            lib.percentile_thresholds.argtypes = [ptr, i64, i64, f32, f32, f32, ptr, ptr, ptr]
            lib.percentile_thresholds.restype = None
            lib.edge_pixels.argtypes = [ptr, i64, i64, ptr, ptr, ptr, i64, i64, i64, i64, ptr, ptr,
                                       ptr, ptr, ptr]
            lib.edge_pixels.restype = i64
            lib.apply_coefficients.argtypes = [ptr, ptr, i64, i64, i64, i64, i64, f32, ptr]
            lib.apply_coefficients.restype = ctypes.c_int
            lib.guided_coefficients.argtypes = [ptr, ptr, i64, i64, i64, ptr, i64, i64, f32, ptr]
            lib.guided_coefficients.restype = ctypes.c_int
            _LIB.append(lib)
    return _LIB[0]


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


def edge_thresholds(sample: torch.Tensor, low: float, high: float, floor: float) -> tuple:
    """``(lo, hi)`` ``(B,)``: :func:`~.edges.edge_thresholds`' two thresholds from the rows of the
    float32 ``sample`` ``(B, n)`` (the values of the gradient magnitude it takes the percentile of):
    the 99th percentile ``ref`` as ``torch.quantile`` computes it (the order statistics from a
    histogram and a quickselect instead of a sort; within a few float32 ulps),
    ``lo = max(low ref, floor)`` and ``hi = max(high ref, floor, lo)``.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.native import edge_thresholds
    >>> lo, hi = edge_thresholds(torch.arange(101.0)[None], 0.05, 0.15, 1.0)
    >>> lo.tolist(), hi.tolist()            # ref = 99
    ([4.950000286102295], [14.850000381469727])
    """
    sample = sample.contiguous()
    if sample.dtype != torch.float32 or sample.dim() != 2 or sample.shape[1] < 1:
        raise ValueError("edge_thresholds: a float32 (B, n) sample, n >= 1")
    B, n = sample.shape
    lo, hi = torch.empty(B), torch.empty(B)
    scratch = torch.empty(n)
    library().percentile_thresholds(_ptr(sample), B, n, low, high, floor, _ptr(scratch), _ptr(lo),
                                    _ptr(hi))
    return lo, hi


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
    if not (mag.dtype == torch.float32 and peaks.dtype == torch.uint8 and peaks.shape == mag.shape
            and mag.shape[1] == 1):
        raise ValueError("edge_pixels: float32 mag and uint8 peaks of the same (B, 1, H, W) shape")
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


def guided_coefficients(sums: torch.Tensor, gray: torch.Tensor, blur: tuple, radius: int,
                        eps: float) -> torch.Tensor:
    """The guided propagation at half resolution (:func:`~.propagation.guided_propagation` with
    ``subsample=2``) up to the guided filter's box-averaged linear coefficients ``(B, 2, h, w)``,
    ``h, w = ceil(H / 2), ceil(W / 2)``: from ``sums`` ``(2, B, 1, h, w)``, the sums of
    ``sigma * weight`` and of ``weight`` over the edge pixels of each ``2 x 2`` block, and the gray
    image ``(B, 1, H, W)``; ``blur``: the normalized fill's Gaussian taps on the small grid;
    ``radius``, ``eps``: the guided filter's on the small grid. Within float rounding of the torch
    code (the same operations in the same order, some contracted).

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.defocus.native import guided_coefficients
    >>> sums = torch.zeros(2, 1, 1, 8, 8); sums[:, 0, 0, 3, 3] = torch.tensor([6.0, 2.0])
    >>> coef = guided_coefficients(sums, torch.rand(1, 1, 16, 16), (0.25, 0.5, 0.25), 2, 1e-3)
    >>> bool(coef[:, 1].allclose(torch.tensor(3.0), atol=1e-4))   # b = 3, a = 0: flat sigma 3
    True
    """
    _, B, _, h, w = sums.shape
    H, W = gray.shape[-2:]
    sums, gray = sums.contiguous(), gray.contiguous()
    if not (sums.dtype == gray.dtype == torch.float32 and sums.shape[:3] == (2, B, 1)
            and gray.shape[:2] == (B, 1) and (h, w) == ((H + 1) // 2, (W + 1) // 2)
            and len(blur) % 2 == 1 and 0 < radius < min(h, w) and len(blur) // 2 < min(h, w)):
        raise ValueError("guided_coefficients: float32 sums (2, B, 1, ceil(H/2), ceil(W/2)) and "
                         "gray (B, 1, H, W), kernels shorter than the grid")
    taps = torch.tensor(blur, dtype=torch.float32)
    coef = torch.empty(B, 2, h, w, dtype=torch.float32)
    if library().guided_coefficients(_ptr(sums), _ptr(gray), B, H, W, _ptr(taps), len(blur) // 2,
                                     radius, eps, _ptr(coef)):
        raise MemoryError("guided_coefficients: out of memory")
    return coef


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
    if not (coef.dtype == gray.dtype == torch.float32 and coef.shape[1] == 2 and h > 0 and w > 0
            and gray.shape[:2] == (B, 1)):
        raise ValueError("apply_coefficients: float32 coefficients (B, 2, h, w) and gray (B, 1, H, W)")
    dense = torch.empty(B, 1, H, W, dtype=torch.float32) if out is None else out
    if not (dense.shape == (B, 1, H, W) and dense.dtype == torch.float32 and dense.is_contiguous()):
        raise ValueError("apply_coefficients: out must be a contiguous float32 (B, 1, H, W) tensor")
    if library().apply_coefficients(_ptr(coef), _ptr(gray), B, h, w, H, W, sigma_max, _ptr(dense)):
        raise MemoryError("apply_coefficients: out of memory")
    return dense
