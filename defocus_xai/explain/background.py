"""The attribution reference (background): one vocabulary, its resolution, and its record.

``background`` is ``"data"`` (the default: ``background_size`` real samples, from the reference / training
data when one is given), ``"zeros"`` (one all-zero input), ``"blur"`` (each input's own blurred copy), an
int ``k`` (``"data"`` with ``k`` samples) or the reference inputs themselves. Why the choice matters and
what each one means for the analyses: ``docs/attribution.md`` ("The attribution reference").
"""

from __future__ import annotations

import hashlib
import math
import warnings
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["BACKGROUNDS", "DEFAULT_BACKGROUND_SIZE", "BLUR_FRACTION", "check_background", "background_kind",
           "data_size", "describe_background", "rows_info", "blur", "blur_sigma", "data_rows"]

BACKGROUNDS = ("data", "zeros", "blur")
"""The named references: real data samples, one all-zero input, each input's blurred copy."""

DEFAULT_BACKGROUND_SIZE = 10
"""Samples of the default data background (the paper's 10 real training frames)."""

BLUR_FRACTION = 0.05
"""``background="blur"``: the Gaussian's sigma as a fraction of the input's side (15 px at 299)."""


def check_background(background: Any, background_size: Any) -> None:
    """Raise a ``TypeError`` / ``ValueError`` for a value outside the vocabulary.

    Examples
    --------
    >>> check_background("data", 10)
    >>> check_background("mean", 10)
    Traceback (most recent call last):
    ...
    ValueError: unknown background 'mean'; choose one of ('data', 'zeros', 'blur'), an int k or reference inputs
    """
    if isinstance(background_size, bool) or not isinstance(background_size, (int, np.integer)) or \
            int(background_size) < 1:
        raise ValueError(f"background_size must be an integer >= 1, got {background_size!r}")
    bg = background
    if isinstance(bg, str):
        if bg not in BACKGROUNDS:
            raise ValueError(f"unknown background {bg!r}; choose one of {BACKGROUNDS}, an int k or reference inputs")
        return
    if isinstance(bg, bool) or not (torch.is_tensor(bg) or isinstance(bg, (np.ndarray, int, np.integer))):
        raise TypeError(f"background must be one of {BACKGROUNDS}, an int k (data samples) or a tensor / array "
                        f"of reference inputs, got {type(bg).__name__}")
    if isinstance(bg, (int, np.integer)) and int(bg) < 1:
        raise ValueError(f"background={bg}: need at least 1 sample")


def background_kind(background: Any) -> str:
    """``"data"``, ``"zeros"``, ``"blur"`` or ``"given"`` (reference inputs passed in).

    Examples
    --------
    >>> background_kind(5), background_kind("blur"), background_kind(torch.zeros(1, 1, 2, 2))
    ('data', 'blur', 'given')
    """
    if isinstance(background, str):
        return background
    return "data" if isinstance(background, (int, np.integer)) else "given"


def data_size(background: Any, background_size: int) -> int:
    """The ``k`` of a data background: the int itself, else ``background_size``.

    Examples
    --------
    >>> data_size(3, 10), data_size("data", 10)
    (3, 10)
    """
    return int(background) if isinstance(background, (int, np.integer)) else int(background_size)


def _range(ix: Sequence[int]) -> str:
    ix = [int(i) for i in ix]
    if ix and ix == list(range(ix[0], ix[0] + len(ix))):
        return f"{ix[0]}..{ix[-1]}" if len(ix) > 1 else str(ix[0])
    return ", ".join(map(str, ix[:12])) + (", ..." if len(ix) > 12 else "")


