"""Region blur contrast: mean defocus inside a region minus the mean outside it, per frame and per video.

A region is a boolean mask per frame (a manipulation mask, a face box) or one mask shared by all frames
(a centre crop). Per-frame contrasts are averaged per group (video) and summarized at that level, with a
real-vs-fake AUC when labels are given. See docs/analysis.md.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from ._checks import as_labels, as_map_batch, check_confidence
from ._results import plain_dict
from .masks import normalize_maps
from .stats import bootstrap_mean_ci

__all__ = ["region_contrast", "RegionContrastResult", "centre_region", "box_region"]


def box_region(shape, box) -> np.ndarray:
    """Boolean mask of an axis-aligned box.

    Parameters
    ----------
    shape : (int, int)
        Map (height, width).
    box : (int, int, int, int)
        ``(top, left, bottom, right)`` in pixels, bottom and right exclusive (slicing convention); must
        lie inside the map and be non-empty.

    Examples
    --------
    >>> int(box_region((4, 5), (1, 1, 3, 4)).sum())
    6
    """
    h, w = (int(v) for v in shape)
    top, left, bottom, right = (int(v) for v in box)
    if not (0 <= top < bottom <= h and 0 <= left < right <= w):
        raise ValueError(f"box {tuple(box)} (top, left, bottom, right) is empty or outside a {h} x {w} map")
    m = np.zeros((h, w), dtype=bool)
    m[top:bottom, left:right] = True
    return m


def centre_region(shape, size) -> np.ndarray:
    """Boolean mask of the centred ``size`` crop (an int for a square, or (height, width)).

    Examples
    --------
    >>> m = centre_region((299, 299), 150)
    >>> int(m.sum()), bool(m[149, 149]), bool(m[0, 0])
    (22500, True, False)
    """
    h, w = (int(v) for v in shape)
    sh, sw = (int(size), int(size)) if np.ndim(size) == 0 else (int(v) for v in size)
    if not (0 < sh <= h and 0 < sw <= w):
        raise ValueError(f"centre crop {sh} x {sw} does not fit a {h} x {w} map")
    top, left = (h - sh) // 2, (w - sw) // 2
    return box_region((h, w), (top, left, top + sh, left + sw))


@dataclass(frozen=True, eq=False)
class RegionContrastResult:
    """Result of :func:`region_contrast`.

    Attributes
    ----------
    per_sample : pandas.DataFrame
        Scored frames: ``sample``, ``group``, ``label`` (when given), ``inside``, ``outside`` (mean map value),
        ``contrast`` (inside minus outside), ``region_fraction``.
    per_unit : pandas.DataFrame
        One row per unit (group, and label when given): ``group``, ``label``, ``contrast`` (mean over its
        frames), ``n_frames``.
    skipped : pandas.DataFrame
        ``sample, reason`` (``"empty_region"``, ``"full_region"``).
    mean, ci_low, ci_high : float
        Mean of the per-unit contrasts and its bootstrap CI over groups (NaN with ``too_few_units``).
    mean_real, mean_fake : float or None
        Mean per-unit contrast of each class (labels given).
    auc, auc_ci_low, auc_ci_high : float or None
        ``P(fake unit contrast > real unit contrast)`` (ties half; labels given), with a bootstrap CI that
        resamples groups.
    mannwhitney_u, p_value : float or None
        Two-sided Mann-Whitney U test of fake vs real per-unit contrasts (``U`` of the fakes).
    n, n_units, n_skipped : int
        Frames scored, units, frames skipped.
    n_units_real, n_units_fake : int or None
    paired_groups : bool
        Some group holds both classes (a paired design): the test treats real and fake units as independent.
    too_few_units : bool
        A CI rests on fewer than 2 units (or a class on fewer than 2); its bounds are NaN.
    confidence, n_boot : float, int
    normalize : bool
    text : str
        The result in words.
    """

    per_sample: pd.DataFrame = field(repr=False)
    per_unit: pd.DataFrame = field(repr=False)
    skipped: pd.DataFrame = field(repr=False)
    mean: float
    ci_low: float
    ci_high: float
    mean_real: float | None
    mean_fake: float | None
    auc: float | None
    auc_ci_low: float | None
    auc_ci_high: float | None
    mannwhitney_u: float | None
    p_value: float | None
    n: int
    n_units: int
    n_skipped: int
    n_units_real: int | None
    n_units_fake: int | None
    paired_groups: bool
    too_few_units: bool
    confidence: float
    n_boot: int
    normalize: bool
    text: str

    def to_dict(self, include_per_sample: bool = False) -> dict:
        """Plain-Python dictionary: summary fields, skipped frames, per-unit and per-frame rows on request."""
        return plain_dict(self, optional=("per_sample", "per_unit"), include_optional=include_per_sample)


def _regions(regions, n: int, hw: tuple) -> np.ndarray:
    r = np.asarray(regions)
    if r.ndim == 4 and r.shape[1] == 1:
        r = r[:, 0]
    if r.shape == hw:
        r = np.broadcast_to(r, (n,) + hw)
    if r.shape != (n,) + hw:
        raise ValueError(f"regions has shape {np.asarray(regions).shape}; expected one {hw} mask or one per map "
                         f"({(n,) + hw})")
    if r.dtype != bool:
        if not np.issubdtype(r.dtype, np.number) or not np.all(np.isfinite(r)):
            raise ValueError("regions must be boolean (or finite numbers, nonzero = inside)")
        r = r != 0
    return r


def _per_frame(maps: np.ndarray, regions: np.ndarray) -> tuple[list, list]:
    n = maps.shape[0]
    x = maps.reshape(n, -1).astype(np.float64)
    m = regions.reshape(n, -1)
    size = m.shape[1]
    k = m.sum(axis=1)
    inside_sum = np.where(m, x, 0.0).sum(axis=1)
    inside = inside_sum / np.maximum(k, 1)
    outside = (x.sum(axis=1) - inside_sum) / np.maximum(size - k, 1)
    ok = (k > 0) & (k < size)
    skipped = [(int(i), "empty_region" if k[i] == 0 else "full_region") for i in np.flatnonzero(~ok)]
    rows = [{"sample": int(i), "inside": float(inside[i]), "outside": float(outside[i]),
             "contrast": float(inside[i] - outside[i]), "region_fraction": float(k[i] / size)}
            for i in np.flatnonzero(ok)]
    return rows, skipped


def _auc_matrix(fake: np.ndarray, real: np.ndarray) -> np.ndarray:
    return (fake[:, None] > real[None, :]).astype(np.float64) + 0.5 * (fake[:, None] == real[None, :])


def _auc_ci(units: pd.DataFrame, *, n_boot, confidence, seed) -> tuple[float, float]:
    """Percentile CI of the AUC, resampling groups (both classes of a drawn group come along)."""
    gcodes, uniques = pd.factorize(units["group"])
    is_fake = units["label"].to_numpy() == 1
    C = _auc_matrix(units["contrast"].to_numpy()[is_fake], units["contrast"].to_numpy()[~is_fake])
    rng = np.random.default_rng(seed)
    g = len(uniques)
    w = rng.multinomial(g, np.full(g, 1.0 / g), size=int(n_boot)).astype(np.float64)
    wf, wr = w[:, gcodes[is_fake]], w[:, gcodes[~is_fake]]
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = np.einsum("bi,ij,bj->b", wf, C, wr) / (wf.sum(axis=1) * wr.sum(axis=1))
    reps = reps[np.isfinite(reps)]
    alpha = 1.0 - confidence
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _class_stats(units: pd.DataFrame, *, n_boot, confidence, seed) -> dict:
    fake = units.loc[units["label"] == 1, "contrast"].to_numpy()
    real = units.loc[units["label"] == 0, "contrast"].to_numpy()
    out = {"n_units_real": int(real.size), "n_units_fake": int(fake.size),
           "mean_real": float(real.mean()) if real.size else None,
           "mean_fake": float(fake.mean()) if fake.size else None,
           "auc": None, "auc_ci_low": None, "auc_ci_high": None, "mannwhitney_u": None, "p_value": None,
           "paired_groups": bool(units.groupby("group")["label"].nunique().max() > 1)}
    if real.size and fake.size:
        mw = stats.mannwhitneyu(fake, real, alternative="two-sided")
        out.update(auc=float(_auc_matrix(fake, real).mean()), mannwhitney_u=float(mw.statistic),
                   p_value=float(mw.pvalue))
        if min(real.size, fake.size) >= 2:
            out["auc_ci_low"], out["auc_ci_high"] = _auc_ci(units, n_boot=n_boot, confidence=confidence, seed=seed)
        else:
            out["auc_ci_low"] = out["auc_ci_high"] = float("nan")
    return out


def _text(r: dict, labelled: bool) -> str:
    ci = ("no CI (fewer than 2 units)" if np.isnan(r["ci_low"]) else
          f"{100 * r['confidence']:.0f}% CI [{r['ci_low']:.3g}, {r['ci_high']:.3g}]")
    text = (f"Region contrast (mean inside minus mean outside) {r['mean']:.3g}, {ci}, over {r['n_units']} units "
            f"({r['n']} frames). ")
    if labelled and r["auc"] is not None:
        auc_ci = ("no CI" if r["auc_ci_low"] is None or np.isnan(r["auc_ci_low"]) else
                  f"{100 * r['confidence']:.0f}% CI [{r['auc_ci_low']:.2f}, {r['auc_ci_high']:.2f}], groups resampled")
        text += (f"Real {r['mean_real']:.3g} ({r['n_units_real']} units), fake {r['mean_fake']:.3g} "
                 f"({r['n_units_fake']} units); AUC fake vs real {r['auc']:.2f} ({auc_ci}); Mann-Whitney "
                 f"p = {r['p_value']:.3g} at the unit level. ")
        if r["paired_groups"]:
            text += "Warning: some groups hold both classes; the Mann-Whitney test treats them as independent. "
    if r["n_skipped"]:
        text += f"{r['n_skipped']} frame(s) skipped ({', '.join(f'{i} ({why})' for i, why in r['_skipped'][:10])})."
    return text.strip()


def region_contrast(maps, regions, *, groups=None, labels=None, normalize: bool = False, n_boot: int = 2000,
                    confidence: float = 0.95, seed=0) -> RegionContrastResult:
    """Mean defocus inside a region minus the mean outside it, per frame, summarized per video.

    Parameters
    ----------
    maps : array_like, shape (N, H, W) or (N, 1, H, W)
        Defocus maps (sigma in pixels, or normalized maps); finite.
    regions : array_like of bool, shape (H, W) or (N, H, W)
        One mask for all frames (e.g. :func:`centre_region`) or one per frame (a manipulation mask);
        nonzero = inside. A frame whose region is empty or covers the whole map is skipped and named.
    groups : array_like, shape (N,), optional
        Video (independent unit) per frame; frames are averaged per group before any statistic. Default:
        every frame its own unit.
    labels : array_like of {0, 1}, shape (N,), optional
        0 real, 1 fake: adds per-class means, the AUC of fake vs real unit contrasts with a bootstrap CI
        over groups, and a Mann-Whitney test at the unit level.
    normalize : bool
        Min-max normalize each map first (:func:`~defocus_xai.analysis.normalize_maps`); default off:
        sigma in pixels keeps its physical meaning.
    n_boot, confidence, seed
        Bootstrap of the mean (groups resampled) and of the AUC.

    Returns
    -------
    RegionContrastResult

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> maps = rng.random((8, 20, 20)); maps[4:, 5:15, 5:15] += 1.0
    >>> res = region_contrast(maps, centre_region((20, 20), 10), labels=[0] * 4 + [1] * 4, n_boot=200)
    >>> res.auc, res.n_units
    (1.0, 8)
    """
    confidence = check_confidence(confidence)
    x = as_map_batch(maps, "maps").astype(np.float64)
    n = x.shape[0]
    if normalize:
        x = normalize_maps(x).astype(np.float64)
    reg = _regions(regions, n, x.shape[1:])
    g = np.arange(n) if groups is None else as_labels(groups, "groups", n)
    lab = None
    if labels is not None:
        lab = as_labels(labels, "labels", n).astype(np.int64)
        if not np.isin(lab, (0, 1)).all():
            raise ValueError(f"labels must be 0 (real) or 1 (fake), got values {np.unique(lab).tolist()}")
    rows, skipped = _per_frame(x, reg)
    if not rows:
        raise ValueError(f"no frame could be scored: all {n} regions are empty or cover the whole map")
    if skipped:
        warnings.warn(f"region_contrast skipped {len(skipped)} of {n} frames (empty or full region)", UserWarning,
                      stacklevel=2)
    per = pd.DataFrame(rows)
    per.insert(1, "group", g[per["sample"].to_numpy()])
    keys = ["group"]
    if lab is not None:
        per.insert(2, "label", lab[per["sample"].to_numpy()])
        keys.append("label")
    units = per.groupby(keys, sort=True).agg(contrast=("contrast", "mean"), n_frames=("contrast", "size"))
    units = units.reset_index()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # flagged in the result instead
        ci = bootstrap_mean_ci(units["contrast"].to_numpy(), units["group"].to_numpy(), n_boot=n_boot,
                               confidence=confidence, seed=seed)
    r = {"mean": float(units["contrast"].mean()), "ci_low": ci.low, "ci_high": ci.high, "n": len(per),
         "n_units": ci.n_units, "n_skipped": len(skipped), "confidence": confidence, "n_boot": int(n_boot),
         "normalize": bool(normalize)}
    if lab is not None:
        r.update(_class_stats(units, n_boot=n_boot, confidence=confidence, seed=seed))
    else:
        r.update({k: None for k in ("mean_real", "mean_fake", "auc", "auc_ci_low", "auc_ci_high", "mannwhitney_u",
                                    "p_value", "n_units_real", "n_units_fake")}, paired_groups=False)
    auc_nan = r["auc_ci_low"] is not None and np.isnan(r["auc_ci_low"])
    r["too_few_units"] = bool(ci.too_few_units or auc_nan)
    text = _text({**r, "_skipped": skipped}, lab is not None)
    return RegionContrastResult(per_sample=per, per_unit=units,
                                skipped=pd.DataFrame(skipped, columns=["sample", "reason"]), text=text, **r)
