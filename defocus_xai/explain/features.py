"""Pooled penultimate features of a detector over a data set (the input of t-SNE / PCA embeddings).

:func:`extract_features` runs a detector over a data set in batches, without gradients, and returns a
:class:`FeatureSet` (features, labels, source ids, families and the detector's probability of "fake"), ready
for :func:`defocus_xai.analysis.embed` and :func:`defocus_xai.analysis.separability`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch import nn

from .._device import module_device
from ..detect.protocol import borrowed, unwrap, uses_maps

__all__ = ["FeatureSet", "extract_features", "FEATURE_SPACES"]

FEATURE_SPACES = ("defocus", "rgb", "fused")
"""``space=`` values of :func:`extract_features`."""


@dataclass(frozen=True)
class FeatureSet:
    """Features of a data set under one detector.

    Attributes
    ----------
    features : numpy.ndarray, (N, D) float32
        Pooled penultimate features, one row per sample, in data-set order.
    labels : numpy.ndarray, (N,) int8
        0 real, 1 fake; -1 where the data gave no label (a bare tensor of images).
    source_ids : numpy.ndarray, (N,) unicode
        Source identity (a fake and the real it was made from share one); ``""`` when unknown.
    families : numpy.ndarray, (N,) unicode
        Manipulation family (``"real"`` for reals in DefocusSynth); ``""`` when unknown.
    scores : numpy.ndarray, (N,) float32
        The detector's probability that the sample is fake (sigmoid of its logit).
    space : str
        Which features: ``"defocus"`` (the map branch), ``"rgb"`` or ``"fused"`` (two-branch).
    detector_name : str
        Class name (and ``identity["name"]`` when set) of the detector.
    """

    features: np.ndarray
    labels: np.ndarray
    source_ids: np.ndarray
    families: np.ndarray
    scores: np.ndarray
    space: str
    detector_name: str

    def __len__(self) -> int:
        return int(self.features.shape[0])

    def to_dict(self) -> dict:
        """Fields as plain Python values (arrays become lists)."""
        return {f.name: (v.tolist() if isinstance(v := getattr(self, f.name), np.ndarray) else v)
                for f in fields(self)}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays under the ``.npz`` store's key names (``features``, ``labels``, ``source_ids``,
        ``families``, ``scores``), ready for ``numpy.savez``."""
        return {"features": self.features, "labels": self.labels, "source_ids": self.source_ids,
                "families": self.families, "scores": self.scores}


# ------------------------------------------------------------------------------------------ helpers


def _default_space(det: nn.Module) -> str:
    from ..detect import TwoBranchDetector

    if isinstance(det, TwoBranchDetector):
        return "fused"
    return "defocus" if uses_maps(det) else "rgb"


def _as_images(x: Any, where: str) -> torch.Tensor:
    from .._images import as_image_batch

    return as_image_batch(x, name=where)


def _str_list(values: Any, n: int) -> list[str]:
    if values is None:
        return [""] * n
    if isinstance(values, str):
        return [values] * n
    vals = list(values)
    if len(vals) != n:
        raise ValueError(f"expected {n} values, got {len(vals)}")
    return ["" if v is None else str(v) for v in vals]


def _label_list(values: Any, n: int, where: str) -> list[int]:
    if values is None:
        return [-1] * n
    if torch.is_tensor(values) or isinstance(values, np.ndarray):
        vals = np.asarray(values.cpu() if torch.is_tensor(values) else values).reshape(-1).tolist()
    elif isinstance(values, (int, np.integer)):
        vals = [int(values)]
    else:
        vals = list(values)
    if len(vals) != n:
        raise ValueError(f"{where}: {len(vals)} labels for {n} images")
    out = []
    for v in vals:
        v = int(v)
        if v not in (-1, 0, 1):
            raise ValueError(f"{where}: labels must be 0 (real), 1 (fake) or -1 (unknown), got {v}")
        out.append(v)
    return out


def _batch_from_samples(items: list, where: str) -> dict:
    """A list of samples (dicts with 'image', or (image, label) tuples, or image tensors) -> batch dict."""
    images, labels, sources, families = [], [], [], []
    for k, it in enumerate(items):
        if isinstance(it, dict):
            if "image" not in it:
                raise ValueError(f"{where}, sample {k}: dict without an 'image' key (keys {sorted(it)})")
            images.append(_as_images(it["image"], f"{where}, sample {k}"))
            labels.append(it.get("label", -1))
            sources.append(it.get("source_id"))
            families.append(it.get("family"))
        elif isinstance(it, (tuple, list)) and len(it) >= 2:
            images.append(_as_images(it[0], f"{where}, sample {k}"))
            labels.append(it[1])
            sources.append(None)
            families.append(None)
        else:
            images.append(_as_images(it, f"{where}, sample {k}"))
            labels.append(-1)
            sources.append(None)
            families.append(None)
    shapes = {tuple(t.shape[1:]) for t in images}
    if len(shapes) > 1:
        raise ValueError(f"{where}: images of different sizes in one batch {sorted(shapes)}; resize them first")
    labels = [-1 if v is None else int(v) for v in labels]
    return {"image": torch.cat(images), "label": labels, "source_id": sources, "family": families}


