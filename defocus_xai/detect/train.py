"""Training and evaluation of detectors: seeded, resumable, with progress bars and atomic checkpoints.

Data sets are any ``torch.utils.data.Dataset`` whose items are dicts with ``image`` (``(3, H, W)`` in
``[0, 1]``, float or uint8) and ``label`` (0 real, 1 fake), optionally ``family`` (the fake family or
manipulation method; ``"real"`` for real images): :class:`~defocus_xai.data.synth.DefocusSynth` and the
loaders of :mod:`defocus_xai.data` qualify.

Caching the model inputs
------------------------
A detector's inputs carry no trainable parameter (:meth:`prepare`: the normalized defocus map, the
resized image). With ``cache=True`` (default) they are computed once, before the first epoch, and kept in
memory as float16 (2 bytes per value: 4,000 maps of 128 x 128 take 131 MB, 4,000 RGB images 393 MB;
float16 keeps 11 significant bits, far below the 8-bit quantization of the images). Every epoch then
costs only the backbone. On DefocusSynth at 128 px, rendering a sample and estimating its map cost
about 0.2 s and 0.015 s of one CPU core, against about 0.01 s for a training step of the small CNN
per sample: without the cache an epoch would be dominated by data preparation.
Random horizontal flips (``augment=True``) are applied to the cached inputs, identically across the
inputs of one sample.

Reproducibility and resuming
----------------------------
The shuffle order of epoch ``e`` comes from a ``torch.Generator`` seeded with ``(seed, e)`` and the
flips from one seeded with ``(seed, e, 1)``, so a resumed run sees exactly the batches the interrupted
one would have. After every epoch ``out/checkpoint.pt`` (model, optimizer, scheduler, epoch, history,
torch RNG state) is replaced atomically (temporary file + ``os.replace``), as are ``out/last.pt`` and
``out/best.pt`` (detectors with their ``.json`` sidecars, loadable with
:func:`~defocus_xai.detect.load_detector`). Rerunning the same call with ``resume=True`` continues after
the last completed epoch; a checkpoint from a different run configuration is refused.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .checkpoints import _atomic_write_bytes, save_detector, unwrap_model
from .metrics import detection_metrics, metrics_by_group

__all__ = [
    "train_detector",
    "evaluate_detector",
    "prepare_inputs",
    "PreparedData",
    "MemoryDataset",
    "materialize",
    "TrainResult",
]


def _default_device(device=None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _progress(iterable, *, enabled: bool, **kwargs):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, **kwargs)


# ------------------------------------------------------------------------------------------- data
def _collate(samples: Sequence) -> dict:
    """Keep only what the detectors need: images (stacked), labels, families, indices."""
    images, labels, families, indices = [], [], [], []
    for k, s in enumerate(samples):
        if isinstance(s, dict):
            img, lab = s["image"], s["label"]
            fam = s.get("family")
            idx = s.get("index", None)
        elif isinstance(s, (tuple, list)) and len(s) >= 2:
            img, lab, fam, idx = s[0], s[1], None, None
        else:
            raise TypeError(f"data set items must be dicts with 'image' and 'label' (or (image, label) "
                            f"pairs), got {type(s).__name__}")
        lab = int(lab)
        if lab not in (0, 1):
            raise ValueError(f"label must be 0 (real) or 1 (fake), got {lab} (item {idx})")
        if fam is None:
            fam = "real" if lab == 0 else "fake"
        images.append(torch.as_tensor(img))
        labels.append(lab)
        families.append(str(fam))
        indices.append(-1 if idx is None else int(idx))
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) > 1:
        raise ValueError(f"images of one batch differ in shape {sorted(shapes)}; give the data set a "
                         "fixed size (size=...)")
    return {"image": torch.stack(images), "label": torch.tensor(labels, dtype=torch.int64),
            "family": families, "index": torch.tensor(indices, dtype=torch.int64)}


class MemoryDataset(Dataset):
    """A data set held in memory: uint8 images ``(N, 3, H, W)``, labels and families.

    Made by :func:`materialize`; items are dicts ``image`` (uint8 ``(3, H, W)``), ``label``, ``family``,
    ``index``. 8-bit storage is lossless for 8-bit sources (DefocusSynth quantizes to 8 bits).
    """

    def __init__(self, images: torch.Tensor, labels, families, *, meta: dict | None = None):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images = images
        self.label_array = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        self.families = [str(f) for f in families]
        if not (len(self.images) == len(self.label_array) == len(self.families)):
            raise ValueError("images, labels and families differ in length")
        self.meta = dict(meta or {})

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": int(self.label_array[i]), "family": self.families[i],
                "index": int(i)}


def materialize(data: Dataset, *, batch_size: int = 32, num_workers: int = 0, progress: bool = True,
                desc: str = "load") -> MemoryDataset:
    """Read a whole data set once into a :class:`MemoryDataset` (images quantized to uint8).

    Useful when several models train on one rendered DefocusSynth set: rendering happens once
    (in ``num_workers`` processes).

    Examples
    --------
    >>> from defocus_xai.data.synth import DefocusSynth          # doctest: +SKIP
    >>> mem = materialize(DefocusSynth(64, size=64), progress=False)  # doctest: +SKIP
    """
    from .._images import as_image_batch

    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_collate)
    images, labels, families = [], [], []
    for batch in _progress(loader, enabled=progress, desc=desc, unit="batch"):
        x = as_image_batch(batch["image"])
        images.append((x * 255.0).round().clamp(0, 255).to(torch.uint8))
        labels.append(batch["label"])
        families += batch["family"]
    return MemoryDataset(torch.cat(images), torch.cat(labels), families,
                         meta={"source": repr(data), "n": len(data)})


@dataclass
class PreparedData:
    """Cached model inputs (float16 on the CPU) with labels and families; see :func:`prepare_inputs`."""

    inputs: tuple
    labels: torch.Tensor
    families: list

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@torch.no_grad()
def prepare_inputs(model: nn.Module, data: Dataset, *, batch_size: int = 64, device=None, num_workers: int = 0,
                   progress: bool = True, desc: str = "prepare", dtype=torch.float16) -> PreparedData:
    """Compute ``model.prepare(images)`` for a whole data set once (maps and/or resized images).

    Parameters
    ----------
    model : detector
        A :class:`~defocus_xai.detect.DefocusDetector`, ``RGBDetector`` or ``TwoBranchDetector``.
    data : Dataset
        Items with ``image`` and ``label`` (and optionally ``family``).
    dtype : torch.dtype
        Storage dtype of the cache (float16 by default; float32 to keep full precision).

    Returns
    -------
    PreparedData
        ``inputs`` (one tensor per input of ``forward_prepared``), ``labels``, ``families``.

    Examples
    --------
    >>> from defocus_xai.data.synth import DefocusSynth
    >>> from defocus_xai.detect import RGBDetector
    >>> p = prepare_inputs(RGBDetector(input_size=32), DefocusSynth(4, size=48), progress=False)
    >>> tuple(p.inputs[0].shape), p.inputs[0].dtype, p.families
    ((4, 3, 32, 32), torch.float16, ['real', 'no_dof', 'real', 'splice'])
    """
    model = unwrap_model(model)
    device = _default_device(device)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        collate_fn=_collate)
    parts: list[list[torch.Tensor]] = []
    labels, families = [], []
    was_training = model.training
    model.to(device).eval()
    try:
        for batch in _progress(loader, enabled=progress, desc=desc, unit="batch"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # edgeless samples are flagged per batch
                prepared = model.prepare(batch["image"].to(device))
            if not parts:
                parts = [[] for _ in prepared]
            for store, t in zip(parts, prepared):
                store.append(t.detach().to("cpu", dtype))
            labels.append(batch["label"])
            families += batch["family"]
    finally:
        model.train(was_training)
    if not labels:
        raise ValueError("the data set is empty")
    return PreparedData(tuple(torch.cat(p) for p in parts), torch.cat(labels), families)


def _seeded(*parts: int) -> torch.Generator:
    seed = int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(seed)


def _batches(n: int, batch_size: int, gen: torch.Generator | None):
    order = torch.randperm(n, generator=gen) if gen is not None else torch.arange(n)
    chunks = list(torch.split(order, batch_size))
    if gen is not None and len(chunks) > 1 and len(chunks[-1]) == 1:
        chunks = chunks[:-1]  # BatchNorm cannot train on a batch of one
    return chunks


# --------------------------------------------------------------------------------------- training
@dataclass
class TrainResult:
    """What :func:`train_detector` returns (``resumed_epoch``: epochs already done by an earlier run)."""

    model: nn.Module
    history: list = field(default_factory=list)
    best_epoch: int | None = None
    best_path: Path | None = None
    last_path: Path | None = None
    seconds: float = 0.0
    prepare_seconds: float = 0.0
    resumed_epoch: int = 0

    def history_frame(self) -> pd.DataFrame:
        """The per-epoch history as a table."""
        return pd.DataFrame(self.history)


def _fingerprint(model, n_train, n_val, batch_size, lr, weight_decay, seed, epochs, augment) -> dict:
    return {"arch": model.arch, "config": model.config(), "n_train": int(n_train), "n_val": int(n_val),
            "batch_size": int(batch_size), "lr": float(lr), "weight_decay": float(weight_decay),
            "seed": int(seed), "epochs": int(epochs), "augment": bool(augment)}


def _scores(model, prepared: PreparedData, batch_size: int, device) -> tuple[np.ndarray, float]:
    model.eval()
    logits = []
    with torch.no_grad():
        for idx in _batches(len(prepared), batch_size, None):
            xs = [t[idx].to(device, torch.float32) for t in prepared.inputs]
            logits.append(model.forward_prepared(*xs).reshape(-1).float().cpu())
    logit = torch.cat(logits)
    loss = float(nn.functional.binary_cross_entropy_with_logits(logit, prepared.labels.float()))
    return torch.sigmoid(logit).numpy(), loss


def train_detector(model: nn.Module, train_data: Dataset | PreparedData, *,
                   val_data: Dataset | PreparedData | None = None, epochs: int = 5, batch_size: int = 64,
                   lr: float = 1e-3, weight_decay: float = 1e-4, device=None, seed: int = 0,
                   out: str | os.PathLike | None = None, resume: bool = True, progress: bool = True,
                   num_workers: int = 0, cache: bool = True, augment: bool = True,
                   meta: dict | None = None) -> TrainResult:
    """Train a detector with Adam and binary cross-entropy on logits (label 1 = fake).

    Parameters
    ----------
    model : DefocusDetector, RGBDetector or TwoBranchDetector
        Trained in place (unwrapped from ``DataParallel``/DDP first).
    train_data, val_data : Dataset or PreparedData
        Items with ``image`` and ``label`` (see the module documentation), or inputs already prepared
        with :func:`prepare_inputs`. ``val_data`` selects the best epoch (highest ROC AUC).
    epochs, batch_size, lr, weight_decay
        Optimization: Adam with a cosine learning-rate decay over all steps.
    device : str or torch.device, optional
        Default CUDA when available, else CPU.
    seed : int
        Seeds the shuffle, the flips and torch's RNG (dropout).
    out : path, optional
        Folder for ``checkpoint.pt``, ``last.pt``, ``best.pt`` (+ ``.json``) and ``history.json``.
        Without it nothing is written and nothing can be resumed.
    resume : bool
        Continue from ``out/checkpoint.pt`` when it exists.
    progress : bool
        Show tqdm progress bars.
    num_workers : int
        DataLoader workers while preparing the inputs (rendering DefocusSynth in parallel).
    cache : bool
        Prepare the inputs once and keep them in memory (see the module documentation). ``False``
        recomputes them every epoch (for data sets too large for memory).
    augment : bool
        Random horizontal flips.
    meta : dict, optional
        JSON-able metadata written into the saved detectors' sidecars (e.g. ``training_data``).

    Returns
    -------
    TrainResult
        The model (with the weights of the best epoch when ``val_data`` is given, else of the last),
        the per-epoch history and the paths written.

    Examples
    --------
    >>> from defocus_xai.data.synth import DefocusSynth                                   # doctest: +SKIP
    >>> det = DefocusDetector(estimator={"size": 64})                                     # doctest: +SKIP
    >>> res = train_detector(det, DefocusSynth(256, size=64), epochs=2, out="runs/a")     # doctest: +SKIP
    >>> res.history[-1]["train_loss"]                                                     # doctest: +SKIP
    """
    t_start = time.perf_counter()
    model = unwrap_model(model)
    device = _default_device(device)
    model.to(device)
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    out = Path(out) if out is not None else None
    torch.manual_seed(int(seed))

    def prep(data, desc):
        if data is None or isinstance(data, PreparedData):
            return data
        return prepare_inputs(model, data, batch_size=batch_size, device=device, num_workers=num_workers,
                              progress=progress, desc=desc)

    n_train = len(train_data)
    n_val = len(val_data) if val_data is not None else 0
    if n_train < 2:
        raise ValueError(f"need at least 2 training samples, got {n_train}")
    steps_per_epoch = len(_batches(n_train, batch_size, torch.Generator().manual_seed(0)))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs * steps_per_epoch))
    loss_fn = nn.BCEWithLogitsLoss()
    fp = _fingerprint(model, n_train, n_val, batch_size, lr, weight_decay, seed, epochs, augment)
    history: list[dict] = []
    start_epoch, best_auc, best_epoch = 0, -math.inf, None
    ckpt_path = out / "checkpoint.pt" if out is not None else None

    if ckpt_path is not None and resume and ckpt_path.is_file():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        saved_fp, now_fp = json.loads(state["fingerprint"]), json.loads(json.dumps(fp))
        if saved_fp != now_fp:
            diff = sorted(k for k in set(now_fp) | set(saved_fp) if saved_fp.get(k) != now_fp.get(k))
            raise ValueError(
                f"{ckpt_path} belongs to a different run (differs in {diff}); use another out folder or "
                "resume=False"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start_epoch = int(state["epoch"])
        history = json.loads(state["history"])
        best_auc = float(state["best_auc"])
        best_epoch = None if int(state["best_epoch"]) < 0 else int(state["best_epoch"])
        if progress:
            print(f"resuming from {ckpt_path} after epoch {start_epoch}/{epochs}")

    t0 = time.perf_counter()
    todo = start_epoch < epochs
    train_p = prep(train_data, "prepare train") if cache and todo else None
    val_p = prep(val_data, "prepare val") if todo else None
    prepare_seconds = time.perf_counter() - t0

    model.to(device)
    sidecar_meta = dict(meta or {})
    for epoch in range(start_epoch, epochs):
        t_ep = time.perf_counter()
        model.train()
        gen = _seeded(seed, epoch)
        flip_gen = _seeded(seed, epoch, 1)
        total, count = 0.0, 0
        if train_p is not None:
            chunks = _batches(n_train, batch_size, gen)
            iterator = ((tuple(t[idx] for t in train_p.inputs), train_p.labels[idx]) for idx in chunks)
            n_steps = len(chunks)
        else:
            loader = DataLoader(train_data, batch_size=batch_size, shuffle=True, generator=gen,
                                num_workers=num_workers, collate_fn=_collate, drop_last=n_train > batch_size)

            def _live(loader=loader):
                for b in loader:
                    with torch.no_grad():
                        xs = model.prepare(b["image"].to(device))
                    yield xs, b["label"]
            iterator, n_steps = _live(), len(loader)
        bar = _progress(iterator, enabled=progress, total=n_steps, desc=f"epoch {epoch + 1}/{epochs}",
                        unit="batch")
        for xs, y in bar:
            xs = [x.to(device, torch.float32) for x in xs]
            if augment:
                flip = torch.rand(y.shape[0], generator=flip_gen) < 0.5
                flip = flip.to(device).view(-1, 1, 1, 1)
                xs = [torch.where(flip, x.flip(-1), x) for x in xs]
            logits = model.forward_prepared(*xs).reshape(-1)
            loss = loss_fn(logits, y.to(device, torch.float32))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * y.shape[0]
            count += y.shape[0]
            if progress and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{total / max(count, 1):.4f}")
        record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": total / max(count, 1),
                                  "lr": float(optimizer.param_groups[0]["lr"])}
        if val_p is not None:
            scores, vloss = _scores(model, val_p, batch_size, device)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                vm = detection_metrics(val_p.labels.numpy(), scores)
            record.update({"val_loss": vloss, "val_auc": vm["roc_auc"], "val_accuracy": vm["accuracy"]})
            score_for_best = vm["roc_auc"] if not math.isnan(vm["roc_auc"]) else -vloss
        else:
            score_for_best = -record["train_loss"]
        record["seconds"] = time.perf_counter() - t_ep
        history.append(record)
        improved = score_for_best > best_auc
        if improved:
            best_auc, best_epoch = score_for_best, epoch + 1
        if progress:
            print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            info = {**sidecar_meta, "training": {**fp, "epoch": epoch + 1, "history": history}}
            save_detector(model, out / "last.pt", **info)
            if improved:
                save_detector(model, out / "best.pt", **info, best_epoch=epoch + 1)
            state = {
                "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": torch.get_rng_state(),
                "epoch": epoch + 1,
                "history": json.dumps(history),
                "best_auc": float(best_auc),
                "best_epoch": -1 if best_epoch is None else int(best_epoch),
                "fingerprint": json.dumps(fp),
            }
            _atomic_write_bytes(ckpt_path, lambda f: torch.save(state, f))
            _atomic_write_bytes(out / "history.json",
                                lambda f: f.write((json.dumps(history, indent=2) + "\n").encode()))

    best_path = out / "best.pt" if out is not None and (out / "best.pt").is_file() else None
    if val_data is not None and best_path is not None and best_epoch is not None and best_epoch != epochs:
        from .checkpoints import load_state_dict_file, _load_into

        sd, _ = load_state_dict_file(best_path)
        _load_into(model, sd, str(best_path))
    model.eval()
    return TrainResult(model=model, history=history, best_epoch=best_epoch, best_path=best_path,
                       last_path=out / "last.pt" if out is not None else None,
                       seconds=time.perf_counter() - t_start, prepare_seconds=prepare_seconds,
                       resumed_epoch=start_epoch)


# ------------------------------------------------------------------------------------- evaluation
def evaluate_detector(detector: nn.Module, data: Dataset | PreparedData, *, batch_size: int = 64, device=None,
                      num_workers: int = 0, progress: bool = True, threshold: float = 0.5
                      ) -> tuple[dict, pd.DataFrame, np.ndarray]:
    """Score a data set and compute the detection metrics overall and per family.

    Parameters
    ----------
    detector : nn.Module
        Any detector of :mod:`defocus_xai.detect` (wrappers are removed).
    data : Dataset or PreparedData
        Items with ``image``, ``label`` and optionally ``family`` (the manipulation method).
    batch_size, device, num_workers, progress
        As for :func:`train_detector`.
    threshold : float
        Probability at and above which a sample is called fake.

    Returns
    -------
    metrics : dict
        :func:`~defocus_xai.detect.detection_metrics` over all samples.
    per_group : pandas.DataFrame
        :func:`~defocus_xai.detect.metrics_by_group`: each fake family against all real samples, plus
        ``"all"``.
    scores : numpy.ndarray
        Probability of being fake per sample, in data set order.

    Examples
    --------
    >>> det = load_detector("bundled-defocus")                                      # doctest: +SKIP
    >>> m, per_family, scores = evaluate_detector(det, DefocusSynth(200, seed=1))   # doctest: +SKIP
    """
    model = unwrap_model(detector)
    device = _default_device(device)
    model.to(device)
    if isinstance(data, PreparedData):
        scores, _ = _scores(model, data, batch_size, device)
        labels, families = data.labels.numpy(), list(data.families)
    else:  # stream: nothing but the scores is kept in memory
        loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                            collate_fn=_collate)
        was_training = model.training
        model.eval()
        chunks, labs, families = [], [], []
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                for batch in _progress(loader, enabled=progress, desc="evaluate", unit="batch"):
                    logits = model(batch["image"].to(device)).reshape(-1).float().cpu()
                    chunks.append(torch.sigmoid(logits))
                    labs.append(batch["label"])
                    families += batch["family"]
        finally:
            model.train(was_training)
        if not chunks:
            raise ValueError("the data set is empty")
        scores, labels = torch.cat(chunks).numpy(), torch.cat(labs).numpy()
    metrics = detection_metrics(labels, scores, threshold=threshold)
    per_group = metrics_by_group(labels, scores, families, threshold=threshold)
    return metrics, per_group, scores
