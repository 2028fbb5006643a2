"""Scoring a data set with a detector: probabilities, overall metrics and metrics per fake family."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from .._device import module_device, resolve_device
from .data_cache import PreparedData, index_batches, loader, progress_bar
from .metrics import detection_metrics, metrics_by_group
from .protocol import borrowed

__all__ = ["evaluate_detector"]


@torch.no_grad()
def prepared_scores(detector: nn.Module, prepared: PreparedData, batch_size: int) -> tuple[np.ndarray, float]:
    """Probabilities of *fake* and the mean BCE loss of an (unwrapped, placed) detector on cached inputs."""
    device = module_device(detector)
    logits = []
    for idx in index_batches(len(prepared), batch_size, None):
        xs = [t[idx].to(device, torch.float32) for t in prepared.inputs]
        logits.append(detector.forward_prepared(*xs).reshape(-1).float().cpu())
    logit = torch.cat(logits)
    loss = float(nn.functional.binary_cross_entropy_with_logits(logit, prepared.labels.float()))
    return torch.sigmoid(logit).numpy(), loss


@torch.no_grad()
def _stream_scores(detector: nn.Module, data: Dataset, batch_size: int, num_workers: int,
                   progress: bool) -> tuple[np.ndarray, np.ndarray, list]:
    chunks, labs, families = [], [], []
    device = module_device(detector)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for batch in progress_bar(loader(data, batch_size, num_workers=num_workers), enabled=progress,
                                  desc="evaluate", unit="batch"):
            logits = detector(batch["image"].to(device)).reshape(-1).float().cpu()
            chunks.append(torch.sigmoid(logits))
            labs.append(batch["label"])
            families += batch["family"]
    if not chunks:
        raise ValueError("the data set is empty")
    return torch.cat(chunks).numpy(), torch.cat(labs).numpy(), families


def evaluate_detector(detector: nn.Module, data: Dataset | PreparedData, *, batch_size: int = 64, device=None,
                      num_workers: int = 0, progress: bool = True, threshold: float = 0.5
                      ) -> tuple[dict, pd.DataFrame, np.ndarray]:
    """Score a data set and compute the detection metrics overall and per family.

    The detector is given back as it came: on its own device, in its own train/eval mode.

    Parameters
    ----------
    detector : nn.Module
        Any detector of :mod:`defocus_xai.detect` (wrappers are removed).
    data : Dataset or PreparedData
        Items with ``image``, ``label`` and optionally ``family`` (the manipulation method), or inputs
        cached by :func:`~defocus_xai.detect.data_cache.prepare_inputs`.
    batch_size, num_workers, progress
        As for :func:`~defocus_xai.detect.train_detector`.
    device : str or torch.device, optional
        Where to score; default ``"cuda"`` when available, else ``"cpu"``.
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
    with borrowed(detector, resolve_device(device)) as det:
        if isinstance(data, PreparedData):
            scores, _ = prepared_scores(det, data, batch_size)
            labels, families = data.labels.numpy(), list(data.families)
        else:  # stream: nothing but the scores is kept in memory
            scores, labels, families = _stream_scores(det, data, batch_size, num_workers, progress)
    metrics = detection_metrics(labels, scores, threshold=threshold)
    per_group = metrics_by_group(labels, scores, families, threshold=threshold)
    return metrics, per_group, scores