def describe_background(info: dict) -> str:
    """One line that states an attribution reference, for reports and figure captions.

    Parameters
    ----------
    info : dict
        A ``background_info`` record (:func:`rows_info`, or an attribution's / store's meta).

    Examples
    --------
    >>> describe_background({"kind": "zeros", "shape": [1, 8, 8]})
    'zeros: one all-zero input (1, 8, 8)'
    >>> describe_background({"kind": "data", "k": 10, "source": "reference data", "indices": list(range(10)),
    ...                      "labels": [0] * 10})
    'data: 10 real samples of the reference data (indices 0..9)'
    """
    kind = info.get("kind")
    shape = f" {tuple(info['shape'])}" if info.get("shape") else ""
    sha = f", sha1 {info['sha1']}" if info.get("sha1") else ""
    if kind == "zeros":
        return f"zeros: one all-zero input{shape}"
    if kind == "blur":
        sigma = info.get("sigma")
        size = f"sigma {sigma:.3g} px" if sigma else f"sigma {info.get('sigma_fraction', BLUR_FRACTION):g} x side"
        return f"blur: each input's Gaussian-blurred copy ({size})"
    if kind == "data":
        labels = info.get("labels")
        what = "real samples" if labels and all(int(v) == 0 for v in labels) else "samples"
        if labels and what == "samples":
            what += f" (labels {sorted(set(int(v) for v in labels))})"
        where = f" of the {info['source']}" if info.get("source") else ""
        ix = f" (indices {_range(info['indices'])})" if info.get("indices") is not None else ""
        return f"data: {info.get('k')} {what}{where}{ix}{sha}"
    n = info.get("k")
    return f"given: {n} reference input{'s' if n != 1 else ''}{shape}{sha}"


def rows_info(rows: torch.Tensor | None, base: dict) -> dict:
    """``base`` (a ``background_info`` record) completed with the rows' count, shape and sha1.

    Examples
    --------
    >>> info = rows_info(torch.zeros(2, 1, 4, 4), {"kind": "given"})
    >>> info["k"], info["shape"], len(info["sha1"])
    (2, [1, 4, 4], 12)
    """
    out = dict(base)
    if rows is not None:
        b = rows.detach().float().cpu().contiguous().numpy()
        out.update(k=int(b.shape[0]), shape=[int(s) for s in b.shape[1:]],
                   sha1=hashlib.sha1(b.tobytes()).hexdigest()[:12])
    return out


def blur_sigma(side: int) -> float:
    """The Gaussian sigma (pixels) of ``background="blur"`` on a grid of side ``side``.

    Examples
    --------
    >>> round(blur_sigma(299), 2)
    14.95
    """
    return BLUR_FRACTION * float(side)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` with reflected borders (kernel radius ``3 sigma``).

    Examples
    --------
    >>> y = blur(torch.ones(1, 1, 8, 8), 1.0)
    >>> bool(torch.allclose(y, torch.ones(1, 1, 8, 8)))
    True
    """
    r = max(1, int(math.ceil(3 * sigma)))
    r = min(r, x.shape[-1] - 1, x.shape[-2] - 1)
    if r < 1 or sigma <= 0:
        return x.clone()
    t = torch.arange(-r, r + 1, dtype=torch.float32, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.dtype)
    c = x.shape[1]
    y = F.pad(x, (r, r, r, r), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _labels_of(data: Any) -> list[int] | None:
    labels = getattr(data, "labels", None)
    if callable(labels) or labels is None:
        return None
    try:
        out = [int(v) for v in labels]
    except (TypeError, ValueError):
        return None
    return out if len(out) == len(data) else None


def data_rows(data: Any, k: int, *, label_of=None) -> tuple[list[int], list[int]]:
    """Indices and labels of the first ``k`` real (label 0) samples of ``data``.

    Labels come from ``data.labels`` when the data set has them, else from ``label_of(data[i], i)``.
    Without enough real samples the first ``k`` samples of any label are used, with a warning.

    Examples
    --------
    >>> data_rows([{"label": 1}, {"label": 0}, {"label": 0}], 2, label_of=lambda s, i: s["label"])
    ([1, 2], [0, 0])
    """
    n = len(data)
    labels = _labels_of(data)
    get = (lambda i: labels[i]) if labels is not None else (lambda i: int(label_of(data[i], i)))
    real, seen = [], {}
    for i in range(n):
        seen[i] = get(i)
        if seen[i] == 0:
            real.append(i)
            if len(real) == k:
                return real, [0] * k
    if len(real) >= 1:
        warnings.warn(f"background='data': only {len(real)} real samples (label 0) in the data, not {k}; using "
                      "them", UserWarning, stacklevel=3)
        return real, [0] * len(real)
    ix = list(range(min(k, n)))
    warnings.warn(f"background='data': no real samples (label 0) in the data; using its first {len(ix)} samples "
                  f"(labels {sorted(set(seen[i] for i in ix))}) as the reference", UserWarning, stacklevel=3)
    return ix, [seen[i] for i in ix]