def _normalize_batch(batch: Any, where: str) -> dict:
    """A collated batch (dict, (images, labels) tuple, or images) -> {'image': (B,3,H,W), ...}."""
    if isinstance(batch, dict):
        if "image" not in batch:
            raise ValueError(f"{where}: batch dict without an 'image' key (keys {sorted(batch)})")
        imgs = batch["image"]
        if isinstance(imgs, (list, tuple)):
            return _batch_from_samples([{"image": im} for im in imgs], where) | {
                "label": batch.get("label"), "source_id": batch.get("source_id"), "family": batch.get("family")}
        x = _as_images(imgs, where)
        return {"image": x, "label": batch.get("label"), "source_id": batch.get("source_id"),
                "family": batch.get("family")}
    if isinstance(batch, (tuple, list)) and len(batch) >= 2 and torch.is_tensor(batch[0]) and batch[0].ndim == 4:
        return {"image": _as_images(batch[0], where), "label": batch[1], "source_id": None, "family": None}
    if isinstance(batch, (list, tuple)):
        return _batch_from_samples(list(batch), where)
    return {"image": _as_images(batch, where), "label": None, "source_id": None, "family": None}


def _iter_batches(data: Any, batch_size: int) -> tuple[Iterator[dict], int | None]:
    """Yield normalized batches of at most ``batch_size`` samples (DataLoader batches as they come)."""
    from torch.utils.data import DataLoader

    if torch.is_tensor(data) or isinstance(data, np.ndarray):
        x = _as_images(data, "data")
        n = x.shape[0]

        def gen_tensor():
            for s in range(0, n, batch_size):
                yield {"image": x[s:s + batch_size], "label": None, "source_id": None, "family": None}

        return gen_tensor(), n
    if isinstance(data, DataLoader):
        total = len(data.dataset) if hasattr(data.dataset, "__len__") else None

        def gen_loader():
            for k, b in enumerate(data):
                yield _normalize_batch(b, f"data batch {k}")

        return gen_loader(), total
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        n = len(data)

        def gen_dataset():
            for s in range(0, n, batch_size):
                yield _batch_from_samples([data[i] for i in range(s, min(n, s + batch_size))],
                                          f"data[{s}:{min(n, s + batch_size)}]")

        return gen_dataset(), n
    if isinstance(data, Iterable):

        def gen_iter():
            buf: list = []
            for item in data:
                buf.append(item)
                if len(buf) == batch_size:
                    yield _batch_from_samples(buf, "data")
                    buf = []
            if buf:
                yield _batch_from_samples(buf, "data")

        return gen_iter(), None
    raise TypeError(f"data must be a Dataset, a DataLoader, an iterable of samples or a tensor of images "
                    f"(B, 3, H, W), got {type(data).__name__}")


def _features_and_logits(det: nn.Module, x: torch.Tensor, space: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, D) features and (B, K) logits of one batch of images on the model's device."""
    from ..detect import TwoBranchDetector

    if isinstance(det, TwoBranchDetector):
        rgb, maps = det.prepare(x)
        logits = det.forward_prepared(rgb, maps)
        if space == "fused":
            feats = det.fused_features(rgb, maps)
        elif space == "defocus":
            feats = det.defocus.features(maps=maps)
        else:
            feats = det.rgb.features(rgb)
        return feats, logits
    if space == "fused":
        raise ValueError(f"space='fused' needs a TwoBranchDetector, got {type(det).__name__}")
    if space == "defocus":
        if not uses_maps(det):
            raise ValueError(f"space='defocus' needs a detector that reads defocus maps (map_from_images, "
                             f"forward_map), got {type(det).__name__}")
        maps = det.map_from_images(x)  # the estimator runs once per batch
        return det.features(maps=maps), det.forward_map(maps)
    if not hasattr(det, "features"):
        raise ValueError(f"{type(det).__name__} has no features() method")
    return det.features(x), det(x)


def _probability(logits: torch.Tensor) -> torch.Tensor:
    logits = logits.reshape(logits.shape[0], -1).float()
    if logits.shape[1] == 1:
        return torch.sigmoid(logits[:, 0])
    return torch.softmax(logits, dim=1)[:, 1]


