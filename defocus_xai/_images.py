"""The library's image input convention, in one place: :func:`as_image_batch` and :func:`to_gray`.

torch tensors are channels-first, numpy arrays and PIL images channels-last; the result is always a
``(B, 3, H, W)`` float32 tensor in ``[0, 1]``. The full table: ``docs/estimator.md`` ("Input convention").
"""

from __future__ import annotations

import math

from typing import Any

import numpy as np
import torch

__all__ = ["as_image_batch", "to_gray"]

_RANGE_TOL = 1e-6
_LOADER_HINT = "composite the alpha channel first (dx.data.load_image does that)"


def _describe(x: Any) -> str:
    if isinstance(x, torch.Tensor):
        return f"torch tensor of shape {tuple(x.shape)} and dtype {x.dtype}"
    if isinstance(x, np.ndarray):
        return f"numpy array of shape {x.shape} and dtype {x.dtype}"
    return f"object of type {type(x).__name__}"


def _pil_to_numpy(img: Any, name: str) -> np.ndarray:
    mode = getattr(img, "mode", None)
    if mode in ("RGB", "L"):
        return np.asarray(img)
    if mode in ("I;16", "I;16B", "I;16L"):
        return np.asarray(img).astype(np.uint16)
    raise ValueError(
        f"{name}: PIL image of mode {mode!r} is not accepted; expected mode 'RGB' or 'L'. "
        f"Convert it with image.convert('RGB'), or {_LOADER_HINT}."
    )


def _numpy_to_torch(arr: np.ndarray, name: str) -> tuple[torch.Tensor, bool]:
    """Channels-last numpy -> (channels-first float32 torch, whether the range must be checked)."""
    if arr.dtype == np.bool_:
        raise TypeError(f"{name}: boolean images are not accepted ({_describe(arr)}); "
                        "pass uint8, uint16 or float in [0, 1].")
    if arr.ndim == 2:
        arr = arr[None, :, :, None]
    elif arr.ndim == 3:
        if arr.shape[-1] not in (1, 3, 4):
            raise ValueError(
                f"{name}: cannot interpret {_describe(arr)}: numpy images are channels-last, "
                "(H, W, C) with C in {1, 3}; for a batch of gray images pass (B, H, W, 1)."
            )
        arr = arr[None]
    elif arr.ndim == 4:
        pass
    else:
        raise ValueError(
            f"{name}: expected a numpy array of rank 2, 3 or 4 ((H, W), (H, W, C) or (B, H, W, C)), "
            f"got {_describe(arr)}."
        )
    channels = arr.shape[-1]
    if channels == 4:
        raise ValueError(f"{name}: got 4 channels (RGBA?) in {_describe(arr)}; {_LOADER_HINT}.")
    if channels not in (1, 3):
        raise ValueError(
            f"{name}: numpy images are channels-last with C in {{1, 3}}, got C = {channels} in "
            f"{_describe(arr)}."
        )
    check = False
    if not arr.flags.writeable:
        arr = arr.copy()
    if arr.dtype == np.uint8:
        t = torch.from_numpy(np.ascontiguousarray(arr)).to(torch.float32) / 255.0
    elif arr.dtype == np.uint16:
        t = torch.from_numpy(np.ascontiguousarray(arr).astype(np.float32)) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
        check = True
    else:
        raise TypeError(
            f"{name}: unsupported dtype in {_describe(arr)}; pass uint8, uint16 or float in [0, 1]."
        )
    return t.permute(0, 3, 1, 2), check


