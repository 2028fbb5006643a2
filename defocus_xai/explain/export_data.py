"""What the exporter reads from a data set: checked samples, the attribution background, per-sample arrays,
and the check that what it writes is finite."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .background import BLUR_FRACTION, background_kind, data_rows, data_size

__all__ = ["sample_fields", "image_batch", "sample_arrays", "load_background", "check_finite", "LABELS"]

LABELS = (-1, 0, 1)
"""Labels a sample may carry: 0 real, 1 fake, -1 unlabeled (a folder of photos: attribution only)."""


def _default_path(data: Any, i: int) -> str:
    seed = getattr(data, "seed", None)
    name = type(data).__name__
    if name == "DefocusSynth" and seed is not None:
        return f"synth:{seed}:{i}"
    return f"{name}:{i}"


def _check_image(img: torch.Tensor, where: str) -> None:
    """Refuse a float image that is not finite or outside [0, 1] (the documented range)."""
    if not bool(torch.isfinite(img).all()):
        raise ValueError(f"{where}: image holds {int((~torch.isfinite(img)).sum())} NaN or infinite value(s)")
    lo, hi = float(img.min()), float(img.max())
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ValueError(f"{where}: image values span [{lo:.4g}, {hi:.4g}]; expected floats in [0, 1] "
                         "(or uint8 in [0, 255])")


def sample_fields(sample: Any, index: int, data: Any) -> dict:
    """One sample of ``data`` checked and converted: float image (3, H, W) in [0, 1], label, path, extras.

    ``label`` is 0 (real), 1 (fake) or -1 (unlabeled: an export for attributions only). A float image
    must be finite and in ``[0, 1]``.

    Examples
    --------
    >>> s = sample_fields({"image": torch.zeros(3, 4, 4), "label": 1}, 0, [None])
    >>> s["label"], s["path"]
    (1, 'list:0')
    """
    if not isinstance(sample, dict) or "image" not in sample:
        raise ValueError(f"sample {index}: expected a dict with an 'image' entry, got {type(sample).__name__}")
    img = torch.as_tensor(sample["image"])
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"sample {index}: 'image' must be (3, H, W), got shape {tuple(img.shape)}")
    path = str(sample.get("path") or _default_path(data, index))
    if img.dtype == torch.uint8:
        img = img.float() / 255.0
    _check_image(img.float(), f"sample {index} ({path})")
    lab = sample.get("label")
    if lab is None:
        raise ValueError(f"sample {index} ({path}): no 'label' (0 real, 1 fake, -1 unlabeled)")
    lab = int(lab)
    if lab not in LABELS:
        raise ValueError(f"sample {index} ({path}): label {lab}; expected 0 (real), 1 (fake) or -1 (unlabeled)")
    out = {"image": img.float(), "label": lab, "path": path}
    for k in ("source_id", "family"):
        if sample.get(k) is not None:
            out[k] = str(sample[k])
    if sample.get("mask") is not None:
        out["mask"] = torch.as_tensor(sample["mask"])
    if sample.get("sigma") is not None:
        out["sigma"] = torch.as_tensor(sample["sigma"]).float()
    return out


def image_batch(items: list[dict]) -> torch.Tensor:
    """The images of checked samples as one (B, 3, H, W) batch."""
    return torch.stack([it["image"] for it in items])


def _to_grid(t: torch.Tensor, hw: tuple[int, int], mode: str) -> torch.Tensor:
    """(B, 1, H, W) -> (B, 1, h, w)."""
    if tuple(t.shape[-2:]) == tuple(hw):
        return t
    if mode == "nearest":
        return torch.nn.functional.interpolate(t.float(), size=hw, mode="nearest")
    return torch.nn.functional.interpolate(t.float(), size=hw, mode="bilinear", align_corners=False)


def sample_arrays(items: list[dict], idx: list[int], maps: torch.Tensor) -> dict[str, np.ndarray]:
    """The store arrays of one batch besides scores and attributions: maps, labels, paths, extras.

    ``gt_masks`` and ``sigma_true`` are resampled to the map grid (sigma rescaled to its pixels).
    """
    out = {
        "dmaps": maps[:, 0].cpu().numpy(),
        "labels": np.array([it["label"] for it in items], np.int8),
        "paths": np.array([it["path"] for it in items]),
        "sample_index": np.array(idx, np.int64),
    }
    for k, store_key in (("source_id", "source_ids"), ("family", "families")):
        if all(k in it for it in items):
            out[store_key] = np.array([it[k] for it in items])
    hw = tuple(maps.shape[-2:])
    if all("mask" in it for it in items):
        m = torch.stack([it["mask"].reshape(1, *it["mask"].shape[-2:]) for it in items])
        out["gt_masks"] = (_to_grid(m, hw, "nearest")[:, 0] > 0).cpu().numpy().astype(np.uint8)
    if all("sigma" in it for it in items):
        s = torch.stack([it["sigma"].reshape(1, *it["sigma"].shape[-2:]) for it in items])
        scale = hw[-1] / s.shape[-1]  # sigma in pixels of the map grid
        out["sigma_true"] = (_to_grid(s, hw, "bilinear")[:, 0] * scale).cpu().numpy().astype(np.float32)
    return out


def load_background(background: Any, background_size: int, data: Any,
                    background_data: Any = None) -> tuple[torch.Tensor | None, dict]:
    """The reference inputs of an export and their record (``background_info``).

    ``"data"`` / an int ``k`` -> the images of the first ``k`` real (label 0) samples of
    ``background_data`` (the reference / training data) or, without it, of ``data``, with their indices,
    paths and labels; ``"zeros"`` / ``"blur"`` -> ``None`` (made per input by ``attribute``); images
    ``(K, 3, H, W)`` or maps ``(K, 1, S, S)`` as given, checked finite and in ``[0, 1]``.

    Examples
    --------
    >>> load_background("zeros", 10, [])
    (None, {'kind': 'zeros'})
    >>> rows, info = load_background("data", 1, [{"image": torch.zeros(3, 4, 4), "label": 0}])
    >>> tuple(rows.shape), info["source"], info["paths"]
    ((1, 3, 4, 4), 'explained data', ['list:0'])
    """
    kind = background_kind(background)
    if kind in ("zeros", "blur"):
        return None, ({"kind": "zeros"} if kind == "zeros" else {"kind": "blur", "sigma_fraction": BLUR_FRACTION})
    if kind == "data":
        k = data_size(background, background_size)
        src = data if background_data is None else background_data
        if hasattr(src, "dataset") and not hasattr(src, "__getitem__"):
            src = src.dataset  # a DataLoader
        if len(src) == 0:
            raise ValueError("background='data': the " + ("reference" if background_data is not None else
                                                          "explained") + " data set is empty")
        ix, labels = data_rows(src, k, label_of=lambda smp, i: sample_fields(smp, i, src)["label"])
        fields = [sample_fields(src[i], i, src) for i in ix]
        info = {"kind": "data", "source": "explained data" if background_data is None else "reference data",
                "indices": ix, "paths": [f["path"] for f in fields], "labels": labels}
        return torch.stack([f["image"] for f in fields]), info
    images = torch.as_tensor(np.asarray(background) if not torch.is_tensor(background) else background).float()
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"background must be (K, 3, H, W) images or (K, 1, S, S) maps, got {tuple(images.shape)}")
    _check_image(images, "background " + ("maps (normalized)" if images.shape[1] == 1 else "images"))
    return images, {"kind": "given"}


def check_finite(values: np.ndarray, key: str, items: list[dict], idx: list[int], detector: str) -> None:
    """Refuse a batch whose ``key`` holds NaN or infinite values, naming detector, sample index and path.

    Examples
    --------
    >>> check_finite(np.zeros((1, 2)), "scores", [{"path": "a.png"}], [0], "det")
    >>> check_finite(np.full((1, 2), np.nan), "scores", [{"path": "a.png"}], [0], "det")
    Traceback (most recent call last):
    ...
    ValueError: scores of sample 0 (a.png) are not finite (2 NaN or infinite values) with detector 'det'; a detector with NaN weights, or inputs it cannot handle?
    """
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        n_bad = int((~np.isfinite(values[j])).sum())
        raise ValueError(f"{key} of sample {idx[j]} ({items[j].get('path')}) are not finite ({n_bad} NaN or "
                         f"infinite values) with detector {detector!r}; a detector with NaN weights, or inputs "
                         "it cannot handle?")