class _Collected:
    """Per-batch outputs of :func:`extract_features`, concatenated into a :class:`FeatureSet` at the end."""

    def __init__(self):
        self.feats, self.scores = [], []
        self.labels, self.sources, self.families = [], [], []

    def add(self, k: int, b: dict, f: torch.Tensor, logits: torch.Tensor) -> None:
        n = f.shape[0]
        if not torch.isfinite(f).all():
            raise ValueError(f"batch {k}: the detector returned non-finite features")
        self.feats.append(f.float().cpu().numpy())
        self.scores.append(_probability(logits).cpu().numpy().astype(np.float32))
        self.labels += _label_list(b["label"], n, f"batch {k}")
        self.sources += _str_list(b["source_id"], n)
        self.families += _str_list(b["family"], n)

    def result(self, space: str, det: nn.Module) -> FeatureSet:
        if not self.feats:
            raise ValueError("extract_features: the data set is empty")
        name = (getattr(det, "identity", None) or {}).get("name")
        return FeatureSet(
            features=np.ascontiguousarray(np.concatenate(self.feats), dtype=np.float32),
            labels=np.asarray(self.labels, dtype=np.int8),
            source_ids=np.asarray(self.sources, dtype=str),
            families=np.asarray(self.families, dtype=str),
            scores=np.concatenate(self.scores).astype(np.float32),
            space=space,
            detector_name=type(det).__name__ + (f" ({name})" if name else ""),
        )


# --------------------------------------------------------------------------------------------- API


def extract_features(detector: nn.Module, data: Any, *, space: str | None = None, batch_size: int = 64,
                     device: Any = None, progress: bool = True) -> FeatureSet:
    """Pooled penultimate features and scores of a detector over a data set, in batches.

    Parameters
    ----------
    detector : nn.Module
        A :class:`~defocus_xai.detect.DefocusDetector`, :class:`~defocus_xai.detect.RGBDetector` or
        :class:`~defocus_xai.detect.TwoBranchDetector` (or a model with the same ``features`` /
        ``forward_map`` interface). Wrappers are unwrapped. It runs in eval mode without gradients and is
        given back in the mode and on the device it came in.
    data : Dataset, DataLoader, iterable or tensor
        * a map-style data set whose samples are dicts with ``image`` (3, H, W) float in ``[0, 1]`` (or
          uint8), ``label`` (0 real, 1 fake) and optionally ``source_id`` and ``family`` (the library's
          data sets), or ``(image, label)`` tuples;
        * a ``DataLoader`` over such a data set (its batches are used as they come: collated dicts or
          ``(images, labels)`` tuples);
        * images ``(N, 3, H, W)`` (torch, channels first, float in ``[0, 1]`` or uint8) or ``(N, H, W, 3)``
          (numpy, channels last): no labels, so ``labels`` are -1.
    space : {"defocus", "rgb", "fused"}, optional
        Which features. Default: ``"defocus"`` for a map detector (features of its normalized map),
        ``"fused"`` for a TwoBranchDetector (its ``"defocus"`` / ``"rgb"`` select one branch), else
        ``"rgb"``. Scores are always the whole detector's.
    batch_size : int
        Samples per forward pass (a DataLoader keeps its own batch size).
    device : str or torch.device, optional
        Run there (the detector is moved back afterwards). Default: the device the detector is on.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    FeatureSet
        ``features`` (N, D) float32, ``labels`` (N,) int8, ``source_ids`` and ``families`` (N,) unicode,
        ``scores`` (N,) float32 probability of fake, in data-set order.

    Examples
    --------
    >>> import torch
    >>> from defocus_xai.detect import RGBDetector
    >>> fs = extract_features(RGBDetector("small-cnn", widths=(4, 8)), torch.rand(5, 3, 32, 32),
    ...                       batch_size=2, progress=False)
    >>> fs.features.shape, fs.labels.tolist(), fs.space
    ((5, 8), [-1, -1, -1, -1, -1], 'rgb')
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not isinstance(unwrap(detector), nn.Module):
        raise TypeError(f"detector must be a torch.nn.Module, got {type(detector).__name__}")
    space = _default_space(unwrap(detector)) if space is None else space
    if space not in FEATURE_SPACES:
        raise ValueError(f"space must be one of {FEATURE_SPACES} or None, got {space!r}")
    batches, total = _iter_batches(data, int(batch_size))
    out = _Collected()
    from .._progress import progress as progress_bar

    with borrowed(detector, device) as det, torch.no_grad(), \
            progress_bar(total=total, desc="features", unit="img", enabled=progress) as bar:
        dev = module_device(det)
        for k, b in enumerate(batches):
            x = b["image"].to(dev)
            if x.shape[0] == 0:
                continue
            f, logits = _features_and_logits(det, x, space)
            out.add(k, b, f.reshape(x.shape[0], -1), logits)
            bar.update(x.shape[0])
    return out.result(space, unwrap(detector))
