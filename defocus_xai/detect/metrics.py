"""Detection metrics: threshold metrics, ROC AUC, average precision, equal error rate, per group.

Labels follow the library's convention: ``1`` = fake (the positive class), ``0`` = real. Scores are any
real-valued "fakeness" scores (probabilities for ``threshold=0.5``); higher means more likely fake.
"""

from __future__ import annotations

import math
import warnings
from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["detection_metrics", "metrics_by_group", "equal_error_rate", "METRIC_KEYS"]

#: Keys of the dict returned by :func:`detection_metrics`, in order.
METRIC_KEYS = (
    "n", "n_real", "n_fake", "threshold", "accuracy", "precision", "recall", "f1", "roc_auc",
    "average_precision", "eer", "eer_threshold", "tn", "fp", "fn", "tp",
)


def _as_arrays(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(_to_numpy(labels)).reshape(-1)
    s = np.asarray(_to_numpy(scores), dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores must have the same length, got {y.shape[0]} and {s.shape[0]}")
    if y.size == 0:
        raise ValueError("labels and scores are empty")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"scores contain {int((~np.isfinite(s)).sum())} NaN or infinite value(s)")
    bad = ~np.isin(y, (0, 1))
    if bad.any():
        raise ValueError(f"labels must be 0 (real) or 1 (fake); found {sorted(set(np.unique(y[bad]).tolist()))}")
    return y.astype(np.int64), s


def _to_numpy(x):
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return x


def equal_error_rate(labels, scores) -> tuple[float, float]:
    """Equal error rate: where the false positive rate equals the false negative rate on the ROC curve.

    The ROC curve is taken as the piecewise-linear curve through the operating points; the EER is read
    at the crossing of ``FPR = 1 - TPR`` by linear interpolation between the two neighbouring points.

    Returns
    -------
    (float, float)
        The EER and the score threshold at the crossing (interpolated between the two thresholds).

    Examples
    --------
    >>> eer, thr = equal_error_rate([0, 0, 0, 0, 1, 1], [0.1, 0.2, 0.3, 0.7, 0.6, 0.8])
    >>> eer, round(thr, 6)
    (0.25, 0.65)
    """
    from sklearn.metrics import roc_curve

    y, s = _as_arrays(labels, scores)
    if y.min() == y.max():
        raise ValueError("the equal error rate needs both classes (real and fake)")
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    fnr = 1.0 - tpr
    d = fpr - fnr  # increasing from -1 to +1 along the curve
    idx = int(np.argmax(d >= 0))
    if idx == 0 or d[idx] == 0:
        t_hi = thr[idx] if np.isfinite(thr[idx]) else s.max()
        return float(fpr[idx]), float(t_hi)
    i0, i1 = idx - 1, idx
    w = -d[i0] / (d[i1] - d[i0])
    eer = fpr[i0] + w * (fpr[i1] - fpr[i0])
    t0 = thr[i0] if np.isfinite(thr[i0]) else s.max()
    t1 = thr[i1]
    return float(eer), float(t0 + w * (t1 - t0))


def detection_metrics(labels, scores, threshold: float = 0.5) -> dict:
    """Real/fake detection metrics.

    Parameters
    ----------
    labels : array-like of {0, 1}
        ``1`` = fake (positive), ``0`` = real.
    scores : array-like of float
        Fakeness scores (probabilities for the default threshold).
    threshold : float
        A sample is predicted fake when ``score >= threshold``.

    Returns
    -------
    dict
        ``n``, ``n_real``, ``n_fake``, ``threshold``, ``accuracy``, ``precision``, ``recall``, ``f1``
        (precision / F1 are 0 when nothing is predicted fake), ``roc_auc``, ``average_precision``, ``eer``,
        ``eer_threshold`` (NaN, with a warning, when only one class is present), and the confusion counts
        ``tn``, ``fp``, ``fn``, ``tp`` (ints).

    Examples
    --------
    >>> m = detection_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    >>> m["accuracy"], m["roc_auc"], m["tp"]
    (0.5, 0.75, 1)
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    y, s = _as_arrays(labels, scores)
    pred = (s >= threshold).astype(np.int64)
    tp = int(np.sum((pred == 1) & (y == 1)))
    tn = int(np.sum((pred == 0) & (y == 0)))
    fp = int(np.sum((pred == 1) & (y == 0)))
    fn = int(np.sum((pred == 0) & (y == 1)))
    n = int(y.size)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    if y.min() == y.max():
        warnings.warn(
            f"detection_metrics: only {'fake' if y[0] else 'real'} samples (n={n}); ROC AUC, average "
            "precision and EER are undefined (NaN)", RuntimeWarning, stacklevel=2,
        )
        auc = ap = eer = eer_thr = math.nan
    else:
        auc = float(roc_auc_score(y, s))
        ap = float(average_precision_score(y, s))
        eer, eer_thr = equal_error_rate(y, s)
    return {
        "n": n, "n_real": int(np.sum(y == 0)), "n_fake": int(np.sum(y == 1)), "threshold": float(threshold),
        "accuracy": (tp + tn) / n, "precision": float(precision), "recall": float(recall), "f1": float(f1),
        "roc_auc": auc, "average_precision": ap, "eer": eer, "eer_threshold": eer_thr,
        "tn": tn, "fp": fp, "fn": fn, "tp": tp,
    }


def metrics_by_group(labels, scores, groups: Sequence, *, threshold: float = 0.5,
                     include_all: bool = True) -> pd.DataFrame:
    """Detection metrics per fake family / manipulation method, each against ALL real samples.

    Real samples have no family of their own (a real frame is not "real for Deepfakes"), so every fake
    group is scored together with every real sample: AUC then says how well that family is separated
    from reality.

    Parameters
    ----------
    labels, scores
        As for :func:`detection_metrics`.
    groups : sequence of str
        Group of each sample (the family or method); the value on real samples is ignored.
    threshold : float
        Decision threshold.
    include_all : bool
        Add a row ``"all"`` with every sample.

    Returns
    -------
    pandas.DataFrame
        One row per fake group (sorted by name; then ``"all"``), index ``group``, columns
        :data:`METRIC_KEYS`.

    Examples
    --------
    >>> df = metrics_by_group([0, 0, 1, 1], [0.1, 0.2, 0.9, 0.3], ["real", "real", "a", "b"])
    >>> float(df.loc["a", "roc_auc"]), float(df.loc["b", "roc_auc"])
    (1.0, 1.0)
    """
    y, s = _as_arrays(labels, scores)
    g = np.asarray([str(v) for v in np.asarray(_to_numpy(groups), dtype=object).reshape(-1)])
    if g.shape[0] != y.shape[0]:
        raise ValueError(f"groups has {g.shape[0]} entries for {y.shape[0]} samples")
    real = y == 0
    rows, names = [], []
    for name in sorted(set(g[~real].tolist())):
        sel = real | ((g == name) & ~real)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rows.append(detection_metrics(y[sel], s[sel], threshold))
        names.append(name)
    if include_all:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            rows.append(detection_metrics(y, s, threshold))
        names.append("all")
    df = pd.DataFrame(rows, index=pd.Index(names, name="group"), columns=list(METRIC_KEYS))
    return df
