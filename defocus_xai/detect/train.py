"""Training detectors: seeded, resumable, with progress bars and atomic checkpoints.

Data sets are any ``torch.utils.data.Dataset`` whose items are dicts with ``image`` (``(3, H, W)`` in
``[0, 1]``, float or uint8) and ``label`` (0 real, 1 fake), optionally ``family``. Caching, the seeding
that makes a resumed run see the same batches, and the files written are described in
``docs/detectors.md`` ("Training and evaluation").
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from .._device import resolve_device
from .checkpoints import save_detector
from .data_cache import PreparedData, index_batches, loader, prepare_inputs, progress_bar, seeded
from .evaluate import prepared_scores
from .metrics import detection_metrics
from .protocol import borrowed
from .state_dict import atomic_write_bytes, load_into, load_state_dict_file

__all__ = ["train_detector", "TrainResult"]


@dataclass
class TrainResult:
    """What :func:`train_detector` returns (``resumed_epoch``: epochs already done by an earlier run)."""

    detector: nn.Module
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


@dataclass
class _Run:
    """The mutable state of one training run (what ``checkpoint.pt`` holds besides the weights)."""

    optimizer: torch.optim.Optimizer
    scheduler: Any
    fingerprint: dict
    history: list = field(default_factory=list)
    start_epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int | None = None


def _new_run(model: nn.Module, n_train: int, n_val: int, *, epochs: int, batch_size: int, lr: float,
             weight_decay: float, seed: int, augment: bool) -> _Run:
    steps_per_epoch = len(index_batches(n_train, batch_size, torch.Generator().manual_seed(0)))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs * steps_per_epoch))
    fp = {"arch": model.arch, "config": model.config(), "n_train": int(n_train), "n_val": int(n_val),
          "batch_size": int(batch_size), "lr": float(lr), "weight_decay": float(weight_decay),
          "seed": int(seed), "epochs": int(epochs), "augment": bool(augment)}
    return _Run(optimizer, scheduler, json.loads(json.dumps(fp)))


def _resume(run: _Run, model: nn.Module, ckpt_path: Path) -> None:
    """Continue ``run`` from ``ckpt_path``; refuse a checkpoint of another configuration."""
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    saved_fp = json.loads(state["fingerprint"])
    if saved_fp != run.fingerprint:
        diff = sorted(k for k in set(run.fingerprint) | set(saved_fp) if saved_fp.get(k) != run.fingerprint.get(k))
        raise ValueError(f"{ckpt_path} belongs to a different run (differs in {diff}); use another out folder or "
                         "resume=False")
    model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    run.start_epoch = int(state["epoch"])
    run.history = json.loads(state["history"])
    run.best_score = float(state["best_auc"])
    run.best_epoch = None if int(state["best_epoch"]) < 0 else int(state["best_epoch"])


def _epoch_batches(model: nn.Module, train_p: PreparedData | None, train_data, *, gen: torch.Generator,
                   batch_size: int, num_workers: int):
    """(iterator of (inputs, labels), number of steps) for one epoch, from the cache or computed live."""
    if train_p is not None:
        chunks = index_batches(len(train_p), batch_size, gen)
        return ((tuple(t[idx] for t in train_p.inputs), train_p.labels[idx]) for idx in chunks), len(chunks)
    batches = loader(train_data, batch_size, num_workers=num_workers, shuffle=True, generator=gen,
                     drop_last=len(train_data) > batch_size)

    def live():
        for b in batches:
            with torch.no_grad():
                xs = model.prepare(b["image"].to(model.device))
            yield xs, b["label"]
    return live(), len(batches)


def _train_epoch(model: nn.Module, run: _Run, batches, n_steps: int, *, flip_gen: torch.Generator | None,
                 progress: bool, desc: str) -> float:
    """One pass of Adam steps with BCE on logits (random flips from ``flip_gen``); the mean loss."""
    model.train()
    device = model.device
    loss_fn = nn.BCEWithLogitsLoss()
    total, count = 0.0, 0
    bar = progress_bar(batches, enabled=progress, total=n_steps, desc=desc, unit="batch")
    for xs, y in bar:
        xs = [x.to(device, torch.float32) for x in xs]
        if flip_gen is not None:
            flip = (torch.rand(y.shape[0], generator=flip_gen) < 0.5).to(device).view(-1, 1, 1, 1)
            xs = [torch.where(flip, x.flip(-1), x) for x in xs]
        loss = loss_fn(model.forward_prepared(*xs).reshape(-1), y.to(device, torch.float32))
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        run.scheduler.step()
        total += float(loss.detach()) * y.shape[0]
        count += y.shape[0]
        if progress:
            bar.set_postfix(loss=f"{total / max(count, 1):.4f}")
    return total / max(count, 1)


def _validate(model: nn.Module, val_p: PreparedData, batch_size: int) -> tuple[dict, float]:
    """Validation loss, ROC AUC and accuracy; the score that selects the best epoch."""
    model.eval()
    scores, vloss = prepared_scores(model, val_p, batch_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        vm = detection_metrics(val_p.labels.numpy(), scores)
    record = {"val_loss": vloss, "val_auc": vm["roc_auc"], "val_accuracy": vm["accuracy"]}
    return record, vm["roc_auc"] if not math.isnan(vm["roc_auc"]) else -vloss


def _save_epoch(out: Path, model: nn.Module, run: _Run, meta: dict, *, epoch: int, improved: bool) -> None:
    """Write ``last.pt`` (and ``best.pt`` when improved), ``checkpoint.pt`` and ``history.json`` atomically."""
    out.mkdir(parents=True, exist_ok=True)
    info = {**meta, "training": {**run.fingerprint, "epoch": epoch, "history": run.history}}
    save_detector(model, out / "last.pt", **info)
    if improved:
        save_detector(model, out / "best.pt", **info, best_epoch=epoch)
    state = {
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
        "rng": torch.get_rng_state(), "epoch": epoch, "history": json.dumps(run.history),
        "best_auc": float(run.best_score), "best_epoch": -1 if run.best_epoch is None else int(run.best_epoch),
        "fingerprint": json.dumps(run.fingerprint),
    }
    atomic_write_bytes(out / "checkpoint.pt", lambda f: torch.save(state, f))
    text = json.dumps(run.history, indent=2) + "\n"
    atomic_write_bytes(out / "history.json", lambda f: f.write(text.encode()))


def _prepare(model, data, *, cache: bool, batch_size: int, num_workers: int, progress: bool, desc: str):
    if data is None or isinstance(data, PreparedData) or not cache:
        return data
    return prepare_inputs(model, data, batch_size=batch_size, device=model.device, num_workers=num_workers,
                          progress=progress, desc=desc)


def train_detector(detector: nn.Module, train_data: Dataset | PreparedData, *,
                   val_data: Dataset | PreparedData | None = None, epochs: int = 5, batch_size: int = 64,
                   lr: float = 1e-3, weight_decay: float = 1e-4, device=None, seed: int = 0,
                   out: str | os.PathLike | None = None, resume: bool = True, progress: bool = True,
                   num_workers: int = 0, cache: bool = True, augment: bool = True,
                   meta: dict | None = None) -> TrainResult:
    """Train a detector with Adam and binary cross-entropy on logits (label 1 = fake).

    What changes for the caller: the detector's weights (trained in place; the best epoch's when
    ``val_data`` is given, else the last's) and torch's global RNG (seeded with ``seed``). It is given
    back on the device and in the train/eval mode (per module) it came in.

    Parameters
    ----------
    detector : DefocusDetector, RGBDetector or TwoBranchDetector
        Trained in place (unwrapped from ``DataParallel``/DDP first).
    train_data, val_data : Dataset or PreparedData
        Items with ``image`` and ``label``, or inputs already prepared with
        :func:`~defocus_xai.detect.data_cache.prepare_inputs`. ``val_data`` selects the best epoch
        (highest ROC AUC).
    epochs, batch_size, lr, weight_decay
        Optimization: Adam with a cosine learning-rate decay over all steps.
    device : str or torch.device, optional
        Where to train; default ``"cuda"`` when available, else ``"cpu"``.
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
        Prepare the inputs once and keep them in memory (float16). ``False`` recomputes them every
        epoch (for data sets too large for memory).
    augment : bool
        Random horizontal flips.
    meta : dict, optional
        JSON-able metadata written into the saved detectors' sidecars (e.g. ``training_data``).

    Returns
    -------
    TrainResult
        The (unwrapped) detector, the per-epoch history and the paths written.

    Examples
    --------
    >>> from defocus_xai.data.synth import DefocusSynth                                   # doctest: +SKIP
    >>> det = DefocusDetector(estimator={"size": 64})                                     # doctest: +SKIP
    >>> res = train_detector(det, DefocusSynth(256, size=64), epochs=2, out="runs/a")     # doctest: +SKIP
    >>> res.history[-1]["train_loss"]                                                     # doctest: +SKIP
    """
    t_start = time.perf_counter()
    if epochs < 1 or batch_size < 1:
        raise ValueError(f"epochs and batch_size must be >= 1, got {epochs} and {batch_size}")
    if len(train_data) < 2:
        raise ValueError(f"need at least 2 training samples, got {len(train_data)}")
    out = Path(out) if out is not None else None
    torch.manual_seed(int(seed))
    with borrowed(detector, resolve_device(device), train=True) as model:
        run = _new_run(model, len(train_data), len(val_data) if val_data is not None else 0, epochs=epochs,
                       batch_size=batch_size, lr=lr, weight_decay=weight_decay, seed=seed, augment=augment)
        if out is not None and resume and (out / "checkpoint.pt").is_file():
            _resume(run, model, out / "checkpoint.pt")
            if progress:
                print(f"resuming from {out / 'checkpoint.pt'} after epoch {run.start_epoch}/{epochs}")
        t0 = time.perf_counter()
        todo = run.start_epoch < epochs
        opts = {"batch_size": batch_size, "num_workers": num_workers, "progress": progress}
        train_p = _prepare(model, train_data, cache=cache, desc="prepare train", **opts) if todo else None
        val_p = _prepare(model, val_data, cache=True, desc="prepare val", **opts) if todo else None
        prepare_seconds = time.perf_counter() - t0
        for epoch in range(run.start_epoch, epochs):
            _run_epoch(model, run, epoch, train_p, val_p, out, dict(meta or {}),
                       seed=seed, augment=augment, epochs=epochs, **opts)
        best_path = out / "best.pt" if out is not None and (out / "best.pt").is_file() else None
        if val_data is not None and best_path is not None and run.best_epoch not in (None, epochs):
            load_into(model, load_state_dict_file(best_path)[0], str(best_path))
    return TrainResult(detector=model, history=run.history, best_epoch=run.best_epoch, best_path=best_path,
                       last_path=out / "last.pt" if out is not None else None,
                       seconds=time.perf_counter() - t_start, prepare_seconds=prepare_seconds,
                       resumed_epoch=run.start_epoch)


def _run_epoch(model: nn.Module, run: _Run, epoch: int, train: Dataset | PreparedData,
               val_p: PreparedData | None, out: Path | None, meta: dict, *, seed: int, augment: bool, epochs: int, batch_size: int, num_workers: int,
               progress: bool) -> None:
    """Train one epoch, validate, record it in ``run.history`` and save (when ``out``)."""
    t_ep = time.perf_counter()
    train_p = train if isinstance(train, PreparedData) else None
    batches, n_steps = _epoch_batches(model, train_p, train, gen=seeded(seed, epoch), batch_size=batch_size,
                                      num_workers=num_workers)
    loss = _train_epoch(model, run, batches, n_steps, flip_gen=seeded(seed, epoch, 1) if augment else None,
                        progress=progress, desc=f"epoch {epoch + 1}/{epochs}")
    record: dict[str, Any] = {"epoch": epoch + 1, "train_loss": loss,
                              "lr": float(run.optimizer.param_groups[0]["lr"])}
    score = -loss
    if val_p is not None:
        val_record, score = _validate(model, val_p, batch_size)
        record.update(val_record)
    record["seconds"] = time.perf_counter() - t_ep
    run.history.append(record)
    improved = score > run.best_score
    if improved:
        run.best_score, run.best_epoch = score, epoch + 1
    if progress:
        print("  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
    if out is not None:
        _save_epoch(out, model, run, meta, epoch=epoch + 1, improved=improved)
