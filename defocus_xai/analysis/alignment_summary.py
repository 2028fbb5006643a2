"""Alignment scores over a data set: mean with a (grouped) CI, beside its controls.

Every score is shown beside three controls: a permutation baseline (another sample's attribution), a
map-value control (|attribution| = the fake's map value) and a uniform attribution. Degenerate samples
(identical maps, an all-zero attribution) are skipped, counted and named. See docs/analysis.md.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._checks import as_attribution_batch, as_labels, as_map_batch, check_confidence, readonly, reduce_attribution
from ._controls import CONTROL_NAMES, alignment_text, control_overlaps, control_test
from ._permutation import permutation_overlaps
from ._results import plain_dict
from .alignment import DEFAULT_EPS, _bin_index, _check_bins, _check_eps, _edges, _prepared, _score
from .stats import bootstrap_mean_ci, group_codes

__all__ = ["alignment_scores", "AlignmentSummary"]


@dataclass(frozen=True, eq=False)
class AlignmentSummary:
    """Alignment scores over a data set, with uncertainty and controls.

    Attributes
    ----------
    per_sample : pandas.DataFrame
        Columns ``sample`` (index into the inputs), ``group`` (when groups were given), ``overlap``,
        ``kl``, and the controls' overlaps ``overlap_map_value``, ``overlap_uniform`` and
        ``overlap_permutation`` (mean over permutations; with permutations only); skipped samples are absent.
    mean_overlap, std_overlap : float
        Mean and standard deviation (ddof 1; 0 for one sample) of per-sample overlap.
    ci_low, ci_high : float
        Bootstrap CI of the mean overlap (groups resampled when given); NaN with ``too_few_units``.
    mean_kl, std_kl, kl_ci_low, kl_ci_high : float
        The same for the KL divergence.
    confidence : float
    too_few_units : bool
        The CIs rest on fewer than 2 units (their bounds are NaN).
    n : int
        Samples scored.
    n_units : int
        Independent units among them (groups, or samples).
    n_skipped : int
    skipped : tuple of int
        Indices of samples skipped as degenerate (``on_degenerate="skip"``).
    skip_reasons : tuple of str
        Why, per skipped sample: ``"identical_maps"`` (``|fake - real|`` is zero everywhere) or
        ``"zero_attribution"``.
    controls : dict
        ``{"permutation": ..., "map_value": ..., "uniform": ...}``: mean overlap of each control
        (``None`` when not computed: no permutations, or a control undefined on every sample).
    control_details : dict
        Per control: ``mean_overlap``, ``share_beaten`` (share of units where the attribution's overlap is
        higher), ``p_value`` (one-sided Wilcoxon signed-rank test on per-unit differences, units = groups
        when given), ``n_units``, ``n_undefined`` (samples where the control's histogram is empty) and
        ``beaten`` (higher mean and ``p_value < alpha``).
    beats_all_controls : bool
        The attribution beats every computed control.
    alpha : float
        Level of the control tests.
    baseline_mean_overlap : float or None
        Mean over permutations of the mean overlap with attributions shuffled across samples (a
        derangement; with groups, each attribution moves to a sample of another group). ``None``
        when ``n_permutations == 0``.
    baseline_std_overlap : float or None
        Standard deviation of the permutation means.
    p_value : float or None
        One-sided permutation p-value ``(1 + #{perm mean >= observed mean}) / (1 + n_permutations)``
        (sample-level; with groups ``text`` points to the per-unit tests).
    n_permutations : int
    baseline_means : ndarray
        Mean overlap of each permutation (read-only; empty without permutations).
    text : str
        The result in words: controls, whether the attribution beats each, skipped samples.
    bins : int
    value_range : tuple or None
    eps : float
    """

    per_sample: pd.DataFrame = field(repr=False)
    mean_overlap: float
    std_overlap: float
    ci_low: float
    ci_high: float
    mean_kl: float
    std_kl: float
    kl_ci_low: float
    kl_ci_high: float
    confidence: float
    too_few_units: bool
    n: int
    n_units: int
    n_skipped: int
    skipped: tuple
    skip_reasons: tuple
    controls: dict
    control_details: dict
    beats_all_controls: bool
    alpha: float
    baseline_mean_overlap: float | None
    baseline_std_overlap: float | None
    p_value: float | None
    n_permutations: int
    baseline_means: np.ndarray = field(repr=False)
    text: str = ""
    bins: int = 20
    value_range: tuple | None = (0.0, 1.0)
    eps: float = DEFAULT_EPS

    def to_dict(self, include_per_sample: bool = False) -> dict:
        """Summary fields as plain Python values; the per-sample table as a list of records on request."""
        return plain_dict(self, optional=("per_sample",), include_optional=include_per_sample)


def _check_scores_args(rl, fk, at, on_degenerate, n_permutations) -> None:
    if on_degenerate not in ("raise", "skip"):
        raise ValueError(f"on_degenerate must be 'raise' or 'skip', got {on_degenerate!r}")
    if int(n_permutations) < 0:
        raise ValueError(f"n_permutations must be >= 0, got {n_permutations}")
    if fk.shape != rl.shape:
        raise ValueError(f"real_maps has shape {rl.shape} but fake_maps has shape {fk.shape}; pass paired "
                         "maps (same N, H, W)")
    if at.shape[0] != fk.shape[0] or at.shape[-2:] != fk.shape[1:]:
        raise ValueError(f"attributions has shape {at.shape}, incompatible with maps of shape {fk.shape} "
                         "(need (N, H, W) or (N, C, H, W) with the maps' N, H, W)")
    if fk.shape[0] == 0:
        raise ValueError("no samples given")


def _degenerate(f, r, a_abs) -> str | None:
    if not np.any(f != r):
        return "identical_maps"
    if not a_abs.sum() > 0:
        return "zero_attribution"
    return None


def _score_samples(at, rl, fk, *, bins, value_range, eps, normalize, on_degenerate, keep_attributions):
    """Per-sample scores and control overlaps of the non-degenerate samples.

    Returns a dict: ``keep`` (indices), ``overlap``, ``kl``, ``map_value``, ``uniform`` (control
    overlaps), ``skipped`` ((index, reason) pairs) and ``a_mat`` (the kept reduced attributions as an
    (m, H * W) float32 array, ``None`` unless ``keep_attributions``).
    """
    cols = {k: [] for k in ("keep", "overlap", "kl", "map_value", "uniform")}
    skipped, rows = [], []
    for i in range(fk.shape[0]):
        f, r = _prepared(fk[i], rl[i], normalize)
        a_abs = reduce_attribution(at[i], f"attributions[{i}]", mode="abs")
        reason = _degenerate(f, r, a_abs)
        if reason is not None and on_degenerate == "skip":
            skipped.append((i, reason))
            continue
        ov, kl, A, _, _, idx = _score(f, r, a_abs, bins, value_range, eps, f"sample {i}")
        for k, v in zip(cols, (i, ov, kl) + control_overlaps(idx, A, f, bins)):
            cols[k].append(v)
        if keep_attributions:
            rows.append(a_abs.ravel().astype(np.float32))
    if not cols["keep"]:
        raise ValueError(f"all {fk.shape[0]} samples are degenerate: {dict(pd.Series([r for _, r in skipped]).value_counts())}")
    out = {k: np.asarray(v, dtype=np.int64 if k == "keep" else np.float64) for k, v in cols.items()}
    out["skipped"] = skipped
    out["a_mat"] = np.stack(rows) if keep_attributions else None
    return out


def _permutations(rl, fk, keep, a_mat, codes, *, bins, value_range, normalize, n_permutations, seed):
    """(n_permutations, m) overlaps of every kept sample with shuffled attributions (empty without them)."""
    if not n_permutations:
        return np.empty((0, keep.size))

    def diff_hist(i):
        f, r = _prepared(fk[keep[i]], rl[keep[i]], normalize)
        idx = _bin_index(f, _edges(f, bins, value_range), f"sample {keep[i]}")
        hd = np.bincount(idx, weights=np.abs(f - r).ravel(), minlength=bins)
        return idx, hd / hd.sum()

    return permutation_overlaps(diff_hist, a_mat, codes, bins=bins, n_permutations=n_permutations, seed=seed)


def _std(v: np.ndarray) -> float:
    return float(v.std(ddof=1)) if v.size > 1 else 0.0


def _warn_skipped(skipped, n) -> None:
    if skipped:
        named = ", ".join(f"{i} ({r})" for i, r in skipped[:10]) + (" ..." if len(skipped) > 10 else "")
        warnings.warn(f"alignment_scores skipped {len(skipped)} of {n} degenerate samples: {named}", UserWarning,
                      stacklevel=3)


def _controls(sc, perm, g_kept, alpha) -> tuple[dict, dict]:
    """(control name -> mean overlap, control name -> test details)."""
    per_control = {"map_value": sc["map_value"], "uniform": sc["uniform"]}
    if perm.size:
        per_control["permutation"] = perm.mean(axis=0)
    details = {name: control_test(sc["overlap"], per_control[name], g_kept, alpha)
               for name in CONTROL_NAMES if name in per_control}
    return {name: (details[name]["mean_overlap"] if name in details else None) for name in CONTROL_NAMES}, details


def alignment_scores(attributions, *, real_maps, fake_maps, groups=None, bins: int = 20,
                     value_range=(0.0, 1.0), eps: float = DEFAULT_EPS, normalize: bool = False,
                     n_boot: int = 2000, seed=0, n_permutations: int = 200, confidence: float = 0.95,
                     on_degenerate: str = "skip", alpha: float = 0.05) -> AlignmentSummary:
    """Alignment scores of many fake samples, their mean with a CI, beside three controls.

    Parameters
    ----------
    attributions : array_like, shape (N, H, W) or (N, C, H, W)
        Attribution for each fake; channels reduced by ``sum_c |a_c|``.
    real_maps, fake_maps : array_like, shape (N, H, W) or (N, 1, H, W)
        Already paired: ``real_maps[i]`` is the real that ``fake_maps[i]`` was made from (see
        :func:`~defocus_xai.analysis.pair_by_source` to build the pairing).
    groups : array_like, shape (N,), optional
        Independent unit per sample (video id): the bootstrap resamples groups, ``n_units`` counts
        them, the control tests run on per-group means, and the permutation baseline only gives a
        sample an attribution from another group (frames of one video have near-identical attributions).
    bins, value_range, eps, normalize
        As in :func:`~defocus_xai.analysis.alignment_score`.
    n_boot : int
        Bootstrap replicates for the CIs.
    seed : int or numpy.random.Generator
        Randomness of the bootstrap and of the permutations.
    n_permutations : int
        Random shuffles of attributions across samples for the permutation control (0 disables it).
    confidence : float
    on_degenerate : {"skip", "raise"}
        A sample whose maps are identical or whose attribution is zero everywhere has no score. "skip"
        (default): leave it out, warn, and name it in ``skipped`` / ``skip_reasons`` / ``text``; "raise":
        ``ValueError`` naming the sample.
    alpha : float
        Level at which a control counts as beaten.

    Returns
    -------
    AlignmentSummary

    Notes
    -----
    The map-value control scores ``|attribution| = fake map value`` (after ``normalize``): with an all-zero
    attribution reference, gradient x input grows with the input, and the score bins on the fake's map
    values, so such an attribution can look aligned without following the manipulation. The uniform
    control weighs every pixel alike. The permutation control needs, per sample, only the attributions
    the permutations assign to it (reduced attributions are held as an (N, H * W) float32 array).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> real = rng.random((12, 16, 16)); fake = real.copy()
    >>> fake[:, :6] = np.clip(fake[:, :6] * 0.3, 0, 1)
    >>> s = alignment_scores(np.abs(fake - real), real_maps=real, fake_maps=fake, n_boot=200,
    ...                      n_permutations=50)
    >>> s.mean_overlap > s.controls["permutation"], s.beats_all_controls
    (True, True)
    """
    bins, eps, confidence = _check_bins(bins), _check_eps(eps), check_confidence(confidence)
    rl = as_map_batch(real_maps, "real_maps")
    fk = as_map_batch(fake_maps, "fake_maps")
    at = as_attribution_batch(attributions, "attributions")
    _check_scores_args(rl, fk, at, on_degenerate, n_permutations)
    group_labels = None if groups is None else as_labels(groups, "groups", fk.shape[0])
    sc = _score_samples(at, rl, fk, bins=bins, value_range=value_range, eps=eps, normalize=normalize,
                        on_degenerate=on_degenerate, keep_attributions=bool(n_permutations))
    _warn_skipped(sc["skipped"], fk.shape[0])
    keep, ov, kl = sc["keep"], sc["overlap"], sc["kl"]
    g_kept = None if group_labels is None else group_labels[keep]
    codes, n_units = group_codes(g_kept, keep.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # too few units: flagged in the summary instead
        ci_ov = bootstrap_mean_ci(ov, g_kept, n_boot=n_boot, confidence=confidence, seed=seed)
        ci_kl = bootstrap_mean_ci(kl, g_kept, n_boot=n_boot, confidence=confidence, seed=seed)
    perm = _permutations(rl, fk, keep, sc["a_mat"], codes, bins=bins, value_range=value_range,
                         normalize=normalize, n_permutations=int(n_permutations), seed=seed)
    base = readonly(perm.mean(axis=1))
    controls, details = _controls(sc, perm, g_kept, float(alpha))
    per = pd.DataFrame({"sample": keep, "overlap": ov, "kl": kl, "overlap_map_value": sc["map_value"],
                        "overlap_uniform": sc["uniform"]})
    if perm.size:
        per["overlap_permutation"] = perm.mean(axis=0)
    if g_kept is not None:
        per.insert(1, "group", g_kept)
    fields_ = dict(
        per_sample=per, mean_overlap=float(ov.mean()), std_overlap=_std(ov), ci_low=ci_ov.low,
        ci_high=ci_ov.high, mean_kl=float(kl.mean()), std_kl=_std(kl), kl_ci_low=ci_kl.low,
        kl_ci_high=ci_kl.high, confidence=confidence, too_few_units=ci_ov.too_few_units, n=int(keep.size),
        n_units=n_units, n_skipped=len(sc["skipped"]), skipped=tuple(int(i) for i, _ in sc["skipped"]),
        skip_reasons=tuple(r for _, r in sc["skipped"]), controls=controls, control_details=details,
        beats_all_controls=bool(details) and all(d["beaten"] for d in details.values()), alpha=float(alpha),
        baseline_mean_overlap=float(base.mean()) if base.size else None,
        baseline_std_overlap=_std(base) if base.size else None,
        p_value=float((1 + np.count_nonzero(base >= ov.mean())) / (1 + base.size)) if base.size else None,
        n_permutations=int(n_permutations), baseline_means=base)
    return AlignmentSummary(**fields_, text=alignment_text(fields_, g_kept is not None), bins=bins,
                            value_range=None if value_range is None else tuple(float(v) for v in value_range),
                            eps=eps)