def _check_channels_first(t: torch.Tensor, name: str) -> None:
    """Raise unless the channel axis of ``t`` ((C, H, W) or (B, C, H, W)) holds 1 or 3 channels."""
    channels = t.shape[-3]
    if channels == 4 and t.shape[-1] not in (1, 3):
        raise ValueError(f"{name}: got 4 channels (RGBA?) in {_describe(t)}; {_LOADER_HINT}.")
    if channels not in (1, 3):
        batched = t.ndim == 4
        hint = ""
        if t.shape[-1] in (1, 3, 4):
            hint = f" It looks channels-last: use tensor.permute({'0, 3, 1, 2' if batched else '2, 0, 1'})."
        raise ValueError(
            f"{name}: cannot interpret {_describe(t)}: torch images are channels-first, "
            f"{'(B, C, H, W)' if batched else '(C, H, W)'} with C in {{1, 3}}.{hint}"
        )


def _torch_to_bchw(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim in (3, 4):
        _check_channels_first(t, name)
        if t.ndim == 3:
            t = t[None]
    else:
        raise ValueError(
            f"{name}: expected a torch tensor of rank 2, 3 or 4 ((H, W), (C, H, W) or (B, C, H, W)), "
            f"got {_describe(t)}."
        )
    return t


def as_image_batch(images: Any, *, device: str | torch.device | None = None,
                   name: str = "images") -> torch.Tensor:
    """Convert any accepted image input to the library's convention.

    Parameters
    ----------
    images : torch.Tensor, numpy.ndarray, PIL.Image.Image or list of them
        torch tensors are channels-first ``(B, C, H, W)``, ``(C, H, W)`` or ``(H, W)``; numpy arrays
        and PIL images are channels-last ``(B, H, W, C)``, ``(H, W, C)`` or ``(H, W)``. ``C`` is 1
        (gray) or 3 (RGB). dtype ``uint8`` (0..255), ``uint16`` (0..65535) or floating point in
        ``[0, 1]``. A list or tuple of single images of equal size is stacked into a batch.
    device : str or torch.device, optional
        Where the result lives; default: the input's device for a tensor, else the CPU.
    name : str, optional
        Name of the argument, used in error messages.

    Returns
    -------
    torch.Tensor
        ``(B, 3, H, W)`` float32 in ``[0, 1]``. For a floating point tensor input the autograd
        graph is kept (gradients flow back to ``images``).

    Raises
    ------
    TypeError
        For unsupported types or dtypes (bool, signed integers, ...).
    ValueError
        For wrong ranks, channel counts (RGBA included), empty images, NaN or infinite values,
        and floating point values outside ``[0, 1]``.

    Examples
    --------
    >>> import numpy as np
    >>> from defocus_xai._images import as_image_batch
    >>> as_image_batch(np.zeros((32, 48, 3), np.uint8)).shape
    torch.Size([1, 3, 32, 48])
    """
    return _convert(images, device, name, check=True)[0]


def as_image_batch_unchecked(images: Any, *, device: str | torch.device | None = None,
                             name: str = "images") -> tuple[torch.Tensor, str | None]:
    """:func:`as_image_batch` with the range check of floating point input left to the caller.

    For a caller that reads the batch anyway and can take its minimum and maximum on the way (the
    estimator's compiled path): it then calls :func:`check_extremes`, or :func:`check_range`.

    Returns
    -------
    batch : torch.Tensor
        As :func:`as_image_batch`'s, not yet checked nor clamped when ``unchecked`` is set.
    unchecked : str or None
        The input's description when the range check is still due (floating point input of three
        channels; one-channel input is checked before it is expanded), else ``None``.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai._images import as_image_batch_unchecked, check_range
    >>> x, unchecked = as_image_batch_unchecked(torch.full((1, 3, 4, 4), 2.0))
    >>> unchecked
    'torch tensor of shape (1, 3, 4, 4) and dtype torch.float32'
    >>> check_range(x, "images", unchecked)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: images: floating point images must lie in [0, 1], found values in [2, 2] in ...
    """
    return _convert(images, device, name, check=False)


def _convert(images: Any, device, name: str, check: bool) -> tuple[torch.Tensor, str | None]:
    """:func:`as_image_batch` (``check``) or :func:`as_image_batch_unchecked`."""
    if isinstance(images, (list, tuple)):
        return _stack_list(images, device, name), None
    if not isinstance(images, (torch.Tensor, np.ndarray)):
        if hasattr(images, "mode") and hasattr(images, "size") and hasattr(images, "getbands"):
            images = _pil_to_numpy(images, name)
        else:
            raise TypeError(
                f"{name}: expected a torch.Tensor, numpy.ndarray or PIL image, got {_describe(images)}."
            )
    original = _describe(images)
    if isinstance(images, np.ndarray):
        if images.size == 0:
            raise ValueError(f"{name}: got an empty {original}.")
        t, needs_range_check = _numpy_to_torch(images, name)
    else:
        t, needs_range_check = _tensor_to_float(images, name, original)
    if device is not None:
        t = t.to(device)
    if needs_range_check and (check or t.shape[1] != 3):
        t, needs_range_check = check_range(t, name, original), False
    if t.shape[-1] == 0 or t.shape[-2] == 0 or t.shape[0] == 0:
        raise ValueError(f"{name}: got a zero-size image in {original}.")
    if t.shape[1] == 1:
        t = t.expand(-1, 3, -1, -1)
    return t.contiguous(), (original if needs_range_check else None)


def _stack_list(images, device, name: str) -> torch.Tensor:
    """A list or tuple of single images of one size -> one batch."""
    if len(images) == 0:
        raise ValueError(f"{name}: got an empty {type(images).__name__}; expected images.")
    parts = [as_image_batch(im, device=device, name=f"{name}[{i}]") for i, im in enumerate(images)]
    shapes = {tuple(p.shape[-2:]) for p in parts}
    if len(shapes) > 1:
        raise ValueError(
            f"{name}: the images of a list must share one size, got sizes (H, W) {sorted(shapes)}; "
            "resize them first."
        )
    devices = {p.device for p in parts}
    if len(devices) > 1:
        raise ValueError(f"{name}: the images of a list lie on different devices {devices}.")
    return torch.cat(parts, 0)


def _tensor_to_float(t: torch.Tensor, name: str, original: str) -> tuple[torch.Tensor, bool]:
    """A torch image -> (channels-first float32 batch, whether the range must be checked)."""
    if t.numel() == 0:
        raise ValueError(f"{name}: got an empty {original}.")
    if t.dtype == torch.bool:
        raise TypeError(f"{name}: boolean images are not accepted ({original}); "
                        "pass uint8, uint16 or float in [0, 1].")
    if t.is_complex():
        raise TypeError(f"{name}: complex images are not accepted ({original}).")
    t = _torch_to_bchw(t, name)
    if t.dtype == torch.uint8:
        return t.to(torch.float32) / 255.0, False
    if t.dtype == getattr(torch, "uint16", None):
        return t.to(torch.int32).to(torch.float32) / 65535.0, False
    if t.is_floating_point():
        return t.to(torch.float32), True
    raise TypeError(f"{name}: unsupported dtype in {original}; pass uint8, uint16 or float in [0, 1].")


def check_range(t: torch.Tensor, name: str, original: str) -> torch.Tensor:
    """Refuse NaN, infinity and values outside ``[0, 1]`` (beyond the tolerance); clamp the rest.

    The range check of :func:`as_image_batch` for a batch from :func:`as_image_batch_unchecked`
    (``original``: its description of the input).

    Examples
    --------
    >>> import torch
    >>> from defocus_xai._images import check_range
    >>> float(check_range(torch.tensor([[[[1.0 + 1e-7]]]]), "images", "a tensor").max())
    1.0
    """
    with torch.no_grad():
        # One pass: min and max propagate NaN, and an infinity is an extremum.
        lo, hi = (float(v) for v in torch.aminmax(t))
    _refuse(lo, hi, t, name, original)
    if lo < 0.0 or hi > 1.0:
        t = t.clamp(0.0, 1.0)
    return t


def check_extremes(extremes: torch.Tensor, t: torch.Tensor, name: str, original: str) -> None:
    """:func:`check_range`'s errors from ``extremes`` ``(B, 2)``, the minimum and maximum of each
    sample of ``t`` taken by its caller (NaN where the sample holds one); no clamping.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai._images import check_extremes
    >>> check_extremes(torch.tensor([[0.0, 1.0], [0.2, 0.5]]), torch.zeros(2, 3, 4, 4), "images", "a")
    """
    with torch.no_grad():
        lo, hi = float(extremes[:, 0].min()), float(extremes[:, 1].max())
    _refuse(lo, hi, t, name, original)


def _refuse(lo: float, hi: float, t: torch.Tensor, name: str, original: str) -> None:
    """The range errors of :func:`check_range`, given the minimum and maximum of ``t``."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        n_bad = int((~torch.isfinite(t.detach())).sum())
        raise ValueError(f"{name}: {n_bad} NaN or infinite value(s) in {original}.")
    if lo < -_RANGE_TOL or hi > 1.0 + _RANGE_TOL:
        raise ValueError(
            f"{name}: floating point images must lie in [0, 1], found values in [{lo:.6g}, {hi:.6g}] "
            f"in {original}. Scale them to [0, 1] (e.g. (x + 1) / 2 for [-1, 1], x / 255 for "
            "0..255), or pass uint8 images, which are divided by 255."
        )


def to_gray(batch: torch.Tensor) -> torch.Tensor:
    """Gray image of the defocus estimator's recipes ``"ours"`` and ``"reference"``: the plain mean of R, G and B.

    The mean is what the reference method uses. On JPEG files it mixes in the chroma, which JPEG keeps
    at half resolution, and reads its blur as defocus; :func:`luma` does not (recipe ``"robust"``).

    Parameters
    ----------
    batch : torch.Tensor
        ``(B, 3, H, W)`` in the library's convention (see :func:`as_image_batch`).

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)``, same dtype and device, differentiable.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai._images import to_gray
    >>> to_gray(torch.ones(2, 3, 8, 8)).shape
    torch.Size([2, 1, 8, 8])
    """
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"to_gray: expected a (B, 3, H, W) tensor, got shape {tuple(batch.shape)}.")
    return batch.mean(dim=1, keepdim=True)


#: ITU-R BT.601 luma weights of R, G and B (the ``Y`` of JFIF's YCbCr).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)


def luma(batch: torch.Tensor) -> torch.Tensor:
    """JPEG's luma ``Y = 0.299 R + 0.587 G + 0.114 B``: the gray image of the estimator's ``"robust"`` recipe.

    JPEG stores ``Y`` at full resolution and the chroma ``Cb, Cr`` at half resolution in each direction
    (4:2:0, the common default). The mean of R, G and B (:func:`to_gray`) is ``Y + 0.476 Cb + 0.229 Cr``:
    across an edge with a change of colour it mixes in the subsampled, upsampled chroma, whose blur
    reads as defocus. ``Y`` carries no chroma and the same optical blur.

    Parameters
    ----------
    batch : torch.Tensor
        ``(B, 3, H, W)`` in ``[0, 1]``.

    Returns
    -------
    torch.Tensor
        ``(B, 1, H, W)``, same dtype and device, differentiable.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai._images import luma
    >>> x = torch.zeros(1, 3, 2, 2)
    >>> x[:, 1] = 1.0                                    # pure green
    >>> round(float(luma(x)[0, 0, 0, 0]), 3)
    0.587
    """
    if batch.ndim != 4 or batch.shape[1] != 3:
        raise ValueError(f"luma: expected a (B, 3, H, W) tensor, got shape {tuple(batch.shape)}.")
    w = torch.tensor(LUMA_WEIGHTS, dtype=batch.dtype, device=batch.device).view(1, 3, 1, 1)
    return (batch * w).sum(1, keepdim=True)
